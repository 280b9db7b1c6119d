//! `make demo`: the seed scenario end to end, printing each hop, then cleaning up.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use demo::host::{self, Host};
use demo::scenario::{Exchange, Programs, Scenario, CLUSTER2_GW_ADDR, LIVE_DEADLINE, VIP};
use serde_json::{json, Value};

fn main() -> ExitCode {
    if !host::is_root() {
        eprintln!("demo: needs root: it creates network namespaces, a veth pair and iptables rules (run `sudo make demo`)");
        return ExitCode::from(1);
    }
    let host = Host::default();
    let on_signal = host.clone();
    match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    eprintln!("\ndemo: interrupted; removing what it created");
                    on_signal.clean();
                    std::process::exit(130);
                }
            });
        }
        Err(e) => eprintln!("demo: cannot catch interrupts ({e}); clean-up runs only at the end"),
    }
    let result = run(host.clone());
    host.clean();
    match result {
        Ok(()) => {
            println!("\nCleaned up: namespaces, veth pair, processes and files removed.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn section(title: &str) {
    println!("\n== {title}");
}

fn show(exchange: &Exchange) {
    println!("  {}", exchange.status_line);
    for (name, value) in &exchange.headers {
        if name.starts_with("x-") || name == "server" {
            println!("  {name}: {value}");
        }
    }
}

fn counter(stats: &std::collections::BTreeMap<String, u64>, suffix: &str) -> u64 {
    stats
        .iter()
        .filter(|(k, _)| k.ends_with(suffix))
        .map(|(_, v)| *v)
        .sum()
}

fn run(host: Host) -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let programs = Programs::from_root(&root);
    section("bringing up cluster1 and cluster2 (network namespaces gm-cluster1, gm-cluster2)");
    let mut scenario = Scenario::up(host, programs).context("setting up the clusters")?;
    println!("  cluster2 ingress gateway at {CLUSTER2_GW_ADDR}:15443, httpbin behind its sidecar");

    section("kubectl apply: the seed's ServiceEntry, reviewed by admission-webhook serve");
    let admission = scenario.apply("serviceentry-direct.yaml")?;
    println!("  admitted: {}", admission.allowed);
    if !admission.allowed {
        bail!("the seed's ServiceEntry was denied: {}", admission.message);
    }

    section("DNS in the sleep pod (dns-shim; search list and ndots:5 as in a pod)");
    print!("{}", indent(&scenario.dig("httpbin.bar.global")?));
    print!("{}", indent(&scenario.resolve("httpbin.bar.global")?));

    section("curl -I httpbin.bar.global:8000/headers from the sleep pod");
    let before = scenario.gateway_stats("downstream_cx_total")?;
    let exchange = scenario.verify()?;
    show(&exchange);
    if exchange.status != 200 {
        bail!("expected 200 from httpbin, got {}", exchange.status_line);
    }
    let after = scenario.gateway_stats("downstream_cx_total")?;
    println!("  hops:");
    println!("    1. dns-shim answered httpbin.bar.global -> {VIP}");
    let sidecar = scenario.sidecar_stats("global_guard")?;
    println!("    2. cluster1 sidecar (traffic to {VIP}:8000 captured by iptables): global_guard allowed {}", counter(&sidecar, "allowed"));
    println!(
        "    3. cluster2 ingress gateway {CLUSTER2_GW_ADDR}:15443, SNI outbound_.8000_._.httpbin.bar.svc.cluster.local: connections {} -> {}",
        counter(&before, "listener.198.18.2.1_15443.downstream_cx_total"),
        counter(&after, "listener.198.18.2.1_15443.downstream_cx_total")
    );
    let headers = scenario.curl(&["httpbin.bar.global:8000/headers"])?;
    let body: serde_json::Value = serde_json::from_str(&headers.body).unwrap_or_default();
    println!(
        "    4. httpbin's sidecar verified the caller: {}",
        body.pointer("/headers/X-Forwarded-Client-Cert")
            .unwrap_or(&Value::Null)
            .as_str()
            .unwrap_or("(no client certificate)")
    );
    println!("    5. httpbin replied {}", exchange.status_line);

    section("a certificate from outside the mesh is refused by httpbin's sidecar");
    match scenario.foreign_client() {
        Ok(out) => bail!("a foreign certificate was accepted: {out}"),
        Err(e) => {
            // curl's own words are the last part of the message.
            let text = e.to_string();
            let reason = text.rsplit("failed: ").next().unwrap_or(&text);
            println!("  refused: {reason}");
        }
    }

    section("variant: through cluster1's egress gateway");
    let admission = scenario.apply("serviceentry-egress.yaml")?;
    println!("  admitted: {}", admission.allowed);
    let exchange = scenario.verify()?;
    show(&exchange);
    let egress = scenario.egress_stats("downstream_cx_total")?;
    println!(
        "  egress gateway connections: {}",
        counter(&egress, "listener.198.18.1.1_15443.downstream_cx_total")
    );

    section("variant: version-aware routing with endpoint label cluster: cluster2");
    let admission = scenario.apply("serviceentry-versioned.yaml")?;
    println!("  admitted: {}", admission.allowed);
    let chosen = scenario.curl(&[
        "-H",
        "x-global-cluster: cluster2",
        "httpbin.bar.global:8000/headers",
    ])?;
    println!("  x-global-cluster: cluster2 -> {}", chosen.status_line);
    let unset = scenario.curl(&["httpbin.bar.global:8000/headers"])?;
    let body: serde_json::Value = serde_json::from_str(&unset.body).unwrap_or_default();
    println!(
        "  no header -> {}; global_guard set X-Global-Cluster: {}",
        unset.status_line,
        body.pointer("/headers/X-Global-Cluster")
            .unwrap_or(&Value::Null)
            .as_str()
            .unwrap_or("(none)")
    );

    section("rejected: a subset that does not exist (global_guard)");
    let wrong = scenario.curl(&[
        "-H",
        "x-global-cluster: cluster9",
        "httpbin.bar.global:8000/headers",
    ])?;
    show(&wrong);
    print!("{}", indent(&wrong.body));

    section("rejected: an unknown .global host (global_guard)");
    let unknown = scenario.curl(&[
        "-H",
        "Host: httpbin.baz.global:8000",
        "httpbin.bar.global:8000/headers",
    ])?;
    show(&unknown);
    print!("{}", indent(&unknown.body));

    section("rejected: a second ServiceEntry with the VIP 127.255.0.2 (admission-webhook)");
    let duplicate = scenario.seed_copy("httpbin-copy", "httpbin2.bar.global")?;
    let denied = scenario.review_only(&duplicate)?;
    println!("  allowed: {}\n{}", denied.allowed, indent(&denied.message));

    section("rejected: an endpoint on port 8000 instead of 15443 (admission-webhook)");
    let mut wrong_port = scenario.seed_copy("httpbin-direct", "httpbin3.bar.global")?;
    for (path, value) in [
        ("/spec/addresses", json!(["127.255.0.3"])),
        ("/spec/endpoints/0/ports/http1", json!(8000)),
    ] {
        if let Some(slot) = wrong_port.pointer_mut(path) {
            *slot = value;
        }
    }
    let denied = scenario.review_only(&wrong_port)?;
    println!("  allowed: {}\n{}", denied.allowed, indent(&denied.message));

    live(&mut scenario)
}

const LIVE_HOST: &str = "live.bar.global";
const LIVE_VIP: &str = "127.255.0.9";
const LIVE_FILE: &str = "live-bar.json";

/// A ServiceEntry created and deleted while everything runs: dns-shim follows the catalog,
/// globalmesh-controller writes the new table to the ECDS file, the sidecar's Envoy takes it.
fn live(scenario: &mut Scenario) -> anyhow::Result<()> {
    section("live: a ServiceEntry applied while both clusters run");
    let url = format!("{LIVE_HOST}:8000/headers");
    // After the deletion DNS no longer answers; a client that kept the address still tries.
    let resolve = format!("{LIVE_HOST}:8000:{LIVE_VIP}");
    let cached = ["--resolve", resolve.as_str(), url.as_str()];
    let seconds = |d: std::time::Duration| format!("{:.2} s", d.as_secs_f64());
    println!(
        "  global_guard in the cluster1 sidecar comes by ECDS from the file globalmesh-controller writes (version {})",
        scenario.ecds_version()?
    );
    let before = scenario.curl(&cached)?;
    println!(
        "  before: dig {LIVE_HOST} -> {}; curl to {LIVE_VIP} -> {} x-global-guard: {}",
        scenario.dns_answer(LIVE_HOST)?.rcode,
        before.status,
        before.header("x-global-guard").unwrap_or("(none)")
    );

    let processes = scenario.host.processes();
    let mut entry = scenario.seed_copy("live-bar", LIVE_HOST)?;
    if let Some(slot) = entry.pointer_mut("/spec/addresses") {
        *slot = json!([LIVE_VIP]);
    }
    // Times count from the review, as from `kubectl apply`.
    let written = std::time::Instant::now();
    let admission = scenario.create(LIVE_FILE, &entry)?;
    println!(
        "  kubectl apply {LIVE_HOST} ({LIVE_VIP}, endpoint {CLUSTER2_GW_ADDR}:15443): admitted {} (CREATE); written as {LIVE_FILE} beside httpbin-bar.yaml",
        admission.allowed
    );
    if !admission.allowed {
        bail!("{LIVE_HOST} was denied: {}", admission.message);
    }
    let limit = seconds(LIVE_DEADLINE);
    let Some((elapsed, answer)) = scenario.until_dns(written, LIVE_HOST, "NOERROR") else {
        bail!("dns-shim did not answer {LIVE_HOST} within {limit}");
    };
    println!(
        "  dns-shim answered {LIVE_HOST} -> {} after {}",
        answer.addresses.join(", "),
        seconds(elapsed)
    );
    let Some((elapsed, (exchange, was, now))) = scenario.until_allowed(written, &[url.as_str()])
    else {
        bail!("global_guard did not allow {LIVE_HOST} within {limit}");
    };
    println!(
        "  curl {url}: global_guard allowed it after {} (allowed {was} -> {now}, no x-global-guard)",
        seconds(elapsed)
    );
    println!("    {}", exchange.status_line);
    print!("{}", indent(&indent(&exchange.body)));
    for line in scenario.controller_metrics("globalmesh_controller_writes_total")? {
        println!("  globalmesh-controller: {line}");
    }
    println!(
        "  ECDS file version {}; the sidecar's global_guard runs version {}",
        scenario.ecds_version()?,
        scenario.sidecar_ecds_version()?
    );

    let deleted = std::time::Instant::now();
    let deletion = scenario.delete(LIVE_FILE)?;
    println!(
        "  kubectl delete {LIVE_HOST}: admitted {} (DELETE); {LIVE_FILE} removed",
        deletion.allowed
    );
    if !deletion.allowed {
        bail!(
            "the deletion of {LIVE_HOST} was denied: {}",
            deletion.message
        );
    }
    let Some((elapsed, answer)) = scenario.until_dns(deleted, LIVE_HOST, "NXDOMAIN") else {
        bail!("dns-shim still answered {LIVE_HOST} {limit} after its deletion");
    };
    println!(
        "  dig {LIVE_HOST} -> {} after {}",
        answer.rcode,
        seconds(elapsed)
    );
    let Some((elapsed, refused)) = scenario.until_refused(deleted, &cached, "unknown-host") else {
        bail!("global_guard still allowed {LIVE_HOST} {limit} after its deletion");
    };
    println!(
        "  curl to {LIVE_VIP} (the address kept) -> {} after {}",
        refused.status_line,
        seconds(elapsed)
    );
    println!(
        "  x-global-guard: {}",
        refused.header("x-global-guard").unwrap_or("(none)")
    );
    print!("{}", indent(&refused.body));
    for line in scenario.controller_metrics("globalmesh_controller_writes_total")? {
        println!("  globalmesh-controller: {line}");
    }
    if scenario.host.processes() != processes {
        bail!("a process was restarted during the live step");
    }
    println!(
        "  nothing was restarted: the same {} processes ran before and after",
        processes.len()
    );
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
