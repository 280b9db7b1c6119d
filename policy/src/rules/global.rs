//! The `.global` rules of gateway-connected clusters, for every ServiceEntry with a host under
//! the domain suffix: host form, VIPs, and endpoints that point at the remote gateway. These
//! are globalmesh's own and stricter than Istio's.

use ipnet::IpNet;

use crate::finding::{Findings, Rule};
use crate::model::{Location, Resolution, ServiceEntry};
use crate::names::{service_host_parts, Plain, Shown};
use crate::options::Options;
use crate::rules::istio::{parse_address, DeclaredPorts};

/// Whether any host of the entry lies under the domain suffix.
pub fn is_global(se: &ServiceEntry, options: &Options) -> bool {
    se.spec.hosts.iter().any(|h| options.is_under_suffix(h))
}

pub fn validate(se: &ServiceEntry, options: &Options, out: &mut Findings) {
    if !is_global(se, options) {
        return;
    }
    hosts(se, options, out);
    addresses(se, options, out);
    endpoints(se, options, out);
    mode(se, options, out);
}

fn hosts(se: &ServiceEntry, options: &Options, out: &mut Findings) {
    let suffix = &options.domain_suffix;
    for (i, host) in se.spec.hosts.iter().enumerate() {
        if !options.is_under_suffix(host) {
            continue;
        }
        if service_host_parts(host, suffix).is_none() {
            out.error(
                Rule::GlobalHost,
                format_args!("spec.hosts[{i}]"),
                format_args!(
                    "host {} is not of the form <name>.<namespace>.{suffix} (two lowercase DNS-1123 labels before .{suffix}, such as httpbin.bar.{suffix})",
                    Shown(host)
                ),
            );
        }
    }
}

fn addresses(se: &ServiceEntry, options: &Options, out: &mut Findings) {
    let spec = &se.spec;
    if spec.addresses.is_empty() {
        out.error(
            Rule::GlobalAddress,
            "spec.addresses",
            format_args!(
                "no addresses: a .{} host needs a VIP (such as 127.255.0.2) that its name resolves to and the sidecar captures",
                options.domain_suffix
            ),
        );
        return;
    }
    for (i, address) in spec.addresses.iter().enumerate() {
        // Istio's rules already report addresses that do not parse.
        let Some(net) = parse_address(address) else {
            continue;
        };
        if net.prefix_len() != net.max_prefix_len() {
            out.error(
                Rule::GlobalAddress,
                format_args!("spec.addresses[{i}]"),
                format_args!(
                    "address {} is a range; a .{} host needs single IP addresses (a /{} at most)",
                    Shown(address),
                    options.domain_suffix,
                    net.max_prefix_len()
                ),
            );
            continue;
        }
        if !options.vip_ranges.iter().any(|range| range.contains(&net)) {
            out.warning(
                Rule::GlobalAddress,
                format_args!("spec.addresses[{i}]"),
                format_args!(
                    "address {} is outside the VIP ranges ({})",
                    Plain(address),
                    ranges_text(&options.vip_ranges)
                ),
            );
        }
    }
}

fn ranges_text(ranges: &[IpNet]) -> String {
    let parts: Vec<String> = ranges.iter().map(IpNet::to_string).collect();
    crate::names::few(parts.iter().map(String::as_str))
}

fn endpoints(se: &ServiceEntry, options: &Options, out: &mut Findings) {
    let spec = &se.spec;
    let declared = DeclaredPorts::of(spec);
    // Istio's rules check endpoint port names under STATIC and DNS resolution already.
    let istio_checks_names = matches!(
        Resolution::parse(spec.resolution.as_deref()),
        Some(Resolution::Static | Resolution::Dns | Resolution::DnsRoundRobin)
    );
    let gateway = options.gateway_ports_text();
    for (i, ep) in spec.endpoints().iter().enumerate() {
        let Some(ports) = &ep.ports else {
            out.error(
                Rule::GatewayPort,
                format_args!("spec.endpoints[{i}].ports"),
                format_args!(
                    "endpoint {} has no ports map, so traffic goes to the service port instead of the gateway; add ports: {{<port name>: {gateway}}}",
                    Plain(ep.address.as_deref().unwrap_or("(no address)"))
                ),
            );
            continue;
        };
        if ports.is_empty() {
            out.error(
                Rule::GatewayPort,
                format_args!("spec.endpoints[{i}].ports"),
                format_args!(
                    "endpoint ports map is empty; map each declared port name to {gateway}"
                ),
            );
        }
        for (name, number) in ports {
            if !istio_checks_names && !declared.contains(name.as_str()) {
                out.error(
                    Rule::GatewayPort,
                    format_args!("spec.endpoints[{i}].ports.{}", Plain(name)),
                    format_args!(
                        "endpoint port {} is not a port declared in spec.ports (declared: {})",
                        Shown(name),
                        declared
                    ),
                );
            }
            let is_gateway = u16::try_from(*number)
                .map(|n| options.gateway_ports.contains(&n))
                .unwrap_or(false);
            if !is_gateway {
                out.error(
                    Rule::GatewayPort,
                    format_args!("spec.endpoints[{i}].ports.{}", Plain(name)),
                    format_args!(
                        "port {number} is not the gateway port {gateway}; set {}: {gateway}",
                        Plain(name)
                    ),
                );
            }
        }
    }
}

fn mode(se: &ServiceEntry, options: &Options, out: &mut Findings) {
    let spec = &se.spec;
    let suffix = &options.domain_suffix;
    if Resolution::parse(spec.resolution.as_deref()) != Some(Resolution::Dns) {
        out.warning(
            Rule::GlobalMode,
            "spec.resolution",
            format_args!(
                "resolution is {}; .{suffix} entries normally use DNS so that gateway addresses may be names",
                Plain(spec.resolution.as_deref().unwrap_or("unset (NONE)"))
            ),
        );
    }
    if Location::parse(spec.location.as_deref()) != Some(Location::MeshInternal) {
        out.warning(
            Rule::GlobalMode,
            "spec.location",
            format_args!(
                "location is {}; remote clusters share the root of trust, so .{suffix} entries should be MESH_INTERNAL for mutual TLS",
                Plain(spec.location.as_deref().unwrap_or("unset (MESH_EXTERNAL)"))
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Finding, Severity};
    use crate::model::ServiceEntrySpec;
    use crate::rules::seed_entry;

    fn global_with(options: &Options, change: impl FnOnce(&mut ServiceEntrySpec)) -> Vec<Finding> {
        let mut se = seed_entry();
        change(&mut se.spec);
        let mut out = Findings::new();
        validate(&se, options, &mut out);
        out.into_vec()
    }

    fn with(change: impl FnOnce(&mut ServiceEntrySpec)) -> Vec<Finding> {
        global_with(&Options::default(), change)
    }

    fn assert_one(found: &[Finding], severity: Severity, rule: Rule, path: &str, needle: &str) {
        assert!(
            found.iter().any(|f| f.severity == severity
                && f.rule == rule
                && f.path == path
                && f.message.contains(needle)),
            "expected {severity} {rule:?} at {path} containing {needle:?}, got {found:#?}"
        );
    }

    #[test]
    fn seed_passes_global_rules() {
        assert_eq!(with(|_| {}), vec![]);
    }

    #[test]
    fn entries_outside_the_suffix_are_not_global() {
        assert_eq!(
            with(|s| {
                s.hosts = vec!["api.example.com".into()];
                s.addresses.clear();
                s.endpoint_list.as_mut().unwrap()[0].ports = None;
            }),
            vec![]
        );
    }

    #[test]
    fn host_must_be_name_dot_namespace_dot_global() {
        for host in [
            "httpbin.global",
            "a.b.c.global",
            "Httpbin.bar.global",
            "*.bar.global",
            "http_bin.bar.global",
        ] {
            let found = with(|s| s.hosts = vec![host.to_string()]);
            assert_one(
                &found,
                Severity::Error,
                Rule::GlobalHost,
                "spec.hosts[0]",
                host,
            );
        }
        assert_eq!(
            with(|s| s.hosts = vec!["httpbin.bar.global.".into()]),
            vec![]
        );
    }

    #[test]
    fn host_rule_follows_a_configured_suffix() {
        let options = Options::new(Some("mesh.example"), &[], &[]).unwrap();
        let found = global_with(&options, |s| s.hosts = vec!["httpbin.mesh.example".into()]);
        assert_one(
            &found,
            Severity::Error,
            Rule::GlobalHost,
            "spec.hosts[0]",
            "<name>.<namespace>.mesh.example",
        );
        assert_eq!(
            global_with(&options, |s| s.hosts =
                vec!["httpbin.bar.mesh.example".into()]),
            vec![]
        );
    }

    #[test]
    fn needs_at_least_one_address() {
        assert_one(
            &with(|s| s.addresses.clear()),
            Severity::Error,
            Rule::GlobalAddress,
            "spec.addresses",
            "no addresses",
        );
    }

    #[test]
    fn addresses_are_single_ips() {
        assert_one(
            &with(|s| s.addresses = vec!["127.255.0.0/24".into()]),
            Severity::Error,
            Rule::GlobalAddress,
            "spec.addresses[0]",
            "127.255.0.0/24",
        );
        assert_eq!(
            with(|s| s.addresses = vec!["127.255.0.2/32".into()]),
            vec![]
        );
        assert_one(
            &with(|s| s.addresses = vec!["2001:db8::/64".into()]),
            Severity::Error,
            Rule::GlobalAddress,
            "spec.addresses[0]",
            "/128",
        );
    }

    #[test]
    fn address_outside_vip_ranges_warns() {
        assert_one(
            &with(|s| s.addresses = vec!["10.0.0.7".into()]),
            Severity::Warning,
            Rule::GlobalAddress,
            "spec.addresses[0]",
            "10.0.0.7 is outside",
        );
        assert_eq!(with(|s| s.addresses = vec!["240.0.0.9".into()]), vec![]);
        assert_eq!(with(|s| s.addresses = vec!["240.240.1.1".into()]), vec![]);
    }

    #[test]
    fn endpoint_needs_a_ports_map() {
        assert_one(
            &with(|s| s.endpoint_list.as_mut().unwrap()[0].ports = None),
            Severity::Error,
            Rule::GatewayPort,
            "spec.endpoints[0].ports",
            "no ports map",
        );
        assert_one(
            &with(|s| s.endpoint_list.as_mut().unwrap()[0].ports = Some(Default::default())),
            Severity::Error,
            Rule::GatewayPort,
            "spec.endpoints[0].ports",
            "empty",
        );
    }

    #[test]
    fn endpoint_port_must_be_the_gateway_port() {
        let found = with(|s| {
            s.endpoint_list.as_mut().unwrap()[0].ports =
                Some([("http1".to_string(), 8000)].into_iter().collect())
        });
        assert_one(
            &found,
            Severity::Error,
            Rule::GatewayPort,
            "spec.endpoints[0].ports.http1",
            "port 8000 is not the gateway port 15443",
        );
    }

    #[test]
    fn gateway_ports_are_configurable_for_nodeport() {
        let options = Options::new(None, &[15443, 31443], &[]).unwrap();
        let nodeport = |s: &mut ServiceEntrySpec| {
            s.endpoint_list.as_mut().unwrap()[0].ports =
                Some([("http1".to_string(), 31443)].into_iter().collect())
        };
        assert_eq!(global_with(&options, nodeport), vec![]);
        assert_one(
            &with(nodeport),
            Severity::Error,
            Rule::GatewayPort,
            "spec.endpoints[0].ports.http1",
            "31443",
        );
    }

    #[test]
    fn endpoint_port_names_must_be_declared_even_without_istio_checking() {
        let found = with(|s| {
            s.resolution = Some("NONE".into());
            s.endpoint_list.as_mut().unwrap()[0].ports =
                Some([("grpc".to_string(), 15443)].into_iter().collect());
        });
        assert_one(
            &found,
            Severity::Error,
            Rule::GatewayPort,
            "spec.endpoints[0].ports.grpc",
            "not a port declared",
        );
    }

    #[test]
    fn resolution_and_location_warn() {
        assert_one(
            &with(|s| s.resolution = Some("STATIC".into())),
            Severity::Warning,
            Rule::GlobalMode,
            "spec.resolution",
            "STATIC",
        );
        assert_one(
            &with(|s| s.location = None),
            Severity::Warning,
            Rule::GlobalMode,
            "spec.location",
            "MESH_EXTERNAL",
        );
    }
}
