//! Settings of the shim: raw values as given on the command line, checked and completed from
//! resolv.conf into a [`Config`]. Defaults are named here and nowhere else.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use catalog::{kubernetes, Source};
use policy::{Options, OptionsError};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:53";
pub const DEFAULT_ADMIN: &str = "127.0.0.1:15054";
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";
pub const DEFAULT_TTL: u32 = 30;
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle time after which a client's TCP connection is closed.
pub const DEFAULT_TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Client TCP connections open at once.
pub const DEFAULT_TCP_CONNECTIONS: usize = 128;
/// Forwarded queries in flight in all, and per UDP thread. Each holds a socket and about 2 KiB
/// (its task, its copy of the query, the kernel's socket): 2,048 of them stay under 10 MiB of
/// the sidecar's 128 MiB, and cover 1,000 queries a second to an upstream that answers within
/// 2 s.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 2048;
pub const DEFAULT_MAX_IN_FLIGHT_PER_THREAD: usize = 1024;
/// How long SIGTERM waits for forwarded queries before answering them SERVFAIL.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// File descriptors kept for listeners, the admin endpoint, the catalog and the runtime.
const RESERVED_FILES: usize = 128;

/// Which receive loop serves UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpLoop {
    /// dns-shim's own loop: local answers inline, replies sent directly (see `udp.rs`).
    #[default]
    Direct,
    /// hickory-server's `register_socket` loop.
    Hickory,
}

impl std::str::FromStr for UdpLoop {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(Self::Direct),
            "hickory" => Ok(Self::Hickory),
            other => Err(ConfigError::UdpLoop(other.to_string())),
        }
    }
}

/// Settings as given, before defaults from resolv.conf are applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub service_entries: Vec<PathBuf>,
    /// Watch the Kubernetes API instead of files.
    pub kubernetes: Option<kubernetes::Settings>,
    pub listen: SocketAddr,
    pub upstreams: Vec<String>,
    pub resolv_conf: PathBuf,
    pub search_domains: Vec<String>,
    pub domain_suffix: String,
    pub ttl: u32,
    pub admin: Option<SocketAddr>,
    pub upstream_timeout: Duration,
    /// UDP sockets on the listen address; `None` means one per core.
    pub udp_sockets: Option<usize>,
    pub udp_loop: UdpLoop,
    pub max_in_flight: usize,
    pub max_in_flight_per_thread: usize,
    pub tcp_connections: usize,
    pub tcp_idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub randomize_case: bool,
    /// The namespace of the pod dns-shim answers for; `None`: from the search list.
    pub pod_namespace: Option<String>,
    /// meshConfig `defaultServiceExportTo`; empty: `*`.
    pub default_export_to: Vec<String>,
}

impl Settings {
    /// The settings the flags default to, for `service_entries` and `upstreams`.
    pub fn new(service_entries: Vec<PathBuf>, upstreams: Vec<String>) -> Self {
        Self {
            service_entries,
            kubernetes: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 53)),
            upstreams,
            resolv_conf: PathBuf::from(DEFAULT_RESOLV_CONF),
            search_domains: Vec::new(),
            domain_suffix: policy::options::DEFAULT_DOMAIN_SUFFIX.to_string(),
            ttl: DEFAULT_TTL,
            admin: None,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            udp_sockets: None,
            udp_loop: UdpLoop::Direct,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_per_thread: DEFAULT_MAX_IN_FLIGHT_PER_THREAD,
            tcp_connections: DEFAULT_TCP_CONNECTIONS,
            tcp_idle_timeout: DEFAULT_TCP_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            randomize_case: true,
            pod_namespace: None,
            default_export_to: Vec::new(),
        }
    }
}

/// Checked settings that the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    pub listen: SocketAddr,
    pub upstreams: Vec<SocketAddr>,
    pub search_domains: Vec<String>,
    pub options: Options,
    pub ttl: u32,
    pub admin: Option<SocketAddr>,
    pub upstream_timeout: Duration,
    pub tcp_timeout: Duration,
    pub udp_sockets: usize,
    pub udp_loop: UdpLoop,
    pub max_in_flight: usize,
    pub max_in_flight_per_thread: usize,
    pub tcp_connections: usize,
    pub drain_timeout: Duration,
    pub randomize_case: bool,
    /// The namespace whose view of the ServiceEntries is answered (their `exportTo`); `None`
    /// when neither given nor found in the search list: only entries exported to every
    /// namespace are answered.
    pub pod_namespace: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no ServiceEntries to answer from: give --service-entries PATH or --kubernetes")]
    NoServiceEntries,
    #[error("--service-entries and --kubernetes exclude each other: give one")]
    TwoSources,
    #[error("upstream {0:?} is not an IP address or IP:PORT")]
    Upstream(String),
    #[error(
        "no upstream: give --upstream or a nameserver in {0} other than dns-shim's own address"
    )]
    NoUpstream(PathBuf),
    #[error("{}: {source}", path.display())]
    ResolvConf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("search domain {0:?} is not a domain name")]
    SearchDomain(String),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error("--udp-sockets 0: at least one socket is needed")]
    NoUdpSockets,
    #[error("UDP loop {0:?} is neither \"direct\" nor \"hickory\"")]
    UdpLoop(String),
    #[error("--upstream-timeout must be more than 0")]
    ZeroTimeout,
    #[error("{0} 0: at least 1 is needed")]
    Zero(&'static str),
    #[error("--pod-namespace {0:?} is not a namespace name (a DNS-1123 label)")]
    PodNamespace(String),
}

/// What dns-shim reads from resolv.conf: nameservers and the search list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

impl ResolvConf {
    /// Reads `nameserver`, `search` and `domain` lines; the last `search` or `domain` wins, as
    /// in glibc. Other lines and unparsable nameservers are ignored.
    pub fn parse(text: &str) -> Self {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A scoped IPv6 address (fe80::1%eth0) is not supported; skip it.
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    conf.search = words.map(str::to_string).collect();
                }
                _ => {}
            }
        }
        conf
    }
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`; port 53 when none is given.
pub fn parse_upstream(text: &str) -> Result<SocketAddr, ConfigError> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| ConfigError::Upstream(text.to_string()))
}

impl Config {
    pub fn new(settings: Settings) -> Result<Self, ConfigError> {
        let source = match (settings.service_entries.is_empty(), settings.kubernetes) {
            (true, None) => return Err(ConfigError::NoServiceEntries),
            (false, Some(_)) => return Err(ConfigError::TwoSources),
            (true, Some(kube)) => Source::Kubernetes(kube),
            (false, None) => Source::Files(settings.service_entries),
        };
        if settings.upstream_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        for (flag, value) in [
            ("--max-in-flight", settings.max_in_flight),
            (
                "--max-in-flight-per-thread",
                settings.max_in_flight_per_thread,
            ),
            ("--tcp-connections", settings.tcp_connections),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        if settings.tcp_idle_timeout.is_zero() {
            return Err(ConfigError::Zero("--tcp-idle-timeout-ms"));
        }
        let mut options = Options::new(Some(&settings.domain_suffix), &[], &[])?;
        options.default_export_to = settings.default_export_to.clone();
        let options = options.validated()?;
        if let Some(ns) = &settings.pod_namespace {
            if !policy::names::is_dns1123_label(ns) {
                return Err(ConfigError::PodNamespace(ns.clone()));
            }
        }
        let needs_resolv_conf = settings.upstreams.is_empty() || settings.search_domains.is_empty();
        // The search list comes from resolv.conf only when not given, and so does the pod's
        // namespace, from it.
        let resolv_conf = if needs_resolv_conf {
            read_resolv_conf(&settings.resolv_conf, settings.upstreams.is_empty())?
        } else {
            ResolvConf::default()
        };
        let upstreams = if settings.upstreams.is_empty() {
            resolv_conf
                .nameservers
                .iter()
                .map(|ip| SocketAddr::new(*ip, 53))
                .filter(|addr| *addr != settings.listen)
                .collect()
        } else {
            settings
                .upstreams
                .iter()
                .map(|u| parse_upstream(u))
                .collect::<Result<Vec<_>, _>>()?
        };
        if upstreams.is_empty() {
            return Err(ConfigError::NoUpstream(settings.resolv_conf));
        }
        let raw_search = if settings.search_domains.is_empty() {
            resolv_conf.search
        } else {
            settings.search_domains
        };
        let mut search_domains = Vec::new();
        for domain in raw_search {
            let normal = domain.trim().trim_matches('.').to_ascii_lowercase();
            if normal.is_empty()
                || normal
                    .split('.')
                    .any(|label| label.is_empty() || label.len() > 63)
            {
                return Err(ConfigError::SearchDomain(domain));
            }
            if !search_domains.contains(&normal) {
                search_domains.push(normal);
            }
        }
        let pod_namespace = settings
            .pod_namespace
            .clone()
            .or_else(|| namespace_of_search_list(&search_domains));
        let udp_sockets = match settings.udp_sockets {
            Some(0) => return Err(ConfigError::NoUdpSockets),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(Config {
            source,
            listen: settings.listen,
            upstreams,
            search_domains,
            options,
            ttl: settings.ttl,
            admin: settings.admin,
            upstream_timeout: settings.upstream_timeout,
            tcp_timeout: settings.tcp_idle_timeout,
            udp_sockets,
            udp_loop: settings.udp_loop,
            max_in_flight: settings.max_in_flight,
            max_in_flight_per_thread: settings
                .max_in_flight_per_thread
                .min(settings.max_in_flight),
            tcp_connections: settings.tcp_connections,
            drain_timeout: settings.drain_timeout,
            randomize_case: settings.randomize_case,
            pod_namespace,
        })
    }
}

/// The pod's namespace as kubelet writes it into the first search domain,
/// `<namespace>.svc.<cluster domain>`.
pub fn namespace_of_search_list(search_domains: &[String]) -> Option<String> {
    let first = search_domains.first()?;
    let mut labels = first.split('.');
    let namespace = labels.next()?;
    (labels.next() == Some("svc")
        && labels.next().is_some()
        && policy::names::is_dns1123_label(namespace))
    .then(|| namespace.to_string())
}

/// Raises the open-file soft limit to the hard limit (every forwarded query holds a socket), and
/// lowers `config`'s limits to what the descriptors then allow. Returns the soft limit.
pub fn raise_file_limit(config: &mut Config) -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let files = usize::try_from(soft).unwrap_or(usize::MAX);
    let room = files
        .saturating_sub(RESERVED_FILES)
        .saturating_sub(config.tcp_connections)
        .max(1);
    if config.max_in_flight > room {
        tracing::warn!(
            files,
            max_in_flight = room,
            "too few file descriptors for --max-in-flight; lowered"
        );
        config.max_in_flight = room;
        config.max_in_flight_per_thread = config.max_in_flight_per_thread.min(room);
    }
    Some(soft)
}

fn read_resolv_conf(path: &Path, required: bool) -> Result<ResolvConf, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(ResolvConf::parse(&text)),
        // The search list alone is optional: without the file there is none.
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            Ok(ResolvConf::default())
        }
        Err(source) => Err(ConfigError::ResolvConf {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(resolv: &Path) -> Settings {
        Settings {
            resolv_conf: resolv.to_path_buf(),
            udp_sockets: Some(1),
            ..Settings::new(vec![PathBuf::from("/se")], vec![])
        }
    }

    #[test]
    fn zero_limits_are_refused_naming_the_flag() {
        let mut s = settings(Path::new("/nonexistent"));
        s.upstreams = vec!["127.0.0.1:5300".into()];
        s.max_in_flight = 0;
        let err = Config::new(s).unwrap_err();
        assert!(err.to_string().contains("--max-in-flight"), "{err}");
    }

    #[test]
    fn the_file_limit_bounds_the_queries_in_flight() {
        let mut s = settings(Path::new("/nonexistent"));
        s.upstreams = vec!["127.0.0.1:5300".into()];
        s.max_in_flight = usize::MAX / 2;
        let mut config = Config::new(s).unwrap();
        let files = raise_file_limit(&mut config).unwrap();
        assert!(config.max_in_flight as u64 <= files);
        assert!(config.max_in_flight_per_thread <= config.max_in_flight);
    }

    #[test]
    fn resolv_conf_gives_nameservers_and_last_search_list() {
        let conf = ResolvConf::parse(
            "# kubelet\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\ndomain x\nsearch foo.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
        );
        assert_eq!(
            conf.nameservers,
            vec!["10.96.0.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(conf.search.len(), 3);
    }

    #[test]
    fn upstreams_default_to_resolv_conf_without_own_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "nameserver 127.0.0.1\nnameserver 10.96.0.10\nsearch a.b\n",
        )
        .unwrap();
        let config = Config::new(settings(&path)).unwrap();
        assert_eq!(config.upstreams, vec!["10.96.0.10:53".parse().unwrap()]);
        assert_eq!(config.search_domains, vec!["a.b".to_string()]);
    }

    #[test]
    fn the_pod_namespace_comes_from_the_first_search_domain() {
        let list = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            namespace_of_search_list(&list(&["foo.svc.cluster.local", "svc.cluster.local"])),
            Some("foo".to_string())
        );
        assert_eq!(
            namespace_of_search_list(&list(&["svc.cluster.local", "foo.svc.cluster.local"])),
            None
        );
        assert_eq!(namespace_of_search_list(&list(&["foo.svc"])), None);
        assert_eq!(namespace_of_search_list(&list(&["example.com"])), None);
        assert_eq!(namespace_of_search_list(&[]), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "nameserver 10.96.0.10\nsearch bar.svc.cluster.local svc.cluster.local\n",
        )
        .unwrap();
        assert_eq!(
            Config::new(settings(&path))
                .unwrap()
                .pod_namespace
                .as_deref(),
            Some("bar")
        );
        let mut given = settings(&path);
        given.pod_namespace = Some("qux".into());
        assert_eq!(
            Config::new(given).unwrap().pod_namespace.as_deref(),
            Some("qux")
        );
        let mut bad = settings(&path);
        bad.pod_namespace = Some("Not_A_Namespace".into());
        assert!(matches!(
            Config::new(bad),
            Err(ConfigError::PodNamespace(_))
        ));
        let mut default = settings(&path);
        default.default_export_to = vec![".".into()];
        assert_eq!(
            Config::new(default).unwrap().options.default_export_to,
            ["."]
        );
    }

    #[test]
    fn upstream_accepts_ip_or_ip_and_port() {
        assert_eq!(
            parse_upstream("10.0.0.1").unwrap(),
            "10.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("[::1]:5353").unwrap(),
            "[::1]:5353".parse().unwrap()
        );
        assert!(
            matches!(parse_upstream("dns.example"), Err(ConfigError::Upstream(u)) if u == "dns.example")
        );
    }

    #[test]
    fn no_upstream_is_an_error_naming_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 127.0.0.1\n").unwrap();
        let err = Config::new(settings(&path)).unwrap_err();
        assert!(err.to_string().contains("resolv.conf"), "{err}");
    }

    #[test]
    fn rejects_empty_search_label() {
        let mut s = settings(Path::new("/nonexistent"));
        s.upstreams = vec!["127.0.0.1:5300".into()];
        s.search_domains = vec!["a..b".into()];
        assert!(matches!(Config::new(s), Err(ConfigError::SearchDomain(_))));
    }

    #[test]
    fn one_source_of_service_entries() {
        let mut s = settings(Path::new("/nonexistent"));
        s.upstreams = vec!["127.0.0.1:5300".into()];
        assert_eq!(
            Config::new(s.clone()).unwrap().source,
            Source::Files(vec![PathBuf::from("/se")])
        );
        s.kubernetes = Some(kubernetes::Settings::default());
        assert!(matches!(
            Config::new(s.clone()),
            Err(ConfigError::TwoSources)
        ));
        s.service_entries.clear();
        assert_eq!(
            Config::new(s.clone()).unwrap().source,
            Source::Kubernetes(kubernetes::Settings::default())
        );
        s.kubernetes = None;
        let err = Config::new(s).unwrap_err();
        assert!(err.to_string().contains("--kubernetes"), "{err}");
    }
}
