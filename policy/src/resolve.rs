//! What a name under the domain suffix resolves to: the host table that the DNS shim answers
//! from, built from ServiceEntries. Exact hosts win over wildcard hosts (`*.bar.global`), and
//! among wildcards the longest one wins. Names are matched case-insensitively and a trailing dot
//! is ignored. Lookups do not allocate.
//!
//! The table also knows the zone's shape as a DNS server must (RFC 8020): the suffix itself is
//! the zone apex, and every name between the apex and a host (`bar.global` above
//! `httpbin.bar.global` or `*.bar.global`) exists as an empty non-terminal, so that NXDOMAIN is
//! only ever said of a name with nothing below it.
//!
//! A table is built for one namespace, as Istio's DNS proxy gets only the hosts its
//! namespace can see: an entry whose `exportTo` leaves that namespace out is not in it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::model::{ObjectKey, ServiceEntry};
use crate::names::strip_domain_suffix;
use crate::options::Options;
use crate::visibility::Visibility;

/// The longest name a lookup considers (RFC 1035: 255 octets on the wire, 253 as text).
pub const MAX_NAME_LEN: usize = 253;

/// One host of the table with the addresses of every ServiceEntry that declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The host's index in its table, from 0 to `len() - 1`: a key for data kept beside the
    /// table (the DNS shim's pre-encoded answers).
    pub id: usize,
    /// The host as declared, lowercase: `httpbin.bar.global` or `*.bar.global`.
    pub name: String,
    /// IPv4 addresses, in declaration order, without duplicates.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses, in declaration order, without duplicates.
    pub ipv6: Vec<Ipv6Addr>,
    /// The ServiceEntries that declare the host.
    pub owners: Vec<ObjectKey>,
}

impl Host {
    fn new(id: usize, name: String) -> Self {
        Self {
            id,
            name,
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            owners: Vec::new(),
        }
    }

    fn add(&mut self, owner: &ObjectKey, addresses: &[IpAddr]) {
        for address in addresses {
            match address {
                IpAddr::V4(v4) if !self.ipv4.contains(v4) => self.ipv4.push(*v4),
                IpAddr::V6(v6) if !self.ipv6.contains(v6) => self.ipv6.push(*v6),
                _ => {}
            }
        }
        if !self.owners.contains(owner) {
            self.owners.push(owner.clone());
        }
    }
}

/// What the table reads of one ServiceEntry: its key, `spec.hosts`, `spec.addresses` and
/// `spec.exportTo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub owner: ObjectKey,
    pub hosts: Vec<String>,
    pub addresses: Vec<String>,
    pub export_to: Vec<String>,
}

impl From<&ServiceEntry> for HostEntry {
    fn from(entry: &ServiceEntry) -> Self {
        Self {
            owner: entry.key(),
            hosts: entry.spec.hosts.clone(),
            addresses: entry.spec.addresses.clone(),
            export_to: entry.spec.export_to.clone(),
        }
    }
}

impl From<ServiceEntry> for HostEntry {
    fn from(entry: ServiceEntry) -> Self {
        Self {
            owner: entry.key(),
            hosts: entry.spec.hosts,
            addresses: entry.spec.addresses,
            export_to: entry.spec.export_to,
        }
    }
}

/// The answer of the table for one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution<'t, 'n> {
    /// The name is a host of the table, or matches a wildcard host.
    Host(&'t Host),
    /// The name is `<target>.<search domain>` and `target` is a host of the table: answer with
    /// a CNAME to `target` (a slice of the queried name, in its case, without trailing dot).
    Expansion { target: &'n str, host: &'t Host },
    /// The name is the suffix itself: the zone apex, which has the zone's SOA and NS records.
    Apex,
    /// The name lies under the suffix, matches no host, but has hosts below it
    /// (`bar.global` above `httpbin.bar.global`): it exists with no records of its own.
    EmptyNonTerminal,
    /// The name lies under the suffix and neither matches a host nor has one below it.
    NoSuchName,
    /// The name is not under the suffix (nor a search expansion of a known host).
    Outside,
}

/// An immutable table of `.global` hosts; build a new one on every catalog change.
#[derive(Debug, Clone, Default)]
pub struct HostTable {
    suffix: String,
    exact: Map<Host>,
    /// Wildcard hosts keyed by what follows `*.`: `bar.global` for `*.bar.global`.
    wildcard: Map<Host>,
    /// Names strictly between the suffix and a host (or a wildcard's `*` label): the empty
    /// non-terminals.
    between: HashSet<String, foldhash::fast::RandomState>,
    search_domains: Vec<String>,
    /// Entries left out because their `exportTo` does not include the viewer's namespace.
    hidden: usize,
}

/// Keys are hashed with foldhash (seeded per process), several times faster than SipHash on
/// short names; a lookup key comes from a query, but the table's keys come from the catalog.
type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Why a ServiceEntry host or address was left out of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// An address that is not a single IP (`10.0.0.0/24`) or not an address at all.
    Address { owner: ObjectKey, address: String },
    /// A host under the suffix that is not a valid name (`a..bar.global`, `foo*.global`).
    Host { owner: ObjectKey, host: String },
}

impl HostTable {
    /// Builds the table from the hosts under `options.domain_suffix`; hosts outside the suffix
    /// are not the table's. Search domains are stored lowercase without dots at either end.
    /// Only entries visible to `viewer` (the namespace the answers are for; `None`: not known,
    /// so only entries exported to every namespace) enter it, `options.default_export_to`
    /// standing for an unset `exportTo`.
    pub fn build<'a>(
        entries: impl IntoIterator<Item = &'a ServiceEntry>,
        options: &Options,
        search_domains: &[String],
        viewer: Option<&str>,
    ) -> (Self, Vec<Skipped>) {
        Self::build_from(
            entries.into_iter().map(HostEntry::from),
            options,
            search_domains,
            viewer,
        )
    }

    /// [`HostTable::build`] from the parts of each entry that the table needs, so that a large
    /// catalog can drop each whole ServiceEntry as soon as it is read.
    pub fn build_from(
        entries: impl IntoIterator<Item = HostEntry>,
        options: &Options,
        search_domains: &[String],
        viewer: Option<&str>,
    ) -> (Self, Vec<Skipped>) {
        let mut table = HostTable {
            suffix: options.domain_suffix.to_ascii_lowercase(),
            search_domains: search_domains
                .iter()
                .map(|d| d.trim().trim_matches('.').to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
            ..Default::default()
        };
        let mut skipped = Vec::new();
        for entry in entries {
            let visibility = Visibility::of(
                &entry.export_to,
                &entry.owner.namespace,
                &options.default_export_to,
            );
            if !visibility.allows_viewer(viewer) {
                table.hidden += 1;
                continue;
            }
            let owner = entry.owner;
            let mut addresses = Vec::new();
            for address in &entry.addresses {
                match single_address(address) {
                    Some(ip) => addresses.push(ip),
                    None => skipped.push(Skipped::Address {
                        owner: owner.clone(),
                        address: address.clone(),
                    }),
                }
            }
            for host in &entry.hosts {
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                if !options.is_under_suffix(&host) {
                    continue;
                }
                let (wild, key) = match host.strip_prefix("*.") {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, host.clone()),
                };
                if !is_plain_name(&key) || key.len() > MAX_NAME_LEN {
                    skipped.push(Skipped::Host {
                        owner: owner.clone(),
                        host,
                    });
                    continue;
                }
                let next = table.exact.len() + table.wildcard.len();
                let map = if wild {
                    &mut table.wildcard
                } else {
                    &mut table.exact
                };
                map.entry(key)
                    .or_insert_with(|| Host::new(next, host))
                    .add(&owner, &addresses);
            }
        }
        let suffix_len = table.suffix.len();
        let mut between: HashSet<String, foldhash::fast::RandomState> = HashSet::default();
        let exact = table.exact.keys().map(|k| (k, false));
        for (key, wild) in exact.chain(table.wildcard.keys().map(|k| (k, true))) {
            // A wildcard's key is the name above its `*`, which has a host below it.
            let mut name = key.as_str();
            if wild && name.len() > suffix_len && !between.contains(name) {
                between.insert(name.to_string());
            }
            while let Some((_, tail)) = name.split_once('.') {
                if tail.len() <= suffix_len {
                    break;
                }
                if !between.contains(tail) {
                    between.insert(tail.to_string());
                }
                name = tail;
            }
        }
        table.between = between;
        (table, skipped)
    }

    /// Entries left out because they are not exported to the viewer's namespace.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Exact and wildcard hosts in the table.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The suffix the table answers for, lowercase.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The search domains that [`HostTable::resolve`] strips, lowercase.
    pub fn search_domains(&self) -> &[String] {
        &self.search_domains
    }

    /// Every host, exact and wildcard, in no particular order; each `id` appears once.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.exact.values().chain(self.wildcard.values())
    }

    /// The host for a name under the suffix, or `None`.
    pub fn lookup(&self, name: &str) -> Option<&Host> {
        let mut buf = [0u8; MAX_NAME_LEN];
        let name = lowercase(name, &mut buf)?;
        self.lookup_lower(name)
    }

    fn lookup_lower(&self, name: &str) -> Option<&Host> {
        if let Some(host) = self.exact.get(name) {
            return Some(host);
        }
        // Longest wildcard first: for a.b.bar.global try b.bar.global, then bar.global.
        let mut rest = name;
        while let Some((_, tail)) = rest.split_once('.') {
            if let Some(host) = self.wildcard.get(tail) {
                return Some(host);
            }
            rest = tail;
        }
        None
    }

    /// What `name` resolves to: a host, a search expansion of a host, no such name under the
    /// suffix, or a name that is not the table's to answer.
    pub fn resolve<'t, 'n>(&'t self, name: &'n str) -> Resolution<'t, 'n> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let mut buf = [0u8; MAX_NAME_LEN];
        let Some(lower) = lowercase(name, &mut buf) else {
            return Resolution::Outside;
        };
        if lower == self.suffix {
            return Resolution::Apex;
        }
        if is_under(lower, &self.suffix) {
            return match self.lookup_lower(lower) {
                Some(host) => Resolution::Host(host),
                None if self.between.contains(lower) => Resolution::EmptyNonTerminal,
                None => Resolution::NoSuchName,
            };
        }
        for domain in &self.search_domains {
            let Some(stripped) = strip_domain(lower, domain) else {
                continue;
            };
            if !is_under(stripped, &self.suffix) {
                continue;
            }
            if let Some(host) = self.lookup_lower(stripped) {
                return Resolution::Expansion {
                    target: &name[..stripped.len()],
                    host,
                };
            }
        }
        Resolution::Outside
    }

    /// Whether a name is under the suffix or a search expansion of such a name, known or not:
    /// the names that cannot be answered before the first catalog load.
    pub fn is_ours(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        let mut buf = [0u8; MAX_NAME_LEN];
        let Some(lower) = lowercase(name, &mut buf) else {
            return false;
        };
        lower == self.suffix
            || is_under(lower, &self.suffix)
            || self.search_domains.iter().any(|domain| {
                strip_domain(lower, domain).is_some_and(|s| is_under(s, &self.suffix))
            })
    }
}

fn strip_domain<'n>(lower: &'n str, domain: &str) -> Option<&'n str> {
    strip_domain_suffix(lower, domain)
}

fn is_under(lower: &str, suffix: &str) -> bool {
    strip_domain_suffix(lower, suffix).is_some()
}

/// `name` in lowercase ASCII in `buf`, or `None` when it is too long or not ASCII.
fn lowercase<'b>(name: &str, buf: &'b mut [u8; MAX_NAME_LEN]) -> Option<&'b str> {
    let bytes = name.as_bytes();
    if !name.is_ascii() {
        return None;
    }
    let out = buf.get_mut(..bytes.len())?;
    out.copy_from_slice(bytes);
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

/// Labels of letters, digits, `-` and `_`, none empty.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A single IP (`127.255.0.2`, `127.255.0.2/32`, `fd00::2/128`), or `None`.
fn single_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let net = text.parse::<IpNet>().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, hosts: &[&str], addresses: &[&str]) -> ServiceEntry {
        let json = serde_json::json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": "foo"},
            "spec": {"hosts": hosts, "addresses": addresses},
        });
        serde_json::from_value(json).unwrap()
    }

    fn table(entries: &[ServiceEntry], search: &[&str]) -> HostTable {
        let search: Vec<String> = search.iter().map(|s| s.to_string()).collect();
        HostTable::build(entries, &Options::default(), &search, Some("foo")).0
    }

    fn seed() -> HostTable {
        table(
            &[
                entry("httpbin", &["httpbin.bar.global"], &["127.255.0.2"]),
                entry("dual", &["dual.bar.global"], &["127.255.0.3", "fd00::3"]),
                entry("wild", &["*.bar.global"], &["127.255.0.9"]),
                entry("deep", &["*.deep.bar.global"], &["127.255.0.10"]),
            ],
            &[
                "foo.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
            ],
        )
    }

    #[test]
    fn exact_host_resolves_to_its_addresses() {
        let t = seed();
        let Resolution::Host(host) = t.resolve("httpbin.bar.global") else {
            panic!("not a host");
        };
        assert_eq!(host.ipv4, vec![Ipv4Addr::new(127, 255, 0, 2)]);
        assert!(host.ipv6.is_empty());
    }

    #[test]
    fn lookup_ignores_case_and_trailing_dot() {
        let t = seed();
        assert!(
            matches!(t.resolve("HttpBin.BAR.global."), Resolution::Host(h) if h.name == "httpbin.bar.global")
        );
        assert!(t.lookup("HTTPBIN.bar.GLOBAL").is_some());
    }

    #[test]
    fn ipv6_addresses_are_kept_apart() {
        let t = seed();
        let host = t.lookup("dual.bar.global").unwrap();
        assert_eq!(host.ipv4.len(), 1);
        assert_eq!(host.ipv6, vec!["fd00::3".parse::<Ipv6Addr>().unwrap()]);
    }

    #[test]
    fn most_specific_wildcard_wins_and_exact_beats_wildcard() {
        let t = seed();
        assert_eq!(t.lookup("x.bar.global").unwrap().name, "*.bar.global");
        assert_eq!(t.lookup("a.b.bar.global").unwrap().name, "*.bar.global");
        assert_eq!(
            t.lookup("x.deep.bar.global").unwrap().name,
            "*.deep.bar.global"
        );
        assert_eq!(
            t.lookup("httpbin.bar.global").unwrap().name,
            "httpbin.bar.global"
        );
    }

    #[test]
    fn wildcard_does_not_match_its_own_base_which_is_an_empty_non_terminal() {
        let t = seed();
        assert_eq!(t.resolve("bar.global"), Resolution::EmptyNonTerminal);
        assert_eq!(
            t.resolve("deep.bar.global"),
            Resolution::Host(t.lookup("deep.bar.global").unwrap())
        );
    }

    #[test]
    fn names_above_a_host_are_empty_non_terminals() {
        let t = table(&[entry("a", &["x.y.ns.global"], &["127.255.0.2"])], &[]);
        assert_eq!(t.resolve("y.ns.global"), Resolution::EmptyNonTerminal);
        assert_eq!(t.resolve("NS.global."), Resolution::EmptyNonTerminal);
        assert_eq!(t.resolve("z.ns.global"), Resolution::NoSuchName);
        assert_eq!(t.resolve("a.x.y.ns.global"), Resolution::NoSuchName);
    }

    #[test]
    fn the_suffix_itself_is_the_apex() {
        let t = seed();
        assert_eq!(t.resolve("global"), Resolution::Apex);
        assert_eq!(t.resolve("GLOBAL."), Resolution::Apex);
        assert!(t.is_ours("global"));
    }

    #[test]
    fn host_ids_are_dense_and_unique() {
        let t = seed();
        let mut ids: Vec<usize> = t.hosts().map(|h| h.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..t.len()).collect::<Vec<_>>());
    }

    #[test]
    fn unknown_name_under_suffix_is_no_such_name() {
        let t = seed();
        assert_eq!(t.resolve("nope.baz.global"), Resolution::NoSuchName);
    }

    #[test]
    fn names_outside_the_suffix_are_not_answered() {
        let t = seed();
        assert_eq!(t.resolve("example.com"), Resolution::Outside);
        assert_eq!(t.resolve("xglobal"), Resolution::Outside);
        assert_eq!(t.resolve("httpbin.barglobal"), Resolution::Outside);
    }

    #[test]
    fn every_search_domain_expands_to_the_host() {
        let t = seed();
        for domain in [
            "foo.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ] {
            let name = format!("HttpBin.bar.global.{domain}.");
            match t.resolve(&name) {
                Resolution::Expansion { target, host } => {
                    assert_eq!(target, "HttpBin.bar.global");
                    assert_eq!(host.name, "httpbin.bar.global");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn expansion_of_unknown_name_is_outside() {
        let t = seed();
        assert_eq!(
            t.resolve("nope.baz.global.svc.cluster.local"),
            Resolution::Outside
        );
        assert!(t.is_ours("nope.baz.global.svc.cluster.local"));
        assert!(!t.is_ours("kubernetes.default.svc.cluster.local"));
    }

    #[test]
    fn entries_for_the_same_host_merge_addresses() {
        let t = table(
            &[
                entry("a", &["m.bar.global"], &["127.255.0.5", "127.255.0.6/32"]),
                entry("b", &["m.bar.global"], &["127.255.0.6", "127.255.0.7"]),
            ],
            &[],
        );
        let host = t.lookup("m.bar.global").unwrap();
        assert_eq!(host.ipv4.len(), 3);
        assert_eq!(host.owners.len(), 2);
    }

    #[test]
    fn cidr_addresses_and_bad_hosts_are_skipped_and_reported() {
        let (t, skipped) = HostTable::build(
            &[entry(
                "a",
                &["ok.bar.global", "a..bar.global"],
                &["10.0.0.0/24"],
            )],
            &Options::default(),
            &[],
            None,
        );
        assert!(t.lookup("ok.bar.global").unwrap().ipv4.is_empty());
        assert_eq!(skipped.len(), 2);
    }

    #[test]
    fn hosts_outside_the_suffix_are_not_in_the_table() {
        let t = table(&[entry("a", &["httpbin.org"], &["127.255.0.8"])], &[]);
        assert!(t.is_empty());
        assert_eq!(t.resolve("httpbin.org"), Resolution::Outside);
    }

    #[test]
    fn overlong_and_non_ascii_names_are_outside() {
        let t = seed();
        let long = format!("{}.bar.global", "a".repeat(300));
        assert_eq!(t.resolve(&long), Resolution::Outside);
        assert_eq!(t.resolve("é.bar.global"), Resolution::Outside);
    }

    #[test]
    fn building_from_parts_matches_building_from_entries() {
        let entries = [
            entry(
                "a",
                &["m.bar.global", "*.bar.global"],
                &["127.255.0.5", "fd00::5"],
            ),
            entry("b", &["m.bar.global"], &["127.255.0.6"]),
        ];
        let whole = table(&entries, &["svc.cluster.local"]);
        let (parts, _) = HostTable::build_from(
            entries.into_iter().map(HostEntry::from),
            &Options::default(),
            &["svc.cluster.local".to_string()],
            Some("foo"),
        );
        for name in [
            "m.bar.global",
            "x.bar.global",
            "m.bar.global.svc.cluster.local",
        ] {
            assert_eq!(whole.resolve(name), parts.resolve(name), "{name}");
        }
    }

    fn exported(name: &str, namespace: &str, host: &str, export_to: &[&str]) -> ServiceEntry {
        let mut se = entry(name, &[host], &["127.255.0.9"]);
        se.metadata.namespace = Some(namespace.to_string());
        se.spec.export_to = export_to.iter().map(|e| e.to_string()).collect();
        se
    }

    #[test]
    fn only_entries_exported_to_the_viewer_are_answered() {
        let entries = [
            exported("own", "foo", "own.foo.global", &["."]),
            exported("listed", "foo", "listed.foo.global", &["bar", "baz"]),
            exported("all", "foo", "all.foo.global", &["*"]),
            exported("none", "foo", "none.foo.global", &["~"]),
            exported("unset", "foo", "unset.foo.global", &[]),
        ];
        let search = ["bar.svc.cluster.local".to_string()];
        let visible = |viewer: Option<&str>, options: &Options| -> Vec<String> {
            let (t, _) = HostTable::build(&entries, options, &search, viewer);
            let mut names: Vec<String> = t.hosts().map(|h| h.name.clone()).collect();
            names.sort();
            names
        };
        let mesh = Options::default();
        assert_eq!(
            visible(Some("foo"), &mesh),
            ["all.foo.global", "own.foo.global", "unset.foo.global"]
        );
        assert_eq!(
            visible(Some("bar"), &mesh),
            ["all.foo.global", "listed.foo.global", "unset.foo.global"]
        );
        assert_eq!(visible(None, &mesh), ["all.foo.global", "unset.foo.global"]);
        let own_only = Options {
            default_export_to: vec![".".to_string()],
            ..Options::default()
        };
        assert_eq!(
            visible(Some("bar"), &own_only),
            ["all.foo.global", "listed.foo.global"]
        );
        assert_eq!(
            visible(Some("foo"), &own_only),
            ["all.foo.global", "own.foo.global", "unset.foo.global"]
        );
        // A hidden host does not exist: NXDOMAIN, and no search expansion or parent of it.
        let (t, _) = HostTable::build(&entries, &mesh, &search, Some("qux"));
        assert_eq!(t.hidden(), 3);
        assert_eq!(t.resolve("own.foo.global"), Resolution::NoSuchName);
        assert_eq!(
            t.resolve("own.foo.global.bar.svc.cluster.local"),
            Resolution::Outside
        );
        let (t, _) = HostTable::build(&entries[..2], &mesh, &search, Some("qux"));
        assert_eq!(t.resolve("foo.global"), Resolution::NoSuchName);
    }

    #[test]
    fn custom_suffix_is_honoured() {
        let options = Options::new(Some("mesh.example"), &[], &[]).unwrap();
        let (t, _) = HostTable::build(
            &[entry("a", &["svc.ns.mesh.example"], &["127.255.0.4"])],
            &options,
            &[],
            None,
        );
        assert!(matches!(
            t.resolve("svc.ns.MESH.example"),
            Resolution::Host(_)
        ));
        assert_eq!(t.resolve("x.global"), Resolution::Outside);
    }
}
