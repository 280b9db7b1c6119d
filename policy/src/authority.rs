//! The request check of the `global_guard` Envoy filter: normalises an HTTP authority and decides,
//! against a table built once from ServiceEntries, whether a request for a `.global` host may go
//! on, and which cluster routing header it should carry. Pure, so it is tested natively.

use std::borrow::Cow;
use std::fmt;

use crate::model::ServiceEntry;
use crate::names::{service_host_parts, strip_domain_suffix, truncate};
use crate::options::Options;
use crate::visibility::Visibility;

/// The endpoint label whose values name the clusters a request may ask for.
pub const CLUSTER_LABEL: &str = "cluster";

/// An authority split into a lowercased host and the raw port text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority<'a> {
    /// ASCII-lowercased, one trailing dot dropped; an IPv6 literal keeps its brackets.
    pub host: Cow<'a, str>,
    /// The text after the host's `:`, not yet checked to be a number.
    pub port: Option<&'a str>,
}

impl Authority<'_> {
    /// The port as a number, `Err` when the text is not a port in 1-65535.
    pub fn port_number(&self) -> Option<Result<u16, ()>> {
        self.port.map(|text| parse_port(text).ok_or(()))
    }
}

impl fmt::Display for Authority<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Splits and normalises an authority (`Host`/`:authority` value): ASCII lowercase, one trailing
/// dot of the host dropped, the port split off. `[v6]:port` keeps the brackets in the host; an
/// unbracketed address with several colons is all host. Borrows when nothing changes.
pub fn normalize(authority: &str) -> Authority<'_> {
    let (host, port) = split_port(authority);
    // A second trailing dot is kept: such a host is malformed, and keeping it makes the
    // normalisation idempotent.
    let host = match host.strip_suffix('.') {
        Some(stripped) if !stripped.ends_with('.') => stripped,
        _ => host,
    };
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    Authority { host, port }
}

fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        if let Some(close) = authority.find(']') {
            let (host, rest) = authority.split_at(close + 1);
            return match rest {
                "" => (host, None),
                rest => (host, Some(rest.strip_prefix(':').unwrap_or(rest))),
            };
        }
        return (authority, None);
    }
    match authority.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, Some(port)),
        _ => (authority, None),
    }
}

/// A decimal port in 1-65535 (leading zeros allowed, at most five digits).
pub fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

/// Why a request is answered by the filter instead of going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    MalformedHost,
    UnknownHost,
    /// Declared, but its `exportTo` does not include the proxy's namespace: Istio gives such a
    /// sidecar no route for the host.
    NotExported,
    UnknownPort,
    UnknownCluster,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::MalformedHost,
        Reason::UnknownHost,
        Reason::NotExported,
        Reason::UnknownPort,
        Reason::UnknownCluster,
    ];

    /// The reason code, as sent in the `x-global-guard` header.
    pub fn code(self) -> &'static str {
        match self {
            Reason::MalformedHost => "malformed-host",
            Reason::UnknownHost => "unknown-host",
            Reason::NotExported => "not-exported",
            Reason::UnknownPort => "unknown-port",
            Reason::UnknownCluster => "unknown-cluster",
        }
    }

    /// The HTTP status of the local reply.
    pub fn status(self) -> u16 {
        match self {
            Reason::MalformedHost => 400,
            Reason::UnknownHost
            | Reason::NotExported
            | Reason::UnknownPort
            | Reason::UnknownCluster => 404,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A request the filter answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    /// One line, ending in a newline, naming the host and the reason.
    pub body: String,
}

impl Rejection {
    pub fn status(&self) -> u16 {
        self.reason.status()
    }
}

/// What happens to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'t> {
    /// Not under the domain suffix: untouched.
    Pass,
    /// A known host and port; set the cluster header to this value, if any.
    Allow {
        cluster: Option<&'t str>,
    },
    Reject(Rejection),
}

/// What one `.global` host accepts, merged over every ServiceEntry that names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRule {
    /// Declared service ports, sorted, without duplicates.
    pub ports: Vec<u16>,
    /// Values of the endpoints' `cluster` label, sorted, without duplicates.
    pub clusters: Vec<String>,
    /// The namespaces whose workloads see the host: the union over its entries' `exportTo`.
    pub visibility: Visibility,
}

/// The `.global` hosts the filter knows, built once per configuration.
#[derive(Debug, Clone)]
pub struct GuardTable {
    suffix: String,
    /// Sorted by host, one element per host: a binary search needs no hashing (and no
    /// randomness from the host) and keeps the Envoy module small.
    hosts: Vec<(String, HostRule)>,
    /// The namespace of the proxy that decides, when known; entries not exported to it are
    /// refused as `not-exported`, and without it only entries exported to all are allowed.
    viewer: Option<String>,
}

/// Collects hosts one ServiceEntry at a time, so a caller that decodes a long list can drop each
/// entry as soon as it is added (the Envoy filter never holds all entries at once).
#[derive(Debug, Clone, Default)]
pub struct GuardTableBuilder {
    /// Each host with its rule and the index of its entry's export in `exports`.
    hosts: Vec<(String, HostRule, usize)>,
    /// Per entry, its namespace and `exportTo`, resolved at `build`, when the mesh's default
    /// is known.
    exports: Vec<(String, Vec<String>)>,
}

impl GuardTableBuilder {
    pub fn add(&mut self, entry: &ServiceEntry) {
        let export = self.exports.len();
        self.exports.push((
            entry.metadata.namespace.clone().unwrap_or_default(),
            entry.spec.export_to.clone(),
        ));
        let mut rule = HostRule::default();
        for port in &entry.spec.ports {
            if let Some(number) = port.number.and_then(|n| u16::try_from(n).ok()) {
                if number != 0 {
                    insert_sorted(&mut rule.ports, number);
                }
            }
        }
        for endpoint in entry.spec.endpoints() {
            if let Some(cluster) = endpoint.labels.get(CLUSTER_LABEL) {
                insert_sorted(&mut rule.clusters, cluster.clone());
            }
        }
        for host in &entry.spec.hosts {
            // The suffix may not be known yet; hosts are filtered in `build`.
            self.hosts
                .push((normalize(host).host.into_owned(), rule.clone(), export));
        }
    }

    /// Keeps every host of the form `<name>.<namespace>.<suffix>`, merging entries for one host.
    pub fn build(self, options: &Options) -> GuardTable {
        let visibilities: Vec<Visibility> = self
            .exports
            .iter()
            .map(|(namespace, export_to)| {
                Visibility::of(export_to, namespace, &options.default_export_to)
            })
            .collect();
        let mut hosts: Vec<(String, HostRule)> = self
            .hosts
            .into_iter()
            .filter(|(host, _, _)| {
                options.is_under_suffix(host) && is_service_host(host, &options.domain_suffix)
            })
            .map(|(host, mut rule, export)| {
                rule.visibility = visibilities.get(export).cloned().unwrap_or_default();
                (host, rule)
            })
            .collect();
        // Stable, so entries for one host merge in order.
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        let mut merged: Vec<(String, HostRule)> = Vec::with_capacity(hosts.len());
        for (host, rule) in hosts {
            match merged.last_mut() {
                Some((last, known)) if *last == host => {
                    for port in rule.ports {
                        insert_sorted(&mut known.ports, port);
                    }
                    for cluster in rule.clusters {
                        insert_sorted(&mut known.clusters, cluster);
                    }
                    known.visibility = known.visibility.union(&rule.visibility);
                }
                _ => merged.push((host, rule)),
            }
        }
        GuardTable {
            suffix: options.domain_suffix.clone(),
            hosts: merged,
            viewer: None,
        }
    }
}

impl GuardTable {
    /// Collects every host of the form `<name>.<namespace>.<suffix>` with its declared ports and
    /// endpoint cluster labels. Other hosts (wildcards, other domains) are left out: the filter
    /// lets requests for hosts outside the suffix pass, and answers unknown-host for the rest.
    pub fn new(entries: &[ServiceEntry], options: &Options) -> Self {
        let mut builder = GuardTableBuilder::default();
        for entry in entries {
            builder.add(entry);
        }
        builder.build(options)
    }

    /// A table from hosts already sorted, merged and checked (the compact table's reader).
    pub(crate) fn from_sorted(suffix: String, hosts: Vec<(String, HostRule)>) -> Self {
        GuardTable {
            suffix,
            hosts,
            viewer: None,
        }
    }

    /// The table as decided by a proxy in `namespace` (`None`: unknown, so only entries
    /// exported to every namespace are allowed).
    pub fn viewed_from(mut self, namespace: Option<&str>) -> Self {
        self.viewer = namespace.map(str::to_string);
        self
    }

    /// The namespace the table decides for.
    pub fn viewer(&self) -> Option<&str> {
        self.viewer.as_deref()
    }

    /// The domain suffix, normalised.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// Every host with its rule, sorted by host.
    pub fn hosts(&self) -> impl ExactSizeIterator<Item = (&str, &HostRule)> {
        self.hosts.iter().map(|(host, rule)| (host.as_str(), rule))
    }

    /// Number of known hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The rule for a normalised host.
    pub fn rule(&self, host: &str) -> Option<&HostRule> {
        self.hosts
            .binary_search_by(|(known, _)| known.as_str().cmp(host))
            .ok()
            .and_then(|index| self.hosts.get(index))
            .map(|(_, rule)| rule)
    }

    /// Decides on one request: `authority` as received, `fallback_port` the connection's
    /// destination port (used when the authority has none), `cluster` the first value of the
    /// cluster header, if present.
    pub fn decide(
        &self,
        authority: &str,
        fallback_port: Option<u16>,
        cluster: Option<&str>,
    ) -> Decision<'_> {
        self.decide_with(authority, || fallback_port, || cluster)
    }

    /// [`GuardTable::decide`], asking for the destination port and the cluster header only when
    /// the decision needs them (each is a call into the host in the filter).
    pub fn decide_with<C: AsRef<str>>(
        &self,
        authority: &str,
        fallback_port: impl FnOnce() -> Option<u16>,
        cluster: impl FnOnce() -> Option<C>,
    ) -> Decision<'_> {
        let parsed = normalize(authority);
        let host: &str = &parsed.host;
        // `a.b.global..` is under the suffix too, and malformed.
        if !is_under(host.trim_end_matches('.'), &self.suffix) {
            return Decision::Pass;
        }
        let port = match parsed.port_number() {
            Some(Err(())) => {
                return reject(
                    Reason::MalformedHost,
                    format!(
                        "port {:?} of {:?} is not a number in 1-65535",
                        truncate(parsed.port.unwrap_or_default()),
                        truncate(host)
                    ),
                )
            }
            port => port.and_then(Result::ok),
        };
        if !is_service_host(host, &self.suffix) {
            return reject(
                Reason::MalformedHost,
                format!(
                    "{:?} is not of the form <name>.<namespace>.{}",
                    truncate(host),
                    self.suffix
                ),
            );
        }
        let Some(rule) = self.rule(host) else {
            return reject(
                Reason::UnknownHost,
                format!("no ServiceEntry declares {host}"),
            );
        };
        if !rule.visibility.allows_viewer(self.viewer.as_deref()) {
            return reject(
                Reason::NotExported,
                match &self.viewer {
                    Some(namespace) => format!(
                        "{host} is exported to {}, not to namespace {}",
                        rule.visibility,
                        truncate(namespace)
                    ),
                    None => format!(
                        "{host} is exported to {} and this proxy's namespace is not known",
                        rule.visibility
                    ),
                },
            );
        }
        match port.or_else(fallback_port) {
            Some(port) if rule.ports.binary_search(&port).is_ok() => {}
            Some(port) => {
                return reject(
                    Reason::UnknownPort,
                    format!("{host} does not declare port {port}"),
                )
            }
            None => {
                return reject(
                    Reason::UnknownPort,
                    format!("no port for {host} in the request"),
                )
            }
        }
        match cluster() {
            Some(value) => match rule.clusters.iter().find(|known| *known == value.as_ref()) {
                Some(known) => Decision::Allow {
                    cluster: Some(known),
                },
                None => reject(
                    Reason::UnknownCluster,
                    format!(
                        "{host} has no endpoint with cluster label {:?}",
                        truncate(value.as_ref())
                    ),
                ),
            },
            None => Decision::Allow {
                cluster: match rule.clusters.as_slice() {
                    [only] => Some(only.as_str()),
                    _ => None,
                },
            },
        }
    }
}

/// Keeps a short list sorted and free of duplicates.
fn insert_sorted<T: Ord>(list: &mut Vec<T>, value: T) {
    if let Err(index) = list.binary_search(&value) {
        list.insert(index, value);
    }
}

fn reject(reason: Reason, detail: String) -> Decision<'static> {
    Decision::Reject(Rejection {
        reason,
        body: format!("{reason}: {}\n", one_line(&detail)),
    })
}

/// Debug formatting already escapes control characters; this is a guard for the rest.
fn one_line(text: &str) -> Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        Cow::Owned(text.replace(['\r', '\n'], " "))
    } else {
        Cow::Borrowed(text)
    }
}

/// Whether a normalised host ends in `.<suffix>` with something before it.
fn is_under(host: &str, suffix: &str) -> bool {
    strip_domain_suffix(host, suffix).is_some()
}

/// Exactly `<name>.<namespace>.<suffix>`, both DNS-1123 labels.
fn is_service_host(host: &str, suffix: &str) -> bool {
    service_host_parts(host, suffix).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ServicePort, WorkloadEntry};
    use proptest::prelude::*;

    fn entry(hosts: &[&str], ports: &[i64], clusters: &[&str]) -> ServiceEntry {
        let mut se: ServiceEntry = serde_json::from_str(
            r#"{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"a","namespace":"foo"}}"#,
        )
        .unwrap();
        se.spec.hosts = hosts.iter().map(|h| h.to_string()).collect();
        se.spec.ports = ports
            .iter()
            .map(|n| ServicePort {
                number: Some(*n),
                name: Some(format!("p{n}")),
                protocol: Some("HTTP".into()),
                ..Default::default()
            })
            .collect();
        se.spec.endpoint_list = Some(
            clusters
                .iter()
                .map(|c| WorkloadEntry {
                    address: Some("198.18.2.1".into()),
                    labels: [(CLUSTER_LABEL.to_string(), c.to_string())].into(),
                    ..Default::default()
                })
                .collect(),
        );
        se
    }

    fn table() -> GuardTable {
        GuardTable::new(
            &[
                entry(&["httpbin.bar.global"], &[8000], &["cluster2"]),
                entry(&["multi.bar.global"], &[8000, 9000], &["c1", "c2", "c1"]),
                entry(&["plain.bar.global"], &[8000], &[]),
                entry(&["plain.bar.global"], &[8080], &[]),
                entry(&["*.wild.global", "x.y.example.com"], &[80], &[]),
            ],
            &Options::default(),
        )
    }

    fn reason(decision: Decision<'_>) -> Option<(u16, &'static str)> {
        match decision {
            Decision::Reject(r) => Some((r.status(), r.reason.code())),
            _ => None,
        }
    }

    #[test]
    fn normalize_lowercases_and_drops_one_trailing_dot_and_port() {
        let a = normalize("HttpBin.Bar.GLOBAL.:8000");
        assert_eq!(a.host, "httpbin.bar.global");
        assert_eq!(a.port, Some("8000"));
        assert_eq!(normalize("a.b.global..").host, "a.b.global..");
        assert!(matches!(normalize("a.b.global").host, Cow::Borrowed(_)));
    }

    #[test]
    fn normalize_understands_ipv6_literals() {
        assert_eq!(normalize("[::1]:8080").host, "[::1]");
        assert_eq!(normalize("[::1]:8080").port, Some("8080"));
        assert_eq!(normalize("[::1]").port, None);
        let bare = normalize("fe80::1");
        assert_eq!((bare.host.as_ref(), bare.port), ("fe80::1", None));
    }

    #[test]
    fn parse_port_takes_1_to_65535_only() {
        assert_eq!(parse_port("8000"), Some(8000));
        assert_eq!(parse_port("65535"), Some(65535));
        for bad in ["", "0", "65536", "80a", "+80", "123456", " 80"] {
            assert_eq!(parse_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn host_outside_the_suffix_passes_untouched() {
        let t = table();
        assert_eq!(t.decide("example.com", None, None), Decision::Pass);
        assert_eq!(
            t.decide("x.y.example.com:bad", None, Some("zz")),
            Decision::Pass
        );
        assert_eq!(t.decide("[::1]:80", None, None), Decision::Pass);
        assert_eq!(t.decide("notglobal", None, None), Decision::Pass);
        assert_eq!(t.decide("", None, None), Decision::Pass);
    }

    #[test]
    fn known_host_and_port_is_allowed_with_its_only_cluster() {
        let t = table();
        assert_eq!(
            t.decide("httpbin.bar.global:8000", None, None),
            Decision::Allow {
                cluster: Some("cluster2")
            }
        );
        assert_eq!(
            t.decide("HTTPBIN.bar.global.:8000", None, None),
            Decision::Allow {
                cluster: Some("cluster2")
            }
        );
    }

    #[test]
    fn port_falls_back_to_the_destination_port() {
        let t = table();
        assert!(matches!(
            t.decide("httpbin.bar.global", Some(8000), None),
            Decision::Allow { .. }
        ));
        assert_eq!(
            reason(t.decide("httpbin.bar.global", Some(9000), None)),
            Some((404, "unknown-port"))
        );
        assert_eq!(
            reason(t.decide("httpbin.bar.global", None, None)),
            Some((404, "unknown-port"))
        );
    }

    #[test]
    fn authority_port_wins_over_the_destination_port() {
        let t = table();
        assert!(matches!(
            t.decide("httpbin.bar.global:8000", Some(15001), None),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn wrong_shape_is_malformed() {
        let t = table();
        for host in [
            "bar.global",
            "a.b.c.global",
            "a_b.bar.global",
            "-a.bar.global",
            "a..global",
            "a.b.global..",
            "*.wild.global",
        ] {
            assert_eq!(
                reason(t.decide(host, Some(8000), None)),
                Some((400, "malformed-host")),
                "{host}"
            );
        }
    }

    #[test]
    fn non_numeric_port_is_malformed() {
        let t = table();
        for authority in [
            "httpbin.bar.global:http",
            "httpbin.bar.global:",
            "httpbin.bar.global:0",
            "httpbin.bar.global:70000",
        ] {
            assert_eq!(
                reason(t.decide(authority, Some(8000), None)),
                Some((400, "malformed-host")),
                "{authority}"
            );
        }
    }

    #[test]
    fn unknown_host_is_404() {
        let t = table();
        assert_eq!(
            reason(t.decide("httpbin.baz.global:8000", None, None)),
            Some((404, "unknown-host"))
        );
    }

    #[test]
    fn undeclared_port_is_404() {
        let t = table();
        assert_eq!(
            reason(t.decide("httpbin.bar.global:15443", None, None)),
            Some((404, "unknown-port"))
        );
    }

    #[test]
    fn ports_of_entries_for_one_host_are_merged() {
        let t = table();
        for port in ["8000", "8080"] {
            assert_eq!(
                t.decide(&format!("plain.bar.global:{port}"), None, None),
                Decision::Allow { cluster: None }
            );
        }
    }

    #[test]
    fn known_cluster_is_kept() {
        let t = table();
        assert_eq!(
            t.decide("multi.bar.global:9000", None, Some("c2")),
            Decision::Allow {
                cluster: Some("c2")
            }
        );
    }

    #[test]
    fn unknown_cluster_is_404() {
        let t = table();
        assert_eq!(
            reason(t.decide("httpbin.bar.global:8000", None, Some("cluster9"))),
            Some((404, "unknown-cluster"))
        );
        assert_eq!(
            reason(t.decide("plain.bar.global:8000", None, Some("c1"))),
            Some((404, "unknown-cluster"))
        );
    }

    #[test]
    fn several_clusters_and_no_header_set_nothing() {
        let t = table();
        assert_eq!(
            t.decide("multi.bar.global:8000", None, None),
            Decision::Allow { cluster: None }
        );
        assert_eq!(t.rule("multi.bar.global").unwrap().clusters, ["c1", "c2"]);
    }

    #[test]
    fn reply_body_is_one_line_naming_host_and_reason() {
        let t = table();
        let Decision::Reject(r) = t.decide("httpbin.baz.global:8000", None, None) else {
            panic!("expected a rejection");
        };
        assert_eq!(
            r.body,
            "unknown-host: no ServiceEntry declares httpbin.baz.global\n"
        );
        let Decision::Reject(r) = t.decide("httpbin.bar.global:9", None, None) else {
            panic!("expected a rejection");
        };
        assert_eq!(
            r.body,
            "unknown-port: httpbin.bar.global does not declare port 9\n"
        );
    }

    #[test]
    fn other_suffix_is_honoured() {
        let options = Options::new(Some("mesh.example"), &[], &[]).unwrap();
        let t = GuardTable::new(&[entry(&["a.b.mesh.example"], &[80], &[])], &options);
        assert_eq!(t.len(), 1);
        assert!(matches!(
            t.decide("a.b.mesh.example:80", None, None),
            Decision::Allow { .. }
        ));
        assert_eq!(t.decide("a.b.global:80", None, None), Decision::Pass);
    }

    #[test]
    fn only_service_hosts_enter_the_table() {
        let t = table();
        assert_eq!(t.len(), 3);
        assert!(t.rule("x.y.example.com").is_none());
    }

    #[test]
    fn builder_applies_the_suffix_given_at_build() {
        let mut builder = GuardTableBuilder::default();
        builder.add(&entry(
            &["A.b.Mesh.", "a.b.global"],
            &[80, 80, 0, 70000],
            &["c"],
        ));
        builder.add(&entry(&["a.b.mesh"], &[81], &["d"]));
        let options = Options::new(Some("mesh"), &[], &[]).unwrap();
        let t = builder.build(&options);
        assert_eq!(t.len(), 1);
        let rule = t.rule("a.b.mesh").unwrap();
        assert_eq!(rule.ports, [80, 81]);
        assert_eq!(rule.clusters, ["c", "d"]);
    }

    fn authority_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9_.:\\[\\]-]{0,40}",
            "[a-zA-Z-]{1,8}\\.[a-zA-Z-]{1,8}\\.(global|GLOBAL|Global)\\.?(:[0-9a-z]{0,6})?",
        ]
    }

    proptest! {
        #[test]
        fn decide_never_panics(
            authority in authority_strategy(),
            port in proptest::option::of(any::<u16>()),
            cluster in proptest::option::of(any::<String>()),
        ) {
            let t = table();
            let decision = t.decide(&authority, port, cluster.as_deref());
            if let Decision::Reject(r) = decision {
                prop_assert!(r.body.ends_with('\n'));
                prop_assert_eq!(r.body.matches('\n').count(), 1);
            }
        }

        #[test]
        fn normalize_is_idempotent(authority in authority_strategy()) {
            let once = normalize(&authority);
            let text = once.to_string();
            let twice = normalize(&text);
            prop_assert_eq!(&once, &twice);
        }

        #[test]
        fn decision_is_the_same_on_the_normalised_authority(
            authority in authority_strategy(),
            port in proptest::option::of(any::<u16>()),
        ) {
            let t = table();
            let normalised = normalize(&authority).to_string();
            prop_assert_eq!(t.decide(&authority, port, None), t.decide(&normalised, port, None));
        }
    }
}
