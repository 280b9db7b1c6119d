//! The Kubernetes source against the API-compatible test server: the view a sink holds is
//! checked after every event, drop and expiry.
// Test code: a failing unwrap is a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catalog::kubernetes::{self, KubeError, Settings, Sink, Source, Trouble};
use fake_apiserver::{service_entry as se, FakeApiServer, Request};
use policy::{ObjectKey, ServiceEntry};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Recorded {
    view: BTreeMap<ObjectKey, ServiceEntry>,
    resets: usize,
    flushes: usize,
    api_troubles: Vec<String>,
    invalid: Vec<String>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Recorded>>);

impl Sink for Recorder {
    fn reset(&mut self, entries: Vec<ServiceEntry>) {
        let mut r = self.0.lock().unwrap();
        r.view = entries.into_iter().map(|e| (e.key(), e)).collect();
        r.resets += 1;
    }
    fn apply(&mut self, entry: ServiceEntry) {
        self.0.lock().unwrap().view.insert(entry.key(), entry);
    }
    fn delete(&mut self, key: &ObjectKey) {
        self.0.lock().unwrap().view.remove(key);
    }
    fn flush(&mut self) {
        self.0.lock().unwrap().flushes += 1;
    }
    fn trouble(&mut self, trouble: Trouble<'_>) {
        let mut r = self.0.lock().unwrap();
        match trouble {
            Trouble::Api(e) => r.api_troubles.push(e.to_string()),
            Trouble::Invalid(e) => r.invalid.push(e.to_string()),
        }
    }
}

impl Recorder {
    /// Waits until `cond` holds for the recorded state.
    async fn until(&self, what: &str, cond: impl Fn(&Recorded) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !cond(&self.0.lock().unwrap()) {
            if tokio::time::Instant::now() >= deadline {
                let r = self.0.lock().unwrap();
                panic!(
                    "timed out waiting for {what}; view: {:?}, resets: {}, troubles: {:?}",
                    r.view.keys().collect::<Vec<_>>(),
                    r.resets,
                    r.api_troubles,
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn address(&self, namespace: &str, name: &str) -> Option<String> {
        let r = self.0.lock().unwrap();
        r.view
            .get(&ObjectKey::new(namespace, name))
            .map(|e| e.spec.addresses.join(","))
    }

    fn keys(&self) -> Vec<String> {
        let r = self.0.lock().unwrap();
        r.view.keys().map(ToString::to_string).collect()
    }

    fn resets(&self) -> usize {
        self.0.lock().unwrap().resets
    }
}

fn count(fake: &FakeApiServer, pred: impl Fn(&Request) -> bool) -> usize {
    fake.requests().iter().filter(|r| pred(r)).count()
}

async fn follow(fake: &FakeApiServer, dir: &std::path::Path, settings: Settings) -> Recorder {
    let settings = Settings {
        kubeconfig: Some(fake.write_kubeconfig(dir)),
        ..settings
    };
    let recorder = Recorder::default();
    tokio::spawn(kubernetes::run(settings, recorder.clone()));
    recorder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_lists_pages_events_drops_and_expiry() {
    let fake = FakeApiServer::start().await;
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        fake.create(se(
            "bar",
            name,
            &format!("{name}.bar.global"),
            &format!("127.255.0.{}", i + 2),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = follow(
        &fake,
        dir.path(),
        Settings {
            page_size: 2,
            ..Settings::default()
        },
    )
    .await;

    // First list, in two pages, then a watch from the list's resourceVersion.
    rec.until("the first list", |r| r.resets == 1).await;
    assert_eq!(rec.keys(), ["bar/a", "bar/b", "bar/c"]);
    let lists: Vec<Request> = fake
        .requests()
        .into_iter()
        .filter(Request::is_list)
        .collect();
    assert_eq!(lists.len(), 2, "{lists:?}");
    assert_eq!(lists[0].param("limit"), Some("2"));
    assert!(lists[1].param("continue").is_some());
    assert!(lists[0].path.starts_with("/apis/networking.istio.io/v1/"));
    assert!(fake.wait_for_watch_from(4, WAIT).await);

    // ADDED, MODIFIED, DELETED, each seen in the view.
    fake.create(se("foo", "d", "d.foo.global", "127.255.0.9"));
    rec.until("d added", |r| {
        r.view.contains_key(&ObjectKey::new("foo", "d"))
    })
    .await;
    fake.update(se("bar", "a", "a.bar.global", "127.255.0.20"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while rec.address("bar", "a").as_deref() != Some("127.255.0.20") {
        assert!(tokio::time::Instant::now() < deadline, "a not modified");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fake.delete("bar", "b");
    rec.until("b deleted", |r| {
        !r.view.contains_key(&ObjectKey::new("bar", "b"))
    })
    .await;
    assert_eq!(rec.keys(), ["bar/a", "bar/c", "foo/d"]);
    assert_eq!(rec.resets(), 1, "watch events must not re-list");
    rec.until("a flush after the changes", |r| r.flushes >= 2)
        .await;

    // Garbage in the watch stream is reported and skipped; the next event still arrives.
    fake.send_garbage();
    fake.create(se("bar", "h", "h.bar.global", "127.255.0.13"));
    rec.until("h after garbage", |r| {
        r.view.contains_key(&ObjectKey::new("bar", "h"))
    })
    .await;
    fake.delete("bar", "h");
    rec.until("h deleted", |r| {
        !r.view.contains_key(&ObjectKey::new("bar", "h"))
    })
    .await;

    // A dropped connection: the watch resumes from the last resourceVersion, no new list.
    let rv = fake.resource_version();
    fake.drop_watches();
    assert!(
        fake.wait_for_watch_from(rv, WAIT).await,
        "no watch resumed from {rv}: {:?}",
        fake.requests()
    );
    fake.create(se("bar", "e", "e.bar.global", "127.255.0.10"));
    rec.until("e added after the drop", |r| {
        r.view.contains_key(&ObjectKey::new("bar", "e"))
    })
    .await;
    assert_eq!(count(&fake, Request::is_list), 2);

    // 410 in the stream: a re-list replaces the view, dropping what was deleted meanwhile.
    fake.hold_lists(true);
    fake.expire_watches();
    assert!(fake.wait_for_requests(Request::is_list, 3, WAIT).await);
    fake.delete("bar", "c");
    fake.create(se("bar", "f", "f.bar.global", "127.255.0.11"));
    // The view does not change while the re-list waits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rec.keys().contains(&"bar/c".to_string()));
    fake.hold_lists(false);
    rec.until("the re-list", |r| r.resets == 2).await;
    assert_eq!(rec.keys(), ["bar/a", "bar/e", "bar/f", "foo/d"]);

    // A re-list that answers with a cut-off body: reported, retried, and the view stays.
    fake.break_lists(2);
    fake.expire_watches();
    fake.create(se("bar", "i", "i.bar.global", "127.255.0.14"));
    rec.until("the re-list after two broken ones", |r| r.resets == 3)
        .await;
    assert!(rec.keys().contains(&"bar/i".to_string()));
    let troubles = rec.0.lock().unwrap().api_troubles.clone();
    assert!(
        troubles.iter().filter(|t| t.contains("list")).count() >= 2,
        "{troubles:?}"
    );

    // A watch that resumes from a compacted resourceVersion gets an ERROR 410 and re-lists.
    // (Cut the watch that follows the re-list, once it is open.)
    let deadline = tokio::time::Instant::now() + WAIT;
    while fake.open_watches() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no watch after the re-list"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fake.drop_watches();
    fake.create(se("bar", "g", "g.bar.global", "127.255.0.12"));
    fake.compact();
    rec.until("the re-list after compaction", |r| r.resets == 4)
        .await;
    assert!(rec.keys().contains(&"bar/g".to_string()));
    assert!(rec
        .0
        .lock()
        .unwrap()
        .api_troubles
        .iter()
        .any(|t| t.contains("too old resource version")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_namespace_and_bookmarks() {
    let fake = FakeApiServer::start().await;
    fake.create(se("bar", "a", "a.bar.global", "127.255.0.2"));
    fake.create(se("foo", "b", "b.foo.global", "127.255.0.3"));
    let dir = tempfile::tempdir().unwrap();
    let rec = follow(
        &fake,
        dir.path(),
        Settings {
            namespace: Some("bar".into()),
            ..Settings::default()
        },
    )
    .await;
    rec.until("the first list", |r| r.resets == 1).await;
    assert_eq!(rec.keys(), ["bar/a"]);
    assert!(fake
        .requests()
        .iter()
        .filter(|r| r.is_collection())
        .all(|r| r.path == "/apis/networking.istio.io/v1/namespaces/bar/serviceentries"));
    assert!(fake.wait_for_requests(Request::is_watch, 1, WAIT).await);
    let watch = fake.requests().into_iter().find(Request::is_watch).unwrap();
    assert_eq!(watch.param("allowWatchBookmarks"), Some("true"));

    // Changes elsewhere are not seen; a BOOKMARK moves the resourceVersion past them, so the
    // next watch starts there.
    fake.create(se("foo", "c", "c.foo.global", "127.255.0.4"));
    fake.create(se("foo", "d", "d.foo.global", "127.255.0.5"));
    let rv = fake.resource_version();
    fake.bookmark();
    tokio::time::sleep(Duration::from_millis(200)).await;
    fake.drop_watches();
    assert!(
        fake.wait_for_watch_from(rv, WAIT).await,
        "the bookmark's resourceVersion {rv} was not used: {:?}",
        fake.requests()
    );
    fake.create(se("bar", "e", "e.bar.global", "127.255.0.6"));
    rec.until("e", |r| r.view.len() == 2).await;
    assert_eq!(rec.keys(), ["bar/a", "bar/e"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_older_versions() {
    for (served, expected) in [
        (&["v1beta1", "v1alpha3"][..], "networking.istio.io/v1beta1"),
        (&["v1alpha3"][..], "networking.istio.io/v1alpha3"),
    ] {
        let fake = FakeApiServer::serving(served).await;
        fake.create(se("bar", "a", "a.bar.global", "127.255.0.2"));
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            kubeconfig: Some(fake.write_kubeconfig(dir.path())),
            ..Settings::default()
        };
        let source = Source::connect(&settings).await.unwrap();
        assert_eq!(source.api_version(), expected);
        let listed = source.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        let entry = listed[0].as_ref().unwrap();
        assert_eq!(entry.api_version, expected);
        assert_eq!(entry.spec.addresses, ["127.255.0.2"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors_without_istio_or_credentials() {
    let fake = FakeApiServer::serving(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        kubeconfig: Some(fake.write_kubeconfig(dir.path())),
        ..Settings::default()
    };
    let err = Source::connect(&settings).await.unwrap_err();
    assert!(matches!(err, KubeError::NotServed { .. }), "{err}");
    assert!(err.to_string().contains("networking.istio.io"), "{err}");

    let fake = FakeApiServer::start().await;
    let settings = Settings {
        kubeconfig: Some(fake.write_kubeconfig_with_token(dir.path(), "wrong")),
        ..Settings::default()
    };
    let err = Source::connect(&settings).await.unwrap_err();
    // The API server's answer is kept, not flattened into text.
    assert_eq!(err.status(), Some(401), "{}", err.chain());
    assert!(err.chain().contains("Unauthorized"), "{}", err.chain());
    // run() keeps trying and reports each failure; nothing reaches the view.
    let rec = Recorder::default();
    let task = tokio::spawn(kubernetes::run(settings, rec.clone()));
    rec.until("a reported failure", |r| !r.api_troubles.is_empty())
        .await;
    assert_eq!(rec.resets(), 0);
    task.abort();

    let missing = Settings {
        kubeconfig: Some(dir.path().join("no-such-file")),
        ..Settings::default()
    };
    let err = Source::connect(&missing).await.unwrap_err();
    assert!(err.to_string().contains("no-such-file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_objects_are_left_out_and_reported() {
    let fake = FakeApiServer::start().await;
    fake.create(se("bar", "a", "a.bar.global", "127.255.0.2"));
    let mut bad = se("bar", "bad", "bad.bar.global", "127.255.0.3");
    bad["spec"]["ports"][0]["number"] = json!("eighty");
    fake.create(bad);
    let dir = tempfile::tempdir().unwrap();
    let rec = follow(&fake, dir.path(), Settings::default()).await;
    rec.until("the first list", |r| r.resets == 1).await;
    assert_eq!(rec.keys(), ["bar/a"]);
    assert!(rec.0.lock().unwrap().invalid[0].contains("bar/bad"));

    // A valid object modified into an unreadable one leaves the view.
    assert!(fake.wait_for_requests(Request::is_watch, 1, WAIT).await);
    let mut broken = se("bar", "a", "a.bar.global", "127.255.0.2");
    broken["spec"]["hostz"] = json!(["x"]);
    fake.update(broken);
    rec.until("a removed", |r| r.view.is_empty()).await;
    let invalid = rec.0.lock().unwrap().invalid.clone();
    assert!(
        invalid
            .iter()
            .any(|e| e.contains("bar/a") && e.contains("hostz")),
        "{invalid:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_changes_is_flushed_together() {
    let fake = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rec = follow(&fake, dir.path(), Settings::default()).await;
    rec.until("the first list", |r| r.resets == 1).await;
    assert!(fake.wait_for_requests(Request::is_watch, 1, WAIT).await);
    let before = rec.0.lock().unwrap().flushes;
    // 50 changes, each in a watch event of its own, over about half a second.
    for i in 0..50 {
        fake.create(se(
            "bar",
            &format!("s{i}"),
            &format!("s{i}.bar.global"),
            &format!("127.255.1.{i}"),
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rec.until("the burst", |r| r.view.len() == 50).await;
    // Flushed after the last change, and far fewer times than there were changes.
    tokio::time::sleep(kubernetes::FLUSH_INTERVAL * 2).await;
    let flushes = rec.0.lock().unwrap().flushes - before;
    assert!(
        (1..=10).contains(&flushes),
        "{flushes} flushes for 50 changes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_goes_away_is_discovered_again() {
    let fake = FakeApiServer::serving(&["v1alpha3", "v1beta1"]).await;
    fake.create(se("bar", "a", "a.bar.global", "127.255.0.2"));
    let dir = tempfile::tempdir().unwrap();
    let rec = follow(&fake, dir.path(), Settings::default()).await;
    rec.until("the first list", |r| r.resets == 1).await;
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.is_list() && r.path.contains("/v1beta1/")));
    // An upgrade serves v1 and drops v1beta1; the watch is cut on the way.
    fake.serve_versions(&["v1", "v1alpha3"]);
    fake.drop_watches();
    fake.create(se("bar", "b", "b.bar.global", "127.255.0.3"));
    rec.until("a list of v1", |r| r.resets == 2).await;
    assert_eq!(rec.keys(), ["bar/a", "bar/b"]);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.is_list() && r.path.contains("/v1/")));
    let troubles = rec.0.lock().unwrap().api_troubles.clone();
    assert!(
        troubles.iter().any(|t| t.contains("no longer served")),
        "{troubles:?}"
    );
}
