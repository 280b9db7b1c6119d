//! Shared set-up of the webhook's integration tests: the real binary, certificates from its own
//! `certs` command, and AdmissionReviews built as kube-apiserver builds them, sent with curl.
#![allow(dead_code)]

pub mod flow;
pub use fake_apiserver::webhook_client as h2;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fake_apiserver::admission::{self, Operation};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_admission-webhook");

pub fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(path)
}

/// Writes a CA and a serving pair for `localhost` and 127.0.0.1 with the webhook's `certs`.
pub fn certs(out: &Path) {
    let output = Command::new(BIN)
        .args([
            "certs",
            "--service",
            "globalmesh-webhook",
            "--namespace",
            "globalmesh",
        ])
        .args(["--dns", "localhost", "--ip", "127.0.0.1", "--out"])
        .arg(out)
        .output()
        .expect("run certs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh CA from `certs` in `dir`, and what `manifests --namespace globalmesh` writes
/// with it: the YAML text and the CA's PEM bytes.
pub fn manifests_with_new_ca(dir: &Path) -> (String, Vec<u8>) {
    certs(dir);
    let output = Command::new(BIN)
        .args(["manifests", "--namespace", "globalmesh", "--ca-bundle"])
        .arg(dir.join("ca.crt"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    (String::from_utf8(output.stdout).unwrap(), ca)
}

/// A Secret-volume layout: `dir/..data -> ..<version>`, `dir/tls.crt -> ..data/tls.crt`.
pub fn secret_volume(dir: &Path, version: &str) {
    let real = dir.join(format!("..{version}"));
    certs(&real);
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key", "ca.crt"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

pub struct Webhook {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub certs: PathBuf,
    pub ca: PathBuf,
    logs: mpsc::Receiver<String>,
    _dir: Option<tempfile::TempDir>,
}

pub struct Start {
    /// The whole argument list, instead of `serve` on free loopback ports with the test's
    /// serving pair and `service_entries` (which are then not used).
    pub args: Option<Vec<String>>,
    pub service_entries: Vec<PathBuf>,
    pub extra: Vec<String>,
    /// A certificate folder to serve from; a fresh one when `None`.
    pub certs: Option<PathBuf>,
    /// Whether to wait for `/readyz`.
    pub wait_ready: bool,
}

impl Default for Start {
    fn default() -> Self {
        Start {
            args: None,
            service_entries: vec![data("seed/serviceentry-direct.yaml")],
            extra: Vec::new(),
            certs: None,
            wait_ready: true,
        }
    }
}

impl Webhook {
    pub fn start(start: Start) -> Webhook {
        let (dir, certs_dir) = match start.certs {
            Some(path) => (None, path),
            None => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("certs");
                certs(&path);
                (Some(dir), path)
            }
        };
        let mut command = Command::new(BIN);
        match &start.args {
            Some(args) => {
                command.args(args);
            }
            None => {
                command
                    .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
                    .arg("--tls-cert")
                    .arg(certs_dir.join("tls.crt"))
                    .arg("--tls-key")
                    .arg(certs_dir.join("tls.key"));
                for path in &start.service_entries {
                    command.arg("--service-entries").arg(path);
                }
            }
        }
        command
            .args(&start.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start admission-webhook serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addr = None;
        let mut admin = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while addr.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = logs
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("webhook did not report its addresses"));
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
        let webhook = Webhook {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
            ca: certs_dir.join("ca.crt"),
            certs: certs_dir,
            logs,
            _dir: dir,
        };
        if start.wait_ready {
            assert!(
                webhook.wait_until(|w| w.admin_get("/readyz").0 == 200),
                "webhook never became ready: {:#?}",
                webhook.logs()
            );
        }
        webhook
    }

    /// Polls `condition` for up to 15 s.
    pub fn wait_until(&self, mut condition: impl FnMut(&Webhook) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if condition(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/validate", self.addr.port())
    }

    /// curl over HTTP/2 (as kube-apiserver's Go client negotiates), with the test's CA.
    pub fn curl(&self, body: &[u8], content_type: &str, extra: &[&str]) -> (u16, String) {
        self.curl_with_ca(&self.ca, body, content_type, extra)
    }

    pub fn curl_with_ca(
        &self,
        ca: &Path,
        body: &[u8],
        content_type: &str,
        extra: &[&str],
    ) -> (u16, String) {
        let resolve = format!("localhost:{}:127.0.0.1", self.addr.port());
        let mut child = Command::new("curl")
            .args(["-sS", "--http2", "--max-time", "20", "--resolve", &resolve])
            .arg("--cacert")
            .arg(ca)
            .args(["-H", &format!("Content-Type: {content_type}")])
            .args(["-H", "Accept: application/json, */*"])
            .args(["--data-binary", "@-", "-w", "\n%{http_code}"])
            .args(extra)
            .arg(self.url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run curl");
        let mut stdin = child.stdin.take().unwrap();
        let body = body.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let output = child.wait_with_output().unwrap();
        let _ = writer.join();
        parse_curl(&output)
    }

    /// Sends a review and returns the response review (status must be 200).
    pub fn review(&self, review: &Value) -> Value {
        let (status, body) = self.curl(review.to_string().as_bytes(), "application/json", &[]);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}"])
            .arg(format!("http://{}{path}", self.admin))
            .output()
            .unwrap();
        parse_curl(&output)
    }

    /// The value of one metric sample, by its exact name and labels.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Log lines printed so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.try_iter().collect()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: the process dies at once, whatever it was doing.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (up to 30 s) for the process to exit; its status code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident memory in KiB (VmHWM).
    pub fn peak_rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status and body; when curl got no status (0), the body carries curl's error instead.
fn parse_curl(output: &Output) -> (u16, String) {
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, body) = match text.rsplit_once('\n') {
        Some((body, code)) => (code.trim().parse().unwrap_or(0), body.to_string()),
        None => (text.trim().parse().unwrap_or(0), String::new()),
    };
    if status == 0 {
        return (
            0,
            format!("curl: {}{body}", String::from_utf8_lossy(&output.stderr)),
        );
    }
    (status, body)
}

/// The uid the API server gives the object `name` before admission: one per name, so that
/// the object stored after admission is the one the webhook saw.
pub fn uid_of(name: &str) -> String {
    let n = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("6f0b1e1e-0000-4000-8000-{:012x}", n & 0xffff_ffff_ffff)
}

/// A `.global` ServiceEntry as `kubectl apply` sends it.
pub fn service_entry(name: &str, address: &str, gateway_port: u16) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "ServiceEntry",
        "metadata": {
            "name": name,
            "namespace": "foo",
            "uid": uid_of(name),
            "creationTimestamp": null,
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "networking.istio.io/v1alpha3"}]
        },
        "spec": {
            "hosts": [format!("{name}.bar.global")],
            "location": "MESH_INTERNAL",
            "ports": [{"name": "http1", "number": 8000, "protocol": "http"}],
            "resolution": "DNS",
            "addresses": [address],
            "endpoints": [{"address": "198.18.2.1", "ports": {"http1": gateway_port}}]
        }
    })
}

/// An AdmissionReview as kube-apiserver builds it for a namespaced ServiceEntry.
pub fn review(
    api_version: &str,
    uid: &str,
    operation: &str,
    object: Option<Value>,
    old_object: Option<Value>,
    dry_run: bool,
) -> Value {
    let operation = match operation {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        other => panic!("no operation {other}"),
    };
    admission::review(
        api_version,
        uid,
        operation,
        object.as_ref(),
        old_object.as_ref(),
        dry_run,
    )
}
