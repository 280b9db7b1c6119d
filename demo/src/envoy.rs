//! Envoy configurations of the seed scenario, rendered from ServiceEntries as Istio's control
//! plane would: the client sidecar (capture on 15001, a listener per VIP and port and a
//! catch-all per port, the `global_guard` filter by extension config discovery, mutual TLS
//! with Istio's SNI to the endpoints on 15443), the SNI-routing ingress and egress gateways,
//! and the server sidecar that terminates mutual TLS.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use policy::{Options, ServiceEntry};
use serde_json::{json, Value};

/// Where a workload's certificate, key and the mesh root live.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub root: &'a Path,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("{key}: host {host:?} is not <name>.<namespace>.{suffix}")]
    Host {
        key: String,
        host: String,
        suffix: String,
    },
    #[error("{key}: endpoint address {address:?} has no known IP (add it to the address map)")]
    Unresolved { key: String, address: String },
    #[error("{key}: port {port:?} has no number")]
    Port { key: String, port: String },
    #[error("{key}: no endpoint in the local network")]
    NoLocalEndpoint { key: String },
}

/// One `.global` service as the sidecar sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalService {
    pub host: String,
    /// `name.namespace` of the remote service: `httpbin.bar`.
    pub name: String,
    pub namespace: String,
    pub vips: Vec<String>,
    /// (port name, service port number).
    pub ports: Vec<(String, u16)>,
    pub endpoints: Vec<Endpoint>,
    pub subject_alt_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: String,
    /// Port name to the endpoint's port (15443 on a gateway).
    pub ports: BTreeMap<String, u16>,
    pub labels: BTreeMap<String, String>,
    /// `None` is the local network.
    pub network: Option<String>,
}

/// Istio's SNI for a remote service port: `outbound_.8000_._.httpbin.bar.svc.cluster.local`.
pub fn sni(name: &str, namespace: &str, port: u16) -> String {
    format!("outbound_.{port}_._.{name}.{namespace}.svc.cluster.local")
}

/// Reads the `.global` services out of ServiceEntries; `addresses` maps endpoint host names
/// (such as the egress gateway's Service name) to IPs.
pub fn global_services(
    entries: &[ServiceEntry],
    options: &Options,
    addresses: &BTreeMap<String, String>,
) -> Result<Vec<GlobalService>, RenderError> {
    let mut out = Vec::new();
    for se in entries {
        let key = se.key().to_string();
        for host in se.spec.hosts.iter().filter(|h| options.is_under_suffix(h)) {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            let labels: Vec<&str> = host.split('.').collect();
            let (name, namespace) = match labels.as_slice() {
                [name, namespace, ..]
                    if labels.len() == 2 + options.domain_suffix.split('.').count() =>
                {
                    (name.to_string(), namespace.to_string())
                }
                _ => {
                    return Err(RenderError::Host {
                        key,
                        host,
                        suffix: options.domain_suffix.clone(),
                    })
                }
            };
            let mut ports = Vec::new();
            for port in &se.spec.ports {
                let port_name = port.name.clone().unwrap_or_default();
                let number = port
                    .number
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| RenderError::Port {
                        key: key.clone(),
                        port: port_name.clone(),
                    })?;
                ports.push((port_name, number));
            }
            let mut endpoints = Vec::new();
            for ep in se.spec.endpoints() {
                let address = ep.address.clone().unwrap_or_default();
                let ip = if address.parse::<std::net::IpAddr>().is_ok() {
                    address.clone()
                } else {
                    addresses
                        .get(&address)
                        .cloned()
                        .ok_or_else(|| RenderError::Unresolved {
                            key: key.clone(),
                            address: address.clone(),
                        })?
                };
                let ports = ep
                    .ports
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(name, n)| u16::try_from(n).ok().map(|n| (name, n)))
                    .collect();
                endpoints.push(Endpoint {
                    ip,
                    ports,
                    labels: ep.labels.clone(),
                    network: ep.network.clone().filter(|n| !n.is_empty()),
                });
            }
            out.push(GlobalService {
                host,
                name,
                namespace,
                vips: se.spec.addresses.clone(),
                ports,
                endpoints,
                subject_alt_names: se.spec.subject_alt_names.clone(),
            });
        }
    }
    Ok(out)
}

fn socket(address: &str, port: u16) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

fn admin(port: u16) -> Value {
    json!({"address": socket("127.0.0.1", port)})
}

fn typed(type_name: &str, mut config: Value) -> Value {
    if let Some(map) = config.as_object_mut() {
        map.insert(
            "@type".into(),
            Value::String(format!("type.googleapis.com/{type_name}")),
        );
    }
    config
}

fn static_cluster(name: &str, endpoints: Vec<Value>) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]}
    })
}

/// Sets a field of a JSON object (a no-op on any other value).
fn set(object: &mut Value, key: &str, value: Value) {
    if let Some(fields) = object.as_object_mut() {
        fields.insert(key.to_string(), value);
    }
}

fn lb_endpoint(ip: &str, port: u16, labels: &BTreeMap<String, String>) -> Value {
    let mut endpoint = serde_json::Map::new();
    endpoint.insert("endpoint".into(), json!({"address": socket(ip, port)}));
    if !labels.is_empty() {
        endpoint.insert(
            "metadata".into(),
            json!({"filter_metadata": {"envoy.lb": labels}}),
        );
    }
    Value::Object(endpoint)
}

fn tls_context(identity: &Identity, san_prefix_or_exact: Value) -> Value {
    json!({
        "tls_certificates": [{
            "certificate_chain": {"filename": identity.cert},
            "private_key": {"filename": identity.key}
        }],
        "validation_context": {
            "trusted_ca": {"filename": identity.root},
            "match_typed_subject_alt_names": san_prefix_or_exact
        }
    })
}

/// Accept any identity of the mesh's trust domain, or exactly the given ones.
fn san_matchers(exact: &[String]) -> Value {
    if exact.is_empty() {
        json!([{"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/"}}])
    } else {
        Value::Array(
            exact
                .iter()
                .map(|san| json!({"san_type": "URI", "matcher": {"exact": san}}))
                .collect(),
        )
    }
}

/// The `global_guard` entry of an HTTP filter chain: its configuration comes by extension
/// config discovery from a file that Envoy watches (what istiod sends a sidecar for a
/// WasmPlugin; here globalmesh-controller writes it). Without a configuration the listener
/// does not serve, so nothing passes unchecked.
pub fn global_guard_discovery(ecds_file: &Path) -> Value {
    let dir = ecds_file.parent().unwrap_or_else(|| Path::new("."));
    json!({
        "name": "global_guard",
        "config_discovery": {
            "config_source": {"path_config_source": {
                "path": ecds_file,
                "watched_directory": {"path": dir}
            }},
            "type_urls": [controller::ecds::WASM_TYPE_URL]
        }
    })
}

fn router() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": typed("envoy.extensions.filters.http.router.v3.Router", json!({}))})
}

/// Settings of the client sidecar.
pub struct SidecarConfig<'a> {
    pub identity: Identity<'a>,
    /// The ECDS file `global_guard`'s configuration is read from (and watched).
    pub ecds_file: &'a Path,
    pub admin_port: u16,
    /// The port that captured outbound traffic is redirected to (Istio's 15001).
    pub outbound_port: u16,
    /// The header the filter sets and version-aware routes match.
    pub cluster_header: &'a str,
}

/// The outbound HTTP connection manager of a listener: `global_guard` (by ECDS), then the
/// router.
fn outbound_hcm(stat_prefix: &str, route_config: Value, ecds_file: &Path) -> Value {
    typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        json!({
            "stat_prefix": stat_prefix,
            "route_config": route_config,
            "http_filters": [global_guard_discovery(ecds_file), router()]
        }),
    )
}

fn outbound_listener(name: &str, address: &str, port: u16, hcm: Value) -> Value {
    json!({
        "name": name,
        "address": socket(address, port),
        "bind_to_port": false,
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]
    })
}

/// What the catch-all listener answers for a host it has no route for (after `global_guard`
/// let the request through): istiod would push the host's listener, cluster and route, and
/// without one there is no upstream to send it to.
pub const UNROUTED_BODY: &str = "global_guard let this request through; the sidecar has no route for its host: istiod would push one with the ServiceEntry, and this demo has no istiod\n";

/// The client sidecar: every `.global` VIP and port gets a listener behind the capture port,
/// routes for the host (with a route per `cluster` label value for version-aware routing), and
/// a cluster of the local-network endpoints on their gateway port over mutual TLS. Each port
/// also gets Istio's `0.0.0.0_<port>` listener, which takes captured traffic to any other
/// address on it: a VIP that appeared after the sidecar started still meets `global_guard`,
/// whose table follows the cluster by ECDS.
pub fn client_sidecar(
    services: &[GlobalService],
    config: &SidecarConfig,
) -> Result<Value, RenderError> {
    let mut listeners = vec![json!({
        "name": "virtualOutbound",
        "address": socket("0.0.0.0", config.outbound_port),
        "use_original_dst": true,
        "listener_filters": [{
            "name": "envoy.filters.listener.original_dst",
            "typed_config": typed("envoy.extensions.filters.listener.original_dst.v3.OriginalDst", json!({}))
        }],
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": typed("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", json!({"stat_prefix": "BlackHoleCluster", "cluster": "BlackHoleCluster"}))
        }]}]
    })];
    let mut clusters =
        vec![json!({"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "1s"})];
    // Per port, the virtual hosts of the services on it, for the catch-all listener.
    let mut by_port: BTreeMap<u16, Vec<Value>> = BTreeMap::new();
    for service in services {
        for (port_name, port) in &service.ports {
            let cluster_name = format!("outbound|{port}||{}", service.host);
            let local: Vec<&Endpoint> = service
                .endpoints
                .iter()
                .filter(|e| e.network.is_none())
                .collect();
            if local.is_empty() {
                return Err(RenderError::NoLocalEndpoint {
                    key: service.host.clone(),
                });
            }
            let endpoints = local
                .iter()
                .map(|e| {
                    lb_endpoint(
                        &e.ip,
                        e.ports.get(port_name).copied().unwrap_or(*port),
                        &e.labels,
                    )
                })
                .collect();
            let mut cluster = static_cluster(&cluster_name, endpoints);
            let subsets: BTreeSet<&String> = local
                .iter()
                .filter_map(|e| e.labels.get("cluster"))
                .collect();
            if !subsets.is_empty() {
                set(
                    &mut cluster,
                    "lb_subset_config",
                    json!({
                        "fallback_policy": "ANY_ENDPOINT",
                        "subset_selectors": [{"keys": ["cluster"]}]
                    }),
                );
            }
            set(
                &mut cluster,
                "transport_socket",
                json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": typed("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", json!({
                        "sni": sni(&service.name, &service.namespace, *port),
                        "common_tls_context": tls_context(&config.identity, san_matchers(&service.subject_alt_names))
                    }))
                }),
            );
            clusters.push(cluster);

            let mut routes: Vec<Value> = subsets
                .iter()
                .map(|value| {
                    json!({
                        "match": {"prefix": "/", "headers": [{"name": config.cluster_header, "string_match": {"exact": value}}]},
                        "route": {"cluster": cluster_name, "metadata_match": {"filter_metadata": {"envoy.lb": {"cluster": value}}}}
                    })
                })
                .collect();
            routes.push(json!({"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}));
            let mut domains = vec![service.host.clone(), format!("{}:{port}", service.host)];
            for vip in &service.vips {
                domains.push(vip.clone());
                domains.push(format!("{vip}:{port}"));
            }
            let virtual_host = json!({"name": format!("{}:{port}", service.host), "domains": domains, "routes": routes});
            let hcm = outbound_hcm(
                &format!("outbound_{}_{port}", service.host),
                json!({
                    "name": format!("{}:{port}", service.host),
                    "virtual_hosts": [
                        virtual_host,
                        {"name": "unknown", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "no route for this host\n"}}}]}
                    ]
                }),
                config.ecds_file,
            );
            for vip in &service.vips {
                let vip = vip.split('/').next().unwrap_or(vip);
                listeners.push(outbound_listener(
                    &format!("{vip}_{port}"),
                    vip,
                    *port,
                    hcm.clone(),
                ));
            }
            by_port.entry(*port).or_default().push(virtual_host);
        }
    }
    for (port, mut virtual_hosts) in by_port {
        virtual_hosts.push(json!({
            "name": "unrouted",
            "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 503, "body": {"inline_string": UNROUTED_BODY}}}]
        }));
        let hcm = outbound_hcm(
            &format!("outbound_0.0.0.0_{port}"),
            json!({"name": port.to_string(), "virtual_hosts": virtual_hosts}),
            config.ecds_file,
        );
        listeners.push(outbound_listener(
            &format!("0.0.0.0_{port}"),
            "0.0.0.0",
            port,
            hcm,
        ));
    }
    Ok(json!({
        "node": {"id": "sleep.foo", "cluster": "sleep.foo"},
        "admin": admin(config.admin_port),
        "static_resources": {"listeners": listeners, "clusters": clusters}
    }))
}

/// A gateway that routes TLS by SNI without terminating it, as Istio's AUTO_PASSTHROUGH
/// gateways do. `routes` maps an SNI to the addresses behind it.
pub fn sni_gateway(
    name: &str,
    listen: (&str, u16),
    admin_port: u16,
    routes: &BTreeMap<String, Vec<(String, u16)>>,
) -> Value {
    let mut chains = Vec::new();
    let mut clusters = Vec::new();
    for (sni, targets) in routes {
        let cluster_name = format!("{name}|{sni}");
        chains.push(json!({
            "filter_chain_match": {"server_names": [sni]},
            "filters": [{
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": typed("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", json!({"stat_prefix": sni, "cluster": cluster_name}))
            }]
        }));
        let endpoints = targets
            .iter()
            .map(|(ip, port)| lb_endpoint(ip, *port, &BTreeMap::new()))
            .collect();
        clusters.push(static_cluster(&cluster_name, endpoints));
    }
    json!({
        "node": {"id": name, "cluster": name},
        "admin": admin(admin_port),
        "static_resources": {
            "listeners": [{
                "name": format!("{name}_{}", listen.1),
                "address": socket(listen.0, listen.1),
                "listener_filters": [{
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": typed("envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector", json!({}))
                }],
                "filter_chains": chains
            }],
            "clusters": clusters
        }
    })
}

/// The server sidecar: terminates mutual TLS (only certificates of the mesh's root, with a
/// SPIFFE identity), tells the app who called in `x-forwarded-client-cert`, and forwards to
/// the app on loopback.
pub fn server_sidecar(
    identity: &Identity,
    listen: (&str, u16),
    app_port: u16,
    admin_port: u16,
) -> Value {
    let hcm = typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        json!({
            "stat_prefix": "inbound",
            "forward_client_cert_details": "SANITIZE_SET",
            "set_current_client_cert_details": {"uri": true},
            "route_config": {"name": "inbound", "virtual_hosts": [{"name": "inbound", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "inbound|app"}}]}]},
            "http_filters": [router()]
        }),
    );
    json!({
        "node": {"id": "httpbin.bar", "cluster": "httpbin.bar"},
        "admin": admin(admin_port),
        "static_resources": {
            "listeners": [{
                "name": "inbound",
                "address": socket(listen.0, listen.1),
                "filter_chains": [{
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": typed("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", json!({
                            "require_client_certificate": true,
                            "common_tls_context": tls_context(identity, san_matchers(&[]))
                        }))
                    },
                    "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
                }]
            }],
            "clusters": [static_cluster("inbound|app", vec![lb_endpoint("127.0.0.1", app_port, &BTreeMap::new())])]
        }
    })
}

/// SNI routes of an egress gateway: each `.global` service port to its endpoints outside the
/// local network.
pub fn egress_routes(services: &[GlobalService]) -> BTreeMap<String, Vec<(String, u16)>> {
    let mut routes = BTreeMap::new();
    for service in services {
        for (port_name, port) in &service.ports {
            let remote: Vec<(String, u16)> = service
                .endpoints
                .iter()
                .filter(|e| e.network.is_some())
                .map(|e| {
                    (
                        e.ip.clone(),
                        e.ports.get(port_name).copied().unwrap_or(*port),
                    )
                })
                .collect();
            if !remote.is_empty() {
                routes.insert(sni(&service.name, &service.namespace, *port), remote);
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(file: &str) -> Vec<ServiceEntry> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/seed")
            .join(file);
        catalog::load_path(&path)
            .unwrap()
            .into_iter()
            .map(|l| l.entry.unwrap())
            .collect()
    }

    fn addresses() -> BTreeMap<String, String> {
        [(
            "istio-egressgateway.istio-system.svc.cluster.local".to_string(),
            "198.18.1.1".to_string(),
        )]
        .into()
    }

    fn identity() -> Identity<'static> {
        Identity {
            cert: Path::new("/c.pem"),
            key: Path::new("/k.pem"),
            root: Path::new("/r.pem"),
        }
    }

    fn sidecar(file: &str) -> Value {
        let entries = seed(file);
        let options = Options::default();
        let services = global_services(&entries, &options, &addresses()).unwrap();
        client_sidecar(
            &services,
            &SidecarConfig {
                identity: identity(),
                ecds_file: Path::new("/ecds/global_guard.json"),
                admin_port: 15000,
                outbound_port: 15001,
                cluster_header: "x-global-cluster",
            },
        )
        .unwrap()
    }

    fn listener<'a>(config: &'a Value, name: &str) -> &'a Value {
        config["static_resources"]["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
    }

    #[test]
    fn direct_entry_gives_a_vip_listener_and_a_gateway_cluster_with_istio_sni() {
        let config = sidecar("serviceentry-direct.yaml");
        let vip = listener(&config, "127.255.0.2_8000");
        assert_eq!(vip["address"]["socket_address"]["address"], "127.255.0.2");
        assert_eq!(vip["bind_to_port"], false);
        let cluster = &config["static_resources"]["clusters"][1];
        assert_eq!(cluster["name"], "outbound|8000||httpbin.bar.global");
        let endpoint = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"];
        assert_eq!(
            (
                endpoint["address"].as_str(),
                endpoint["port_value"].as_u64()
            ),
            (Some("198.18.2.1"), Some(15443))
        );
        assert_eq!(
            cluster["transport_socket"]["typed_config"]["sni"],
            "outbound_.8000_._.httpbin.bar.svc.cluster.local"
        );
    }

    #[test]
    fn egress_entry_sends_the_sidecar_to_the_egress_gateway_only() {
        let config = sidecar("serviceentry-egress.yaml");
        let cluster = &config["static_resources"]["clusters"][1];
        let endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
            .as_array()
            .unwrap();
        assert_eq!(endpoints.len(), 1);
        assert_eq!(
            endpoints[0]["endpoint"]["address"]["socket_address"]["address"],
            "198.18.1.1"
        );
        let entries = seed("serviceentry-egress.yaml");
        let services = global_services(&entries, &Options::default(), &addresses()).unwrap();
        let routes = egress_routes(&services);
        assert_eq!(
            routes["outbound_.8000_._.httpbin.bar.svc.cluster.local"],
            vec![("198.18.2.1".to_string(), 15443)]
        );
    }

    #[test]
    fn versioned_entry_gets_a_subset_route_per_cluster_label() {
        let config = sidecar("serviceentry-versioned.yaml");
        let cluster = &config["static_resources"]["clusters"][1];
        assert_eq!(
            cluster["lb_subset_config"]["subset_selectors"][0]["keys"][0],
            "cluster"
        );
        let vip = listener(&config, "127.255.0.2_8000");
        let routes = &vip["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
            ["virtual_hosts"][0]["routes"];
        assert_eq!(
            routes[0]["match"]["headers"][0]["string_match"]["exact"],
            "cluster2"
        );
        assert_eq!(
            routes[0]["route"]["metadata_match"]["filter_metadata"]["envoy.lb"]["cluster"],
            "cluster2"
        );
    }

    #[test]
    fn a_vip_unknown_to_the_sidecar_still_meets_global_guard_from_ecds() {
        let config = sidecar("serviceentry-direct.yaml");
        let any = listener(&config, "0.0.0.0_8000");
        assert_eq!(any["address"]["socket_address"]["address"], "0.0.0.0");
        assert_eq!(any["bind_to_port"], false);
        let hcm = &any["filter_chains"][0]["filters"][0]["typed_config"];
        let guard = &hcm["http_filters"][0];
        assert_eq!(guard["name"], "global_guard");
        let source = &guard["config_discovery"]["config_source"]["path_config_source"];
        assert_eq!(source["path"], "/ecds/global_guard.json");
        assert_eq!(source["watched_directory"]["path"], "/ecds");
        let hosts = hcm["route_config"]["virtual_hosts"].as_array().unwrap();
        assert_eq!(hosts[0]["domains"][0], "httpbin.bar.global");
        let unrouted = hosts.last().unwrap();
        assert_eq!(unrouted["domains"], json!(["*"]));
        assert_eq!(unrouted["routes"][0]["direct_response"]["status"], 503);
    }

    #[test]
    fn every_vip_listener_takes_global_guard_from_ecds() {
        let config = sidecar("serviceentry-versioned.yaml");
        for listener in config["static_resources"]["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["name"] != "virtualOutbound")
        {
            let filters =
                &listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
            assert_eq!(filters[0]["name"], "global_guard", "{listener}");
            assert!(filters[0].get("typed_config").is_none(), "{listener}");
        }
    }

    #[test]
    fn unresolvable_endpoint_name_is_an_error_naming_it() {
        let entries = seed("serviceentry-egress.yaml");
        let err = global_services(&entries, &Options::default(), &BTreeMap::new()).unwrap_err();
        assert!(err
            .to_string()
            .contains("istio-egressgateway.istio-system.svc.cluster.local"));
    }
}
