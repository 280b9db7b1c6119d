//! Istio's own ServiceEntry validation, as its webhook applies it in Istio 1.28
//! (`pkg/config/validation`: `validateMetadata`, then `ValidateServiceEntry` and everything it
//! calls). Stateless: one object at a time. The rules run in Istio's order and, like Istio,
//! report every finding rather than the first, except where Istio stops early (a forbidden
//! annotation, a bad workload selector, the loops that stop at their first hit).
//!
//! The messages are globalmesh's: each names the field's value, where Istio's sometimes do not.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::finding::{Findings, Rule};
use crate::model::{Location, Resolution, ServiceEntry, ServiceEntrySpec, WorkloadEntry};
use crate::names::{
    check_fqdn, check_istio_label_key, check_wildcard_domain, few_smallest, is_istio_label,
    is_istio_label_value, is_partial_wildcard, Plain, Shown,
};

/// Annotations that Istio's webhook refuses on any object, in the order it checks them.
const FORBIDDEN_ANNOTATIONS: [(&str, &str); 4] = [
    (
        "istio.io/dry-run",
        "is only supported on AuthorizationPolicy; remove it",
    ),
    (
        "internal.istio.io/webhook-always-reject",
        "makes Istio's webhook reject the object",
    ),
    (
        "internal.istio.io/parent-namespace",
        "is internal to Istio and may not be set by users",
    ),
    (
        "internal.istio.io/parents",
        "is internal to Istio and may not be set by users",
    ),
];

/// The label that opts a ServiceEntry out of Istio's VIP auto-allocation.
const AUTOALLOCATE_LABEL: &str = "networking.istio.io/enable-autoallocate-ip";

/// Istio's protocols (`pkg/config/protocol`), matched in any case; empty means sniffing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Grpc,
    GrpcWeb,
    Http,
    HttpProxy,
    Http2,
    Https,
    Tls,
    Mongo,
    Redis,
    Mysql,
}

impl Protocol {
    pub fn parse(value: &str) -> Option<Self> {
        const ALL: [(&str, Protocol); 12] = [
            ("tcp", Protocol::Tcp),
            ("udp", Protocol::Udp),
            ("grpc", Protocol::Grpc),
            ("grpc-web", Protocol::GrpcWeb),
            ("http", Protocol::Http),
            ("http_proxy", Protocol::HttpProxy),
            ("http2", Protocol::Http2),
            ("https", Protocol::Https),
            ("tls", Protocol::Tls),
            ("mongo", Protocol::Mongo),
            ("redis", Protocol::Redis),
            ("mysql", Protocol::Mysql),
        ];
        ALL.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(value))
            .map(|(_, p)| *p)
    }

    /// HTTP, HTTP2, HTTP_PROXY, GRPC, GRPC-Web.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Self::Http | Self::Http2 | Self::HttpProxy | Self::Grpc | Self::GrpcWeb
        )
    }

    /// HTTPS and TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Https | Self::Tls)
    }

    /// Istio's `IsTCP()`: TCP, and the protocols carried over it that Envoy does not parse as
    /// HTTP (HTTPS and TLS included).
    pub fn is_tcp(self) -> bool {
        matches!(
            self,
            Self::Tcp | Self::Https | Self::Tls | Self::Mongo | Self::Redis | Self::Mysql
        )
    }
}

/// Parses an IP address as Go's `netip.ParseAddr` does: IPv4 without leading zeros, IPv6 in
/// any form, IPv6 with a zone (`fe80::1%eth0`, the zone dropped).
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    if !text.as_bytes().contains(&b'%') {
        return text.parse().ok();
    }
    match text.split_once('%') {
        Some((address, zone)) if !zone.is_empty() => {
            address.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        }
        Some(_) => None,
        None => text.parse().ok(),
    }
}

/// Parses an address as Istio does (`agent.ValidateIPSubnet`): with exactly one `/` a CIDR
/// block (host bits allowed, a prefix length of plain digits), otherwise an IP.
pub fn parse_address(address: &str) -> Option<IpNet> {
    // Most addresses are plain IPs: no search for a separator through the str machinery.
    if !address.as_bytes().iter().any(|b| matches!(b, b'/' | b'%')) {
        return address.parse::<IpAddr>().ok().map(IpNet::from);
    }
    let mut parts = address.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ip), Some(length), None) => {
            let ip: IpAddr = ip.parse().ok()?;
            let plain = !length.is_empty()
                && length.bytes().all(|b| b.is_ascii_digit())
                && (length == "0" || !length.starts_with('0'));
            let length: u8 = length.parse().ok().filter(|_| plain)?;
            match ip {
                IpAddr::V4(v4) => Ipv4Net::new(v4, length).ok().map(IpNet::V4),
                IpAddr::V6(v6) => Ipv6Net::new(v6, length).ok().map(IpNet::V6),
            }
        }
        _ => parse_ip(address).map(IpNet::from),
    }
}

pub fn validate(se: &ServiceEntry, out: &mut Findings) {
    if !metadata(se, out) {
        return;
    }
    let spec = &se.spec;
    let resolution = Resolution::parse(spec.resolution.as_deref());
    if !workload_selector(spec, out) {
        return;
    }
    if spec.workload_selector.is_some() && !spec.endpoints().is_empty() {
        error(
            out,
            "spec.workloadSelector",
            "only one of workloadSelector or endpoints may be set",
        );
    }
    hosts(spec, resolution, out);
    addresses(spec, resolution, out);
    ports(se, resolution, out);
    match resolution {
        Some(Resolution::None) => resolution_none(spec, out),
        Some(Resolution::Static) => resolution_static(spec, out),
        Some(Resolution::Dns | Resolution::DnsRoundRobin) => resolution_dns(spec, out),
        Some(Resolution::DynamicDns) => resolution_dynamic_dns(spec, out),
        None => error(
            out,
            "spec.resolution",
            format_args!(
                "unknown resolution {}; expected one of {}",
                Shown(spec.resolution.as_deref().unwrap_or("")),
                Resolution::NAMES.join(", ")
            ),
        ),
    }
    if let Some(value) = spec.location.as_deref() {
        if Location::parse(Some(value)).is_none() {
            error(
                out,
                "spec.location",
                format_args!(
                    "unknown location {}; expected MESH_EXTERNAL or MESH_INTERNAL",
                    Shown(value)
                ),
            );
        }
    }
    multi_host(spec, resolution, out);
    export_to(se, out);
}

fn error(out: &mut Findings, path: impl fmt::Display, message: impl fmt::Display) {
    out.error(Rule::Istio, path, message);
}

fn warning(out: &mut Findings, path: impl fmt::Display, message: impl fmt::Display) {
    out.warning(Rule::Istio, path, message);
}

/// `validateMetadata`: the annotations Istio refuses on every object, by presence. The first
/// one found is the only finding: Istio does not look at the spec then. Returns whether the
/// spec is to be checked.
fn metadata(se: &ServiceEntry, out: &mut Findings) -> bool {
    for (annotation, why) in FORBIDDEN_ANNOTATIONS {
        if se.metadata.annotations.contains_key(annotation) {
            error(
                out,
                format_args!("metadata.annotations.{annotation}"),
                format_args!("annotation {annotation} {why}"),
            );
            return false;
        }
    }
    true
}

/// `ValidateAlphaWorkloadSelector`. Returns false when a label is refused: Istio then stops,
/// without its warnings.
fn workload_selector(spec: &ServiceEntrySpec, out: &mut Findings) -> bool {
    let Some(selector) = &spec.workload_selector else {
        return true;
    };
    let mut refused = false;
    for (key, value) in &selector.labels {
        if key.is_empty() {
            error(
                out,
                format_args!("spec.workloadSelector.labels.{}", Plain(key)),
                format_args!(
                    "empty key is not supported in selector ({}={})",
                    Plain(key),
                    Plain(value)
                ),
            );
            refused = true;
        }
        if key.contains('*') || value.contains('*') {
            error(
                out,
                format_args!("spec.workloadSelector.labels.{}", Plain(key)),
                format_args!(
                    "wildcard is not supported in selector ({}={})",
                    Plain(key),
                    Plain(value)
                ),
            );
            refused = true;
        }
    }
    if refused {
        return false;
    }
    if selector.labels.is_empty() {
        warning(
            out,
            "spec.workloadSelector",
            "workloadSelector has no labels and applies to every workload in the namespace",
        );
    }
    true
}

fn hosts(spec: &ServiceEntrySpec, resolution: Option<Resolution>, out: &mut Findings) {
    if spec.hosts.is_empty() {
        error(
            out,
            "spec.hosts",
            "no hosts: a ServiceEntry needs at least one host",
        );
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        if host == "*" {
            error(
                out,
                format_args!("spec.hosts[{i}]"),
                "invalid host \"*\": a ServiceEntry cannot match every host",
            );
            continue;
        }
        if let Err(message) = check_wildcard_domain(host) {
            error(out, format_args!("spec.hosts[{i}]"), message);
        }
        if resolution != Some(Resolution::DynamicDns) && is_partial_wildcard(host) {
            warning(
                out,
                format_args!("spec.hosts[{i}]"),
                format_args!(
                    "partial wildcard {} not allowed; a wildcard must be the whole first label (*.)",
                    Shown(host)
                ),
            );
        }
    }
}

fn addresses(spec: &ServiceEntrySpec, resolution: Option<Resolution>, out: &mut Findings) {
    for (i, address) in spec.addresses.iter().enumerate() {
        if parse_address(address).is_none() {
            let what = if address.split('/').count() == 2 {
                "a valid CIDR block"
            } else {
                "a valid IP address"
            };
            error(
                out,
                format_args!("spec.addresses[{i}]"),
                format_args!("address {} is not {what}", Shown(address)),
            );
        }
    }
    let cidr = spec.addresses.iter().position(|a| a.contains('/'));
    let allows_cidr = matches!(resolution, Some(Resolution::None | Resolution::Static));
    if let (Some(i), false) = (cidr, allows_cidr) {
        error(
            out,
            format_args!("spec.addresses[{i}]"),
            format_args!(
                "CIDR address {} is allowed only with resolution NONE or STATIC, not {}",
                Shown(spec.addresses.get(i).map_or("", String::as_str)),
                Plain(spec.resolution.as_deref().unwrap_or("NONE"))
            ),
        );
    }
}

/// Whether Istio would allocate a VIP for the entry (`ShouldV2AutoAllocateIPFromConfig`, with
/// `PILOT_ENABLE_IP_AUTOALLOCATE` at its default, on).
fn auto_allocates(se: &ServiceEntry, resolution: Option<Resolution>) -> bool {
    let opted_out = se
        .metadata
        .labels
        .get(AUTOALLOCATE_LABEL)
        .is_some_and(|v| v.eq_ignore_ascii_case("false"));
    resolution != Some(Resolution::None) && !opted_out && se.spec.addresses.is_empty()
}

fn ports(se: &ServiceEntry, resolution: Option<Resolution>, out: &mut Findings) {
    let spec = &se.spec;
    let auto_allocation = auto_allocates(se, resolution);
    let mut names = HashSet::with_capacity(spec.ports.len());
    let mut numbers = HashSet::with_capacity(spec.ports.len());
    for (i, port) in spec.ports.iter().enumerate() {
        let name = port.name.as_deref().unwrap_or("");
        let number = port.number.unwrap_or(0);
        if !names.insert(name) {
            error(
                out,
                format_args!("spec.ports[{i}].name"),
                format_args!("port name {} is already defined", Shown(name)),
            );
        }
        if !numbers.insert(number) {
            error(
                out,
                format_args!("spec.ports[{i}].number"),
                format_args!("port number {number} is already defined"),
            );
        }
        // 0 is proto3's "unset".
        if let Some(target) = port.target_port.filter(|t| *t != 0) {
            if !(1..=65535).contains(&target) {
                error(
                    out,
                    format_args!("spec.ports[{i}].targetPort"),
                    format_args!("target port {target} is outside 1-65535"),
                );
            }
        }
        // Exactly "" or "TCP": Istio compares the string as written.
        let protocol = port.protocol.as_deref().unwrap_or("");
        if spec.addresses.is_empty() && !auto_allocation && matches!(protocol, "" | "TCP") {
            warning(
                out,
                format_args!("spec.ports[{i}].protocol"),
                "addresses are required for ports serving TCP (or unset) protocol when IP auto-allocation is not enabled",
            );
        }
        if !is_istio_label(name) {
            error(
                out,
                format_args!("spec.ports[{i}].name"),
                format_args!(
                    "invalid port name {}: 1-63 letters, digits and '-', alphanumeric at both ends",
                    Shown(name)
                ),
            );
        }
        if !protocol.is_empty() && Protocol::parse(protocol).is_none() {
            error(
                out,
                format_args!("spec.ports[{i}].protocol"),
                format_args!("unsupported protocol {}", Shown(protocol)),
            );
        }
        if !(1..=65535).contains(&number) {
            error(
                out,
                format_args!("spec.ports[{i}].number"),
                format_args!("port number {number} is outside 1-65535"),
            );
        }
    }
}

/// The port names an entry declares, and the text naming a few of them in messages, made at
/// most once per entry however many findings show it.
pub(crate) struct DeclaredPorts<'a> {
    names: HashSet<&'a str>,
    text: OnceCell<String>,
}

impl<'a> DeclaredPorts<'a> {
    pub(crate) fn of(spec: &'a ServiceEntrySpec) -> Self {
        Self {
            names: spec
                .ports
                .iter()
                .filter_map(|p| p.name.as_deref())
                .collect(),
            text: OnceCell::new(),
        }
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

impl fmt::Display for DeclaredPorts<'_> {
    /// The smallest few names in order, and how many more: `http1, http2 and 3998 more`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            self.text
                .get_or_init(|| few_smallest(self.names.iter().copied())),
        )
    }
}

fn resolution_none(spec: &ServiceEntrySpec, out: &mut Findings) {
    if !spec.endpoints().is_empty() {
        error(
            out,
            "spec.endpoints",
            "no endpoints should be provided for resolution NONE",
        );
    }
    if spec.workload_selector.is_some() {
        warning(
            out,
            "spec.workloadSelector",
            "workloadSelector should not be set when resolution is NONE",
        );
    }
}

fn resolution_static(spec: &ServiceEntrySpec, out: &mut Findings) {
    let declared = DeclaredPorts::of(spec);
    for (i, ep) in spec.endpoints().iter().enumerate() {
        static_endpoint(ep, &declared, i, out);
    }
}

/// `validateWorkloadEntry` for an endpoint of a STATIC entry.
fn static_endpoint(ep: &WorkloadEntry, declared: &DeclaredPorts, i: usize, out: &mut Findings) {
    let address = ep.address.as_deref().unwrap_or("");
    if address.is_empty() {
        match ep.network.as_deref().filter(|n| !n.is_empty()) {
            None => {
                error(
                    out,
                    format_args!("spec.endpoints[{i}].address"),
                    "endpoint address is missing (required for resolution STATIC unless a network is set)",
                );
                return;
            }
            Some(network) => warning(
                out,
                format_args!("spec.endpoints[{i}].address"),
                format_args!(
                    "endpoint has no address; it is reachable only through network {}'s gateway",
                    Shown(network)
                ),
            ),
        }
    }
    let unix = address.strip_prefix("unix://");
    if let Some(socket) = unix {
        if socket.is_empty() {
            error(
                out,
                format_args!("spec.endpoints[{i}].address"),
                "unix address must not be empty",
            );
        } else if !socket.starts_with('@') && (!socket.starts_with('/') || socket.ends_with('/')) {
            error(
                out,
                format_args!("spec.endpoints[{i}].address"),
                format_args!(
                    "unix address {} is not an absolute path to a file",
                    Shown(address)
                ),
            );
        }
        if ep.ports.as_ref().is_some_and(|ports| !ports.is_empty()) {
            error(
                out,
                format_args!("spec.endpoints[{i}].ports"),
                format_args!("unix endpoint {} must not include ports", Shown(address)),
            );
        }
    } else if !address.is_empty() && parse_ip(address).is_none() {
        error(
            out,
            format_args!("spec.endpoints[{i}].address"),
            format_args!(
                "endpoint address {} is not an IP address (required for resolution STATIC)",
                Shown(address)
            ),
        );
    }
    endpoint_ports(ep, declared, i, out);
    endpoint_labels(ep, i, out);
    if unix.is_some() && declared.len() != 1 {
        error(
            out,
            "spec.ports",
            format_args!(
                "a unix endpoint needs exactly one service port, found {}",
                declared.len()
            ),
        );
    }
}

fn endpoint_ports(ep: &WorkloadEntry, declared: &DeclaredPorts, i: usize, out: &mut Findings) {
    let Some(ports) = &ep.ports else {
        return;
    };
    for (name, number) in ports {
        if !declared.contains(name.as_str()) {
            error(
                out,
                format_args!("spec.endpoints[{i}].ports.{}", Plain(name)),
                format_args!(
                    "endpoint port {} is not a port declared in spec.ports (declared: {})",
                    Shown(name),
                    declared
                ),
            );
        }
        if !is_istio_label(name) {
            error(
                out,
                format_args!("spec.endpoints[{i}].ports.{}", Plain(name)),
                format_args!("invalid port name {}", Shown(name)),
            );
        }
        if !(1..=65535).contains(number) {
            error(
                out,
                format_args!("spec.endpoints[{i}].ports.{}", Plain(name)),
                format_args!(
                    "endpoint port {} has number {number}, outside 1-65535",
                    Shown(name)
                ),
            );
        }
    }
}

fn endpoint_labels(ep: &WorkloadEntry, i: usize, out: &mut Findings) {
    for (key, value) in &ep.labels {
        if let Err(message) = check_istio_label_key(key) {
            error(
                out,
                format_args!("spec.endpoints[{i}].labels.{}", Plain(key)),
                message,
            );
        }
        if !is_istio_label_value(value) {
            error(
                out,
                format_args!("spec.endpoints[{i}].labels.{}", Plain(key)),
                format_args!(
                    "label value {} is invalid ([A-Za-z0-9-_.], alphanumeric at both ends)",
                    Shown(value)
                ),
            );
        }
    }
}

fn resolution_dns(spec: &ServiceEntrySpec, out: &mut Findings) {
    let resolution = spec.resolution.as_deref().unwrap_or("DNS");
    let endpoints = spec.endpoints();
    if endpoints.is_empty() {
        // Istio reports the first such host only.
        let bad = spec
            .hosts
            .iter()
            .enumerate()
            .find_map(|(i, host)| check_fqdn(host).err().map(|e| (i, host, e)));
        if let Some((i, host, reason)) = bad {
            error(
                out,
                format_args!("spec.hosts[{i}]"),
                format_args!(
                    "host {} must be a fully qualified name (no wildcard) when resolution {resolution} has no endpoints: {reason}",
                    Shown(host)
                ),
            );
        }
    }
    if spec.resolution.as_deref() == Some("DNS_ROUND_ROBIN") && endpoints.len() > 1 {
        error(
            out,
            "spec.endpoints",
            format_args!(
                "resolution DNS_ROUND_ROBIN allows at most one endpoint, found {}",
                endpoints.len()
            ),
        );
    }
    let declared = DeclaredPorts::of(spec);
    for (i, ep) in endpoints.iter().enumerate() {
        let address = ep.address.as_deref().unwrap_or("");
        if parse_ip(address).is_none() {
            if let Err(reason) = check_fqdn(address) {
                error(
                    out,
                    format_args!("spec.endpoints[{i}].address"),
                    format_args!(
                        "endpoint address {} is neither an IP address nor a domain name: {reason}",
                        Shown(address)
                    ),
                );
            }
        }
        endpoint_labels(ep, i, out);
        endpoint_ports(ep, &declared, i, out);
    }
    if !spec.addresses.is_empty() && spec.hosts.len() > 1 {
        let tcp = spec.ports.iter().position(|p| {
            Protocol::parse(p.protocol.as_deref().unwrap_or("")).is_some_and(Protocol::is_tcp)
        });
        if let Some(i) = tcp {
            warning(
                out,
                format_args!("spec.ports[{i}].protocol"),
                "a ServiceEntry with addresses and a TCP port (TCP, TLS, HTTPS, Mongo, Redis or MySQL) should have one host: several hosts share the addresses",
            );
        }
    }
}

fn resolution_dynamic_dns(spec: &ServiceEntrySpec, out: &mut Findings) {
    if spec.hosts.is_empty() {
        error(
            out,
            "spec.hosts",
            "at least one wildcard host must be provided for resolution DYNAMIC_DNS",
        );
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        if !host.starts_with('*') {
            error(
                out,
                format_args!("spec.hosts[{i}]"),
                format_args!(
                    "host {} must be a wildcard (start with *) for resolution DYNAMIC_DNS",
                    Shown(host)
                ),
            );
        }
    }
    if !spec.addresses.is_empty() {
        error(
            out,
            "spec.addresses",
            "addresses cannot be set for resolution DYNAMIC_DNS: routes are generated from the hosts",
        );
    }
    if !spec.endpoints().is_empty() {
        error(
            out,
            "spec.endpoints",
            "endpoints cannot be set for resolution DYNAMIC_DNS: the destination is resolved from the host of each request",
        );
    }
    for (i, port) in spec.ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("");
        if Protocol::parse(protocol) != Some(Protocol::Http) {
            error(
                out,
                format_args!("spec.ports[{i}].protocol"),
                format_args!(
                    "only protocol HTTP is supported for resolution DYNAMIC_DNS, not {}",
                    Shown(protocol)
                ),
            );
        }
    }
    if Location::parse(spec.location.as_deref()) != Some(Location::MeshExternal) {
        error(
            out,
            "spec.location",
            format_args!(
                "location must be MESH_EXTERNAL for resolution DYNAMIC_DNS, not {}",
                Shown(spec.location.as_deref().unwrap_or(""))
            ),
        );
    }
}

/// Several hosts share the entry's ports: Envoy can tell them apart only by HTTP's Host or
/// TLS's SNI. Istio reports the first port that is neither.
fn multi_host(spec: &ServiceEntrySpec, resolution: Option<Resolution>, out: &mut Findings) {
    if resolution == Some(Resolution::None) || spec.hosts.len() <= 1 {
        return;
    }
    let bad = spec.ports.iter().enumerate().find(|(_, port)| {
        !Protocol::parse(port.protocol.as_deref().unwrap_or(""))
            .is_some_and(|p| p.is_http() || p.is_tls())
    });
    if let Some((i, port)) = bad {
        let protocol = port.protocol.as_deref().filter(|p| !p.is_empty());
        error(
            out,
            format_args!("spec.ports[{i}].protocol"),
            format_args!(
                "multiple hosts need HTTP or TLS ports when resolution is not NONE; protocol is {}",
                Plain(protocol.unwrap_or("unset"))
            ),
        );
    }
}

/// `validateExportTo` for a ServiceEntry: `.` is the entry's own namespace, `~` is allowed (no
/// one), and neither `*` nor `~` goes with anything else.
fn export_to(se: &ServiceEntry, out: &mut Findings) {
    let own = se.key().namespace;
    let list = &se.spec.export_to;
    let mut seen: HashSet<&str> = HashSet::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let key = if entry == "." { own.as_str() } else { entry };
        if seen.contains(key) {
            let message = if entry == "." {
                format!("exportTo \".\" is the entry's own namespace {own}, listed already")
            } else {
                format!("exportTo entry {} is listed twice", Shown(entry))
            };
            error(out, format_args!("spec.exportTo[{i}]"), message);
            continue;
        }
        if key == "~" || key == "*" || key == "." || is_istio_label(key) {
            seen.insert(key);
        } else {
            error(
                out,
                format_args!("spec.exportTo[{i}]"),
                format_args!(
                    "exportTo entry {} is not \".\", \"*\", \"~\" or a namespace name",
                    Shown(entry)
                ),
            );
        }
    }
    if list.len() > 1 {
        if seen.contains("*") {
            error(
                out,
                "spec.exportTo",
                "\"*\" (everyone) cannot be combined with other exportTo entries",
            );
        }
        if seen.contains("~") {
            error(
                out,
                "spec.exportTo",
                "\"~\" (no one) cannot be combined with other exportTo entries",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Finding, Severity};
    use crate::model::{ServicePort, WorkloadSelector};
    use crate::rules::seed_entry;

    fn istio(se: &ServiceEntry) -> Vec<Finding> {
        let mut out = Findings::new();
        validate(se, &mut out);
        out.into_vec()
    }

    /// Applies `change` to the seed entry and returns Istio's findings.
    fn with(change: impl FnOnce(&mut ServiceEntrySpec)) -> Vec<Finding> {
        let mut se = seed_entry();
        change(&mut se.spec);
        istio(&se)
    }

    fn endpoint(s: &mut ServiceEntrySpec) -> &mut WorkloadEntry {
        &mut s.endpoint_list.as_mut().unwrap()[0]
    }

    fn assert_finding(found: &[Finding], severity: Severity, path: &str, needle: &str) {
        assert!(
            found
                .iter()
                .any(|f| f.severity == severity && f.path == path && f.message.contains(needle)),
            "expected {severity} at {path} containing {needle:?}, got {found:#?}"
        );
    }

    fn port(name: &str, number: i64, protocol: &str) -> ServicePort {
        ServicePort {
            number: Some(number),
            protocol: Some(protocol.into()),
            name: Some(name.into()),
            target_port: None,
        }
    }

    #[test]
    fn seed_passes_istio_rules() {
        assert_eq!(istio(&seed_entry()), vec![]);
    }

    #[test]
    fn parses_addresses_as_go_does() {
        assert!(parse_ip("fe80::1%eth0").is_some());
        assert!(parse_ip("fe80::1%").is_none());
        assert!(parse_ip("10.0.0.1%eth0").is_none());
        assert!(parse_ip("01.2.3.4").is_none());
        assert!(parse_ip("::ffff:1.2.3.4").is_some());
        assert!(parse_ip("[::1]").is_none());
        assert!(parse_address("172.1.2.16/16").is_some());
        assert!(parse_address("10.0.0.0/08").is_none());
        assert!(parse_address("10.0.0.0/+8").is_none());
        assert!(parse_address("10.0.0.0/33").is_none());
        assert!(parse_address("fe80::1%eth0/64").is_none());
        assert!(parse_address("a/b/c").is_none());
        assert_eq!(parse_address("10.0.0.0/0").map(|n| n.prefix_len()), Some(0));
    }

    #[test]
    fn forbidden_annotations_stop_the_checks() {
        let mut se = seed_entry();
        se.spec.hosts.clear();
        se.metadata
            .annotations
            .insert("internal.istio.io/parents".into(), "".into());
        let found = istio(&se);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_finding(
            &found,
            Severity::Error,
            "metadata.annotations.internal.istio.io/parents",
            "may not be set by users",
        );
    }

    #[test]
    fn hosts_are_required_and_not_a_bare_wildcard() {
        assert_finding(
            &with(|s| s.hosts.clear()),
            Severity::Error,
            "spec.hosts",
            "no hosts",
        );
        assert_finding(
            &with(|s| s.hosts = vec!["*".into()]),
            Severity::Error,
            "spec.hosts[0]",
            "\"*\"",
        );
        assert_eq!(with(|s| s.hosts = vec!["*.bar.global".into()]), vec![]);
        // Istio does not look for repeated hosts.
        assert!(
            with(|s| s.hosts = vec!["a.global".into(), "a.global".into()])
                .iter()
                .all(|f| !f.message.contains("twice"))
        );
    }

    #[test]
    fn host_labels_and_top_level_domain_are_checked() {
        assert_finding(
            &with(|s| s.hosts = vec!["a_b.global".into()]),
            Severity::Error,
            "spec.hosts[0]",
            "\"a_b\"",
        );
        assert_finding(
            &with(|s| s.hosts = vec!["foo.123".into()]),
            Severity::Error,
            "spec.hosts[0]",
            "all-numeric",
        );
        assert_finding(
            &with(|s| s.hosts = vec!["foo*.bar.global".into()]),
            Severity::Error,
            "spec.hosts[0]",
            "foo*",
        );
        assert_finding(
            &with(|s| s.hosts = vec!["*foo.bar.global".into()]),
            Severity::Warning,
            "spec.hosts[0]",
            "partial wildcard",
        );
    }

    #[test]
    fn addresses_must_be_ips_or_cidrs() {
        assert_finding(
            &with(|s| s.addresses = vec!["127.255.0.300".into()]),
            Severity::Error,
            "spec.addresses[0]",
            "127.255.0.300",
        );
        assert_finding(
            &with(|s| s.addresses = vec!["10.0.0.0/40".into()]),
            Severity::Error,
            "spec.addresses[0]",
            "not a valid CIDR block",
        );
        assert_eq!(with(|s| s.addresses = vec!["2001:db8::1".into()]), vec![]);
    }

    #[test]
    fn cidr_needs_resolution_none_or_static() {
        assert_finding(
            &with(|s| s.addresses = vec!["127.255.0.0/24".into()]),
            Severity::Error,
            "spec.addresses[0]",
            "not DNS",
        );
        let static_ok = with(|s| {
            s.addresses = vec!["127.255.0.0/24".into()];
            s.resolution = Some("STATIC".into());
        });
        assert!(
            static_ok.iter().all(|f| f.path != "spec.addresses[0]"),
            "{static_ok:#?}"
        );
    }

    #[test]
    fn ports_need_a_number_and_a_unique_label_name() {
        assert_finding(
            &with(|s| s.ports[0].number = None),
            Severity::Error,
            "spec.ports[0].number",
            "port number 0",
        );
        assert_finding(
            &with(|s| s.ports[0].number = Some(70000)),
            Severity::Error,
            "spec.ports[0].number",
            "70000",
        );
        assert_finding(
            &with(|s| s.ports[0].name = Some("HTTP_1".into())),
            Severity::Error,
            "spec.ports[0].name",
            "HTTP_1",
        );
        // Istio's labels take either case.
        assert!(with(|s| {
            s.ports[0].name = Some("HTTP-1".into());
            endpoint(s).ports = Some([("HTTP-1".to_string(), 15443)].into_iter().collect());
        })
        .is_empty());
        assert_finding(
            &with(|s| s.ports[0].name = None),
            Severity::Error,
            "spec.ports[0].name",
            "invalid port name \"\"",
        );
        assert_finding(
            &with(|s| s.ports.push(port("http1", 9000, "HTTP"))),
            Severity::Error,
            "spec.ports[1].name",
            "already defined",
        );
        assert_finding(
            &with(|s| s.ports.push(port("http2", 8000, "HTTP"))),
            Severity::Error,
            "spec.ports[1].number",
            "8000 is already defined",
        );
        assert_finding(
            &with(|s| s.ports[0].target_port = Some(70000)),
            Severity::Error,
            "spec.ports[0].targetPort",
            "target port 70000",
        );
        // 0 is "unset" to Istio (the CRD refuses it).
        assert_eq!(with(|s| s.ports[0].target_port = Some(0)), vec![]);
        assert_eq!(with(|s| s.ports[0].target_port = Some(80)), vec![]);
    }

    #[test]
    fn protocol_must_be_known_in_any_case() {
        assert_finding(
            &with(|s| s.ports[0].protocol = Some("QUIC".into())),
            Severity::Error,
            "spec.ports[0].protocol",
            "QUIC",
        );
        assert_eq!(
            with(|s| s.ports[0].protocol = Some("grpc-web".into())),
            vec![]
        );
        assert_eq!(with(|s| s.ports[0].protocol = Some("Mongo".into())), vec![]);
        assert_eq!(with(|s| s.ports[0].protocol = Some("udp".into())), vec![]);
    }

    #[test]
    fn tcp_port_without_addresses_warns_only_without_auto_allocation() {
        let no_addresses = |resolution: &'static str, protocol: &'static str| {
            with(move |s| {
                s.addresses.clear();
                s.resolution = Some(resolution.into());
                s.endpoint_list = None;
                s.ports[0].protocol = Some(protocol.into());
            })
        };
        // DNS: Istio allocates a VIP itself.
        assert!(no_addresses("DNS", "TCP").is_empty());
        assert_finding(
            &no_addresses("NONE", "TCP"),
            Severity::Warning,
            "spec.ports[0].protocol",
            "addresses are required",
        );
        // Istio compares the text exactly.
        assert!(no_addresses("NONE", "tcp").is_empty());
        let mut se = seed_entry();
        se.spec.addresses.clear();
        se.spec.ports[0].protocol = None;
        se.metadata
            .labels
            .insert(AUTOALLOCATE_LABEL.into(), "False".into());
        assert_finding(
            &istio(&se),
            Severity::Warning,
            "spec.ports[0].protocol",
            "auto-allocation",
        );
    }

    #[test]
    fn workload_selector_rules() {
        let selector = |labels: &[(&str, &str)]| WorkloadSelector {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert_finding(
            &with(|s| s.workload_selector = Some(selector(&[("app", "x")]))),
            Severity::Error,
            "spec.workloadSelector",
            "only one of",
        );
        let no_endpoints = |labels: &'static [(&'static str, &'static str)]| {
            with(move |s| {
                s.endpoint_list = None;
                s.resolution = Some("STATIC".into());
                s.workload_selector = Some(selector(labels));
            })
        };
        assert_finding(
            &no_endpoints(&[]),
            Severity::Warning,
            "spec.workloadSelector",
            "no labels",
        );
        let found = no_endpoints(&[("", "x")]);
        assert_finding(
            &found,
            Severity::Error,
            "spec.workloadSelector.labels.",
            "empty key",
        );
        assert_eq!(
            found.len(),
            1,
            "a bad selector stops Istio's checks: {found:#?}"
        );
        assert_finding(
            &no_endpoints(&[("app", "*")]),
            Severity::Error,
            "spec.workloadSelector.labels.app",
            "wildcard",
        );
        assert!(no_endpoints(&[("app", "x")]).is_empty());
        let none = with(|s| {
            s.endpoint_list = None;
            s.resolution = Some("NONE".into());
            s.workload_selector = Some(selector(&[("app", "x")]));
        });
        assert_finding(
            &none,
            Severity::Warning,
            "spec.workloadSelector",
            "should not be set when resolution is NONE",
        );
    }

    #[test]
    fn resolution_none_forbids_endpoints() {
        assert_finding(
            &with(|s| s.resolution = Some("NONE".into())),
            Severity::Error,
            "spec.endpoints",
            "resolution NONE",
        );
        assert_finding(
            &with(|s| s.resolution = None),
            Severity::Error,
            "spec.endpoints",
            "resolution NONE",
        );
    }

    #[test]
    fn static_endpoints_need_ip_addresses() {
        let stat = |change: fn(&mut WorkloadEntry)| {
            with(move |s| {
                s.resolution = Some("STATIC".into());
                change(endpoint(s));
            })
        };
        assert!(stat(|_| {}).is_empty());
        assert!(stat(|e| e.address = Some("fe80::1%eth0".into())).is_empty());
        assert_finding(
            &stat(|e| e.address = Some("gw.example.com".into())),
            Severity::Error,
            "spec.endpoints[0].address",
            "gw.example.com",
        );
        assert_finding(
            &stat(|e| e.address = None),
            Severity::Error,
            "spec.endpoints[0].address",
            "missing",
        );
        assert_finding(
            &stat(|e| {
                e.address = None;
                e.network = Some("net2".into());
            }),
            Severity::Warning,
            "spec.endpoints[0].address",
            "network",
        );
        assert_finding(
            &stat(|e| {
                e.address = Some("unix://relative".into());
                e.ports = None;
            }),
            Severity::Error,
            "spec.endpoints[0].address",
            "absolute path",
        );
        assert_finding(
            &stat(|e| e.address = Some("unix:///sock".into())),
            Severity::Error,
            "spec.endpoints[0].ports",
            "must not include ports",
        );
        assert!(stat(|e| {
            e.address = Some("unix:///sock".into());
            e.ports = None;
        })
        .is_empty());
        assert!(stat(|e| {
            e.address = Some("unix://@abstract".into());
            e.ports = None;
        })
        .is_empty());
    }

    #[test]
    fn dns_without_endpoints_needs_fqdn_hosts() {
        assert_finding(
            &with(|s| {
                s.endpoint_list = None;
                s.hosts = vec!["*.bar.global".into()];
            }),
            Severity::Error,
            "spec.hosts[0]",
            "fully qualified",
        );
        assert!(with(|s| s.endpoint_list = None).is_empty());
    }

    #[test]
    fn dns_round_robin_allows_one_endpoint() {
        let found = with(|s| {
            s.resolution = Some("DNS_ROUND_ROBIN".into());
            let ep = endpoint(s).clone();
            s.endpoint_list.as_mut().unwrap().push(ep);
        });
        assert_finding(&found, Severity::Error, "spec.endpoints", "DNS_ROUND_ROBIN");
        assert!(with(|s| s.resolution = Some("DNS_ROUND_ROBIN".into())).is_empty());
    }

    #[test]
    fn dns_endpoint_address_must_be_ip_or_name() {
        assert_finding(
            &with(|s| endpoint(s).address = Some("gw_1.example".into())),
            Severity::Error,
            "spec.endpoints[0].address",
            "gw_1.example",
        );
        assert_finding(
            &with(|s| endpoint(s).address = None),
            Severity::Error,
            "spec.endpoints[0].address",
            "neither",
        );
        assert!(with(|s| endpoint(s).address = Some("gw.cluster2.example.com".into())).is_empty());
    }

    #[test]
    fn dns_with_addresses_warns_of_several_hosts_on_a_tcp_port() {
        let found = with(|s| {
            s.hosts.push("other.bar.global".into());
            s.ports[0].protocol = Some("TLS".into());
        });
        assert_finding(
            &found,
            Severity::Warning,
            "spec.ports[0].protocol",
            "should have one host",
        );
        assert!(found.iter().all(Finding::is_error).then_some(()).is_none());
    }

    #[test]
    fn dynamic_dns_has_rules_of_its_own() {
        let dynamic = |change: fn(&mut ServiceEntrySpec)| {
            with(move |s| {
                s.resolution = Some("DYNAMIC_DNS".into());
                s.hosts = vec!["*.example.com".into()];
                s.addresses.clear();
                s.endpoint_list = None;
                s.location = None;
                change(s);
            })
        };
        assert!(dynamic(|_| {}).is_empty());
        // No partial-wildcard warning for DYNAMIC_DNS.
        assert!(dynamic(|s| s.hosts = vec!["*foo.example.com".into()]).is_empty());
        assert_finding(
            &dynamic(|s| s.hosts = vec!["api.example.com".into()]),
            Severity::Error,
            "spec.hosts[0]",
            "must be a wildcard",
        );
        assert_finding(
            &dynamic(|s| s.addresses = vec!["240.0.0.1".into()]),
            Severity::Error,
            "spec.addresses",
            "DYNAMIC_DNS",
        );
        assert_finding(
            &dynamic(|s| s.ports[0].protocol = Some("HTTPS".into())),
            Severity::Error,
            "spec.ports[0].protocol",
            "only protocol HTTP",
        );
        assert_finding(
            &dynamic(|s| s.location = Some("MESH_INTERNAL".into())),
            Severity::Error,
            "spec.location",
            "MESH_EXTERNAL",
        );
    }

    #[test]
    fn endpoint_ports_must_be_declared_and_in_range() {
        let found = with(|s| {
            endpoint(s).ports = Some([("tcp".to_string(), 15443)].into_iter().collect());
        });
        assert_finding(
            &found,
            Severity::Error,
            "spec.endpoints[0].ports.tcp",
            "declared: http1",
        );
        let found = with(|s| {
            endpoint(s).ports = Some([("http1".to_string(), 0)].into_iter().collect());
        });
        assert_finding(
            &found,
            Severity::Error,
            "spec.endpoints[0].ports.http1",
            "outside 1-65535",
        );
    }

    #[test]
    fn messages_list_a_handful_of_declared_ports() {
        let found = with(|s| {
            s.ports = (0..4000)
                .map(|i| port(&format!("p{i}"), i + 1, "HTTP"))
                .collect();
            endpoint(s).ports = Some([("nope".to_string(), 15443)].into_iter().collect());
        });
        let finding = found
            .iter()
            .find(|f| f.path == "spec.endpoints[0].ports.nope")
            .unwrap();
        assert!(
            finding.message.contains("and 3995 more"),
            "{}",
            finding.message
        );
        assert!(finding.message.len() < 300, "{}", finding.message);
    }

    #[test]
    fn endpoint_labels_must_be_valid_as_istio_reads_them() {
        let found = with(|s| {
            endpoint(s).labels.insert("cluster".into(), "-bad".into());
        });
        assert_finding(
            &found,
            Severity::Error,
            "spec.endpoints[0].labels.cluster",
            "\"-bad\"",
        );
        let found = with(|s| {
            endpoint(s).labels.insert("a/b/c".into(), "x".into());
        });
        assert_finding(
            &found,
            Severity::Error,
            "spec.endpoints[0].labels.a/b/c",
            "a/b/c",
        );
        // Istio sets no length limit on values.
        assert!(with(|s| {
            endpoint(s).labels.insert("cluster".into(), "c".repeat(100));
        })
        .is_empty());
    }

    #[test]
    fn multiple_hosts_need_http_or_tls_ports() {
        let two_hosts = |protocol: &'static str| {
            with(move |s| {
                s.hosts.push("other.bar.global".into());
                s.ports[0].protocol = Some(protocol.into());
            })
        };
        assert_finding(
            &two_hosts("TCP"),
            Severity::Error,
            "spec.ports[0].protocol",
            "TCP",
        );
        assert_finding(
            &two_hosts(""),
            Severity::Error,
            "spec.ports[0].protocol",
            "unset",
        );
        assert!(two_hosts("TLS").iter().all(|f| !f.is_error()));
        assert!(two_hosts("http").is_empty());
    }

    #[test]
    fn export_to_rules() {
        let export = |list: &[&str]| {
            let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            with(move |s| s.export_to = list)
        };
        assert!(export(&[".", "bar"]).is_empty());
        assert!(export(&["*"]).is_empty());
        assert!(export(&["~"]).is_empty());
        assert!(export(&["Bar"]).is_empty());
        assert_finding(
            &export(&["foo", "."]),
            Severity::Error,
            "spec.exportTo[1]",
            "own namespace foo",
        );
        assert_finding(
            &export(&[".", "foo"]),
            Severity::Error,
            "spec.exportTo[1]",
            "listed twice",
        );
        assert_finding(
            &export(&["Bad_NS"]),
            Severity::Error,
            "spec.exportTo[0]",
            "Bad_NS",
        );
        assert_finding(
            &export(&["*", "bar"]),
            Severity::Error,
            "spec.exportTo",
            "cannot be combined",
        );
        assert_finding(
            &export(&["*", "*"]),
            Severity::Error,
            "spec.exportTo",
            "cannot be combined",
        );
        assert_finding(
            &export(&["~", "."]),
            Severity::Error,
            "spec.exportTo",
            "cannot be combined",
        );
    }

    #[test]
    fn unchecked_fields_stay_unchecked() {
        assert!(with(|s| {
            s.subject_alt_names = vec!["anything at all".into()];
            endpoint(s).weight = Some(-5);
            endpoint(s).locality = Some("??".into());
            endpoint(s).service_account = Some("x y".into());
        })
        .is_empty());
    }
}
