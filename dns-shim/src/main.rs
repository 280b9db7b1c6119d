//! `dns-shim`: flags, logging and the runtime; everything else is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use catalog::kubernetes;
use clap::Parser;
use dns_shim::config::{self, Config, Settings};
use dns_shim::Shim;

/// jemalloc, with a background thread purging freed pages after a second: a reload builds the
/// new table while the old one serves, and what the old one held goes back to the system
/// instead of staying in glibc's per-thread arenas (100,000 entries: 72 MB after the load,
/// growing to 215 MB over five reloads with glibc; see benches/RESULTS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A pod-local DNS server: answers `.global` names with the VIPs of their ServiceEntries and
/// forwards every other name to the upstream resolvers.
#[derive(Debug, Parser)]
#[command(name = "dns-shim", version)]
struct Args {
    /// ServiceEntry files or directories (watched; reloaded on change).
    #[arg(long = "service-entries", value_name = "PATH", num_args = 1.., required_unless_present = "kubernetes", conflicts_with = "kubernetes")]
    service_entries: Vec<PathBuf>,
    #[command(flatten)]
    kube: kubernetes::Flags,
    /// Address for DNS over UDP and TCP.
    #[arg(long, default_value = config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Upstream resolver, IP or IP:PORT; repeat for several, tried in order. Default: the
    /// nameservers of --resolv-conf other than --listen.
    #[arg(long = "upstream", value_name = "IP[:PORT]")]
    upstreams: Vec<String>,
    /// Where the default upstreams and search list come from.
    #[arg(long, default_value = config::DEFAULT_RESOLV_CONF)]
    resolv_conf: PathBuf,
    /// Search domain whose expansions of known names are answered locally; repeat for several.
    /// Default: the search list of --resolv-conf.
    #[arg(long = "search-domain", value_name = "DOMAIN")]
    search_domains: Vec<String>,
    /// Domain suffix of the names answered from ServiceEntries.
    #[arg(long, default_value = policy::options::DEFAULT_DOMAIN_SUFFIX)]
    domain_suffix: String,
    /// TTL of local answers, in seconds.
    #[arg(long, default_value_t = config::DEFAULT_TTL)]
    ttl: u32,
    /// Address of the admin HTTP endpoint (/healthz, /readyz, /metrics).
    #[arg(long, default_value = config::DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// Time to wait for one upstream before trying the next, in milliseconds.
    #[arg(long = "upstream-timeout-ms", default_value_t = config::DEFAULT_UPSTREAM_TIMEOUT.as_millis() as u64)]
    upstream_timeout_ms: u64,
    /// UDP sockets on the listen address (SO_REUSEPORT). Default: one per core.
    #[arg(long)]
    udp_sockets: Option<usize>,
    /// UDP receive loop: `direct` (dns-shim's) or `hickory` (hickory-server's register_socket).
    #[arg(long, default_value = "direct")]
    udp_loop: config::UdpLoop,
    /// Worker threads. Default: one per core.
    #[arg(long)]
    threads: Option<usize>,
    /// Forwarded queries waiting for an upstream, in all; past it, SERVFAIL at once.
    #[arg(long, default_value_t = config::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Forwarded queries waiting for an upstream, per UDP thread.
    #[arg(long, default_value_t = config::DEFAULT_MAX_IN_FLIGHT_PER_THREAD)]
    max_in_flight_per_thread: usize,
    /// Client TCP connections open at once; one more is closed at once.
    #[arg(long, default_value_t = config::DEFAULT_TCP_CONNECTIONS)]
    tcp_connections: usize,
    /// A client's TCP connection is closed after this long without a query, in milliseconds.
    #[arg(long = "tcp-idle-timeout-ms", default_value_t = config::DEFAULT_TCP_TIMEOUT.as_millis() as u64)]
    tcp_idle_timeout_ms: u64,
    /// On SIGTERM, how long forwarded queries may still wait for their answer before they are
    /// answered SERVFAIL, in milliseconds.
    #[arg(long = "drain-timeout-ms", default_value_t = config::DEFAULT_DRAIN_TIMEOUT.as_millis() as u64)]
    drain_timeout_ms: u64,
    /// Send names upstream in the case the client used, instead of randomised (0x20), for an
    /// upstream that does not echo the case of a question.
    #[arg(long)]
    no_case_randomization: bool,
    /// The namespace of the pod dns-shim serves: `.global` names are answered only for
    /// ServiceEntries whose exportTo includes it (NXDOMAIN otherwise). Default: <ns> of the
    /// first search domain when it is <ns>.svc.<cluster domain>, as kubelet writes it; without
    /// one, only entries exported to every namespace are answered.
    #[arg(long, value_name = "NAMESPACE")]
    pod_namespace: Option<String>,
    /// The exportTo of ServiceEntries that set none, as meshConfig defaultServiceExportTo
    /// (repeat for several: ".", "*", "~" or namespace names). Default: "*".
    #[arg(long = "default-export-to", value_name = "TARGET")]
    default_export_to: Vec<String>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("dns-shim: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut config = Config::new(Settings {
        service_entries: args.service_entries,
        kubernetes: args.kube.settings(),
        listen: args.listen,
        upstreams: args.upstreams,
        resolv_conf: args.resolv_conf,
        search_domains: args.search_domains,
        domain_suffix: args.domain_suffix,
        ttl: args.ttl,
        admin: Some(args.admin),
        upstream_timeout: Duration::from_millis(args.upstream_timeout_ms),
        udp_sockets: args.udp_sockets,
        udp_loop: args.udp_loop,
        max_in_flight: args.max_in_flight,
        max_in_flight_per_thread: args.max_in_flight_per_thread,
        tcp_connections: args.tcp_connections,
        tcp_idle_timeout: Duration::from_millis(args.tcp_idle_timeout_ms),
        drain_timeout: Duration::from_millis(args.drain_timeout_ms),
        randomize_case: !args.no_case_randomization,
        pod_namespace: args.pod_namespace,
        default_export_to: args.default_export_to,
    })
    .context("invalid settings")?;
    // Every forwarded query holds a socket: take all the descriptors the hard limit allows.
    config::raise_file_limit(&mut config);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let shim = Shim::bind(config).await?;
        let admin = shim
            .admin_addr()
            .map_or_else(|| "off".to_string(), |a| a.to_string());
        // Tests and scripts read this line to find the ports.
        println!(
            "dns-shim listening on {} (udp, tcp), admin on {admin}",
            shim.dns_addr()
        );
        shim.serve().await?;
        Ok(())
    })
}
