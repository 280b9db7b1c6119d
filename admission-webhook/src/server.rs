//! The HTTPS server for `POST /validate` and `POST /mutate` and the plain-HTTP admin server,
//! built from a [`ServeConfig`]. Every failure of a request becomes an HTTP status; none stops
//! the server.
//!
//! What one client can cost is bounded: `--client-timeout` for the TLS handshake, for a
//! request's headers and body, and for an idle connection between requests (HTTP/1.1 and
//! HTTP/2 alike, measured from the handshake on, so a client that sends nothing is closed
//! too); at most `--max-connections` at once, past which new connections wait in the kernel's
//! backlog; a body of at most 6 MiB. On SIGTERM or SIGINT `/readyz` turns 503, the listener
//! stops accepting, reviews in flight finish within `--drain-timeout`, and the process exits 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use catalog::{kubernetes, Follower, Source};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use policy::Options;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::admit::{Admitter, Claimer};
use crate::catalog::Catalog;
use crate::claims::ApiClaims;
use crate::metrics::{Metrics, ReasonLabels, ReviewLabels, StatusLabels};
use crate::review;
use crate::tls::{self, CertStore};

/// Bodies above this are refused with 413, as Istio's webhook does.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// What is read and thrown away of a body over the limit before the 413 is sent, so that an
/// HTTP/2 client reads the response instead of a reset stream.
const MAX_DRAIN_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub admin: Option<SocketAddr>,
    pub options: Options,
    /// Time for a client to finish the TLS handshake, send its headers or its body, or send
    /// its next request.
    pub client_timeout: Duration,
    /// TLS connections served at once.
    pub max_connections: usize,
    /// Time for reviews in flight to finish once the listener is closed.
    pub drain_timeout: Duration,
    /// Time between SIGTERM (when `/readyz` turns 503) and closing the listener, so that the
    /// API server stops sending reviews here before connections are refused.
    pub shutdown_delay: Duration,
    pub claims: ClaimSettings,
}

/// How claims and allocation work.
#[derive(Debug, Clone)]
pub struct ClaimSettings {
    /// Claims of entries that are not stored lapse after this.
    pub grace: Duration,
    /// Claims of unstored entries a namespace may hold, for callers without a client
    /// certificate.
    pub max_unstored: usize,
    /// Longest all the claims of one review may take.
    pub timeout: Duration,
    /// Whether `/mutate` gives VIPs to entries created without addresses.
    pub allocate: bool,
    /// With the Kubernetes API: the repair's Lease (namespace, name) and this replica's name.
    pub lease: Option<(String, String, String)>,
    /// How long the repair Lease lasts.
    pub lease_duration: Duration,
    /// Time between two repairs of the leader.
    pub repair_interval: Duration,
}

impl Default for ClaimSettings {
    fn default() -> Self {
        ClaimSettings {
            grace: crate::claims::DEFAULT_GRACE,
            max_unstored: 100,
            timeout: Duration::from_secs(3),
            allocate: true,
            lease: None,
            lease_duration: Duration::from_secs(15),
            repair_interval: Duration::from_secs(10),
        }
    }
}

/// State shared by the handlers.
pub struct App {
    pub catalog: Arc<Catalog>,
    pub admitter: Admitter,
    pub metrics: Arc<Metrics>,
    pub client_timeout: Duration,
    /// Set on SIGTERM: `/readyz` answers 503 from then on.
    pub draining: AtomicBool,
}

impl App {
    fn refresh_gauges(&self) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.catalog_entries.set(gauge(self.catalog.len()));
        self.metrics.claims.set(gauge(self.catalog.claims()));
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

/// Reads a request body of at most [`MAX_BODY_BYTES`] within the client timeout; any other
/// outcome is the response to send.
async fn read_body(app: &App, headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        reject(
            app,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let mut body = body.into_data_stream();
    let mut read = Vec::with_capacity(
        declared.map_or(0, |n| usize::try_from(n).unwrap_or(0).min(MAX_BODY_BYTES)),
    );
    let over = declared.is_some_and(|n| n > MAX_BODY_BYTES as u64);
    let deadline = tokio::time::Instant::now() + app.client_timeout;
    let mut drained = 0usize;
    loop {
        let next =
            match tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut body)).await {
                Err(_) if over || read.len() > MAX_BODY_BYTES => return Err(too_large()),
                Err(_) => {
                    return Err(reject(
                        app,
                        StatusCode::REQUEST_TIMEOUT,
                        format!("request body not received within {:?}", app.client_timeout),
                    ))
                }
                Ok(next) => next,
            };
        match next {
            None => break,
            Some(Err(e)) => {
                return Err(reject(
                    app,
                    StatusCode::BAD_REQUEST,
                    format!("reading request body: {e}"),
                ))
            }
            Some(Ok(chunk)) => {
                if over || read.len() + chunk.len() > MAX_BODY_BYTES {
                    // Read on, up to a bound, so the client gets to read the 413.
                    drained += chunk.len();
                    read.clear();
                    if drained > MAX_DRAIN_BYTES {
                        return Err(too_large());
                    }
                    continue;
                }
                read.extend_from_slice(&chunk);
            }
        }
    }
    if over || drained > 0 {
        return Err(too_large());
    }
    Ok(read.into())
}

/// The body of a review request parsed, or the response that refuses it.
async fn parse_review(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, crate::review::AdmissionRequest), Response> {
    let bytes = read_body(app, headers, body).await?;
    // Checked after the body is read: answering first would reset an HTTP/2 stream that the
    // client is still sending on, and the client would see the reset instead of the status.
    if !is_json(headers) {
        let got = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return Err(reject(
            app,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {got:?} is not application/json"),
        ));
    }
    review::parse(&bytes).map_err(|e| reject(app, StatusCode::BAD_REQUEST, e.to_string()))
}

fn json_response(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn validate(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let (api_version, request) = match parse_review(&app, &headers, body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let started = Instant::now();
    let decision = app.admitter.validate(&request).await;
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
    json_response(body)
}

async fn mutate(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let (api_version, request) = match parse_review(&app, &headers, body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let mutation = app.admitter.mutate(&request).await;
    if let Some(ip) = mutation.allocated {
        app.metrics.allocations.inc();
        tracing::info!(uid = %request.uid, namespace = request.namespace.as_deref().unwrap_or(""), name = request.name.as_deref().unwrap_or(""), %ip, dry_run = request.dry_run.unwrap_or(false), "VIP allocated");
    }
    json_response(review::respond_with_patch(
        &api_version,
        &request.uid,
        &mutation.verdict,
        mutation.patch.as_deref(),
    ))
}

async fn not_found() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "not found; reviews go to POST /validate and POST /mutate".into(),
    )
}

/// The webhook's routes, without TLS: tests and benchmarks may serve it directly.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .fallback(not_found)
        .with_state(app)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::Relaxed) {
        plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into())
    } else if app.catalog.is_ready() {
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

/// Requests of one connection in flight, and when the last one ended: what the idle timer
/// of [`serve_tls`] reads.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds after the connection started.
    last_ms: AtomicU64,
}

/// Counts a request as in flight until it is dropped (answered, or abandoned).
struct InFlight(Arc<Activity>, Instant);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.1.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(ms, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts TLS connections until `stop`, then lets the open ones finish their requests within
/// `drain`.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let timeout = app.client_timeout;
    let router = router(Arc::clone(&app));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut backoff = Duration::from_millis(10);
    loop {
        // At the cap, wait for a slot; connections meanwhile wait in the backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let app = Arc::clone(&app);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            app.metrics.connections_open.inc();
            let started = Instant::now();
            let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some(tls),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            };
            if let Some(tls) = tls {
                let activity = Arc::new(Activity::default());
                let counted = Arc::clone(&activity);
                let service = TowerToHyperService::new(
                    tower::ServiceBuilder::new()
                        .map_request(move |request: axum::http::Request<hyper::body::Incoming>| {
                            counted.in_flight.fetch_add(1, Ordering::Relaxed);
                            let mut request = request.map(Body::new);
                            request
                                .extensions_mut()
                                .insert(Arc::new(InFlight(Arc::clone(&counted), started)));
                            request
                        })
                        .service(router),
                );
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(timeout);
                builder
                    .http2()
                    .timer(TokioTimer::new())
                    .keep_alive_interval(Some(Duration::from_secs(30)));
                let connection = builder.serve_connection(TokioIo::new(tls), service);
                let connection = watcher.watch(connection.into_owned());
                tokio::pin!(connection);
                let mut tick = tokio::time::interval(
                    timeout
                        .min(Duration::from_secs(1))
                        .max(Duration::from_millis(100)),
                );
                loop {
                    tokio::select! {
                        done = &mut connection => {
                            if let Err(e) = done {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                            break;
                        }
                        _ = tick.tick() => {
                            let idle_since = Duration::from_millis(activity.last_ms.load(Ordering::Relaxed));
                            let idle = activity.in_flight.load(Ordering::Relaxed) == 0
                                && started.elapsed().saturating_sub(idle_since) >= timeout;
                            if idle {
                                app.metrics.connections_closed_idle.inc();
                                tracing::debug!(%peer, "idle connection closed");
                                break;
                            }
                        }
                    }
                }
            }
            app.metrics.connections_open.dec();
        });
    }
    drop(listener);
    tracing::info!(connections = graceful.count(), "listener closed; draining");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?drain, "connections still open after the drain timeout");
    }
}

/// What stops the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Watch(#[from] catalog::watch::WatchError),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        error: std::io::Error,
    },
    #[error(transparent)]
    Kube(#[from] kubernetes::KubeError),
    #[error("serving")]
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

/// Raises the open-file soft limit to the hard limit, so that the connection cap, not the
/// default 1,024 descriptors, is what bounds clients.
pub fn raise_open_files() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "open-file limit not raised"),
    }
}

/// Runs the webhook until `stop` fires (SIGTERM, SIGINT): admin server, catalog, claims,
/// repair, TLS server; then drains and returns.
pub async fn run(
    config: ServeConfig,
    source: Source,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    raise_open_files();
    let catalog = Arc::new(Catalog::new(config.options.clone()));
    let metrics = Arc::new(Metrics::new());
    let client = match &source {
        Source::Kubernetes(settings) => Some(kubernetes::client(settings).await?.0),
        Source::Files(_) => None,
    };
    let claimer = match &client {
        Some(client) => Claimer::Api(ApiClaims::new(client.clone(), config.claims.grace)),
        None => Claimer::Local {
            ttl: config.claims.grace,
        },
    };
    let app = Arc::new(App {
        catalog: Arc::clone(&catalog),
        admitter: Admitter {
            catalog: Arc::clone(&catalog),
            claimer,
            authenticated: config.client_ca.is_some(),
            max_unstored: config.claims.max_unstored,
            claim_timeout: config.claims.timeout,
            allocate: config.claims.allocate,
        },
        metrics: Arc::clone(&metrics),
        client_timeout: config.client_timeout,
        draining: AtomicBool::new(false),
    });
    let (acceptor, _cert_watch) = acceptor(&config, &app)?;
    let mut tasks = Vec::new();
    // The admin server answers (/readyz 503) until the reviews have drained.
    let (admin_done, admin_stop) = watch::channel(false);
    let mut admin_task = None;
    if let Some(addr) = config.admin {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| ServeError::Bind { addr, error })?;
        tracing::info!(addr = %listener.local_addr()?, "admin listening");
        let admin = admin_router(Arc::clone(&app));
        let mut admin_stop = admin_stop.clone();
        admin_task = Some(tokio::spawn(async move {
            let shutdown = async move {
                let _ = admin_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, admin)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "admin server stopped");
            }
        }));
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
    let mut elector = None;
    if let (Some(client), Claimer::Api(claims)) = (&client, &app.admitter.claimer) {
        for addresses in [true, false] {
            tasks.push(tokio::spawn(crate::repair::watch_claims(
                client.clone(),
                Arc::clone(&catalog),
                addresses,
            )));
        }
        if let Some((namespace, name, identity)) = &config.claims.lease {
            let lease = Arc::new(catalog::lease::Elector::new(
                client.clone(),
                catalog::lease::LeaseSettings::new(
                    namespace,
                    name,
                    identity,
                    config.claims.lease_duration,
                ),
            ));
            let leading = lease.leading();
            let repair = crate::repair::Repair {
                claims: claims.clone(),
                catalog: Arc::clone(&catalog),
                metrics: Arc::clone(&metrics),
                interval: config.claims.repair_interval,
            };
            let leader_gauge = Arc::clone(&metrics);
            let mut watched = lease.leading();
            tasks.push(tokio::spawn(async move {
                while watched.changed().await.is_ok() {
                    leader_gauge.leading.set(i64::from(*watched.borrow()));
                }
            }));
            let repair_stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                repair.run(leading, repair_stop).await;
            }));
            let run_lease = Arc::clone(&lease);
            let lease_stop = stop.clone();
            elector = Some(tokio::spawn(async move {
                run_lease.run(lease_stop).await;
            }));
        }
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|error| ServeError::Bind {
            addr: config.listen,
            error,
        })?;
    tracing::info!(addr = %listener.local_addr()?, "webhook listening");
    let (close, server_stop) = watch::channel(false);
    let draining = Arc::clone(&app);
    let delay = config.shutdown_delay;
    let readiness = tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        draining.draining.store(true, Ordering::Relaxed);
        tracing::info!(?delay, "shutting down: not ready; the listener closes after the delay, then reviews in flight drain");
        tokio::time::sleep(delay).await;
        let _ = close.send(true);
    });
    serve_tls(
        listener,
        acceptor,
        Arc::clone(&app),
        config.max_connections,
        server_stop,
        config.drain_timeout,
    )
    .await;
    let _ = readiness.await;
    if let Some(elector) = elector {
        // Gives the repair Lease up so that another replica takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(2), elector).await;
    }
    for task in tasks {
        task.abort();
    }
    let _ = admin_done.send(true);
    if let Some(admin) = admin_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
    }
    Ok(())
}
