//! The real `globalmesh-controller` binary against the stand-in API server: the WasmPlugin's
//! table follows ServiceEntries as they are created, changed and deleted; a burst costs a
//! handful of writes; a hand edit is put back; the leader's death hands the writes to the
//! other replica within the Lease's duration; SIGTERM exits 0 and gives the Lease up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use controller::plugin::{table_hash, FIELD_MANAGER};
use fake_apiserver::{service_entry, FakeApiServer, LEASES, WASM_PLUGINS};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::Api;
use policy::table::Table;
use policy::{Options, ServiceEntry};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_globalmesh-controller");
/// Longest a test waits for something that must happen (a correctness deadline, not a
/// performance figure: the lag is measured in benches/).
const DEADLINE: Duration = Duration::from_secs(15);

struct Controller {
    child: Child,
    admin: SocketAddr,
    logs: mpsc::Receiver<String>,
}

impl Controller {
    fn start(kubeconfig: &Path, extra: &[&str]) -> Controller {
        let controller = Controller::spawn(kubeconfig, extra);
        wait_for("/readyz 200", || controller.get("/readyz").0 == 200);
        controller
    }

    /// Started, its admin endpoint answering; not waited on to be ready.
    fn spawn(kubeconfig: &Path, extra: &[&str]) -> Controller {
        let mut child = Command::new(BIN)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--admin", "127.0.0.1:0", "--lease-namespace", "globalmesh"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start globalmesh-controller");
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + DEADLINE;
        let admin = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = logs
                .recv_timeout(left)
                .expect("the controller reports its admin address");
            if line.contains("admin listening") {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.parse().ok())
                {
                    break addr;
                }
            }
        };
        Controller { child, admin, logs }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}"])
            .arg(format!("http://{}{path}", self.admin))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        match text.rsplit_once('\n') {
            Some((body, code)) => (code.trim().parse().unwrap_or(0), body.to_string()),
            None => (0, text),
        }
    }

    /// One sample by its exact name and labels; 0 when absent.
    fn metric(&self, sample: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn leading(&self) -> bool {
        self.metric("globalmesh_controller_leader") == 1.0
    }

    fn logs(&self) -> Vec<String> {
        self.logs.try_iter().collect()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("not within {DEADLINE:?}: {what}");
}

/// The WasmPlugin as the install leaves it: everything but the table, which is the
/// controller's.
fn installed_plugin() -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "global-guard", "namespace": "istio-system"},
        "spec": {
            "url": "file:///var/local/wasm/global_guard.wasm",
            "failStrategy": "FAIL_CLOSE",
            "match": [{"mode": "CLIENT"}],
            "pluginConfig": {"cluster_header": "x-global-cluster"}
        }
    })
}

fn plugin(api: &FakeApiServer) -> Option<Value> {
    api.objects(WASM_PLUGINS)
        .remove(&("istio-system".to_string(), "global-guard".to_string()))
}

/// The table the controller should write for the stored ServiceEntries.
fn expected(objects: &[Value]) -> Table {
    let entries: Vec<ServiceEntry> = objects
        .iter()
        .map(|o| policy::document::decode(o.clone()).unwrap())
        .collect();
    Table::build(&entries, &Options::default())
}

fn held_hash(api: &FakeApiServer) -> Option<String> {
    plugin(api).and_then(|p| table_hash(&p))
}

fn hosts(api: &FakeApiServer) -> Vec<String> {
    plugin(api)
        .and_then(|p| {
            p["spec"]["pluginConfig"]["table"]["hosts"]
                .as_array()
                .cloned()
        })
        .unwrap_or_default()
        .iter()
        .map(|h| h["host"].as_str().unwrap_or("").to_string())
        .collect()
}

fn patches(api: &FakeApiServer) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/wasmplugins/"))
        .count()
}

struct Scene {
    api: FakeApiServer,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

async fn scene() -> Scene {
    let api = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    Scene {
        api,
        dir,
        kubeconfig,
    }
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_follows_created_changed_and_deleted_entries() {
    let Scene {
        api,
        kubeconfig,
        dir: _dir,
    } = scene().await;
    api.put(WASM_PLUGINS, installed_plugin());
    let seed = service_entry("foo", "httpbin-bar", "httpbin.bar.global", "127.255.0.2");
    api.create(seed.clone());
    let api = std::sync::Arc::new(api);
    let a = std::sync::Arc::clone(&api);
    blocking(move || {
        let controller = Controller::start(&kubeconfig, &[]);
        let want = expected(std::slice::from_ref(&seed));
        wait_for("the seed's table", || held_hash(&a) == want.hash);
        // The install's fields stay; the table is the controller's.
        let object = plugin(&a).unwrap();
        assert_eq!(
            object["spec"]["url"],
            "file:///var/local/wasm/global_guard.wasm"
        );
        assert_eq!(
            object["spec"]["pluginConfig"]["cluster_header"],
            "x-global-cluster"
        );
        let managers: Vec<&str> = object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| {
                m["fieldsV1"]["f:spec"]["f:pluginConfig"]
                    .get("f:table")
                    .is_some()
            })
            .map(|m| m["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, [FIELD_MANAGER]);

        let added = service_entry("bar", "db", "db.bar.global", "127.255.0.3");
        a.create(added.clone());
        let want = expected(&[seed.clone(), added.clone()]);
        wait_for("db.bar.global added", || held_hash(&a) == want.hash);

        let mut changed = added.clone();
        changed["spec"]["ports"][0]["number"] = json!(9000);
        changed["spec"]["exportTo"] = json!(["."]);
        a.update(changed.clone());
        let want = expected(&[seed.clone(), changed]);
        wait_for("db.bar.global changed", || held_hash(&a) == want.hash);
        let table = &plugin(&a).unwrap()["spec"]["pluginConfig"]["table"];
        let db = table["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == "db.bar.global")
            .unwrap()
            .clone();
        assert_eq!(db["ports"], json!([9000]));
        assert_eq!(db["exportTo"], json!(["bar"]));

        a.delete("bar", "db");
        wait_for("db.bar.global deleted", || {
            hosts(&a) == ["httpbin.bar.global"]
        });
        assert!(
            controller.metric("globalmesh_controller_writes_total{target=\"wasmplugin\"}") >= 4.0
        );
        assert_eq!(controller.metric("globalmesh_controller_in_sync"), 1.0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_costs_a_handful_of_writes_and_an_unchanged_table_none() {
    let Scene {
        api,
        kubeconfig,
        dir: _dir,
    } = scene().await;
    api.put(WASM_PLUGINS, installed_plugin());
    let api = std::sync::Arc::new(api);
    let a = std::sync::Arc::clone(&api);
    blocking(move || {
        let controller = Controller::start(&kubeconfig, &[]);
        wait_for("the empty table", || held_hash(&a).is_some());
        let before = patches(&a);
        let mut objects = Vec::new();
        for i in 0..1000 {
            let object = service_entry(
                &format!("ns{}", i % 10),
                &format!("svc{i}"),
                &format!("svc{i}.ns{}.global", i % 10),
                &format!("127.255.{}.{}", 1 + i / 250, 1 + i % 250),
            );
            a.create(object.clone());
            objects.push(object);
        }
        let want = expected(&objects);
        wait_for("all 1,000 hosts", || held_hash(&a) == want.hash);
        let writes = patches(&a) - before;
        for line in controller.logs() {
            eprintln!("{line}");
        }
        assert!(
            (1..=5).contains(&writes),
            "{writes} writes for a burst of 1,000 creates"
        );
        // A change that leaves the table as it is (a label) is not written.
        let before = patches(&a);
        let skipped_before =
            controller.metric("globalmesh_controller_skipped_writes_total{target=\"wasmplugin\"}");
        let mut labelled = objects[0].clone();
        labelled["metadata"]["labels"] = json!({"team": "payments"});
        a.update(labelled);
        wait_for("the unchanged table counted as skipped", || {
            controller.metric("globalmesh_controller_skipped_writes_total{target=\"wasmplugin\"}")
                > skipped_before
        });
        assert_eq!(patches(&a), before, "no write for an unchanged table");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_of_the_table_is_put_back() {
    let Scene {
        api,
        kubeconfig,
        dir: _dir,
    } = scene().await;
    api.put(WASM_PLUGINS, installed_plugin());
    let seed = service_entry("foo", "httpbin-bar", "httpbin.bar.global", "127.255.0.2");
    api.create(seed.clone());
    let want = expected(std::slice::from_ref(&seed));
    let settings = catalog::kubernetes::Settings {
        kubeconfig: Some(kubeconfig.clone()),
        ..Default::default()
    };
    let api = std::sync::Arc::new(api);
    let a = std::sync::Arc::clone(&api);
    let controller = blocking(move || {
        let controller = Controller::start(&kubeconfig, &[]);
        wait_for("the seed's table", || held_hash(&a) == want.hash);
        controller
    })
    .await
    .unwrap();
    // As `kubectl edit` would: a merge patch by another manager, once keeping the old hash
    // (the content no longer matches it) and once dropping the table.
    let (client, _) = catalog::kubernetes::client(&settings).await.unwrap();
    let plugins: Api<DynamicObject> =
        Api::namespaced_with(client, "istio-system", &controller::plugin::resource());
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".to_string()),
        ..PatchParams::default()
    };
    for (round, patch) in [
        json!({"spec": {"pluginConfig": {"table": {"hosts": [{"host": "evil.bar.global", "ports": [80]}]}}}}),
        json!({"spec": {"pluginConfig": {"table": null}}}),
    ]
    .into_iter()
    .enumerate()
    {
        plugins
            .patch("global-guard", &edit, &Patch::Merge(&patch))
            .await
            .unwrap();
        let a = std::sync::Arc::clone(&api);
        let want = expected(std::slice::from_ref(&seed));
        let repairs = blocking(move || {
            wait_for("the table put back", || held_hash(&a) == want.hash);
            let object = plugin(&a).unwrap();
            assert_eq!(object["spec"]["pluginConfig"]["cluster_header"], "x-global-cluster");
        });
        repairs.await.unwrap();
        let count = controller.metric("globalmesh_controller_repairs_total");
        assert!(count >= (round + 1) as f64, "repairs {count} after edit {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_replica_takes_over_when_the_leader_dies() {
    let Scene {
        api,
        kubeconfig,
        dir: _dir,
    } = scene().await;
    api.put(WASM_PLUGINS, installed_plugin());
    let seed = service_entry("foo", "httpbin-bar", "httpbin.bar.global", "127.255.0.2");
    api.create(seed.clone());
    let api = std::sync::Arc::new(api);
    let a = std::sync::Arc::clone(&api);
    blocking(move || {
        let lease = ["--lease-duration", "3"];
        let mut one =
            Controller::start(&kubeconfig, &[&lease[..], &["--identity", "one"]].concat());
        let mut two =
            Controller::start(&kubeconfig, &[&lease[..], &["--identity", "two"]].concat());
        wait_for("one leader", || one.leading() != two.leading());
        let (leader, follower) = if one.leading() {
            (&mut one, &mut two)
        } else {
            (&mut two, &mut one)
        };
        wait_for("the seed's table", || {
            held_hash(&a) == expected(std::slice::from_ref(&seed)).hash
        });
        assert_eq!(
            follower.metric("globalmesh_controller_writes_total{target=\"wasmplugin\"}"),
            0.0,
            "the follower does not write"
        );
        leader.signal("-KILL");
        assert!(leader.wait_exit().is_some());
        let added = service_entry("bar", "db", "db.bar.global", "127.255.0.3");
        a.create(added.clone());
        let killed = Instant::now();
        let want = expected(&[seed.clone(), added]);
        wait_for("the follower writes db.bar.global", || {
            held_hash(&a) == want.hash
        });
        assert!(follower.leading());
        // Within the Lease's duration and a renew period, plus the write.
        assert!(
            killed.elapsed() < Duration::from_secs(3 + 1 + 5),
            "took over after {:?}",
            killed.elapsed()
        );
        // SIGTERM: exit 0, and the Lease is given up for the next replica.
        follower.signal("-TERM");
        let status = follower.wait_exit();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{:?}",
            follower.logs()
        );
        let leases = a.objects(LEASES);
        let lease = &leases[&(
            "globalmesh".to_string(),
            "globalmesh-controller".to_string(),
        )];
        assert!(
            lease["spec"]["holderIdentity"].is_null(),
            "released: {lease}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_wasmplugin_is_written_once_installed_and_a_table_too_large_never() {
    let Scene {
        api,
        kubeconfig,
        dir: _dir,
    } = scene().await;
    let seed = service_entry("foo", "httpbin-bar", "httpbin.bar.global", "127.255.0.2");
    api.create(seed.clone());
    let api = std::sync::Arc::new(api);
    let a = std::sync::Arc::clone(&api);
    blocking(move || {
        let controller = Controller::start(&kubeconfig, &["--no-leader-election"]);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            plugin(&a).is_none(),
            "the controller does not create the WasmPlugin"
        );
        assert_eq!(controller.metric("globalmesh_controller_in_sync"), 0.0);
        a.put(WASM_PLUGINS, installed_plugin());
        let want = expected(std::slice::from_ref(&seed));
        wait_for("the table once installed", || held_hash(&a) == want.hash);
        drop(controller);

        // A table over the limit is refused, and the one in place stays.
        let small = Controller::start(
            &kubeconfig,
            &["--no-leader-election", "--max-table-bytes", "150"],
        );
        a.create(service_entry("bar", "db", "db.bar.global", "127.255.0.3"));
        wait_for("the refusal counted", || {
            small.metric("globalmesh_controller_table_too_large_total") >= 1.0
        });
        assert_eq!(held_hash(&a), want.hash, "the previous table stays");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecds_file_follows_without_a_wasmplugin() {
    let Scene {
        api,
        kubeconfig,
        dir,
    } = scene().await;
    let seed = service_entry("foo", "httpbin-bar", "httpbin.bar.global", "127.255.0.2");
    api.create(seed.clone());
    let file = dir.path().join("ecds").join("global_guard.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let api = std::sync::Arc::new(api);
    let a = std::sync::Arc::clone(&api);
    blocking(move || {
        let _controller = Controller::start(
            &kubeconfig,
            &[
                "--no-wasmplugin",
                "--ecds-file",
                file.to_str().unwrap(),
                "--wasm-module",
                "/var/local/wasm/global_guard.wasm",
            ],
        );
        wait_for("the seed's table in the file", || {
            table_in_file(&file) == expected(std::slice::from_ref(&seed)).hash
        });
        let added = service_entry("bar", "db", "db.bar.global", "127.255.0.3");
        a.create(added.clone());
        wait_for("db.bar.global in the file", || {
            table_in_file(&file) == expected(&[seed.clone(), added.clone()]).hash
        });
        assert_eq!(patches(&a), 0, "no WasmPlugin written");
    })
    .await
    .unwrap();
}

/// The ECDS file's table hash, when the file is there and reads.
fn table_in_file(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let response: Value = serde_json::from_str(&text).ok()?;
    let configuration = response["resources"][0]["typed_config"]["config"]["configuration"]
        ["value"]
        .as_str()?
        .to_string();
    let configuration: Value = serde_json::from_str(&configuration).ok()?;
    let table: Table = serde_json::from_value(configuration["table"].clone()).ok()?;
    Some(table.content_hash())
}

#[test]
fn files_feed_the_table_and_a_bad_file_keeps_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let entries = dir.path().join("serviceentries");
    std::fs::create_dir_all(&entries).unwrap();
    let seed = service_entry("foo", "httpbin-bar", "httpbin.bar.global", "127.255.0.2");
    std::fs::write(entries.join("seed.json"), seed.to_string()).unwrap();
    let file = dir.path().join("global_guard.json");
    let kubeconfig = dir.path().join("no-kubeconfig");
    let controller = Controller::start(
        &kubeconfig,
        &[
            "--no-wasmplugin",
            "--service-entries",
            entries.to_str().unwrap(),
            "--ecds-file",
            file.to_str().unwrap(),
            "--wasm-module",
            "/var/local/wasm/global_guard.wasm",
        ],
    );
    wait_for("the seed's table in the file", || {
        table_in_file(&file) == expected(std::slice::from_ref(&seed)).hash
    });
    let added = service_entry("bar", "db", "db.bar.global", "127.255.0.3");
    std::fs::write(entries.join("db.json"), added.to_string()).unwrap();
    let both = expected(&[seed.clone(), added]);
    wait_for("db.bar.global in the file", || {
        table_in_file(&file) == both.hash
    });
    // A file that does not parse: the error is logged and the table stays.
    std::fs::write(entries.join("broken.yaml"), "spec: [unclosed\n").unwrap();
    wait_for("the reload error counted", || {
        controller.metric("globalmesh_controller_source_errors_total") >= 1.0
    });
    assert_eq!(table_in_file(&file), both.hash);
    assert!(controller
        .logs()
        .iter()
        .any(|l| l.contains("broken.yaml") && l.contains("not reloaded")));
}

#[test]
fn a_dead_api_server_leaves_it_alive_unready_and_stoppable() {
    let dir = tempfile::tempdir().unwrap();
    // A kubeconfig for an API server that is gone: its port refuses connections.
    let kubeconfig = {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let api = runtime.block_on(FakeApiServer::start());
        let kubeconfig = api.write_kubeconfig(dir.path());
        drop(api);
        drop(runtime);
        kubeconfig
    };
    let mut controller = Controller::spawn(&kubeconfig, &[]);
    wait_for("failed lists counted", || {
        controller.metric("globalmesh_controller_source_errors_total") >= 2.0
    });
    assert_eq!(controller.get("/healthz").0, 200);
    let (status, body) = controller.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        controller.child.try_wait().unwrap().is_none(),
        "still running"
    );
    controller.signal("-TERM");
    let status = controller.wait_exit().expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
}
