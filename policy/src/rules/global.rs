//! The `.global` rules of gateway-connected clusters, for every ServiceEntry with a host under
//! the domain suffix: host form, VIPs, and endpoints that point at the remote gateway.

use std::collections::HashSet;

use ipnet::IpNet;

use crate::finding::{Finding, Rule};
use crate::model::{Location, Resolution, ServiceEntry};
use crate::names::is_dns1123_label;
use crate::options::Options;
use crate::rules::istio::{declared_list, parse_address};

/// Whether any host of the entry lies under the domain suffix.
pub fn is_global(se: &ServiceEntry, options: &Options) -> bool {
    se.spec.hosts.iter().any(|h| options.is_under_suffix(h))
}

pub fn validate(se: &ServiceEntry, options: &Options, out: &mut Vec<Finding>) {
    if !is_global(se, options) {
        return;
    }
    hosts(se, options, out);
    addresses(se, options, out);
    endpoints(se, options, out);
    mode(se, options, out);
}

fn hosts(se: &ServiceEntry, options: &Options, out: &mut Vec<Finding>) {
    let suffix = &options.domain_suffix;
    for (i, host) in se.spec.hosts.iter().enumerate() {
        if !options.is_under_suffix(host) {
            continue;
        }
        let trimmed = host.strip_suffix('.').unwrap_or(host);
        let head = trimmed
            .get(..trimmed.len().saturating_sub(suffix.len() + 1))
            .unwrap_or("");
        let labels: Vec<&str> = head.split('.').collect();
        let ok = labels.len() == 2 && labels.iter().all(|label| is_dns1123_label(label));
        if !ok {
            out.push(Finding::error(
                Rule::GlobalHost,
                format!("spec.hosts[{i}]"),
                format!(
                    "host {host:?} is not of the form <name>.<namespace>.{suffix} (two lowercase DNS-1123 labels before .{suffix}, such as httpbin.bar.{suffix})"
                ),
            ));
        }
    }
}

fn addresses(se: &ServiceEntry, options: &Options, out: &mut Vec<Finding>) {
    let spec = &se.spec;
    if spec.addresses.is_empty() {
        out.push(Finding::error(
            Rule::GlobalAddress,
            "spec.addresses",
            format!(
                "no addresses: a .{} host needs a VIP (such as 127.255.0.2) that its name resolves to and the sidecar captures",
                options.domain_suffix
            ),
        ));
        return;
    }
    for (i, address) in spec.addresses.iter().enumerate() {
        let path = format!("spec.addresses[{i}]");
        // Istio's rules already report addresses that do not parse.
        let Some(net) = parse_address(address) else {
            continue;
        };
        if net.prefix_len() != net.max_prefix_len() {
            out.push(Finding::error(
                Rule::GlobalAddress,
                path,
                format!(
                    "address {address:?} is a range; a .{} host needs single IP addresses (a /{} at most)",
                    options.domain_suffix,
                    net.max_prefix_len()
                ),
            ));
            continue;
        }
        if !options.vip_ranges.iter().any(|range| range.contains(&net)) {
            out.push(Finding::warning(
                Rule::GlobalAddress,
                path,
                format!(
                    "address {address} is outside the VIP ranges ({})",
                    ranges_text(&options.vip_ranges)
                ),
            ));
        }
    }
}

fn ranges_text(ranges: &[IpNet]) -> String {
    let parts: Vec<String> = ranges.iter().map(IpNet::to_string).collect();
    if parts.is_empty() {
        "none configured".to_string()
    } else {
        parts.join(", ")
    }
}

fn endpoints(se: &ServiceEntry, options: &Options, out: &mut Vec<Finding>) {
    let spec = &se.spec;
    let declared: HashSet<&str> = spec
        .ports
        .iter()
        .filter_map(|p| p.name.as_deref())
        .collect();
    // Istio's rules check endpoint port names under STATIC and DNS resolution already.
    let istio_checks_names = matches!(
        Resolution::parse(spec.resolution.as_deref()),
        Some(Resolution::Static | Resolution::Dns | Resolution::DnsRoundRobin)
    );
    let gateway = options.gateway_ports_text();
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let path = format!("spec.endpoints[{i}]");
        let Some(ports) = &ep.ports else {
            out.push(Finding::error(
                Rule::GatewayPort,
                format!("{path}.ports"),
                format!(
                    "endpoint {} has no ports map, so traffic goes to the service port instead of the gateway; add ports: {{<port name>: {gateway}}}",
                    ep.address.as_deref().unwrap_or("(no address)")
                ),
            ));
            continue;
        };
        if ports.is_empty() {
            out.push(Finding::error(
                Rule::GatewayPort,
                format!("{path}.ports"),
                format!("endpoint ports map is empty; map each declared port name to {gateway}"),
            ));
        }
        for (name, number) in ports {
            let port_path = format!("{path}.ports.{name}");
            if !istio_checks_names && !declared.contains(name.as_str()) {
                out.push(Finding::error(
                    Rule::GatewayPort,
                    &port_path,
                    format!(
                        "endpoint port {name:?} is not a port declared in spec.ports (declared: {})",
                        declared_list(&declared)
                    ),
                ));
            }
            let is_gateway = u16::try_from(*number)
                .map(|n| options.gateway_ports.contains(&n))
                .unwrap_or(false);
            if !is_gateway {
                out.push(Finding::error(
                    Rule::GatewayPort,
                    port_path,
                    format!(
                        "port {number} is not the gateway port {gateway}; set {name}: {gateway}"
                    ),
                ));
            }
        }
    }
}

fn mode(se: &ServiceEntry, options: &Options, out: &mut Vec<Finding>) {
    let spec = &se.spec;
    let suffix = &options.domain_suffix;
    if Resolution::parse(spec.resolution.as_deref()) != Some(Resolution::Dns) {
        out.push(Finding::warning(
            Rule::GlobalMode,
            "spec.resolution",
            format!(
                "resolution is {}; .{suffix} entries normally use DNS so that gateway addresses may be names",
                spec.resolution.as_deref().unwrap_or("unset (NONE)")
            ),
        ));
    }
    if Location::parse(spec.location.as_deref()) != Some(Location::MeshInternal) {
        out.push(Finding::warning(
            Rule::GlobalMode,
            "spec.location",
            format!(
                "location is {}; remote clusters share the root of trust, so .{suffix} entries should be MESH_INTERNAL for mutual TLS",
                spec.location.as_deref().unwrap_or("unset (MESH_EXTERNAL)")
            ),
        ));
    }
}
