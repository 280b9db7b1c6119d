//! Every answer class, asked with dig over UDP and TCP of the real binary, with a real unbound
//! as the upstream.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{data, seed, Shim, Unbound};

const SEARCH: [&str; 3] = [
    "foo.svc.cluster.local",
    "svc.cluster.local",
    "cluster.local",
];

fn start(upstream: &Unbound) -> Shim {
    let direct = seed("serviceentry-direct.yaml");
    let multi = data("multi.yaml");
    let upstream = upstream.addr.to_string();
    let mut args = vec![
        "--service-entries",
        direct.to_str().unwrap(),
        multi.to_str().unwrap(),
        "--upstream",
        &upstream,
    ];
    for domain in SEARCH {
        args.extend(["--search-domain", domain]);
    }
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Shim::start(&args)
}

#[test]
fn known_host_answers_its_vip_over_udp_and_tcp() {
    let upstream = Unbound::start();
    let shim = start(&upstream);
    for transport in ["+notcp", "+tcp"] {
        let dig = shim.dig(&["httpbin.bar.global", "A", transport]);
        assert_eq!(dig.status, "NOERROR", "{}", dig.text);
        assert_eq!(dig.data("A"), vec!["127.255.0.2"], "{}", dig.text);
        assert_eq!(dig.answer[0].ttl, 30);
        assert!(dig.has_flag("aa"), "{}", dig.text);
    }
}

#[test]
fn mixed_case_is_matched_and_echoed() {
    let upstream = Unbound::start();
    let shim = start(&upstream);
    let dig = shim.dig(&["HttpBin.BAR.gLoBaL.", "A"]);
    assert_eq!(dig.data("A"), vec!["127.255.0.2"], "{}", dig.text);
    assert!(dig.text.contains(";HttpBin.BAR.gLoBaL.\t"), "{}", dig.text);
}

#[test]
fn several_addresses_are_all_returned() {
    let upstream = Unbound::start();
    let shim = start(&upstream);
    let dig = shim.dig(&["multi.bar.global", "A"]);
    assert_eq!(
        dig.data("A"),
        vec!["127.255.0.11", "127.255.0.12", "127.255.0.13"],
        "{}",
        dig.text
    );
    let dig = shim.dig(&["multi.bar.global", "AAAA", "+tcp"]);
    assert_eq!(dig.data("AAAA"), vec!["fd00:255::11"], "{}", dig.text);
}

#[test]
fn aaaa_and_other_types_of_a_known_name_are_nodata_with_soa() {
    let upstream = Unbound::start();
    let shim = start(&upstream);
    for qtype in ["AAAA", "MX", "TXT", "SRV"] {
        let dig = shim.dig(&["httpbin.bar.global", qtype]);
        assert_eq!(dig.status, "NOERROR", "{qtype}: {}", dig.text);
        assert!(dig.answer.is_empty(), "{qtype}: {}", dig.text);
        assert_eq!(dig.authority.len(), 1, "{qtype}: {}", dig.text);
        assert_eq!(dig.authority[0].rtype, "SOA");
        assert_eq!(dig.authority[0].name, "global.");
    }
}

#[test]
fn unknown_name_under_suffix_is_nxdomain_answered_locally() {
    let upstream = Unbound::start();
    let shim = start(&upstream);
    for transport in ["+notcp", "+tcp"] {
        let dig = shim.dig(&["nope.baz.global", "A", transport]);
        assert_eq!(dig.status, "NXDOMAIN", "{}", dig.text);
        assert_eq!(dig.authority[0].rtype, "SOA", "{}", dig.text);
    }
    let upstream_series = format!(
        "dns_upstream_requests_total{{upstream=\"{}\"}}",
        upstream.addr
    );
    assert_eq!(shim.metric(&upstream_series), 0.0);
    assert_eq!(
        shim.metric("dns_requests_total{qtype=\"A\",outcome=\"nxdomain\"}"),
        2.0
    );
}

#[test]
fn every_search_domain_expansion_is_a_local_cname() {
    let upstream = Unbound::start();
    let shim = start(&upstream);
    for domain in SEARCH {
        let name = format!("httpbin.bar.global.{domain}");
        let dig = shim.dig(&[&name, "A"]);
        assert_eq!(dig.status, "NOERROR", "{}", dig.text);
        assert_eq!(dig.answer[0].rtype, "CNAME", "{}", dig.text);
        assert_eq!(dig.answer[0].data, "httpbin.bar.global.");
        assert_eq!(dig.data("A"), vec!["127.255.0.2"], "{}", dig.text);
    }
    // AAAA of the expansion: the CNAME, no address, still NOERROR.
    let dig = shim.dig(&["httpbin.bar.global.svc.cluster.local", "AAAA", "+tcp"]);
    assert_eq!(dig.status, "NOERROR", "{}", dig.text);
    assert_eq!(dig.data("CNAME"), vec!["httpbin.bar.global."]);
    assert!(dig.data("AAAA").is_empty());
    let upstream_series = format!(
        "dns_upstream_requests_total{{upstream=\"{}\"}}",
        upstream.addr
    );
    assert_eq!(shim.metric(&upstream_series), 0.0);
}

#[test]
fn most_specific_wildcard_wins() {
    let upstream = Unbound::start();
    let shim = start(&upstream);
    let dig = shim.dig(&["anything.bar.global", "A"]);
    assert_eq!(dig.data("A"), vec!["127.255.0.20"], "{}", dig.text);
    let dig = shim.dig(&["x.deep.bar.global", "A"]);
    assert_eq!(dig.data("A"), vec!["127.255.0.21"], "{}", dig.text);
    // The exact host beats the wildcard that also covers it.
    let dig = shim.dig(&["httpbin.bar.global", "A"]);
    assert_eq!(dig.data("A"), vec!["127.255.0.2"], "{}", dig.text);
}

#[test]
fn other_names_are_relayed_as_the_upstream_answered() {
    let upstream = Unbound::start();
    let shim = start(&upstream);
    for transport in ["+notcp", "+tcp"] {
        let direct = common::dig(upstream.addr, &["www.up.test", "A", transport]);
        let relayed = shim.dig(&["www.up.test", "A", transport]);
        assert_eq!(relayed.status, "NOERROR", "{}", relayed.text);
        assert_eq!(relayed.answer, direct.answer, "{}", relayed.text);
        assert_eq!(relayed.answer[0].ttl, 300);
        assert_eq!(relayed.flags, direct.flags, "{}", relayed.text);
        assert!(relayed.edns, "{}", relayed.text);

        let direct = common::dig(upstream.addr, &["nx.up.test", "A", transport]);
        let relayed = shim.dig(&["nx.up.test", "A", transport]);
        assert_eq!(relayed.status, "NXDOMAIN", "{}", relayed.text);
        assert_eq!(relayed.authority, direct.authority, "{}", relayed.text);
        assert_eq!(
            relayed.authority[0].data,
            "ns.up.test. admin.up.test. 7 3600 600 86400 300"
        );
    }
    // Without EDNS from the client, none in the answer either.
    let relayed = shim.dig(&["www.up.test", "A", "+noedns"]);
    assert!(!relayed.edns, "{}", relayed.text);
    assert_eq!(relayed.data("A"), vec!["192.0.2.10"]);
}

#[test]
fn large_answer_is_truncated_on_udp_and_complete_on_tcp() {
    let upstream = Unbound::start();
    let shim = start(&upstream);
    // A client without EDNS gets TC and no more than 512 bytes.
    let udp = shim.dig(&["big.up.test", "TXT", "+noedns", "+ignore"]);
    assert!(udp.has_flag("tc"), "{}", udp.text);
    assert!(udp.data("TXT").len() < 12, "{}", udp.text);
    // dig retries over TCP on TC, as resolvers do; TCP goes upstream over TCP.
    let retried = shim.dig(&["big.up.test", "TXT", "+noedns"]);
    assert_eq!(retried.data("TXT").len(), 12, "{}", retried.text);
    let tcp = shim.dig(&["big.up.test", "TXT", "+tcp"]);
    assert_eq!(tcp.data("TXT").len(), 12, "{}", tcp.text);
    assert!(!tcp.has_flag("tc"));
}

#[test]
fn dead_upstream_gives_servfail_and_the_next_upstream_is_tried() {
    let upstream = Unbound::start();
    let dead = format!("127.0.0.1:{}", common::free_port());
    let direct = seed("serviceentry-direct.yaml");
    let alone = Shim::start(&[
        "--service-entries",
        direct.to_str().unwrap(),
        "--upstream",
        &dead,
        "--upstream-timeout-ms",
        "300",
    ]);
    for transport in ["+notcp", "+tcp"] {
        let dig = alone.dig(&["www.up.test", "A", transport]);
        assert_eq!(dig.status, "SERVFAIL", "{}", dig.text);
    }
    // Local answers do not depend on the upstream.
    assert_eq!(
        alone.dig(&["httpbin.bar.global", "A"]).data("A"),
        vec!["127.255.0.2"]
    );

    let live = upstream.addr.to_string();
    let failover = Shim::start(&[
        "--service-entries",
        direct.to_str().unwrap(),
        "--upstream",
        &dead,
        "--upstream",
        &live,
        "--upstream-timeout-ms",
        "300",
    ]);
    let dig = failover.dig(&["www.up.test", "A"]);
    assert_eq!(dig.data("A"), vec!["192.0.2.10"], "{}", dig.text);
    let failures =
        format!("dns_upstream_failures_total{{upstream=\"{dead}\",reason=\"unreachable\"}}");
    assert_eq!(failover.metric(&failures), 1.0);
}

#[test]
fn readiness_and_metrics_are_served() {
    let upstream = Unbound::start();
    let shim = start(&upstream);
    assert_eq!(shim.http("/healthz").0, 200);
    assert_eq!(shim.http("/readyz").0, 200);
    shim.dig(&["httpbin.bar.global", "A"]);
    let (status, body) = shim.http("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE dns_requests counter"), "{body}");
    assert!(
        body.contains("dns_requests_total{qtype=\"A\",outcome=\"local\"} 1"),
        "{body}"
    );
    assert!(body.contains("dns_catalog_hosts 4"), "{body}");
    assert!(
        body.contains("dns_upstream_request_duration_seconds_bucket"),
        "{body}"
    );
    assert_eq!(shim.http("/nope").0, 404);
}

#[test]
fn hickory_udp_loop_gives_the_same_answers() {
    let upstream = Unbound::start();
    let direct = seed("serviceentry-direct.yaml");
    let up = upstream.addr.to_string();
    let shim = Shim::start(&[
        "--service-entries",
        direct.to_str().unwrap(),
        "--upstream",
        &up,
        "--udp-loop",
        "hickory",
    ]);
    assert_eq!(
        shim.dig(&["httpbin.bar.global", "A"]).data("A"),
        vec!["127.255.0.2"]
    );
    assert_eq!(shim.dig(&["nope.bar.global", "A"]).status, "NXDOMAIN");
    assert_eq!(
        shim.dig(&["www.up.test", "A"]).data("A"),
        vec!["192.0.2.10"]
    );
    let udp = shim.dig(&["big.up.test", "TXT", "+noedns", "+ignore"]);
    assert!(udp.has_flag("tc"), "{}", udp.text);
}

#[test]
fn tcp_queries_reuse_the_upstream_connection() {
    let upstream = Unbound::start();
    let shim = start(&upstream);
    for _ in 0..3 {
        let dig = shim.dig(&["www.up.test", "A", "+tcp"]);
        assert_eq!(dig.data("A"), vec!["192.0.2.10"], "{}", dig.text);
    }
    let series = format!(
        "dns_upstream_tcp_connections_total{{upstream=\"{}\"}}",
        upstream.addr
    );
    assert_eq!(shim.metric(&series), 1.0);
}
