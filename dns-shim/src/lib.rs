//! dns-shim: a pod-local DNS server that answers `.global` names with the VIPs of their
//! ServiceEntries and forwards every other name to the pod's upstream resolvers.
//!
//! [`Shim::bind`] opens the sockets and loads the catalog; [`Shim::serve`] runs until the
//! process ends. `main.rs` only turns flags into a [`config::Config`].

pub mod admin;
pub mod catalog;
pub mod config;
pub mod fastpath;
pub mod forward;
pub mod handler;
pub mod metrics;
pub mod tcp;
pub mod udp;
pub mod zone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::catalog::Catalog;
use ::catalog::{Follower, Source};

use crate::config::{Config, UdpLoop};
use crate::forward::{ForwardConfig, Forwarder, Limit};
use crate::handler::{Handler, Shared};
use crate::metrics::Metrics;
use crate::zone::ZoneConfig;

/// How long a stopping shim waits, past the drain timeout, for the last answers to go out.
const LAST_WORDS: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Listen {
        addr: SocketAddr,
        proto: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Forward(#[from] forward::ForwardError),
    #[error(transparent)]
    Watch(#[from] ::catalog::watch::WatchError),
    #[error(transparent)]
    Handler(#[from] handler::HandlerError),
    #[error("dns server stopped: {0}")]
    Server(String),
}

/// A bound, loaded shim, ready to serve.
pub struct Shim {
    hickory: Option<Server<Shared>>,
    handler: Arc<Handler>,
    catalog: Arc<Catalog>,
    _watcher: Follower,
    dns_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    /// Cancelled on SIGTERM: stop taking queries and connections.
    stop: CancellationToken,
    /// Cancelled when the drain timeout has passed: SERVFAIL what is still forwarded.
    give_up: CancellationToken,
    drain_timeout: Duration,
}

impl Shim {
    /// Binds UDP (several SO_REUSEPORT sockets) and TCP on the listen address and the admin
    /// endpoint, loads the catalog (staying unready if that fails) and starts watching it.
    /// With port 0, a free port is picked and shared by UDP and TCP.
    pub async fn bind(config: Config) -> Result<Self, ServeError> {
        let metrics = Arc::new(Metrics::new(&config.upstreams));
        let paths = match &config.source {
            Source::Files(paths) => paths.clone(),
            Source::Kubernetes(_) => Vec::new(),
        };
        let zone_config = ZoneConfig::new(&config.options.domain_suffix, config.ttl)?;
        let catalog = Arc::new(Catalog::new(
            paths,
            config.options.clone(),
            config.search_domains.clone(),
            config.pod_namespace.clone(),
            zone_config,
            Arc::clone(&metrics),
        ));
        let watcher = match &config.source {
            Source::Files(_) => {
                catalog.reload_logged();
                Follower::Files(catalog.watch()?)
            }
            // Unready until the first list is in; then kept in step with the API.
            Source::Kubernetes(settings) => {
                ::catalog::kubernetes::spawn(settings.clone(), catalog.kubernetes_sink())
            }
        };
        let forwarder = Arc::new(Forwarder::new(
            &config.upstreams,
            ForwardConfig {
                timeout: config.upstream_timeout,
                randomize_case: config.randomize_case,
            },
            Arc::clone(&metrics),
        )?);
        let limit = Limit::new(config.max_in_flight);
        metrics.watch_in_flight(&limit);
        let stop = CancellationToken::new();
        let give_up = CancellationToken::new();
        let handler = Arc::new(Handler::new(
            Arc::clone(&catalog),
            forwarder,
            Arc::clone(&metrics),
            limit,
            give_up.clone(),
        ));

        let mut hickory = None;
        let mut udp_threads = Vec::new();
        let (sockets, tcp) = bind_dns(config.listen, config.udp_sockets).await?;
        let addr = tcp.local_addr().unwrap_or(config.listen);
        for (i, socket) in sockets.into_iter().enumerate() {
            let err = move |source| ServeError::Listen {
                addr,
                proto: "udp",
                source,
            };
            match config.udp_loop {
                UdpLoop::Direct => udp_threads.push(
                    udp::spawn(
                        i,
                        socket,
                        Arc::clone(&handler),
                        config.max_in_flight_per_thread,
                        stop.clone(),
                    )
                    .map_err(err)?,
                ),
                UdpLoop::Hickory => hickory
                    .get_or_insert_with(|| Server::new(Shared(Arc::clone(&handler))))
                    .register_socket(UdpSocket::from_std(socket).map_err(err)?),
            }
        }
        tokio::spawn(tcp::serve(
            tcp,
            Arc::clone(&handler),
            tcp::TcpConfig {
                max_connections: config.tcp_connections,
                idle_timeout: config.tcp_timeout,
            },
            stop.clone(),
        ));

        let admin_addr = match config.admin {
            Some(admin) => {
                let listener =
                    TcpListener::bind(admin)
                        .await
                        .map_err(|source| ServeError::Listen {
                            addr: admin,
                            proto: "admin http",
                            source,
                        })?;
                let bound = listener.local_addr().unwrap_or(admin);
                let stopped = give_up.clone();
                tokio::spawn(admin::serve(
                    listener,
                    Arc::clone(&catalog),
                    metrics,
                    async move { stopped.cancelled().await },
                ));
                Some(bound)
            }
            None => None,
        };
        Ok(Self {
            hickory,
            handler,
            catalog,
            _watcher: watcher,
            dns_addr: addr,
            admin_addr,
            udp_threads,
            stop,
            give_up,
            drain_timeout: config.drain_timeout,
        })
    }

    /// The address DNS is served on (UDP and TCP).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns_addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn is_ready(&self) -> bool {
        self.catalog.is_ready()
    }

    /// Serves until SIGINT or SIGTERM, then drains: no new queries are read, forwarded
    /// queries get until the drain timeout for their upstream's answer, and whatever is still
    /// waiting then is answered SERVFAIL before the process ends.
    pub async fn serve(mut self) -> Result<(), ServeError> {
        match self.hickory.as_mut() {
            Some(server) => {
                tokio::select! {
                    result = server.block_until_done() => {
                        result.map_err(|e| ServeError::Server(e.to_string()))?;
                    }
                    () = shutdown_signal() => {}
                }
            }
            None => shutdown_signal().await,
        }
        info!("stopping: draining forwarded queries");
        self.stop.cancel();
        if let Some(server) = self.hickory.as_mut() {
            server.shutdown_token().cancel();
        }
        let limit = Arc::clone(self.handler.limit());
        let deadline = Instant::now() + self.drain_timeout;
        while limit.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let left = limit.in_flight();
        self.give_up.cancel();
        let deadline = Instant::now() + LAST_WORDS;
        while limit.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let threads = std::mem::take(&mut self.udp_threads);
        let _ = tokio::time::timeout(
            LAST_WORDS,
            tokio::task::spawn_blocking(move || {
                for thread in threads {
                    let _ = thread.join();
                }
            }),
        )
        .await;
        // TCP answers go out on their connections' writers.
        tokio::time::sleep(Duration::from_millis(20)).await;
        info!(servfailed = left, "stopped");
        Ok(())
    }
}

/// SIGTERM or SIGINT; SIGINT alone if the SIGTERM handler cannot be installed.
async fn shutdown_signal() {
    match ::catalog::signal::shutdown() {
        Ok(signal) => {
            signal.await;
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Binds `count` UDP sockets and the TCP listener on one address. With port 0 the kernel
/// picks the UDP port, and TCP may find it taken (by one of this host's outgoing connections,
/// which draw from the same range); then the pick is made again, a few times.
async fn bind_dns(
    listen: SocketAddr,
    count: usize,
) -> Result<(Vec<std::net::UdpSocket>, TcpListener), ServeError> {
    const ATTEMPTS: usize = 16;
    let mut attempt = 1;
    loop {
        let mut addr = listen;
        let mut sockets = Vec::with_capacity(count);
        for _ in 0..count {
            let socket = udp_socket(addr)?;
            addr = socket.local_addr().map_err(|source| ServeError::Listen {
                addr,
                proto: "udp",
                source,
            })?;
            sockets.push(socket);
        }
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((sockets, tcp)),
            Err(e)
                if listen.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(source) => {
                return Err(ServeError::Listen {
                    addr,
                    proto: "tcp",
                    source,
                })
            }
        }
    }
}

/// A non-blocking UDP socket with SO_REUSEPORT, so that several sockets share the port and
/// the kernel spreads queries over their receive loops.
fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket, ServeError> {
    let err = |source| ServeError::Listen {
        addr,
        proto: "udp",
        source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    // Bursts of queries wait in the kernel rather than being dropped.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into()).map_err(err)?;
    Ok(socket.into())
}
