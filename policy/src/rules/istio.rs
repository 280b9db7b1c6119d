//! Istio's own ServiceEntry validation (`ValidateServiceEntry`) and the CRD schema limits that
//! the API server enforces before any webhook runs. Stateless: one object at a time.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::finding::{Finding, Rule};
use crate::model::{Resolution, ServiceEntry, ServiceEntrySpec, WorkloadEntry};
use crate::names::{
    check_fqdn, check_label_key, check_wildcard_domain, is_dns1123_label, is_label_value, truncate,
};

const MAX_HOSTS: usize = 256;
const MAX_ADDRESSES: usize = 256;
const MAX_ADDRESS_LEN: usize = 64;
const MAX_ENDPOINTS: usize = 4096;

/// Istio's protocol names (matched case-insensitively); empty means protocol sniffing.
const PROTOCOLS: [&str; 12] = [
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "HTTP_PROXY",
    "TCP",
    "UDP",
    "TLS",
    "MONGO",
    "REDIS",
    "MYSQL",
];

pub fn validate(se: &ServiceEntry, out: &mut Vec<Finding>) {
    let spec = &se.spec;
    let resolution = Resolution::parse(spec.resolution.as_deref());
    hosts(spec, out);
    addresses(spec, resolution, out);
    ports(spec, out);
    enums(spec, out);
    workload_selector(spec, out);
    if let Some(resolution) = resolution {
        endpoints(spec, resolution, out);
        multi_host(spec, resolution, out);
    }
    export_to(se, out);
}

fn error(out: &mut Vec<Finding>, path: impl Into<String>, message: impl Into<String>) {
    out.push(Finding::error(Rule::Istio, path, message));
}

fn warning(out: &mut Vec<Finding>, path: impl Into<String>, message: impl Into<String>) {
    out.push(Finding::warning(Rule::Istio, path, message));
}

fn hosts(spec: &ServiceEntrySpec, out: &mut Vec<Finding>) {
    if spec.hosts.is_empty() {
        error(
            out,
            "spec.hosts",
            "no hosts: a ServiceEntry needs at least one host",
        );
        return;
    }
    if spec.hosts.len() > MAX_HOSTS {
        error(
            out,
            "spec.hosts",
            format!("{} hosts; the limit is {MAX_HOSTS}", spec.hosts.len()),
        );
    }
    let mut seen = HashSet::new();
    for (i, host) in spec.hosts.iter().enumerate() {
        let path = format!("spec.hosts[{i}]");
        if !seen.insert(host.to_ascii_lowercase()) {
            error(out, &path, format!("host {host:?} is listed twice"));
            continue;
        }
        if host == "*" {
            error(
                out,
                path,
                "invalid host \"*\": a ServiceEntry cannot match every host",
            );
            continue;
        }
        match check_wildcard_domain(host) {
            Err(message) => error(out, path, message),
            Ok(true) => warning(
                out,
                path,
                format!("partial wildcard {host:?} not allowed; use a whole first label (*.)"),
            ),
            Ok(false) => {}
        }
    }
}

/// Parses an address as Istio does: an IP, or a CIDR when it holds a `/`.
pub(crate) fn parse_address(address: &str) -> Option<IpNet> {
    if address.contains('/') {
        address.parse::<IpNet>().ok()
    } else {
        address.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

fn addresses(spec: &ServiceEntrySpec, resolution: Option<Resolution>, out: &mut Vec<Finding>) {
    if spec.addresses.len() > MAX_ADDRESSES {
        error(
            out,
            "spec.addresses",
            format!(
                "{} addresses; the limit is {MAX_ADDRESSES}",
                spec.addresses.len()
            ),
        );
    }
    let mut cidr = None;
    for (i, address) in spec.addresses.iter().enumerate() {
        let path = format!("spec.addresses[{i}]");
        if address.len() > MAX_ADDRESS_LEN {
            error(
                out,
                &path,
                format!(
                    "address {:?} is {} characters long; the limit is {MAX_ADDRESS_LEN}",
                    truncate(address),
                    address.len()
                ),
            );
            continue;
        }
        if parse_address(address).is_none() {
            error(
                out,
                &path,
                format!("address {address:?} is not an IP address or CIDR"),
            );
        } else if address.contains('/') && cidr.is_none() {
            cidr = Some((path, address));
        }
    }
    if let Some((path, address)) = cidr {
        if !matches!(resolution, Some(Resolution::None | Resolution::Static)) {
            error(
                out,
                path,
                format!(
                    "CIDR address {address:?} is allowed only with resolution NONE or STATIC, not {}",
                    spec.resolution.as_deref().unwrap_or("NONE")
                ),
            );
        }
    }
}

fn ports(spec: &ServiceEntrySpec, out: &mut Vec<Finding>) {
    let mut names = HashSet::new();
    let mut numbers = HashSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        match port.number {
            None => error(out, format!("{path}.number"), "port number is missing"),
            Some(number) => {
                if !(1..=65535).contains(&number) {
                    error(
                        out,
                        format!("{path}.number"),
                        format!("port number {number} is outside 1-65535"),
                    );
                } else if !numbers.insert(number) {
                    error(
                        out,
                        format!("{path}.number"),
                        format!("port number {number} is already defined"),
                    );
                }
            }
        }
        match port.name.as_deref() {
            None | Some("") => error(out, format!("{path}.name"), "port name is missing"),
            Some(name) => {
                if !is_dns1123_label(name) {
                    error(
                        out,
                        format!("{path}.name"),
                        format!("port name {name:?} is not a DNS-1123 label"),
                    );
                }
                if !names.insert(name) {
                    error(
                        out,
                        format!("{path}.name"),
                        format!("port name {name:?} is already defined"),
                    );
                }
            }
        }
        if let Some(target) = port.target_port {
            if !(1..=65535).contains(&target) {
                error(
                    out,
                    format!("{path}.targetPort"),
                    format!("target port {target} is outside 1-65535"),
                );
            }
        }
        let protocol = port.protocol.as_deref().unwrap_or("");
        if !protocol.is_empty() && !PROTOCOLS.iter().any(|p| p.eq_ignore_ascii_case(protocol)) {
            error(
                out,
                format!("{path}.protocol"),
                format!("unrecognized protocol {protocol:?}"),
            );
        }
        if spec.addresses.is_empty()
            && (protocol.is_empty() || protocol.eq_ignore_ascii_case("TCP"))
        {
            warning(
                out,
                format!("{path}.protocol"),
                "addresses are required for ports serving TCP (or unset) protocol when DNS auto-allocation is off",
            );
        }
    }
}

fn enums(spec: &ServiceEntrySpec, out: &mut Vec<Finding>) {
    if let Some(value) = spec.resolution.as_deref() {
        if Resolution::parse(Some(value)).is_none() {
            error(
                out,
                "spec.resolution",
                format!(
                    "unknown resolution {value:?}; expected NONE, STATIC, DNS or DNS_ROUND_ROBIN"
                ),
            );
        }
    }
    if let Some(value) = spec.location.as_deref() {
        if crate::model::Location::parse(Some(value)).is_none() {
            error(
                out,
                "spec.location",
                format!("unknown location {value:?}; expected MESH_EXTERNAL or MESH_INTERNAL"),
            );
        }
    }
}

fn workload_selector(spec: &ServiceEntrySpec, out: &mut Vec<Finding>) {
    let Some(selector) = &spec.workload_selector else {
        return;
    };
    if !spec.endpoints.is_empty() {
        error(
            out,
            "spec.workloadSelector",
            "only one of workloadSelector or endpoints may be set",
        );
    }
    if selector.labels.is_empty() {
        warning(
            out,
            "spec.workloadSelector.labels",
            "workloadSelector has no labels and selects nothing",
        );
    }
    for (key, value) in &selector.labels {
        let path = format!("spec.workloadSelector.labels.{key}");
        if key.is_empty() {
            error(out, path, "empty key in workloadSelector labels");
        } else if key.contains('*') || value.contains('*') {
            error(
                out,
                path,
                format!("wildcard in workloadSelector label {key:?}: {value:?} is not allowed"),
            );
        }
    }
}

fn endpoints(spec: &ServiceEntrySpec, resolution: Resolution, out: &mut Vec<Finding>) {
    if spec.endpoints.len() > MAX_ENDPOINTS {
        error(
            out,
            "spec.endpoints",
            format!(
                "{} endpoints; the limit is {MAX_ENDPOINTS}",
                spec.endpoints.len()
            ),
        );
    }
    let declared: HashSet<&str> = spec
        .ports
        .iter()
        .filter_map(|p| p.name.as_deref())
        .collect();
    match resolution {
        Resolution::None => {
            if !spec.endpoints.is_empty() {
                error(
                    out,
                    "spec.endpoints",
                    "no endpoints should be provided for resolution NONE",
                );
            }
        }
        Resolution::Static => {
            for (i, ep) in spec.endpoints.iter().enumerate() {
                let path = format!("spec.endpoints[{i}]");
                static_address(spec, ep, &path, out);
                endpoint_ports_and_labels(ep, &declared, &path, out);
            }
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            if spec.endpoints.is_empty() {
                for (i, host) in spec.hosts.iter().enumerate() {
                    if host.contains('*') || check_fqdn(host).is_err() {
                        error(
                            out,
                            format!("spec.hosts[{i}]"),
                            format!(
                                "host {host:?} must be a fully qualified name when resolution {} has no endpoints",
                                spec.resolution.as_deref().unwrap_or("DNS")
                            ),
                        );
                    }
                }
            }
            if resolution == Resolution::DnsRoundRobin && spec.endpoints.len() > 1 {
                error(
                    out,
                    "spec.endpoints",
                    format!(
                        "resolution DNS_ROUND_ROBIN allows at most one endpoint, found {}",
                        spec.endpoints.len()
                    ),
                );
            }
            for (i, ep) in spec.endpoints.iter().enumerate() {
                let path = format!("spec.endpoints[{i}]");
                match ep.address.as_deref() {
                    None | Some("") => error(
                        out,
                        format!("{path}.address"),
                        "endpoint address is missing",
                    ),
                    Some(address) => {
                        if address.parse::<IpAddr>().is_err() {
                            if let Err(message) = check_fqdn(address) {
                                error(
                                    out,
                                    format!("{path}.address"),
                                    format!("endpoint address {address:?} is neither an IP nor a domain name: {message}"),
                                );
                            }
                        }
                    }
                }
                endpoint_ports_and_labels(ep, &declared, &path, out);
            }
        }
    }
}

fn static_address(spec: &ServiceEntrySpec, ep: &WorkloadEntry, path: &str, out: &mut Vec<Finding>) {
    let address = match ep.address.as_deref() {
        None | Some("") => {
            if ep.network.as_deref().is_some_and(|n| !n.is_empty()) {
                warning(
                    out,
                    format!("{path}.address"),
                    "endpoint has no address; it is reachable only through its network's gateway",
                );
            } else {
                error(
                    out,
                    format!("{path}.address"),
                    "endpoint address is missing (required for resolution STATIC)",
                );
            }
            return;
        }
        Some(address) => address,
    };
    if let Some(socket) = address.strip_prefix("unix://") {
        if socket.is_empty() || !socket.starts_with('/') {
            error(
                out,
                format!("{path}.address"),
                format!("unix address {address:?} must be an absolute path"),
            );
        }
        if ep.ports.as_ref().is_some_and(|ports| !ports.is_empty()) {
            error(
                out,
                format!("{path}.ports"),
                format!("unix address {address:?} cannot have ports"),
            );
        }
        if spec.ports.len() != 1 {
            error(
                out,
                "spec.ports",
                format!(
                    "a unix address endpoint needs exactly one service port, found {}",
                    spec.ports.len()
                ),
            );
        }
    } else if address.parse::<IpAddr>().is_err() {
        error(
            out,
            format!("{path}.address"),
            format!("endpoint address {address:?} is not an IP address (required for resolution STATIC)"),
        );
    }
}

fn endpoint_ports_and_labels(
    ep: &WorkloadEntry,
    declared: &HashSet<&str>,
    path: &str,
    out: &mut Vec<Finding>,
) {
    if let Some(ports) = &ep.ports {
        endpoint_ports(ports, declared, path, out);
    }
    for (key, value) in &ep.labels {
        let label_path = format!("{path}.labels.{key}");
        if let Err(message) = check_label_key(key) {
            error(out, &label_path, message);
        }
        if !is_label_value(value) {
            error(
                out,
                label_path,
                format!("label value {value:?} is invalid (1-63 characters of [A-Za-z0-9-_.], alphanumeric at both ends)"),
            );
        }
    }
}

fn endpoint_ports(
    ports: &BTreeMap<String, i64>,
    declared: &HashSet<&str>,
    path: &str,
    out: &mut Vec<Finding>,
) {
    for (name, number) in ports {
        let port_path = format!("{path}.ports.{name}");
        if !declared.contains(name.as_str()) {
            error(
                out,
                &port_path,
                format!(
                    "endpoint port {name:?} is not a port declared in spec.ports (declared: {})",
                    declared_list(declared)
                ),
            );
        }
        if !(1..=65535).contains(number) {
            error(
                out,
                port_path,
                format!("endpoint port {name:?} has number {number}, outside 1-65535"),
            );
        }
    }
}

pub(crate) fn declared_list(declared: &HashSet<&str>) -> String {
    if declared.is_empty() {
        return "none".to_string();
    }
    let mut names: Vec<&str> = declared.iter().copied().collect();
    names.sort_unstable();
    names.join(", ")
}

fn multi_host(spec: &ServiceEntrySpec, resolution: Resolution, out: &mut Vec<Finding>) {
    if resolution == Resolution::None || spec.hosts.len() <= 1 {
        return;
    }
    for (i, port) in spec.ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("").to_ascii_uppercase();
        let http_or_tls = matches!(
            protocol.as_str(),
            "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTP_PROXY" | "HTTPS" | "TLS"
        );
        if !http_or_tls {
            let shown = if protocol.is_empty() {
                "unset"
            } else {
                &protocol
            };
            error(
                out,
                format!("spec.ports[{i}].protocol"),
                format!(
                    "multiple hosts need HTTP or TLS ports when resolution is not NONE; protocol is {shown}"
                ),
            );
        }
    }
}

fn export_to(se: &ServiceEntry, out: &mut Vec<Finding>) {
    let own = se.key().namespace;
    let list = &se.spec.export_to;
    let mut seen = HashSet::new();
    let mut everywhere = false;
    for (i, entry) in list.iter().enumerate() {
        let path = format!("spec.exportTo[{i}]");
        let valid = matches!(entry.as_str(), "." | "*" | "~") || is_dns1123_label(entry);
        if !valid {
            error(
                out,
                &path,
                format!("exportTo entry {entry:?} is not \".\", \"*\", \"~\" or a namespace name"),
            );
            continue;
        }
        everywhere |= entry == "*" || entry == "~";
        let canonical = if entry == "." { own.as_str() } else { entry };
        if !seen.insert(canonical.to_string()) {
            error(
                out,
                path,
                format!("exportTo entry {entry:?} is listed twice"),
            );
        }
    }
    if everywhere && list.len() > 1 {
        error(
            out,
            "spec.exportTo",
            "\"*\" or \"~\" cannot be combined with other exportTo entries",
        );
    }
}
