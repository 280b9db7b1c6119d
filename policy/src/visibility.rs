//! Who may see a ServiceEntry, as Istio reads `exportTo`: `.` is the entry's own namespace,
//! `*` everyone, `~` no one, anything else a namespace name; unset means the mesh's default
//! (meshConfig `defaultServiceExportTo`, itself `*` unless configured). Istio gives a sidecar no
//! route to an entry its namespace cannot see, so globalmesh's DNS answers and filter
//! decisions follow the same rule.

use std::collections::BTreeSet;
use std::fmt;

use crate::names::few;

/// The mesh's default `exportTo` for entries that set none: everyone.
pub const DEFAULT_EXPORT_TO: &[&str] = &["*"];

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Visibility {
    /// `*`.
    #[default]
    Everyone,
    /// `~`.
    Nobody,
    /// These namespaces (`.` resolved to the entry's own).
    Namespaces(BTreeSet<String>),
}

impl Visibility {
    /// The visibility of an entry in namespace `own` with `export_to` (empty: `default`).
    /// Lists Istio's validation refuses are read as leniently as they can be: `*` anywhere
    /// makes the entry public, and `~` beside names is dropped.
    pub fn of(export_to: &[String], own: &str, default: &[String]) -> Self {
        let list: Vec<&str> = if export_to.is_empty() {
            default.iter().map(String::as_str).collect()
        } else {
            export_to.iter().map(String::as_str).collect()
        };
        if list.is_empty() || list.contains(&"*") {
            return Visibility::Everyone;
        }
        let names: BTreeSet<String> = list
            .iter()
            .filter(|e| **e != "~")
            .map(|e| if *e == "." { own } else { e })
            .map(str::to_string)
            .collect();
        if names.is_empty() {
            Visibility::Nobody
        } else {
            Visibility::Namespaces(names)
        }
    }

    /// Whether a workload in `namespace` sees the entry.
    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            Visibility::Everyone => true,
            Visibility::Nobody => false,
            Visibility::Namespaces(names) => names.contains(namespace),
        }
    }

    /// Whether a workload in `viewer`'s namespace sees the entry; a workload whose namespace is
    /// not known sees only what is exported to every namespace.
    pub fn allows_viewer(&self, viewer: Option<&str>) -> bool {
        match (self, viewer) {
            (Visibility::Everyone, _) => true,
            (_, Some(namespace)) => self.allows(namespace),
            (_, None) => false,
        }
    }

    /// As an `exportTo` list with nothing left to resolve.
    pub fn export_to(&self) -> Vec<String> {
        match self {
            Visibility::Everyone => vec!["*".to_string()],
            Visibility::Nobody => vec!["~".to_string()],
            Visibility::Namespaces(names) => names.iter().cloned().collect(),
        }
    }

    /// The union: what either lets see (hosts declared by several entries).
    pub fn union(&self, other: &Visibility) -> Visibility {
        match (self, other) {
            (Visibility::Everyone, _) | (_, Visibility::Everyone) => Visibility::Everyone,
            (Visibility::Nobody, v) | (v, Visibility::Nobody) => v.clone(),
            (Visibility::Namespaces(a), Visibility::Namespaces(b)) => {
                Visibility::Namespaces(a.union(b).cloned().collect())
            }
        }
    }
}

/// For messages: `every namespace`, `no namespace`, `namespace foo` or `namespaces a, b and 3 more`.
impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Visibility::Everyone => f.write_str("every namespace"),
            Visibility::Nobody => f.write_str("no namespace"),
            Visibility::Namespaces(names) if names.len() == 1 => {
                write!(f, "namespace {}", few(names.iter().map(String::as_str)))
            }
            Visibility::Namespaces(names) => {
                write!(f, "namespaces {}", few(names.iter().map(String::as_str)))
            }
        }
    }
}

/// The default list as owned strings, for [`Visibility::of`].
pub fn default_export_to() -> Vec<String> {
    DEFAULT_EXPORT_TO.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Visibility {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        Visibility::of(&list, "foo", &default_export_to())
    }

    #[test]
    fn exports_as_istio_reads_them() {
        assert!(v(&[]).allows("anyone"));
        assert!(v(&["*"]).allows("anyone"));
        assert!(!v(&["~"]).allows("foo"));
        assert!(v(&["."]).allows("foo") && !v(&["."]).allows("bar"));
        let list = v(&["bar", "baz"]);
        assert!(list.allows("bar") && list.allows("baz") && !list.allows("foo"));
        assert_eq!(v(&[".", "bar"]).export_to(), vec!["bar", "foo"]);
    }

    #[test]
    fn an_unknown_viewer_sees_what_is_public() {
        assert!(v(&[]).allows_viewer(None));
        assert!(!v(&["."]).allows_viewer(None));
        assert!(v(&["."]).allows_viewer(Some("foo")));
    }

    #[test]
    fn unset_takes_the_mesh_default() {
        let own_only = vec![".".to_string()];
        let vis = Visibility::of(&[], "foo", &own_only);
        assert!(vis.allows("foo") && !vis.allows("bar"));
        let none = vec!["~".to_string()];
        assert_eq!(Visibility::of(&[], "foo", &none), Visibility::Nobody);
    }

    #[test]
    fn union_sees_what_either_sees() {
        assert_eq!(v(&["~"]).union(&v(&["."])), v(&["."]));
        assert_eq!(v(&["bar"]).union(&v(&["*"])), Visibility::Everyone);
        assert_eq!(
            v(&["bar"]).union(&v(&["baz"])).export_to(),
            vec!["bar", "baz"]
        );
    }

    #[test]
    fn messages_name_a_few_namespaces() {
        assert_eq!(v(&["."]).to_string(), "namespace foo");
        assert_eq!(v(&["~"]).to_string(), "no namespace");
        let many: Vec<String> = (0..100).map(|i| format!("ns{i:03}")).collect();
        let text = Visibility::of(&many, "foo", &[]).to_string();
        assert!(
            text.starts_with("namespaces ns000, ") && text.ends_with(" and 95 more"),
            "{text}"
        );
    }
}
