//! Leader election against the stand-in API server: one leader at a time, a takeover once the
//! leader stops renewing, and at once when it gives the Lease up.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use catalog::kubernetes::{self, Settings};
use catalog::lease::{Elector, LeaseSettings};
use fake_apiserver::{FakeApiServer, LEASES};
use tokio::sync::watch;

const LEASE: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(20);

async fn elector(fake: &FakeApiServer, dir: &std::path::Path, who: &str) -> Arc<Elector> {
    let settings = Settings {
        kubeconfig: Some(fake.write_kubeconfig(dir)),
        ..Settings::default()
    };
    let (client, _) = kubernetes::client(&settings).await.unwrap();
    Arc::new(Elector::new(
        client,
        LeaseSettings::new("globalmesh", "globalmesh-repair", who, LEASE),
    ))
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn holder(fake: &FakeApiServer) -> String {
    let leases = fake.objects(LEASES);
    leases
        .get(&("globalmesh".to_string(), "globalmesh-repair".to_string()))
        .and_then(|l| l["spec"]["holderIdentity"].as_str())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_a_takeover_when_it_stops() {
    let fake = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = elector(&fake, dir.path(), "replica-a").await;
    let b = elector(&fake, dir.path(), "replica-b").await;
    let (stop_a, stopped_a) = watch::channel(false);
    let (_stop_b, stopped_b) = watch::channel(false);
    let (lead_a, lead_b) = (a.leading(), b.leading());
    let task_a = tokio::spawn({
        let a = Arc::clone(&a);
        async move { a.run(stopped_a).await }
    });
    until("replica-a leads", || *lead_a.borrow()).await;
    let task_b = tokio::spawn({
        let b = Arc::clone(&b);
        async move { b.run(stopped_b).await }
    });
    // B sees a held Lease and waits, however long a leads.
    tokio::time::sleep(LEASE * 2).await;
    assert!(*lead_a.borrow() && !*lead_b.borrow());
    assert_eq!(holder(&fake), "replica-a");

    // A dies without a word (its task is gone): B takes over once the Lease is not renewed.
    task_a.abort();
    until("replica-b takes over", || *lead_b.borrow()).await;
    assert_eq!(holder(&fake), "replica-b");
    drop(stop_a);
    task_b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_at_once() {
    let fake = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = elector(&fake, dir.path(), "replica-a").await;
    let b = elector(&fake, dir.path(), "replica-b").await;
    let (stop_a, stopped_a) = watch::channel(false);
    let (_stop_b, stopped_b) = watch::channel(false);
    let (lead_a, lead_b) = (a.leading(), b.leading());
    let task_a = tokio::spawn({
        let a = Arc::clone(&a);
        async move { a.run(stopped_a).await }
    });
    until("replica-a leads", || *lead_a.borrow()).await;
    let task_b = tokio::spawn({
        let b = Arc::clone(&b);
        async move { b.run(stopped_b).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let transitions_before = fake.objects(LEASES).values().next().unwrap()["spec"]
        ["leaseTransitions"]
        .as_i64()
        .unwrap();
    // A shuts down gracefully: it gives the Lease up (no holder, a duration of one second),
    // so B need not wait out the two seconds A had.
    stop_a.send(true).unwrap();
    task_a.await.unwrap();
    assert!(!*lead_a.borrow());
    let lease = fake.objects(LEASES).values().next().unwrap().clone();
    assert!(
        lease["spec"]["holderIdentity"].is_null() || lease["spec"]["holderIdentity"] == "replica-b",
        "{lease}"
    );
    until("replica-b takes over", || *lead_b.borrow()).await;
    let lease = fake.objects(LEASES).values().next().unwrap().clone();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-b");
    assert_eq!(
        lease["spec"]["leaseTransitions"].as_i64().unwrap(),
        transitions_before + 1
    );
    task_b.abort();
}
