//! global_guard inside a real Envoy (V8 runtime), driven with curl over HTTP/1.1 and HTTP/2.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{
    free_port, get_once, inline_filter, seed_config, seed_table_config, service_entry, Envoy,
    Version, VERSIONS,
};
use serde_json::{json, Value};

const CLUSTER: &str = "x-global-cluster";

#[test]
fn allows_the_seed_host_and_sets_its_only_cluster() {
    let envoy = Envoy::start(&seed_config(vec![]));
    for version in VERSIONS {
        let reply = envoy.get(version, "httpbin.bar.global:8000", &[]);
        assert_eq!(reply.status, 200, "{version:?}: {reply:?}");
        assert_eq!(
            reply.upstream_header_lines(CLUSTER),
            ["cluster2"],
            "{version:?}"
        );
        assert_eq!(reply.header("x-global-guard"), None);
    }
}

#[test]
fn client_cannot_stack_cluster_values() {
    let envoy = Envoy::start(&seed_config(vec![]));
    for version in VERSIONS {
        let reply = envoy.get(
            version,
            "httpbin.bar.global:8000",
            &[(CLUSTER, "cluster2"), (CLUSTER, "cluster9")],
        );
        assert_eq!(reply.status, 200, "{version:?}: {reply:?}");
        assert_eq!(
            reply.upstream_header_lines(CLUSTER),
            ["cluster2"],
            "{version:?}"
        );
    }
}

#[test]
fn keeps_a_valid_cluster_among_several() {
    let multi = service_entry("multi.bar.global", &[8000], &["c1", "c2"]);
    let envoy = Envoy::start(&seed_config(vec![multi]));
    for version in VERSIONS {
        let chosen = envoy.get(version, "multi.bar.global:8000", &[(CLUSTER, "c2")]);
        assert_eq!(chosen.status, 200, "{version:?}: {chosen:?}");
        assert_eq!(chosen.upstream_header_lines(CLUSTER), ["c2"]);
        // Two candidates and no header: nothing is chosen for the client.
        let open = envoy.get(version, "multi.bar.global:8000", &[]);
        assert_eq!(open.status, 200, "{version:?}: {open:?}");
        assert!(open.upstream_header_lines(CLUSTER).is_empty(), "{open:?}");
    }
}

#[test]
fn normalises_case_trailing_dot_and_port() {
    let envoy = Envoy::start(&seed_config(vec![]));
    for version in VERSIONS {
        let reply = envoy.get(version, "HttpBin.BAR.global.:8000", &[]);
        assert_eq!(reply.status, 200, "{version:?}: {reply:?}");
        assert_eq!(reply.upstream_header_lines(CLUSTER), ["cluster2"]);
    }
}

#[test]
fn hosts_outside_the_suffix_pass_untouched() {
    let envoy = Envoy::start(&seed_config(vec![]));
    for version in VERSIONS {
        let plain = envoy.get(version, "localhost", &[]);
        assert_eq!(plain.status, 200, "{version:?}: {plain:?}");
        assert!(plain.upstream_header_lines(CLUSTER).is_empty());
        let with_header = envoy.get(version, "example.com:8080", &[(CLUSTER, "anything")]);
        assert_eq!(with_header.status, 200, "{version:?}: {with_header:?}");
        assert_eq!(with_header.upstream_header_lines(CLUSTER), ["anything"]);
    }
}

#[test]
fn rejects_each_bad_request_with_status_reason_and_body() {
    let envoy = Envoy::start(&seed_config(vec![]));
    let cases: [(&str, Option<&str>, u16, &str, &str); 6] = [
        (
            "a.b.c.global:8000",
            None,
            400,
            "malformed-host",
            "a.b.c.global",
        ),
        (
            "httpbin.bar.global:http",
            None,
            400,
            "malformed-host",
            "httpbin.bar.global",
        ),
        (
            "httpbin.baz.global:8000",
            None,
            404,
            "unknown-host",
            "httpbin.baz.global",
        ),
        (
            "httpbin.bar.global:9000",
            None,
            404,
            "unknown-port",
            "httpbin.bar.global",
        ),
        (
            "httpbin.bar.global:15443",
            None,
            404,
            "unknown-port",
            "httpbin.bar.global",
        ),
        (
            "httpbin.bar.global:8000",
            Some("cluster9"),
            404,
            "unknown-cluster",
            "httpbin.bar.global",
        ),
    ];
    for version in VERSIONS {
        for (authority, cluster, status, reason, host) in cases {
            let headers: Vec<(&str, &str)> = cluster.map(|c| (CLUSTER, c)).into_iter().collect();
            let reply = envoy.get(version, authority, &headers);
            let what = format!("{version:?} {authority} {cluster:?}: {reply:?}");
            assert_eq!(reply.status, status, "{what}");
            assert_eq!(reply.header("x-global-guard"), Some(reason), "{what}");
            assert!(reply.body.starts_with(&format!("{reason}: ")), "{what}");
            assert!(reply.body.contains(host), "{what}");
            assert_eq!(reply.body.matches('\n').count(), 1, "{what}");
            assert!(reply.body.ends_with('\n'), "{what}");
        }
    }
}

#[test]
fn port_falls_back_to_the_destination_port() {
    let port = free_port();
    let config = seed_config(vec![service_entry("fallback.bar.global", &[port], &[])]);
    let envoy = match Envoy::start_on(port, &config) {
        Ok(envoy) => envoy,
        Err(e) => panic!("envoy did not start ({:?}):\n{}", e.exited, e.log),
    };
    for version in VERSIONS {
        let reply = envoy.get(version, "fallback.bar.global", &[]);
        assert_eq!(reply.status, 200, "{version:?}: {reply:?}");
        // The listener port is not 8000, the seed's only port.
        let reply = envoy.get(version, "httpbin.bar.global", &[]);
        assert_eq!(reply.status, 404, "{version:?}: {reply:?}");
        assert_eq!(reply.header("x-global-guard"), Some("unknown-port"));
    }
}

#[test]
fn counts_each_outcome_in_stats() {
    let envoy = Envoy::start(&seed_config(vec![]));
    let sends: [(&str, Option<&str>, usize); 6] = [
        ("localhost", None, 1),
        ("httpbin.bar.global:8000", None, 3),
        ("x.global", None, 2),
        ("nope.bar.global:8000", None, 1),
        ("httpbin.bar.global:1", None, 2),
        ("httpbin.bar.global:8000", Some("zz"), 1),
    ];
    for (authority, cluster, times) in sends {
        let headers: Vec<(&str, &str)> = cluster.map(|c| (CLUSTER, c)).into_iter().collect();
        for i in 0..times {
            let version = VERSIONS[i % 2];
            envoy.get(version, authority, &headers);
        }
    }
    assert_eq!(envoy.counter("global_guard_passed"), 1);
    assert_eq!(envoy.counter("global_guard_allowed"), 3);
    assert_eq!(envoy.counter("global_guard_rejected_malformed_host"), 2);
    assert_eq!(envoy.counter("global_guard_rejected_unknown_host"), 1);
    assert_eq!(envoy.counter("global_guard_rejected_unknown_port"), 2);
    assert_eq!(envoy.counter("global_guard_rejected_unknown_cluster"), 1);
}

#[test]
fn logs_the_configuration_it_loaded() {
    let envoy = Envoy::start(&seed_config(vec![]));
    let log = envoy.log();
    assert!(
        log.contains(
            "global_guard: 3 ServiceEntries, 1 .global hosts, cluster header x-global-cluster"
        ),
        "{log}"
    );
}

fn assert_refused(configuration: &str, expected: &str) {
    let result = Envoy::start_on(free_port(), configuration);
    let Err(error) = result else {
        panic!("Envoy started with the invalid configuration {configuration}");
    };
    let status = error.exited.expect("Envoy exits rather than hanging");
    assert!(!status.success(), "{status:?}\n{}", error.log);
    assert!(
        error.log.contains(expected),
        "expected {expected:?} in:\n{}",
        error.log
    );
}

#[test]
fn refuses_an_unknown_configuration_field() {
    assert_refused(
        r#"{"service_entries": [], "clusterHeader": "x"}"#,
        "global_guard: invalid configuration: unknown field `clusterHeader`",
    );
}

#[test]
fn refuses_both_forms_at_once() {
    let table: Value = serde_json::from_str(&seed_table_config(vec![])).unwrap();
    let both = json!({"table": table["table"], "service_entries": []}).to_string();
    assert_refused(
        &both,
        "global_guard: invalid configuration: both `table` and `service_entries` are set",
    );
}

#[test]
fn refuses_a_table_whose_hash_does_not_match() {
    let mut config: Value = serde_json::from_str(&seed_table_config(vec![])).unwrap();
    config["table"]["hosts"][0]["ports"] = json!([9000]);
    assert_refused(
        &config.to_string(),
        "global_guard: invalid configuration: table: hash ",
    );
}

#[test]
fn table_form_allows_known_hosts_and_sets_the_cluster() {
    let envoy = Envoy::start(&seed_table_config(vec![]));
    for version in VERSIONS {
        let reply = envoy.get(version, "httpbin.bar.global:8000", &[]);
        assert_eq!(reply.status, 200, "{version:?}: {reply:?}");
        assert_eq!(reply.header("x-global-guard"), None);
        assert_eq!(reply.upstream_header_lines(CLUSTER), ["cluster2"]);
        let unknown = envoy.get(version, "nope.bar.global:8000", &[]);
        assert_eq!(unknown.status, 404, "{version:?}: {unknown:?}");
        assert_eq!(unknown.header("x-global-guard"), Some("unknown-host"));
        let port = envoy.get(version, "httpbin.bar.global:9000", &[]);
        assert_eq!(port.status, 404, "{version:?}: {port:?}");
        assert_eq!(port.header("x-global-guard"), Some("unknown-port"));
        let cluster = envoy.get(version, "httpbin.bar.global:8000", &[(CLUSTER, "c9")]);
        assert_eq!(cluster.header("x-global-guard"), Some("unknown-cluster"));
    }
    let log = envoy.log();
    assert!(
        log.contains("global_guard: table fnv1a64:")
            && log.contains(", 1 .global hosts, cluster header x-global-cluster, namespace unknown, configured in "),
        "{log}"
    );
}

#[test]
fn empty_configuration_refuses_every_global_host() {
    // Istio sends no bytes for a WasmPlugin whose pluginConfig is still empty.
    for configuration in ["", r#"{"cluster_header": "x-global-cluster"}"#] {
        let envoy = Envoy::start(configuration);
        let reply = envoy.get(Version::Http1, "httpbin.bar.global:8000", &[]);
        assert_eq!(reply.status, 404, "{configuration:?}: {reply:?}");
        assert_eq!(reply.header("x-global-guard"), Some("unknown-host"));
        let plain = envoy.get(Version::Http1, "localhost", &[]);
        assert_eq!(plain.status, 200, "{plain:?}");
        let log = envoy.log();
        assert!(
            log.contains(
                "global_guard: the configuration holds no table; every .global host is refused"
            ),
            "{log}"
        );
        assert!(
            log.contains("global_guard: no table yet, 0 .global hosts"),
            "{log}"
        );
    }
}

/// The exportTo cases of the matrix: each host's `exportTo` (None: unset), all in namespace foo.
const EXPORTS: [(&str, Option<&[&str]>); 5] = [
    ("own.foo.global", Some(&["."])),
    ("listed.foo.global", Some(&["bar"])),
    ("all.foo.global", Some(&["*"])),
    ("none.foo.global", Some(&["~"])),
    ("unset.foo.global", None),
];

fn exported_entries() -> Vec<Value> {
    EXPORTS
        .iter()
        .map(|(host, export_to)| {
            let mut entry = service_entry(host, &[8000], &["cluster2"]);
            if let Some(list) = export_to {
                entry["spec"]["exportTo"] = json!(list);
            }
            entry
        })
        .collect()
}

/// Envoy with `configuration`, its node metadata `NAMESPACE` set to `node` if given.
fn start_in(node: Option<&str>, configuration: &str) -> Envoy {
    let metadata = node.map_or(json!({}), |ns| json!({ "NAMESPACE": ns }));
    Envoy::must(Envoy::launch(
        free_port(),
        inline_filter(configuration),
        metadata,
    ))
}

/// Asserts which of [`EXPORTS`]' hosts `envoy` lets through: the rest are 404 not-exported.
fn assert_visible(envoy: &Envoy, what: &str, visible: &[&str]) {
    for (host, _) in EXPORTS {
        let answer = get_once(envoy.port, &format!("{host}:8000")).unwrap();
        if visible.contains(&host) {
            assert_eq!(
                (answer.status, answer.reason.as_deref()),
                (200, None),
                "{what}: {host}"
            );
        } else {
            assert_eq!(
                (answer.status, answer.reason.as_deref()),
                (404, Some("not-exported")),
                "{what}: {host}"
            );
        }
    }
}

#[test]
fn export_to_decides_per_proxy_namespace() {
    let configuration = seed_table_config(exported_entries());
    let cases: [(Option<&str>, &[&str]); 4] = [
        (
            Some("foo"),
            &["own.foo.global", "all.foo.global", "unset.foo.global"],
        ),
        (
            Some("bar"),
            &["listed.foo.global", "all.foo.global", "unset.foo.global"],
        ),
        (Some("other"), &["all.foo.global", "unset.foo.global"]),
        // No namespace known: only what every namespace sees.
        (None, &["all.foo.global", "unset.foo.global"]),
    ];
    for (node, visible) in cases {
        let envoy = start_in(node, &configuration);
        assert_visible(&envoy, &format!("seen from {node:?}"), visible);
        let expected = match node {
            Some(ns) => format!("namespace {ns} (node metadata)"),
            None => "namespace unknown".to_string(),
        };
        assert!(envoy.log().contains(&expected), "{}", envoy.log());
    }
}

#[test]
fn configured_namespace_overrides_node_metadata() {
    let mut configuration: Value =
        serde_json::from_str(&seed_table_config(exported_entries())).unwrap();
    configuration["namespace"] = json!("bar");
    let envoy = start_in(Some("foo"), &configuration.to_string());
    assert_visible(
        &envoy,
        "configured bar on a node in foo",
        &["listed.foo.global", "all.foo.global", "unset.foo.global"],
    );
    assert!(
        envoy.log().contains("namespace bar (configured)"),
        "{}",
        envoy.log()
    );
    let answer = get_once(envoy.port, "own.foo.global:8000").unwrap();
    assert_eq!(answer.status, 404);
}

#[test]
fn default_export_to_hides_unset_entries_from_other_namespaces() {
    let mut entries = common::seed_entries();
    entries.extend(exported_entries());
    let configuration = json!({"service_entries": entries, "default_export_to": ["."]}).to_string();
    let from_bar = start_in(Some("bar"), &configuration);
    assert_visible(
        &from_bar,
        "default . seen from bar",
        &["listed.foo.global", "all.foo.global"],
    );
    let from_foo = start_in(Some("foo"), &configuration);
    assert_visible(
        &from_foo,
        "default . seen from foo",
        &["own.foo.global", "all.foo.global", "unset.foo.global"],
    );
}

#[test]
fn refuses_a_service_entry_with_an_unknown_field() {
    let mut entry = service_entry("a.b.global", &[80], &[]);
    entry["spec"]["resolutions"] = "DNS".into();
    let configuration = serde_json::json!({ "service_entries": [entry] }).to_string();
    assert_refused(
        &configuration,
        "global_guard: invalid configuration: unknown field `resolutions`",
    );
}

#[test]
fn http2_requests_carry_the_host_as_authority() {
    // Guards the test harness itself: curl sends the Host header as :authority over HTTP/2.
    let envoy = Envoy::start(&seed_config(vec![]));
    let reply = envoy.get(Version::Http2, "httpbin.bar.global:8000", &[]);
    assert_eq!(reply.header("x-global-guard"), None);
    assert!(
        reply
            .body
            .to_ascii_lowercase()
            .contains("host: httpbin.bar.global:8000"),
        "{reply:?}"
    );
}
