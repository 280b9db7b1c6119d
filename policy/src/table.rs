//! The compact table: exactly what `global_guard` needs to decide on a request, per `.global`
//! host its ports, cluster labels and visibility, in one versioned JSON form. The controller
//! writes it into the WasmPlugin's `pluginConfig`; the filter reads it instead of whole
//! ServiceEntries (10,000 entries: about 0.7 MB instead of 4.9 MB, under etcd's 1.5 MiB).
//!
//! ```json
//! {"version":1,"hash":"fnv1a64:…","domain_suffix":"global","hosts":[
//!   {"host":"httpbin.bar.global","ports":[8000],"clusters":["cluster2"]},
//!   {"host":"db.foo.global","ports":[5432],"exportTo":["foo"]}]}
//! ```
//!
//! `exportTo` is already resolved (`.` replaced by the entry's namespace, the mesh default
//! applied, the entries of one host merged); left out, the host is visible everywhere. `hash`
//! is a content hash (FNV-1a 64 over a canonical encoding of the suffix and the sorted hosts):
//! a writer skips an update whose hash is unchanged, and a reader refuses a table whose content
//! does not match it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::authority::{normalize, GuardTable, GuardTableBuilder, HostRule};
use crate::model::ServiceEntry;
use crate::names::{is_dns1123_label, service_host_parts, truncate};
use crate::options::Options;
use crate::visibility::Visibility;

/// The one version this code reads and writes.
pub const TABLE_VERSION: u32 = 1;
/// The prefix of [`Table::hash`].
pub const HASH_PREFIX: &str = "fnv1a64:";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub version: u32,
    /// `fnv1a64:` and 16 hex digits; optional when read (a table written by hand may leave it
    /// out), always written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub domain_suffix: String,
    pub hosts: Vec<TableHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableHost {
    /// `<name>.<namespace>.<suffix>`, lowercase.
    pub host: String,
    /// Declared service ports, sorted.
    pub ports: Vec<u16>,
    /// The endpoints' `cluster` label values, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// Namespaces that see the host, `["~"]` for none; absent for all.
    #[serde(default, rename = "exportTo", skip_serializing_if = "Option::is_none")]
    pub export_to: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("table version {0} is not understood here; this reads version {TABLE_VERSION}")]
    Version(u32),
    #[error("domain_suffix {0:?} is not a sequence of DNS-1123 labels (such as \"global\")")]
    Suffix(String),
    #[error("hosts[{index}]: {host:?} is not a lowercase <name>.<namespace>.{suffix}")]
    Host {
        index: usize,
        host: String,
        suffix: String,
    },
    #[error("host {host} appears more than once in hosts")]
    Duplicate { host: String },
    #[error("hosts[{index}]: {host} has port 0")]
    PortZero { index: usize, host: String },
    #[error(
        "hosts[{index}]: {host} exportTo {value:?} is not \"*\", \"~\" or a namespace name (\".\" must be resolved before the table is written)"
    )]
    ExportTo {
        index: usize,
        host: String,
        value: String,
    },
    #[error("hash {given:?} does not match the table's content ({computed})")]
    Hash { given: String, computed: String },
}

impl Table {
    /// The table of a set of ServiceEntries, as the filter decides with them.
    pub fn build<'a>(
        entries: impl IntoIterator<Item = &'a ServiceEntry>,
        options: &Options,
    ) -> Table {
        let mut builder = GuardTableBuilder::default();
        for entry in entries {
            builder.add(entry);
        }
        Table::of(&builder.build(options))
    }

    /// The compact form of a decision table, with its hash.
    pub fn of(guard: &GuardTable) -> Table {
        let hosts = guard
            .hosts()
            .map(|(host, rule)| TableHost {
                host: host.to_string(),
                ports: rule.ports.clone(),
                clusters: rule.clusters.clone(),
                export_to: match &rule.visibility {
                    Visibility::Everyone => None,
                    visibility => Some(visibility.export_to()),
                },
            })
            .collect();
        let mut table = Table {
            version: TABLE_VERSION,
            hash: None,
            domain_suffix: guard.suffix().to_string(),
            hosts,
        };
        table.hash = Some(table.content_hash());
        table
    }

    /// FNV-1a 64 over the suffix and the hosts in order, each string and list length-prefixed:
    /// equal for equal content, whatever the JSON's spacing or key order.
    pub fn content_hash(&self) -> String {
        let mut hash = Fnv::default();
        hash.text(&self.domain_suffix);
        hash.len(self.hosts.len());
        for host in &self.hosts {
            hash.text(&host.host);
            hash.len(host.ports.len());
            for port in &host.ports {
                hash.bytes(&port.to_le_bytes());
            }
            hash.len(host.clusters.len());
            for cluster in &host.clusters {
                hash.text(cluster);
            }
            match &host.export_to {
                None => hash.bytes(&[0]),
                Some(list) => {
                    hash.bytes(&[1]);
                    hash.len(list.len());
                    for namespace in list {
                        hash.text(namespace);
                    }
                }
            }
        }
        let mut text = String::with_capacity(HASH_PREFIX.len() + 16);
        text.push_str(HASH_PREFIX);
        let _ = write!(text, "{:016x}", hash.0);
        text
    }

    /// Checks the table and turns it into the filter's decision table. Hosts, ports and
    /// clusters out of order are sorted (a hand edit need not keep the order); a host listed
    /// twice, a malformed host or `exportTo`, another version or a hash that does not match the
    /// content are errors naming the element.
    pub fn into_guard(mut self) -> Result<GuardTable, TableError> {
        if self.version != TABLE_VERSION {
            return Err(TableError::Version(self.version));
        }
        let suffix = self.domain_suffix.trim_matches('.').to_string();
        if suffix.is_empty()
            || !suffix.split('.').all(is_dns1123_label)
            || suffix.bytes().any(|b| b.is_ascii_uppercase())
        {
            return Err(TableError::Suffix(truncate(&self.domain_suffix)));
        }
        self.domain_suffix = suffix;
        for (index, host) in self.hosts.iter_mut().enumerate() {
            check_host(index, host, &self.domain_suffix)?;
        }
        if !self.hosts.is_sorted_by(|a, b| a.host < b.host) {
            self.hosts.sort_by(|a, b| a.host.cmp(&b.host));
            if let Some(index) = self.hosts.windows(2).position(|w| match w {
                [a, b] => a.host == b.host,
                _ => false,
            }) {
                let host = self.hosts.get(index).map(|h| h.host.clone());
                return Err(TableError::Duplicate {
                    host: host.unwrap_or_default(),
                });
            }
        }
        if let Some(given) = &self.hash {
            let computed = self.content_hash();
            if *given != computed {
                return Err(TableError::Hash {
                    given: truncate(given),
                    computed,
                });
            }
        }
        let hosts = self
            .hosts
            .into_iter()
            .map(|host| {
                let visibility = match host.export_to {
                    None => Visibility::Everyone,
                    Some(list) if list.iter().any(|e| e == "*") => Visibility::Everyone,
                    Some(list) => {
                        let names: BTreeSet<String> =
                            list.into_iter().filter(|e| e != "~").collect();
                        if names.is_empty() {
                            Visibility::Nobody
                        } else {
                            Visibility::Namespaces(names)
                        }
                    }
                };
                let rule = HostRule {
                    ports: host.ports,
                    clusters: host.clusters,
                    visibility,
                };
                (host.host, rule)
            })
            .collect();
        Ok(GuardTable::from_sorted(self.domain_suffix, hosts))
    }
}

/// One host: lowercase and of the service form, ports and clusters sorted without duplicates,
/// `exportTo` resolved.
fn check_host(index: usize, host: &mut TableHost, suffix: &str) -> Result<(), TableError> {
    if normalize(&host.host).host != host.host || service_host_parts(&host.host, suffix).is_none() {
        return Err(TableError::Host {
            index,
            host: truncate(&host.host),
            suffix: suffix.to_string(),
        });
    }
    if !host.ports.is_sorted_by(|a, b| a < b) {
        host.ports.sort_unstable();
        host.ports.dedup();
    }
    if host.ports.first() == Some(&0) {
        return Err(TableError::PortZero {
            index,
            host: host.host.clone(),
        });
    }
    if !host.clusters.is_sorted_by(|a, b| a < b) {
        host.clusters.sort_unstable();
        host.clusters.dedup();
    }
    if let Some(list) = &host.export_to {
        if let Some(bad) = list
            .iter()
            .find(|e| !matches!(e.as_str(), "*" | "~") && !is_dns1123_label(e))
        {
            return Err(TableError::ExportTo {
                index,
                host: host.host.clone(),
                value: truncate(bad),
            });
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn len(&mut self, len: usize) {
        self.bytes(&(len as u64).to_le_bytes());
    }

    fn text(&mut self, text: &str) {
        self.len(text.len());
        self.bytes(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{Decision, Reason};

    fn entry(name: &str, namespace: &str, host: &str, export_to: &[&str]) -> ServiceEntry {
        let export: Vec<String> = export_to.iter().map(|e| format!("{e:?}")).collect();
        serde_json::from_str(&format!(
            r#"{{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry",
            "metadata":{{"name":"{name}","namespace":"{namespace}"}},
            "spec":{{"hosts":["{host}"],"ports":[{{"number":8000,"name":"http","protocol":"HTTP"}}],
            "exportTo":[{}],"resolution":"DNS",
            "endpoints":[{{"address":"198.18.2.1","labels":{{"cluster":"cluster2"}}}}]}}}}"#,
            export.join(",")
        ))
        .unwrap()
    }

    fn seed() -> Vec<ServiceEntry> {
        vec![
            entry("httpbin", "foo", "httpbin.bar.global", &[]),
            entry("db", "foo", "db.foo.global", &["."]),
            entry("hidden", "foo", "hidden.foo.global", &["~"]),
            entry("listed", "foo", "listed.foo.global", &["bar", "baz"]),
            entry("other", "foo", "other.example.com", &[]),
        ]
    }

    fn reason(decision: Decision<'_>) -> Option<Reason> {
        match decision {
            Decision::Reject(r) => Some(r.reason),
            _ => None,
        }
    }

    #[test]
    fn a_typical_entry_takes_well_under_a_hundred_bytes() {
        let table = Table::build(&seed()[..1], &Options::default());
        let json = serde_json::to_string(&table.hosts).unwrap();
        assert_eq!(
            json,
            r#"[{"host":"httpbin.bar.global","ports":[8000],"clusters":["cluster2"]}]"#
        );
        assert!(json.len() < 100);
    }

    #[test]
    fn round_trips_through_json_deciding_the_same() {
        let options = Options::default();
        let direct = GuardTable::new(&seed(), &options);
        let table = Table::build(&seed(), &options);
        assert_eq!(table.hosts.len(), 4, "the non-.global host is left out");
        let text = serde_json::to_string(&table).unwrap();
        let read: Table = serde_json::from_str(&text).unwrap();
        assert_eq!(read, table);
        let guard = read.into_guard().unwrap();
        for viewer in [None, Some("foo"), Some("bar"), Some("qux")] {
            let a = direct.clone().viewed_from(viewer);
            let b = guard.clone().viewed_from(viewer);
            for host in [
                "httpbin.bar.global:8000",
                "db.foo.global:8000",
                "hidden.foo.global:8000",
                "listed.foo.global:8000",
                "listed.foo.global:9",
                "nope.foo.global:8000",
            ] {
                assert_eq!(
                    a.decide(host, None, None),
                    b.decide(host, None, None),
                    "{host}"
                );
            }
        }
    }

    #[test]
    fn visibility_follows_export_to() {
        let guard = Table::build(&seed(), &Options::default())
            .into_guard()
            .unwrap();
        let from = |ns: Option<&str>, host: &str| {
            reason(guard.clone().viewed_from(ns).decide(host, None, None))
        };
        assert_eq!(from(Some("qux"), "httpbin.bar.global:8000"), None);
        assert_eq!(from(None, "httpbin.bar.global:8000"), None);
        assert_eq!(from(Some("foo"), "db.foo.global:8000"), None);
        assert_eq!(
            from(Some("bar"), "db.foo.global:8000"),
            Some(Reason::NotExported)
        );
        assert_eq!(from(None, "db.foo.global:8000"), Some(Reason::NotExported));
        assert_eq!(
            from(Some("foo"), "hidden.foo.global:8000"),
            Some(Reason::NotExported)
        );
        assert_eq!(from(Some("baz"), "listed.foo.global:8000"), None);
        assert_eq!(
            from(Some("foo"), "listed.foo.global:8000"),
            Some(Reason::NotExported)
        );
        let Decision::Reject(r) =
            guard
                .viewed_from(Some("bar"))
                .decide("db.foo.global", Some(8000), None)
        else {
            panic!("expected a rejection");
        };
        assert_eq!(
            r.body,
            "not-exported: db.foo.global is exported to namespace foo, not to namespace bar\n"
        );
        assert_eq!(r.status(), 404);
    }

    #[test]
    fn the_mesh_default_applies_to_entries_without_export_to() {
        let options = Options {
            default_export_to: vec![".".into()],
            ..Options::default()
        };
        let table = Table::build(&seed(), &options);
        let httpbin = table
            .hosts
            .iter()
            .find(|h| h.host == "httpbin.bar.global")
            .unwrap();
        assert_eq!(httpbin.export_to, Some(vec!["foo".to_string()]));
    }

    #[test]
    fn entries_for_one_host_merge_their_visibility() {
        let entries = [
            entry("a", "foo", "x.foo.global", &["."]),
            entry("b", "bar", "x.foo.global", &["."]),
        ];
        let table = Table::build(&entries, &Options::default());
        assert_eq!(
            table.hosts[0].export_to,
            Some(vec!["bar".into(), "foo".into()])
        );
        let entries = [
            entry("a", "foo", "x.foo.global", &["~"]),
            entry("b", "bar", "x.foo.global", &[]),
        ];
        assert_eq!(
            Table::build(&entries, &Options::default()).hosts[0].export_to,
            None
        );
    }

    #[test]
    fn hash_follows_content_not_formatting() {
        let table = Table::build(&seed(), &Options::default());
        let hash = table.hash.clone().unwrap();
        assert!(hash.starts_with(HASH_PREFIX) && hash.len() == HASH_PREFIX.len() + 16);
        let pretty = serde_json::to_string_pretty(&table).unwrap();
        let reread: Table = serde_json::from_str(&pretty).unwrap();
        assert_eq!(reread.content_hash(), hash);
        let mut changed = table.clone();
        changed.hosts[0].ports.push(9000);
        assert_ne!(changed.content_hash(), hash);
        let mut moved = table.clone();
        moved.hosts[0].clusters = vec![];
        moved.hosts[1].clusters.push("cluster2".into());
        assert_ne!(
            moved.content_hash(),
            hash,
            "the same strings under other hosts"
        );
    }

    #[test]
    fn a_hand_edit_that_keeps_the_old_hash_is_refused() {
        let mut table = Table::build(&seed(), &Options::default());
        table.hosts[0].ports = vec![1];
        let err = table.into_guard().unwrap_err();
        assert!(matches!(err, TableError::Hash { .. }), "{err}");
        let mut unhashed = Table::build(&seed(), &Options::default());
        unhashed.hash = None;
        unhashed.hosts.reverse();
        unhashed.hosts[0].ports = vec![9000, 80, 9000];
        let guard = unhashed.into_guard().unwrap();
        assert_eq!(guard.rule("listed.foo.global").unwrap().ports, [80, 9000]);
    }

    #[test]
    fn bad_tables_are_errors_naming_the_element() {
        let read = |text: &str| {
            serde_json::from_str::<Table>(text)
                .map_err(|e| e.to_string())
                .and_then(|t| t.into_guard().map_err(|e| e.to_string()))
                .unwrap_err()
        };
        let host = |h: &str| format!(r#"{{"version":1,"domain_suffix":"global","hosts":[{h}]}}"#);
        assert!(read(r#"{"version":2,"domain_suffix":"global","hosts":[]}"#)
            .contains("table version 2"));
        assert!(read(r#"{"version":1,"domain_suffix":"a..b","hosts":[]}"#)
            .contains("domain_suffix \"a..b\""));
        assert!(read(&host(r#"{"host":"A.b.global","ports":[80]}"#)).contains("hosts[0]"));
        assert!(read(&host(r#"{"host":"a.global","ports":[80]}"#)).contains("hosts[0]"));
        assert!(read(&host(r#"{"host":"a.b.global","ports":[0]}"#)).contains("port 0"));
        assert!(read(&host(r#"{"host":"a.b.global","ports":[70000]}"#)).contains("70000"));
        assert!(read(&host(
            r#"{"host":"a.b.global","ports":[80],"exportTo":["."]}"#
        ))
        .contains("exportTo \".\""));
        assert!(read(&host(
            r#"{"host":"b.b.global","ports":[80]},{"host":"a.b.global","ports":[80]},{"host":"b.b.global","ports":[81]}"#
        ))
        .contains("b.b.global appears more than once"));
        assert!(
            read(&host(r#"{"host":"a.b.global","ports":[80],"port":1}"#))
                .contains("unknown field `port`")
        );
    }
}
