//! The admin endpoint: `/healthz`, `/readyz` and `/metrics` over HTTP/1.1, on axum (as the
//! other servers' are).

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::view::View;

#[derive(Clone)]
struct Admin {
    view: View,
    metrics: Arc<Metrics>,
    stopping: watch::Receiver<bool>,
}

pub fn router(view: View, metrics: Arc<Metrics>, stopping: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Admin {
            view,
            metrics,
            stopping,
        })
}

/// Serves until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "admin endpoint stopped");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the first list of ServiceEntries is in, until shutdown begins.
async fn readyz(State(admin): State<Admin>) -> Response {
    if *admin.stopping.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if admin.view.is_synced() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "service entries not listed yet\n",
        )
            .into_response()
    }
}

async fn metrics_text(State(admin): State<Admin>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        admin.metrics.render(),
    )
        .into_response()
}
