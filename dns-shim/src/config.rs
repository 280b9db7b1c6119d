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
/// Sockets per upstream that queries are spread over.
pub const UPSTREAM_SOCKETS: usize = 2;

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
        let options = Options::new(Some(&settings.domain_suffix), &[], &[])?;
        let needs_resolv_conf = settings.upstreams.is_empty() || settings.search_domains.is_empty();
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
            tcp_timeout: DEFAULT_TCP_TIMEOUT,
            udp_sockets,
            udp_loop: settings.udp_loop,
        })
    }
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
            service_entries: vec![PathBuf::from("/se")],
            kubernetes: None,
            listen: DEFAULT_LISTEN.parse().unwrap(),
            upstreams: vec![],
            resolv_conf: resolv.to_path_buf(),
            search_domains: vec![],
            domain_suffix: "global".into(),
            ttl: DEFAULT_TTL,
            admin: None,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            udp_sockets: Some(1),
            udp_loop: UdpLoop::Direct,
        }
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
