//! What kube-apiserver checks before any admission webhook sees a ServiceEntry: the object
//! metadata rules every namespaced object gets, and the schema of Istio 1.28's ServiceEntry
//! CRD (`manifests/charts/base/files/crd-all.gen.yaml`, identical for v1, v1beta1 and
//! v1alpha3) with each of its CEL rules (`x-kubernetes-validations`). Messages of CEL rules
//! start with the rule's own message, so they read as the API server's do.
//!
//! Types, unknown fields and nulls are the decoder's part ([`crate::document`]): kubectl's
//! default strict field validation refuses unknown fields, and the API server drops nulls.

use std::collections::HashSet;

use crate::finding::{Findings, Rule};
use crate::model::{Location, Resolution, ServiceEntry, ServiceEntrySpec};
use crate::names::{
    check_qualified_name, is_dns1123_label, is_dns1123_subdomain, is_label_value, Shown,
};

const MAX_HOSTS: usize = 256;
const MAX_ADDRESSES: usize = 256;
const MAX_ADDRESS_LEN: usize = 64;
const MAX_PORTS: usize = 256;
const MAX_PORT_TEXT: usize = 256;
const MAX_ENDPOINTS: usize = 4096;
const MAX_ENDPOINT_ADDRESS: usize = 256;
const MAX_ENDPOINT_PORTS: usize = 128;
const MAX_LABELS: usize = 256;
const MAX_LOCALITY: usize = 2048;
const MAX_NETWORK: usize = 2048;
const MAX_SERVICE_ACCOUNT: usize = 253;
const MAX_SELECTOR_VALUE: usize = 63;
/// The CRD's integers are uint32.
const MAX_UINT32: i64 = 4_294_967_295;
/// Kubernetes' limit on all annotations of an object together (keys and values, bytes).
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

pub fn validate(se: &ServiceEntry, out: &mut Findings) {
    metadata(se, out);
    let spec = &se.spec;
    if !spec.was_given() {
        error(out, "spec", "Required value: a ServiceEntry needs a spec");
        return;
    }
    hosts(spec, out);
    addresses(spec, out);
    ports(spec, out);
    enums(spec, out);
    endpoints(spec, out);
    workload_selector(spec, out);
    spec_rules(spec, out);
}

fn error(out: &mut Findings, path: impl std::fmt::Display, message: impl std::fmt::Display) {
    out.error(Rule::ApiServer, path, message);
}

/// Object metadata, as the API server validates every namespaced object's.
fn metadata(se: &ServiceEntry, out: &mut Findings) {
    let meta = &se.metadata;
    match (meta.name.as_deref(), meta.generate_name.as_deref()) {
        (Some(name), _) if !name.is_empty() => {
            if !is_dns1123_subdomain(name) {
                error(
                    out,
                    "metadata.name",
                    format_args!(
                        "name {} is not a DNS subdomain (lowercase letters, digits, '-' and '.', 253 characters at most)",
                        Shown(name)
                    ),
                );
            }
        }
        (_, Some(prefix)) if !prefix.is_empty() => {}
        _ => error(
            out,
            "metadata.name",
            "Required value: name or generateName is required",
        ),
    }
    if let Some(namespace) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        if !is_dns1123_label(namespace) {
            error(
                out,
                "metadata.namespace",
                format_args!("namespace {} is not a DNS-1123 label", Shown(namespace)),
            );
        }
    }
    for (key, value) in &meta.labels {
        if let Err(message) = check_qualified_name(key) {
            error(out, format_args!("metadata.labels.{}", Shown(key)), message);
        }
        if !is_label_value(value) {
            error(
                out,
                format_args!("metadata.labels.{}", Shown(key)),
                format_args!(
                    "label value {} is invalid (63 characters at most of [A-Za-z0-9-_.], alphanumeric at both ends)",
                    Shown(value)
                ),
            );
        }
    }
    let mut total = 0usize;
    for (key, value) in &meta.annotations {
        total = total.saturating_add(key.len()).saturating_add(value.len());
        if let Err(message) = check_qualified_name(key) {
            error(
                out,
                format_args!("metadata.annotations.{}", Shown(key)),
                message,
            );
        }
    }
    if total > MAX_ANNOTATIONS_BYTES {
        error(
            out,
            "metadata.annotations",
            format_args!(
                "Too long: annotations are {total} bytes; the limit is {MAX_ANNOTATIONS_BYTES}"
            ),
        );
    }
}

fn too_many(out: &mut Findings, path: &str, count: usize, limit: usize, what: &str) {
    if count > limit {
        error(
            out,
            path,
            format_args!("Too many: {count} {what}; the limit is {limit}"),
        );
    }
}

fn too_long(out: &mut Findings, path: impl std::fmt::Display, value: &str, limit: usize) {
    if value.len() > limit {
        error(
            out,
            path,
            format_args!(
                "Too long: {} is {} bytes; the limit is {limit}",
                Shown(value),
                value.len()
            ),
        );
    }
}

/// A uint32 field that must also be a port: the schema's range, then the CEL rule.
fn port_number(out: &mut Findings, path: impl std::fmt::Display + Copy, number: i64) {
    if !(0..=MAX_UINT32).contains(&number) {
        error(
            out,
            path,
            format_args!("Invalid value: {number}: must be between 0 and {MAX_UINT32}"),
        );
    }
    if !(1..=65535).contains(&number) {
        error(
            out,
            path,
            format_args!("port must be between 1-65535 (got {number})"),
        );
    }
}

fn hosts(spec: &ServiceEntrySpec, out: &mut Findings) {
    if spec.hosts.is_empty() {
        error(
            out,
            "spec.hosts",
            "Required value: a ServiceEntry needs at least one host",
        );
    }
    too_many(out, "spec.hosts", spec.hosts.len(), MAX_HOSTS, "hosts");
    for (i, host) in spec.hosts.iter().enumerate() {
        if host == "*" {
            error(
                out,
                format_args!("spec.hosts[{i}]"),
                "hostname cannot be wildcard",
            );
        }
    }
}

fn addresses(spec: &ServiceEntrySpec, out: &mut Findings) {
    too_many(
        out,
        "spec.addresses",
        spec.addresses.len(),
        MAX_ADDRESSES,
        "addresses",
    );
    for (i, address) in spec.addresses.iter().enumerate() {
        too_long(
            out,
            format_args!("spec.addresses[{i}]"),
            address,
            MAX_ADDRESS_LEN,
        );
    }
}

fn ports(spec: &ServiceEntrySpec, out: &mut Findings) {
    too_many(out, "spec.ports", spec.ports.len(), MAX_PORTS, "ports");
    let mut names = HashSet::with_capacity(spec.ports.len());
    let mut numbers: std::collections::HashMap<i64, usize> =
        std::collections::HashMap::with_capacity(spec.ports.len());
    for port in &spec.ports {
        if let Some(number) = port.number {
            *numbers.entry(number).or_default() += 1;
        }
    }
    let mut duplicated_number = false;
    for (i, port) in spec.ports.iter().enumerate() {
        match port.name.as_deref() {
            None => error(
                out,
                format_args!("spec.ports[{i}].name"),
                "Required value: a port needs a name",
            ),
            Some(name) => {
                too_long(
                    out,
                    format_args!("spec.ports[{i}].name"),
                    name,
                    MAX_PORT_TEXT,
                );
                // `ports` is a list map keyed by name.
                if !names.insert(name) {
                    error(
                        out,
                        format_args!("spec.ports[{i}]"),
                        format_args!("Duplicate value: port name {} is listed twice", Shown(name)),
                    );
                }
            }
        }
        if let Some(protocol) = port.protocol.as_deref() {
            too_long(
                out,
                format_args!("spec.ports[{i}].protocol"),
                protocol,
                MAX_PORT_TEXT,
            );
        }
        match port.number {
            None => error(
                out,
                format_args!("spec.ports[{i}].number"),
                "Required value: a port needs a number",
            ),
            Some(number) => {
                port_number(out, format_args!("spec.ports[{i}].number"), number);
                duplicated_number |= numbers.get(&number).is_some_and(|n| *n > 1);
            }
        }
        if let Some(target) = port.target_port {
            port_number(out, format_args!("spec.ports[{i}].targetPort"), target);
        }
    }
    if duplicated_number {
        error(out, "spec.ports", "port number cannot be duplicated");
    }
}

fn enums(spec: &ServiceEntrySpec, out: &mut Findings) {
    if let Some(value) = spec.resolution.as_deref() {
        if Resolution::parse(Some(value)).is_none() {
            error(
                out,
                "spec.resolution",
                format_args!(
                    "Unsupported value: {}: supported values: {}",
                    Shown(value),
                    Resolution::NAMES.join(", ")
                ),
            );
        }
    }
    if let Some(value) = spec.location.as_deref() {
        if Location::parse(Some(value)).is_none() {
            error(
                out,
                "spec.location",
                format_args!(
                    "Unsupported value: {}: supported values: MESH_EXTERNAL, MESH_INTERNAL",
                    Shown(value)
                ),
            );
        }
    }
}

/// `^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$` and shorter than 63: the CRD's endpoint port
/// name rule (one character stricter than Istio's webhook, which takes 63).
fn is_crd_port_name(name: &str) -> bool {
    name.len() < 63 && crate::names::is_istio_label(name)
}

fn endpoints(spec: &ServiceEntrySpec, out: &mut Findings) {
    let endpoints = spec.endpoints();
    too_many(
        out,
        "spec.endpoints",
        endpoints.len(),
        MAX_ENDPOINTS,
        "endpoints",
    );
    for (i, ep) in endpoints.iter().enumerate() {
        if ep.address.is_none() && ep.network.is_none() {
            error(
                out,
                format_args!("spec.endpoints[{i}]"),
                "Address is required (or a network)",
            );
        }
        let address = ep.address.as_deref().unwrap_or("");
        if ep.address.is_some() {
            too_long(
                out,
                format_args!("spec.endpoints[{i}].address"),
                address,
                MAX_ENDPOINT_ADDRESS,
            );
        }
        if let Some(socket) = address.strip_prefix("unix://") {
            if !(socket.starts_with('/') || socket.starts_with('@')) {
                error(
                    out,
                    format_args!("spec.endpoints[{i}].address"),
                    format_args!(
                        "UDS must be an absolute path or abstract socket: {}",
                        Shown(address)
                    ),
                );
            }
            if address.ends_with('/') {
                error(
                    out,
                    format_args!("spec.endpoints[{i}].address"),
                    format_args!("UDS may not be a dir: {}", Shown(address)),
                );
            }
            if ep.ports.is_some() {
                error(
                    out,
                    format_args!("spec.endpoints[{i}]"),
                    "UDS may not include ports",
                );
            }
        }
        if let Some(ports) = &ep.ports {
            too_many(
                out,
                &format!("spec.endpoints[{i}].ports"),
                ports.len(),
                MAX_ENDPOINT_PORTS,
                "ports",
            );
            if let Some(bad) = ports.keys().find(|name| !is_crd_port_name(name)) {
                error(
                    out,
                    format_args!("spec.endpoints[{i}].ports"),
                    format_args!("port name must be valid: {}", Shown(bad)),
                );
            }
            for (name, number) in ports {
                port_number(
                    out,
                    format_args!("spec.endpoints[{i}].ports.{}", crate::names::Plain(name)),
                    *number,
                );
            }
        }
        too_many(
            out,
            &format!("spec.endpoints[{i}].labels"),
            ep.labels.len(),
            MAX_LABELS,
            "labels",
        );
        for (field, value, limit) in [
            ("locality", &ep.locality, MAX_LOCALITY),
            ("network", &ep.network, MAX_NETWORK),
            ("serviceAccount", &ep.service_account, MAX_SERVICE_ACCOUNT),
        ] {
            if let Some(value) = value {
                too_long(
                    out,
                    format_args!("spec.endpoints[{i}].{field}"),
                    value,
                    limit,
                );
            }
        }
        if let Some(weight) = ep.weight {
            if !(0..=MAX_UINT32).contains(&weight) {
                error(
                    out,
                    format_args!("spec.endpoints[{i}].weight"),
                    format_args!("Invalid value: {weight}: must be between 0 and {MAX_UINT32}"),
                );
            }
        }
    }
}

fn workload_selector(spec: &ServiceEntrySpec, out: &mut Findings) {
    let Some(selector) = &spec.workload_selector else {
        return;
    };
    too_many(
        out,
        "spec.workloadSelector.labels",
        selector.labels.len(),
        MAX_LABELS,
        "labels",
    );
    for (key, value) in &selector.labels {
        too_long(
            out,
            format_args!("spec.workloadSelector.labels.{}", crate::names::Plain(key)),
            value,
            MAX_SELECTOR_VALUE,
        );
        if value.contains('*') {
            error(
                out,
                format_args!("spec.workloadSelector.labels.{}", crate::names::Plain(key)),
                format_args!("wildcard is not supported in selector: {}", Shown(value)),
            );
        }
    }
}

/// The CEL rules on `spec` as a whole.
fn spec_rules(spec: &ServiceEntrySpec, out: &mut Findings) {
    // `has()` is presence: an empty list counts.
    let has_endpoints = spec.endpoint_list.is_some();
    if spec.workload_selector.is_some() && has_endpoints {
        error(
            out,
            "spec",
            "only one of WorkloadSelector or Endpoints can be set",
        );
    }
    // An unset resolution counts as NONE here, and as not DNS_ROUND_ROBIN below.
    let resolution = spec.resolution.as_deref().unwrap_or("NONE");
    if let Some(cidr) = spec.addresses.iter().find(|a| a.contains('/')) {
        if !matches!(resolution, "STATIC" | "NONE") {
            error(
                out,
                "spec",
                format_args!(
                    "CIDR addresses are allowed only for NONE/STATIC resolution types ({} with {})",
                    Shown(cidr),
                    Shown(resolution)
                ),
            );
        }
    }
    if resolution == "NONE" && has_endpoints {
        error(out, "spec", "NONE mode cannot set endpoints");
    }
    if resolution == "DNS_ROUND_ROBIN" && spec.endpoints().len() > 1 {
        error(
            out,
            "spec",
            format_args!(
                "DNS_ROUND_ROBIN mode cannot have multiple endpoints ({} given)",
                spec.endpoints().len()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Finding;
    use crate::rules::seed_entry;

    fn api_server(se: &ServiceEntry) -> Vec<Finding> {
        let mut out = Findings::new();
        validate(se, &mut out);
        out.into_vec()
    }

    fn with(change: impl FnOnce(&mut ServiceEntrySpec)) -> Vec<Finding> {
        let mut se = seed_entry();
        change(&mut se.spec);
        api_server(&se)
    }

    fn assert_error(found: &[Finding], path: &str, needle: &str) {
        assert!(
            found.iter().any(|f| f.is_error()
                && f.rule == Rule::ApiServer
                && f.path == path
                && f.message.contains(needle)),
            "expected an error at {path} containing {needle:?}, got {found:#?}"
        );
    }

    #[test]
    fn seed_passes() {
        assert_eq!(api_server(&seed_entry()), vec![]);
    }

    #[test]
    fn metadata_is_checked_as_for_every_object() {
        let mut se = seed_entry();
        se.metadata.name = Some("Httpbin_Bar".into());
        se.metadata.namespace = Some("Foo".into());
        se.metadata.labels.insert("app".into(), "x".repeat(64));
        se.metadata
            .annotations
            .insert("bad key!".into(), "v".into());
        let found = api_server(&se);
        assert_error(&found, "metadata.name", "Httpbin_Bar");
        assert_error(&found, "metadata.namespace", "Foo");
        assert_error(&found, "metadata.labels.\"app\"", "label value");
        assert_error(&found, "metadata.annotations.\"bad key!\"", "bad key!");
        se.metadata.name = None;
        assert_error(&api_server(&se), "metadata.name", "Required value");
        se.metadata.generate_name = Some("httpbin-".into());
        assert!(api_server(&se).iter().all(|f| f.path != "metadata.name"));
    }

    #[test]
    fn annotations_are_limited_in_total() {
        let mut se = seed_entry();
        se.metadata
            .annotations
            .insert("big".into(), "x".repeat(MAX_ANNOTATIONS_BYTES));
        assert_error(&api_server(&se), "metadata.annotations", "Too long");
    }

    #[test]
    fn hosts_are_required_limited_and_not_a_bare_wildcard() {
        assert_error(&with(|s| s.hosts.clear()), "spec.hosts", "Required value");
        assert_error(
            &with(|s| s.hosts = (0..257).map(|i| format!("h{i}.bar.global")).collect()),
            "spec.hosts",
            "Too many: 257",
        );
        assert_error(
            &with(|s| s.hosts = vec!["*".into()]),
            "spec.hosts[0]",
            "hostname cannot be wildcard",
        );
        // Only the bare "*": everything else is Istio's to judge.
        assert!(with(|s| s.hosts = vec!["foo*".into(), "".into()]).is_empty());
    }

    #[test]
    fn addresses_are_limited_in_count_and_length() {
        assert_error(
            &with(|s| s.addresses = (0..257).map(|i| format!("127.255.1.{}", i % 250)).collect()),
            "spec.addresses",
            "Too many: 257",
        );
        assert_error(
            &with(|s| s.addresses = vec![format!("{}1", "0".repeat(70))]),
            "spec.addresses[0]",
            "the limit is 64",
        );
    }

    #[test]
    fn ports_follow_the_schema_and_its_rules() {
        let mut two = seed_entry().spec.ports;
        two.push(two[0].clone());
        let found = with(|s| s.ports = two);
        assert_error(&found, "spec.ports[1]", "Duplicate value");
        assert_error(&found, "spec.ports", "port number cannot be duplicated");
        assert_error(
            &with(|s| s.ports[0].number = Some(0)),
            "spec.ports[0].number",
            "port must be between 1-65535 (got 0)",
        );
        assert_error(
            &with(|s| s.ports[0].target_port = Some(70000)),
            "spec.ports[0].targetPort",
            "port must be between 1-65535",
        );
        let found = with(|s| s.ports[0].number = Some(-1));
        assert_error(&found, "spec.ports[0].number", "between 0 and 4294967295");
        assert_error(
            &with(|s| s.ports[0].name = None),
            "spec.ports[0].name",
            "Required value",
        );
        assert_error(
            &with(|s| s.ports[0].number = None),
            "spec.ports[0].number",
            "Required value",
        );
        assert_error(
            &with(|s| s.ports[0].protocol = Some("x".repeat(257))),
            "spec.ports[0].protocol",
            "Too long",
        );
    }

    #[test]
    fn enums_are_the_crds() {
        assert_error(
            &with(|s| s.resolution = Some("dns".into())),
            "spec.resolution",
            "Unsupported value: \"dns\"",
        );
        assert_error(
            &with(|s| s.location = Some("INTERNAL".into())),
            "spec.location",
            "Unsupported value",
        );
        let mut se = seed_entry();
        se.spec.resolution = Some("DYNAMIC_DNS".into());
        se.spec.endpoint_list = None;
        assert!(api_server(&se).is_empty());
    }

    #[test]
    fn endpoint_rules() {
        let found = with(|s| {
            let ep = &mut s.endpoint_list.as_mut().unwrap()[0];
            ep.address = None;
        });
        assert_error(&found, "spec.endpoints[0]", "Address is required");
        let uds = |address: &'static str, ports: bool| {
            with(move |s| {
                s.resolution = Some("STATIC".into());
                let ep = &mut s.endpoint_list.as_mut().unwrap()[0];
                ep.address = Some(address.into());
                if !ports {
                    ep.ports = None;
                }
            })
        };
        assert!(uds("unix:///var/run/sock", false).is_empty());
        assert!(uds("unix://@abstract", false).is_empty());
        assert_error(
            &uds("unix://relative", false),
            "spec.endpoints[0].address",
            "absolute path",
        );
        assert_error(
            &uds("unix:///dir/", false),
            "spec.endpoints[0].address",
            "may not be a dir",
        );
        assert_error(
            &uds("unix:///sock", true),
            "spec.endpoints[0]",
            "may not include ports",
        );
        let found = with(|s| {
            let ep = &mut s.endpoint_list.as_mut().unwrap()[0];
            ep.ports = Some([("a".repeat(63), 15443)].into_iter().collect());
        });
        assert_error(&found, "spec.endpoints[0].ports", "port name must be valid");
        let found = with(|s| {
            let ep = &mut s.endpoint_list.as_mut().unwrap()[0];
            ep.ports = Some([("http1".to_string(), 0)].into_iter().collect());
            ep.service_account = Some("s".repeat(254));
            ep.weight = Some(-1);
        });
        assert_error(
            &found,
            "spec.endpoints[0].ports.http1",
            "port must be between 1-65535",
        );
        assert_error(&found, "spec.endpoints[0].serviceAccount", "Too long");
        assert_error(&found, "spec.endpoints[0].weight", "between 0 and");
        assert_error(
            &with(|s| {
                let ep = s.endpoint_list.as_ref().unwrap()[0].clone();
                s.endpoint_list = Some(vec![ep; 4097]);
            }),
            "spec.endpoints",
            "Too many: 4097",
        );
    }

    #[test]
    fn selector_values_are_short_and_without_wildcards() {
        let found = with(|s| {
            s.endpoint_list = None;
            s.workload_selector = Some(crate::model::WorkloadSelector {
                labels: [
                    ("app".to_string(), "a*".to_string()),
                    ("v".to_string(), "x".repeat(64)),
                ]
                .into_iter()
                .collect(),
            });
        });
        assert_error(
            &found,
            "spec.workloadSelector.labels.app",
            "wildcard is not supported",
        );
        assert_error(&found, "spec.workloadSelector.labels.v", "Too long");
    }

    #[test]
    fn spec_rules_use_presence() {
        // An empty endpoints list is present.
        let found = with(|s| {
            s.endpoint_list = Some(vec![]);
            s.resolution = None;
        });
        assert_error(&found, "spec", "NONE mode cannot set endpoints");
        let found = with(|s| {
            s.endpoint_list = Some(vec![]);
            s.workload_selector = Some(Default::default());
        });
        assert_error(&found, "spec", "only one of WorkloadSelector or Endpoints");
        assert_error(
            &with(|s| s.addresses = vec!["127.255.0.0/24".into()]),
            "spec",
            "CIDR addresses are allowed only for NONE/STATIC",
        );
        let found = with(|s| {
            s.resolution = Some("DNS_ROUND_ROBIN".into());
            let ep = s.endpoint_list.as_ref().unwrap()[0].clone();
            s.endpoint_list = Some(vec![ep.clone(), ep]);
        });
        assert_error(
            &found,
            "spec",
            "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
        );
        // DNS takes several.
        assert!(with(|s| {
            let ep = s.endpoint_list.as_ref().unwrap()[0].clone();
            s.endpoint_list = Some(vec![ep.clone(), ep]);
        })
        .is_empty());
    }

    #[test]
    fn a_missing_spec_is_named_alone() {
        let se: ServiceEntry = serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": "a"}
        }))
        .unwrap();
        let found = api_server(&se);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_error(&found, "spec", "Required value");
    }
}
