//! The HTTPS server for `POST /validate` and the plain-HTTP admin server, built from a
//! [`ServeConfig`]. Every failure of a request becomes an HTTP status; none stops the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use catalog::{kubernetes, Follower, Source};
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use policy::Options;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::catalog::Catalog;
use crate::metrics::{Metrics, ReasonLabels, ReviewLabels, StatusLabels};
use crate::review;
use crate::tls::{self, CertStore};

/// Bodies above this are refused with 413, as Istio's webhook does.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub admin: Option<SocketAddr>,
    pub options: Options,
    /// Time for a client to finish the TLS handshake, send its headers, or send its body.
    pub client_timeout: Duration,
}

/// State shared by the handlers.
pub struct App {
    pub catalog: Arc<Catalog>,
    pub options: Options,
    pub metrics: Metrics,
    pub client_timeout: Duration,
}

impl App {
    fn refresh_gauges(&self) {
        self.metrics
            .catalog_entries
            .set(i64::try_from(self.catalog.len()).unwrap_or(i64::MAX));
        self.metrics
            .reservations
            .set(i64::try_from(self.catalog.reservations()).unwrap_or(i64::MAX));
    }
}

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

fn reject(app: &App, status: StatusCode, message: String) -> Response {
    app.metrics
        .rejected_requests
        .get_or_create(&StatusLabels {
            status: status.as_u16(),
        })
        .inc();
    tracing::debug!(status = status.as_u16(), %message, "request refused");
    plain(status, message)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

async fn validate(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return reject(
            &app,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {MAX_BODY_BYTES} bytes"),
        );
    }
    let limited = Limited::new(body, MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(app.client_timeout, limited.collect()).await {
        Err(_) => {
            return reject(
                &app,
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {:?}", app.client_timeout),
            )
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return reject(
                &app,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        }
        Ok(Err(e)) => {
            return reject(
                &app,
                StatusCode::BAD_REQUEST,
                format!("reading request body: {e}"),
            )
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    // Checked after the body is read: answering first would reset an HTTP/2 stream that the
    // client is still sending on, and the client would see the reset instead of the status.
    if !is_json(&headers) {
        let got = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return reject(
            &app,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {got:?} is not application/json"),
        );
    }
    let started = Instant::now();
    let (api_version, request) = match review::parse(&bytes) {
        Ok(parsed) => parsed,
        Err(e) => return reject(&app, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let decision = app.catalog.review(&request, &app.options, Instant::now());
    let body = review::respond(&api_version, &request.uid, &decision.verdict);
    let verdict = if decision.verdict.allowed {
        "allowed"
    } else {
        "denied"
    };
    app.metrics
        .reviews
        .get_or_create(&ReviewLabels {
            operation: request.operation.as_str(),
            verdict,
        })
        .inc();
    for reason in &decision.reasons {
        app.metrics
            .denials
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
    app.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    // Denials are worth a line each; admissions only when debugging.
    if decision.verdict.allowed {
        tracing::debug!(uid = %request.uid, operation = request.operation.as_str(), "review allowed");
    } else {
        tracing::info!(
            uid = %request.uid,
            operation = request.operation.as_str(),
            namespace = request.namespace.as_deref().unwrap_or(""),
            name = request.name.as_deref().unwrap_or(""),
            dry_run = request.dry_run.unwrap_or(false),
            reasons = ?decision.reasons,
            "review denied"
        );
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "not found; reviews go to POST /validate".into(),
    )
}

/// The webhook's routes, without TLS: tests and benchmarks may serve it directly.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .fallback(not_found)
        .with_state(app)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.catalog.is_ready() {
        plain(StatusCode::OK, "ready".into())
    } else {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "catalog not loaded yet".into(),
        )
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.refresh_gauges();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

pub fn admin_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// Accepts TLS connections forever; a failed handshake or connection is logged and dropped.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Arc<App>,
) -> std::io::Result<()> {
    let timeout = app.client_timeout;
    let service = TowerToHyperService::new(router(app));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(30)));
            if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// What stops the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Watch(#[from] catalog::watch::WatchError),
    #[error("binding {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds the TLS acceptor, with certificate reload on file changes wired to metrics.
pub fn acceptor(
    config: &ServeConfig,
    app: &Arc<App>,
) -> Result<(TlsAcceptor, catalog::watch::WatchHandle), ServeError> {
    let store = Arc::new(CertStore::load(&config.tls_cert, &config.tls_key)?);
    let server = tls::server_config(Arc::clone(&store), config.client_ca.as_deref())?;
    let reload_store = Arc::clone(&store);
    let reload_app = Arc::clone(app);
    let handle = catalog::watch::watch(&store.paths(), move || match reload_store.reload() {
        Ok(()) => {
            reload_app.metrics.certificate_reloads.inc();
            tracing::info!("serving certificate reloaded");
        }
        Err(e) => {
            reload_app.metrics.certificate_reload_errors.inc();
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "serving certificate not reloaded; keeping the old pair"
            );
        }
    })?;
    Ok((TlsAcceptor::from(Arc::new(server)), handle))
}

/// Loads ServiceEntry files into the catalog now and whenever they change. A load that fails
/// keeps the last good catalog, and is logged and counted.
pub fn watch_files(
    paths: Vec<PathBuf>,
    app: &Arc<App>,
) -> Result<catalog::watch::WatchHandle, ServeError> {
    let load = {
        let app = Arc::clone(app);
        let paths = paths.clone();
        move || match catalog::load_paths(&paths) {
            Ok(loaded) => {
                let entries: Vec<policy::ServiceEntry> =
                    loaded.into_iter().filter_map(|l| l.entry.ok()).collect();
                app.catalog.replace_all(&entries);
                app.refresh_gauges();
                tracing::info!(entries = entries.len(), "catalog loaded");
            }
            Err(e) => {
                app.metrics.catalog_reload_errors.inc();
                tracing::error!(error = %e, "catalog not loaded; keeping the last good one");
            }
        }
    };
    let reload = load.clone();
    load();
    Ok(catalog::watch::watch(&paths, reload)?)
}

/// Feeds the catalog from the Kubernetes source; the catalog is ready after the first list.
struct KubeSink {
    app: Arc<App>,
}

impl kubernetes::Sink for KubeSink {
    fn reset(&mut self, entries: Vec<policy::ServiceEntry>) {
        self.app.catalog.replace_all(&entries);
        self.app.metrics.catalog_lists.inc();
        tracing::info!(
            entries = entries.len(),
            "catalog listed from the Kubernetes API"
        );
    }

    fn apply(&mut self, entry: policy::ServiceEntry) {
        self.app.catalog.upsert(&entry);
        self.app.metrics.catalog_events.inc();
    }

    fn delete(&mut self, key: &policy::ObjectKey) {
        self.app.catalog.remove(key);
        self.app.metrics.catalog_events.inc();
    }

    fn flush(&mut self) {
        self.app.refresh_gauges();
    }

    fn trouble(&mut self, trouble: kubernetes::Trouble<'_>) {
        match trouble {
            kubernetes::Trouble::Api(error) => {
                self.app.metrics.catalog_reload_errors.inc();
                tracing::warn!(%error, ready = self.app.catalog.is_ready(), "Kubernetes API; retrying, the last good catalog stays");
            }
            kubernetes::Trouble::Invalid(error) => {
                self.app.metrics.catalog_invalid_objects.inc();
                tracing::warn!(%error, "ServiceEntry left out of the catalog");
            }
        }
    }
}

/// Runs the webhook until the process ends: admin server, catalog, TLS server.
pub async fn run(config: ServeConfig, source: Source) -> Result<(), ServeError> {
    let app = Arc::new(App {
        catalog: Arc::new(Catalog::default()),
        options: config.options.clone(),
        metrics: Metrics::new(),
        client_timeout: config.client_timeout,
    });
    let (acceptor, _cert_watch) = acceptor(&config, &app)?;
    if let Some(addr) = config.admin {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| ServeError::Bind { addr, error })?;
        tracing::info!(addr = %listener.local_addr()?, "admin listening");
        let admin = admin_router(Arc::clone(&app));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, admin).await {
                tracing::error!(error = %e, "admin server stopped");
            }
        });
    }
    let _catalog = match source {
        Source::Files(paths) => Follower::Files(watch_files(paths, &app)?),
        Source::Kubernetes(settings) => kubernetes::spawn(
            settings,
            KubeSink {
                app: Arc::clone(&app),
            },
        ),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|error| ServeError::Bind {
            addr: config.listen,
            error,
        })?;
    tracing::info!(addr = %listener.local_addr()?, "webhook listening");
    serve_tls(listener, acceptor, app).await?;
    Ok(())
}
