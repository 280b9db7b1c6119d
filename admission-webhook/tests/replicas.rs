//! Three webhook replicas on one stand-in API server, as deploy/ runs them: two CREATEs of one
//! VIP sent to two replicas at the same moment are never both admitted; VIPs allocated by
//! every replica at once are distinct; a replica killed between claiming and the object being
//! stored leaves an orphan the repair removes; the repair moves to another replica when its
//! leader dies; a dry run claims nothing.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::flow;
use common::h2::{tls_config, H2};
use common::{service_entry, uid_of, Start, Webhook};
use fake_apiserver::{FakeApiServer, ADDRESS_CLAIMS, HOST_CLAIMS, LEASES};
use serde_json::Value;

/// Seconds an unstored claim is held, and the repair's pace, short for the tests.
const GRACE: &str = "3";
const LEASE: &str = "3";

fn replica(kubeconfig: &Path, certs: &Path, name: &str) -> Webhook {
    Webhook::start(Start {
        service_entries: Vec::new(),
        certs: Some(certs.to_path_buf()),
        extra: [
            "--kubernetes",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--identity",
            name,
            "--lease-namespace",
            "globalmesh",
            "--claim-grace",
            GRACE,
            "--lease-duration",
            LEASE,
            "--repair-interval",
            "1",
            "--shutdown-delay",
            "0",
            // Debug builds of three replicas and the stand-in API server share two cores.
            "--claim-timeout",
            "20000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..Start::default()
    })
}

struct Cluster {
    runtime: tokio::runtime::Runtime,
    api: Arc<FakeApiServer>,
    replicas: Vec<Webhook>,
    clients: Vec<H2>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let api = Arc::new(runtime.block_on(FakeApiServer::start()));
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = api.write_kubeconfig(dir.path());
        let certs = dir.path().join("certs");
        common::certs(&certs);
        let replicas: Vec<Webhook> = (0..n)
            .map(|i| replica(&kubeconfig, &certs, &format!("webhook-{i}")))
            .collect();
        let config = tls_config(&certs.join("ca.crt"), None);
        let clients = replicas
            .iter()
            .map(|r| runtime.block_on(H2::connect(r.addr, Arc::clone(&config))))
            .collect();
        Cluster {
            runtime,
            api,
            replicas,
            clients,
            _dir: dir,
        }
    }

    fn client(&self, i: usize) -> H2 {
        self.clients[i % self.clients.len()].clone()
    }

    /// The address claims, address → owner name.
    fn address_claims(&self) -> BTreeMap<String, String> {
        self.api
            .objects(ADDRESS_CLAIMS)
            .into_values()
            .map(|c| {
                (
                    c["spec"]["address"].as_str().unwrap().to_string(),
                    c["spec"]["owner"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn lease_holder(&self) -> String {
        self.api
            .objects(LEASES)
            .values()
            .next()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Polls `done` for up to 60 s.
    fn until(&self, what: &str, mut done: impl FnMut(&Cluster) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A `.global` entry without addresses, to be given one.
fn without_address(name: &str) -> Value {
    let mut object = service_entry(name, "127.255.0.1", 15443);
    object["spec"].as_object_mut().unwrap().remove("addresses");
    object["metadata"].as_object_mut().unwrap().remove("uid");
    object
}

#[test]
fn racing_creates_of_one_vip_on_two_replicas_admit_exactly_one() {
    let cluster = Cluster::start(3);
    const PAIRS: usize = 500;
    let api = Arc::clone(&cluster.api);
    let outcomes: Vec<(flow::Created, flow::Created)> = cluster.runtime.block_on(async {
        let mut pairs = Vec::new();
        for i in 0..PAIRS {
            let address = format!("127.255.{}.{}", 1 + i / 200, 1 + i % 200);
            let mut a = service_entry(&format!("a-{i}"), &address, 15443);
            let mut b = service_entry(&format!("b-{i}"), &address, 15443);
            for object in [&mut a, &mut b] {
                object["metadata"].as_object_mut().unwrap().remove("uid");
            }
            let (first, second) = (cluster.client(i), cluster.client(i + 1));
            let api = Arc::clone(&api);
            pairs.push(async move {
                // The two of a pair at the same moment, on two replicas.
                tokio::join!(
                    flow::create(&api, &first, &first, a),
                    flow::create(&api, &second, &second, b)
                )
            });
        }
        // Thirty-two pairs in flight at a time.
        let mut done = Vec::new();
        let mut pairs = pairs.into_iter();
        loop {
            let batch: Vec<_> = pairs.by_ref().take(32).collect();
            if batch.is_empty() {
                break;
            }
            done.extend(futures::future::join_all(batch).await);
        }
        done
    });
    let mut admitted = 0;
    for (i, (a, b)) in outcomes.iter().enumerate() {
        assert!(
            a.is_ok() != b.is_ok(),
            "pair {i}: exactly one must be admitted, got {} and {}",
            a.as_ref().map(|_| "admitted").unwrap_or_else(|e| e),
            b.as_ref().map(|_| "admitted").unwrap_or_else(|e| e)
        );
        // Denied for the other's claim, or (when the other was stored already and watched) by
        // the rules.
        let denial = a.as_ref().err().or(b.as_ref().err()).unwrap();
        assert!(
            denial.contains("is claimed by ServiceEntry foo/")
                || denial.contains("is already used by ServiceEntry foo/"),
            "{denial}"
        );
        admitted += 1;
    }
    assert_eq!(admitted, PAIRS);
    // Afterwards no VIP and no .global host is held by two stored entries, and each VIP's
    // claim names the entry that holds it.
    let stored = cluster.api.objects(ADDRESS_CLAIMS);
    assert_eq!(stored.len(), PAIRS);
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (a, b) in &outcomes {
        let object = a.as_ref().or(b.as_ref()).unwrap();
        let address = object["spec"]["addresses"][0].as_str().unwrap().to_string();
        holders
            .entry(address)
            .or_default()
            .push(object["metadata"]["name"].as_str().unwrap().to_string());
    }
    let claims = cluster.address_claims();
    for (address, names) in &holders {
        assert_eq!(names.len(), 1, "{address} held by {names:?}");
        assert_eq!(claims[address], names[0], "{address}");
    }
    let hosts = cluster.api.objects(HOST_CLAIMS);
    assert_eq!(hosts.len(), PAIRS);
}

#[test]
fn concurrent_allocations_on_three_replicas_are_distinct() {
    let cluster = Cluster::start(3);
    const CREATES: usize = 1000;
    let api = Arc::clone(&cluster.api);
    let created: Vec<flow::Created> = cluster.runtime.block_on(async {
        let all: Vec<_> = (0..CREATES)
            .map(|i| {
                let client = cluster.client(i);
                let api = Arc::clone(&api);
                async move {
                    flow::create(&api, &client, &client, without_address(&format!("svc-{i}"))).await
                }
            })
            .collect();
        let mut done = Vec::new();
        let mut all = all.into_iter();
        loop {
            let batch: Vec<_> = all.by_ref().take(64).collect();
            if batch.is_empty() {
                break;
            }
            done.extend(futures::future::join_all(batch).await);
        }
        done
    });
    let mut vips = BTreeSet::new();
    for (i, outcome) in created.iter().enumerate() {
        let object = outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("svc-{i} was denied: {e}"));
        let addresses = object["spec"]["addresses"].as_array().unwrap();
        assert_eq!(addresses.len(), 1, "{object}");
        let vip = addresses[0].as_str().unwrap().to_string();
        assert!(vip.starts_with("127.255."), "{vip}");
        assert!(vips.insert(vip.clone()), "{vip} allocated twice");
    }
    assert_eq!(vips.len(), CREATES);
    // Each claimed once, by the entry that got it.
    let claims = cluster.address_claims();
    assert_eq!(claims.len(), CREATES);
    for outcome in &created {
        let object = outcome.as_ref().unwrap();
        let vip = object["spec"]["addresses"][0].as_str().unwrap();
        assert_eq!(claims[vip], object["metadata"]["name"].as_str().unwrap());
    }
}

#[test]
fn a_replica_killed_after_claiming_leaves_an_orphan_the_repair_removes() {
    let mut cluster = Cluster::start(3);
    // Which replica leads the repair.
    cluster.until("a repair leader", |c| !c.lease_holder().is_empty());
    let leader: usize = cluster
        .lease_holder()
        .strip_prefix("webhook-")
        .unwrap()
        .parse()
        .unwrap();
    let victim = (leader + 1) % 3;

    // A dry run claims nothing.
    let dry = fake_apiserver::admission::review(
        "admission.k8s.io/v1",
        "dry",
        fake_apiserver::admission::Operation::Create,
        Some(&service_entry("dry", "127.255.9.9", 15443)),
        None,
        true,
    );
    let answer = cluster
        .runtime
        .block_on(cluster.client(victim).review("/validate", &dry));
    assert_eq!(answer["response"]["allowed"], true);
    assert!(cluster.address_claims().is_empty());

    // The victim admits a CREATE (its validating review claims the VIP) and dies before the
    // API server stores the object.
    let object = service_entry("doomed", "127.255.9.10", 15443);
    let review = fake_apiserver::admission::review(
        "admission.k8s.io/v1",
        &uid_of("doomed"),
        fake_apiserver::admission::Operation::Create,
        Some(&object),
        None,
        false,
    );
    let answer = cluster
        .runtime
        .block_on(cluster.client(victim).review("/validate", &review));
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(cluster.address_claims()["127.255.9.10"], "doomed");
    cluster.replicas[victim].kill();

    // While the claim is young, another entry is refused the VIP; once the grace period has
    // passed, the repair leader removes the orphan and the VIP is free again.
    let other = cluster.client(leader);
    let api = Arc::clone(&cluster.api);
    let first = cluster.runtime.block_on(flow::create(
        &api,
        &other,
        &other,
        service_entry("late", "127.255.9.10", 15443),
    ));
    assert!(
        first
            .as_ref()
            .err()
            .is_some_and(|e| e.contains("foo/doomed")),
        "{first:?}"
    );
    cluster.until("the orphan is removed", |c| {
        !c.address_claims().contains_key("127.255.9.10")
    });
    assert!(cluster.replicas[leader].metric("admission_claims_repaired_total") >= 1.0);
    let second = cluster.runtime.block_on(flow::create(
        &api,
        &other,
        &other,
        service_entry("late", "127.255.9.10", 15443),
    ));
    assert!(second.is_ok(), "{second:?}");
}

#[test]
fn the_repair_moves_to_another_replica_when_its_leader_dies() {
    let mut cluster = Cluster::start(3);
    cluster.until("a repair leader", |c| !c.lease_holder().is_empty());
    let leader: usize = cluster
        .lease_holder()
        .strip_prefix("webhook-")
        .unwrap()
        .parse()
        .unwrap();
    cluster.replicas[leader].kill();
    let dead = format!("webhook-{leader}");
    cluster.until("another replica takes the Lease", |c| {
        let holder = c.lease_holder();
        !holder.is_empty() && holder != dead
    });
    let new_leader: usize = cluster
        .lease_holder()
        .strip_prefix("webhook-")
        .unwrap()
        .parse()
        .unwrap();
    // An orphan made now (a claim whose entry never gets stored) is removed by the new
    // leader.
    let survivor = (0..3).find(|i| *i != leader).unwrap();
    let object = service_entry("orphan", "127.255.8.8", 15443);
    let review = fake_apiserver::admission::review(
        "admission.k8s.io/v1",
        &uid_of("orphan"),
        fake_apiserver::admission::Operation::Create,
        Some(&object),
        None,
        false,
    );
    let answer = cluster
        .runtime
        .block_on(cluster.client(survivor).review("/validate", &review));
    assert_eq!(answer["response"]["allowed"], true);
    assert!(cluster.address_claims().contains_key("127.255.8.8"));
    cluster.until("the new leader removes the orphan", |c| {
        !c.address_claims().contains_key("127.255.8.8")
    });
    assert!(cluster.replicas[new_leader].metric("admission_claims_repaired_total") >= 1.0);
    assert_eq!(
        cluster.replicas[new_leader].metric("admission_repair_leader"),
        1.0
    );
}

#[test]
fn the_repair_claims_for_entries_older_than_the_webhook() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime.block_on(FakeApiServer::start());
    // Stored before any webhook ran: no claims.
    api.create(fake_apiserver::service_entry(
        "foo",
        "old",
        "old.foo.global",
        "127.255.7.7",
    ));
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    common::certs(&certs);
    let webhook = replica(&api.write_kubeconfig(dir.path()), &certs, "webhook-0");
    assert!(webhook.wait_until(|_| {
        api.objects(ADDRESS_CLAIMS)
            .contains_key(&(String::new(), "127.255.7.7".to_string()))
    }));
    let claim = &api.objects(ADDRESS_CLAIMS)[&(String::new(), "127.255.7.7".to_string())];
    assert_eq!(claim["spec"]["owner"]["name"], "old");
    // With the stored entry's uid.
    assert!(claim["spec"]["owner"]["uid"].is_string(), "{claim}");
    // The repair makes one claim after the other: the host's may come a moment later.
    assert!(webhook.wait_until(|_| {
        api.objects(HOST_CLAIMS)
            .contains_key(&(String::new(), "old.foo.global".to_string()))
    }));
}
