//! What claims in the Kubernetes API cost admission-webhook: the latency of an admitted CREATE
//! with its VIP given and of one without addresses (VIP allocation through `/mutate`), in file
//! mode (one replica, claims held in the process) against `--kubernetes` (three replicas on
//! the in-process stand-in API server, claims one create round trip per VIP and host), then
//! N allocations spread over the three replicas by 16 concurrent clients, checked: every VIP
//! distinct and claimed exactly once in the API.
//!
//! The client stands in for kube-apiserver: one HTTP/2 connection per replica over TLS with a
//! client certificate (every replica runs with `--client-ca`), the mutating review, its JSON
//! patch applied, the uid set, the validating review, and the object stored once both admit.
//! Run from the repository root after `cargo build --release -p admission-webhook`:
//! `cargo run --release -p benches --example webhook_claims -- [N_EXISTING] [N_SAMPLES] [N_ALLOCATIONS]`
//! (defaults 10000 1000 10000).
// Benchmark code: a failing unwrap stops the benchmark.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fake_apiserver::admission::{review, Operation};
use fake_apiserver::webhook_client::{tls_config, H2};
use fake_apiserver::{FakeApiServer, ADDRESS_CLAIMS, HOST_CLAIMS};
use serde_json::{json, Value};

const BIN: &str = "target/release/admission-webhook";
/// Concurrent clients of the allocation burst.
const CLIENTS: usize = 16;
/// CREATEs between two compactions of the stand-in: it keeps a snapshot of every
/// ServiceEntry write, which at 20,000 entries is megabytes each.
const ROUND: usize = 250;
/// Unmeasured CREATEs before each series.
const WARM_UP: usize = 20;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("counts"))
        .collect();
    let existing = args.first().copied().unwrap_or(10_000);
    let samples = args.get(1).copied().unwrap_or(1_000);
    let allocations = args.get(2).copied().unwrap_or(10_000);
    assert!(
        Path::new(BIN).is_file(),
        "{BIN} missing: cargo build --release -p admission-webhook (run from the repository root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let status = Command::new(BIN)
        .args(["certs", "--service", "bench", "--namespace", "bench"])
        .args(["--dns", "localhost", "--ip", "127.0.0.1", "--out"])
        .arg(&certs)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "admission-webhook certs failed");
    let client = client_pki(dir.path());
    let tls = tls_config(&certs.join("ca.crt"), Some((&client.cert, &client.key)));
    let entries: Vec<Value> = benches::entries(existing)
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    let file = dir.path().join("existing.json");
    std::fs::write(
        &file,
        json!({"apiVersion": "v1", "kind": "List", "items": entries}).to_string(),
    )
    .unwrap();

    // The stand-in API server and the client each get a thread of their own.
    let api_runtime = runtime();
    let runtime = runtime();
    let common = |replica: &str| -> Vec<String> {
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--shutdown-delay",
            "0",
            "--identity",
            replica,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (flag, path) in [
            ("--tls-cert", certs.join("tls.crt")),
            ("--tls-key", certs.join("tls.key")),
            ("--client-ca", client.ca.clone()),
        ] {
            args.push(flag.into());
            args.push(path.display().to_string());
        }
        args
    };

    // (a) File mode: one replica, the same entries from a file, claims held in the process.
    eprintln!("file mode: one replica, {existing} entries from a file");
    let mut args = common("file");
    args.extend(["--service-entries".into(), file.display().to_string()]);
    let single = Replica::start(&args);
    single.wait_for("the catalog", || {
        single.metric("admission_catalog_entries") == existing as f64
    });
    let connection = runtime.block_on(H2::connect(single.addr, Arc::clone(&tls)));
    let file_given = runtime.block_on(series(&connection, None, samples, Given));
    let file_allocated = runtime.block_on(series(&connection, None, samples, Allocated));
    drop(connection);
    drop(single);

    // (b) --kubernetes: three replicas on the stand-in, the entries preloaded, their claims made
    // by the repair (entries older than the webhook).
    eprintln!("--kubernetes: three replicas, {existing} entries preloaded in the stand-in");
    let api = Arc::new(api_runtime.block_on(FakeApiServer::start()));
    api.preload(entries);
    let kubeconfig = api.write_kubeconfig(dir.path());
    let replicas: Vec<Replica> = (0..3)
        .map(|i| {
            let mut args = common(&format!("webhook-{i}"));
            args.extend(
                [
                    "--kubernetes",
                    "--kubeconfig",
                    &kubeconfig.display().to_string(),
                    "--lease-namespace",
                    "globalmesh",
                ]
                .map(String::from),
            );
            Replica::start(&args)
        })
        .collect();
    let cluster = Cluster {
        api: Arc::clone(&api),
        replicas,
        stored: AtomicUsize::new(existing),
        since_compaction: AtomicUsize::new(0),
    };
    let started = Instant::now();
    cluster.replicas[0].wait_for("the repair's claims of the existing entries", || {
        api.objects(ADDRESS_CLAIMS).len() == existing && api.objects(HOST_CLAIMS).len() == existing
    });
    cluster.settle();
    let repair = started.elapsed();
    eprintln!(
        "the repair claimed {} keys in {:.1} s",
        2 * existing,
        repair.as_secs_f64()
    );
    let connection = runtime.block_on(H2::connect(cluster.replicas[0].addr, Arc::clone(&tls)));
    let kube_given = runtime.block_on(series(&connection, Some(&cluster), samples, Given));
    let kube_allocated = runtime.block_on(series(&connection, Some(&cluster), samples, Allocated));
    drop(connection);

    // The burst: CREATE i to replica i % 3, from 16 clients with a connection to each.
    eprintln!("{allocations} allocations over three replicas from {CLIENTS} clients");
    let burst = runtime.block_on(burst(&cluster, &tls, allocations));
    let check = check(&cluster, &burst.created);

    println!("| CREATE, review | file p50 | p90 | p99 | --kubernetes p50 | p90 | p99 | added p50 | added p99 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (what, file, kube) in [
        (
            "VIP given: /validate (claims VIP and host)",
            &file_given.claiming,
            &kube_given.claiming,
        ),
        (
            "VIP given: /mutate + /validate",
            &file_given.both,
            &kube_given.both,
        ),
        (
            "no addresses: /mutate (allocates, claims VIP)",
            &file_allocated.claiming,
            &kube_allocated.claiming,
        ),
        (
            "no addresses: /mutate + /validate",
            &file_allocated.both,
            &kube_allocated.both,
        ),
    ] {
        let (f, k) = (Latency::of(file), Latency::of(kube));
        println!(
            "| {what} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ms(f.p50),
            ms(f.p90),
            ms(f.p99),
            ms(k.p50),
            ms(k.p90),
            ms(k.p99),
            ms(k.p50 - f.p50),
            ms(k.p99 - f.p99)
        );
    }
    println!();
    println!(
        "| allocations | replicas | clients | time | allocations/s | stand-in stores | denied | check |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    let denied = burst.created.iter().filter(|c| c.is_err()).count();
    println!(
        "| {allocations} | 3 | {CLIENTS} | {:.2} s | {:.0} | {:.2} s | {denied} | {} |",
        burst.elapsed.as_secs_f64(),
        allocations as f64 / burst.elapsed.as_secs_f64(),
        burst.store_time.as_secs_f64(),
        match &check {
            Ok(summary) => format!("ok: {summary}"),
            Err(e) => format!("FAILED: {e}"),
        }
    );
    println!();
    println!(
        "{existing} existing entries ({} claims made by the repair in {:.1} s); {samples} sequential CREATEs per series \
         on one HTTP/2 connection after {WARM_UP} unmeasured; latency in ms from the client, TLS with a client \
         certificate. The burst's time leaves out the pauses every {ROUND} CREATEs in which the stand-in is \
         compacted once every replica has caught up; \"stand-in stores\" is the part of it spent storing the \
         admitted objects in the stand-in (a snapshot of all entries per write).",
        2 * existing,
        repair.as_secs_f64()
    );
    if check.is_err() {
        std::process::exit(1);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn ms(d: f64) -> String {
    format!("{:.3}", d * 1e3)
}

struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
}

impl Latency {
    fn of(samples: &[Duration]) -> Latency {
        let mut sorted: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        sorted.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
            sorted.get(index).copied().unwrap_or(f64::NAN)
        };
        Latency {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
        }
    }
}

/// What a series of CREATEs is made of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// With `spec.addresses` given: `/mutate` changes nothing, `/validate` claims.
    Given,
    /// Without addresses: `/mutate` allocates and claims the VIP, `/validate` the host.
    Allocated,
}
use Shape::{Allocated, Given};

static SERIAL: AtomicUsize = AtomicUsize::new(0);

/// A new `.global` entry, as `kubectl apply` sends it; given VIPs come from 240.240.0.0/16,
/// clear of the existing entries (127.255.0.0/16) and of allocations (the lowest free first).
fn new_entry(kind: Shape) -> Value {
    let n = SERIAL.fetch_add(1, Ordering::Relaxed) + 1;
    let name = format!("new-{n}");
    let mut object = fake_apiserver::service_entry(
        "foo",
        &name,
        &format!("{name}.bar.global"),
        &format!("240.240.{}.{}", n / 256, n % 256),
    );
    if kind == Allocated {
        object["spec"].as_object_mut().unwrap().remove("addresses");
    }
    object
}

struct Series {
    /// The review that claims: `/validate` with the VIP given, `/mutate` when allocating.
    claiming: Vec<Duration>,
    /// Both reviews of the CREATE.
    both: Vec<Duration>,
}

/// `samples` sequential CREATEs on one connection, after a warm-up; stored in the stand-in
/// (outside the measured time) when there is one.
async fn series(h2: &H2, cluster: Option<&Cluster>, samples: usize, kind: Shape) -> Series {
    let mut out = Series {
        claiming: Vec::with_capacity(samples),
        both: Vec::with_capacity(samples),
    };
    for i in 0..WARM_UP + samples {
        let created = create(h2, new_entry(kind)).await;
        let (object, timing) = created.unwrap_or_else(|e| panic!("a CREATE was denied: {e}"));
        if let Some(cluster) = cluster {
            cluster.store(object);
            cluster.settle_every_round();
        }
        if i >= WARM_UP {
            out.claiming.push(match kind {
                Given => timing.validate,
                Allocated => timing.mutate,
            });
            out.both.push(timing.mutate + timing.validate);
        }
    }
    out
}

struct Timing {
    mutate: Duration,
    validate: Duration,
}

static UIDS: AtomicU64 = AtomicU64::new(1);

/// What kube-apiserver does with a CREATE before storing it: the mutating review, its patch
/// applied, the uid set, the validating review. The object to store, or the denial.
async fn create(h2: &H2, mut object: Value) -> Result<(Value, Timing), String> {
    let uid = format!(
        "0a0b0c0d-0000-4000-8000-{:012}",
        UIDS.fetch_add(1, Ordering::Relaxed)
    );
    let (mutate, response) = admit(h2, "/mutate", &uid, &object).await?;
    if let Some(patch) = response["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    object["metadata"]["uid"] = Value::from(uid.clone());
    let (validate, _) = admit(h2, "/validate", &uid, &object).await?;
    Ok((object, Timing { mutate, validate }))
}

/// One CREATE review at `path`: its time and the response when allowed, the message when not.
async fn admit(
    h2: &H2,
    path: &str,
    uid: &str,
    object: &Value,
) -> Result<(Duration, Value), String> {
    let body = review(
        "admission.k8s.io/v1",
        uid,
        Operation::Create,
        Some(object),
        None,
        false,
    );
    let started = Instant::now();
    let (status, reply) = h2.post(path, body.to_string().into_bytes()).await?;
    let took = started.elapsed();
    if status != 200 {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&reply)));
    }
    let answer: Value = serde_json::from_slice(&reply).map_err(|e| e.to_string())?;
    let response = answer["response"].clone();
    if response["allowed"] != true {
        return Err(response["status"]["message"].to_string());
    }
    Ok((took, response))
}

struct Burst {
    created: Vec<Result<Value, String>>,
    elapsed: Duration,
    store_time: Duration,
}

async fn burst(cluster: &Cluster, tls: &Arc<rustls::ClientConfig>, total: usize) -> Burst {
    let mut created = Vec::with_capacity(total);
    let mut elapsed = Duration::ZERO;
    let mut store_time = Duration::ZERO;
    let mut start = 0;
    while start < total {
        let end = (start + ROUND).min(total);
        // Fresh connections each round: the pause in which the stand-in is compacted can
        // outlast the webhook's --client-timeout, which closes idle connections (as it should).
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let mut connections = Vec::new();
            for replica in &cluster.replicas {
                connections.push(H2::connect(replica.addr, Arc::clone(tls)).await);
            }
            clients.push(connections);
        }
        let clients = Arc::new(clients);
        let next = Arc::new(AtomicUsize::new(start));
        let began = Instant::now();
        let workers = (0..CLIENTS).map(|c| {
            let next = Arc::clone(&next);
            let clients = Arc::clone(&clients);
            async move {
                let mut done = Vec::new();
                let mut stored = Duration::ZERO;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        break;
                    }
                    let h2 = &clients[c][i % 3];
                    let outcome = create(h2, new_entry(Allocated)).await;
                    let outcome = match outcome {
                        Ok((object, _)) => {
                            let t = Instant::now();
                            cluster.store(object.clone());
                            stored += t.elapsed();
                            Ok(object)
                        }
                        Err(e) => Err(e),
                    };
                    done.push((i, outcome));
                }
                (done, stored)
            }
        });
        let results = futures::future::join_all(workers).await;
        elapsed += began.elapsed();
        let mut round: Vec<(usize, Result<Value, String>)> = Vec::new();
        for (done, stored) in results {
            round.extend(done);
            store_time += stored;
        }
        round.sort_by_key(|(i, _)| *i);
        created.extend(round.into_iter().map(|(_, o)| o));
        // Outside the measured time.
        cluster.settle();
        start = end;
    }
    // The clients share one thread, on which the stores block: their sum is wall time.
    Burst {
        created,
        elapsed,
        store_time,
    }
}

/// Every allocated VIP distinct, in the API claimed exactly once by the entry that got it,
/// and no claims but those of stored entries.
fn check(cluster: &Cluster, created: &[Result<Value, String>]) -> Result<String, String> {
    let denied: Vec<&String> = created.iter().filter_map(|c| c.as_ref().err()).collect();
    if let Some(first) = denied.first() {
        return Err(format!("{} CREATEs denied, first: {first}", denied.len()));
    }
    let mut vips = BTreeSet::new();
    for object in created.iter().flatten() {
        let addresses = object["spec"]["addresses"].as_array().cloned();
        let Some([vip]) = addresses.as_deref() else {
            return Err(format!("not one address: {}", object["spec"]["addresses"]));
        };
        let vip = vip.as_str().unwrap_or("").to_string();
        if !vips.insert(vip.clone()) {
            return Err(format!("{vip} allocated twice"));
        }
    }
    let mut claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let address_claims = cluster.api.objects(ADDRESS_CLAIMS);
    for claim in address_claims.values() {
        claims
            .entry(claim["spec"]["address"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(
                claim["spec"]["owner"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
    }
    for object in created.iter().flatten() {
        let vip = object["spec"]["addresses"][0].as_str().unwrap_or("");
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        match claims.get(vip).map(Vec::as_slice) {
            Some([owner]) if owner == name => {}
            other => return Err(format!("{vip} of {name}: claims {other:?}")),
        }
    }
    let stored = cluster.stored.load(Ordering::Relaxed);
    let hosts = cluster.api.objects(HOST_CLAIMS).len();
    if address_claims.len() != stored || hosts != stored {
        return Err(format!(
            "{} address and {hosts} host claims for {stored} stored entries",
            address_claims.len()
        ));
    }
    Ok(format!(
        "{} distinct VIPs, each claimed once; {stored} address and host claims for {stored} stored entries",
        vips.len()
    ))
}

/// The stand-in API server and the three replicas on it.
struct Cluster {
    api: Arc<FakeApiServer>,
    replicas: Vec<Replica>,
    /// ServiceEntries stored.
    stored: AtomicUsize,
    since_compaction: AtomicUsize,
}

impl Cluster {
    fn store(&self, object: Value) {
        self.api.create(object);
        self.stored.fetch_add(1, Ordering::Relaxed);
        self.since_compaction.fetch_add(1, Ordering::Relaxed);
    }

    fn settle_every_round(&self) {
        if self.since_compaction.load(Ordering::Relaxed) >= ROUND {
            self.settle();
        }
    }

    /// Waits until every replica has seen every stored entry and claim, then compacts the
    /// stand-in: its watches skip what is compacted before they read it.
    fn settle(&self) {
        let stored = self.stored.load(Ordering::Relaxed) as f64;
        for replica in &self.replicas {
            replica.wait_for("the replica to catch up", || {
                let claims =
                    self.api.objects(ADDRESS_CLAIMS).len() + self.api.objects(HOST_CLAIMS).len();
                replica.metric("admission_catalog_entries") == stored
                    && replica.metric("admission_claims") == claims as f64
            });
        }
        self.api.compact();
        self.since_compaction.store(0, Ordering::Relaxed);
    }
}

/// A release `admission-webhook serve` on free loopback ports.
struct Replica {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Replica {
    fn start(args: &[String]) -> Replica {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start admission-webhook serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // Read on, so that the replica never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut admin) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while addr.is_none() || admin.is_none() {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the replica reports its addresses");
            let found = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .and_then(|a| a.parse::<SocketAddr>().ok());
            if line.contains("webhook listening") {
                addr = found;
            } else if line.contains("admin listening") {
                admin = found;
            }
        }
        let replica = Replica {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
        };
        replica.wait_for("/readyz", || {
            replica.admin_get("/readyz").starts_with("HTTP/1.1 200")
        });
        replica
    }

    /// Polls `done` for up to five minutes.
    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn admin_get(&self, path: &str) -> String {
        let Ok(mut stream) = TcpStream::connect(self.admin) else {
            return String::new();
        };
        let _ = write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        );
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    }

    /// A metric sample without labels.
    fn metric(&self, name: &str) -> f64 {
        self.admin_get("/metrics")
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a client certificate it signed, as kube-apiserver's webhook client holds them.
struct ClientPki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn client_pki(dir: &Path) -> ClientPki {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["kube-apiserver".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let pki = ClientPki {
        ca: dir.join("client-ca.crt"),
        cert: dir.join("client.crt"),
        key: dir.join("client.key"),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}
