//! The admin endpoint: `/healthz`, `/readyz` and `/metrics` over HTTP/1.1, on axum (as the
//! webhook's admin port is). It serves probes and a scraper, nothing else.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::metrics::Metrics;

#[derive(Clone)]
struct Admin {
    catalog: Arc<Catalog>,
    metrics: Arc<Metrics>,
}

pub fn router(catalog: Arc<Catalog>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Admin { catalog, metrics })
}

/// Serves until `stop` resolves; accept errors are retried after a pause by axum.
pub async fn serve(
    listener: TcpListener,
    catalog: Arc<Catalog>,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router(catalog, metrics))
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "admin endpoint stopped");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(admin): State<Admin>) -> Response {
    if admin.catalog.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "service entries not loaded yet\n",
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
