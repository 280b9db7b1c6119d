//! The seed scenario, brought up step by step. `make demo` prints what each step shows; the
//! end-to-end test asserts it.
//!
//! ```text
//!  gm-cluster1 (198.18.1.1)                                gm-cluster2 (198.18.2.1)
//!  curl httpbin.bar.global:8000                            ingress gateway :15443 (SNI)
//!   │ dns-shim 127.0.0.1:53 → 127.255.0.2                    │ passthrough
//!   │ iptables REDIRECT 127.255.0.0/16 → :15001              ▼
//!   ▼                                                      httpbin sidecar :15006 (mTLS)
//!  sidecar Envoy (global_guard) ──mTLS, SNI──────────────▶   │
//!  egress gateway :15443 (egress variant) ─────────────────▶ httpbin (gunicorn) 127.0.0.1:8000
//! ```
//!
//! dns-shim, admission-webhook and globalmesh-controller read cluster1's ServiceEntries from
//! one directory; the controller writes the table into the ECDS file that the sidecar's
//! global_guard is configured from, so a change reaches the filter without a restart.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fake_apiserver::admission::{review as api_server_review, Operation};
use policy::table::Table;
use policy::{Options, ServiceEntry};
use serde_json::Value;

use crate::envoy::{self, Identity, SidecarConfig};
use crate::host::{run, run_in, Host, HostError};
use crate::pki::{MeshCa, Workload};

pub const CLUSTER1: &str = "gm-cluster1";
pub const CLUSTER2: &str = "gm-cluster2";
pub const CLUSTER1_ADDR: &str = "198.18.1.1";
pub const CLUSTER2_GW_ADDR: &str = "198.18.2.1";
pub const VIP: &str = "127.255.0.2";
/// Istio's sidecar user; its own traffic is not captured.
pub const PROXY_UID: &str = "1337";
pub const EGRESS_GATEWAY_NAME: &str = "istio-egressgateway.istio-system.svc.cluster.local";
/// The header global_guard sets and version-aware routes match.
pub const CLUSTER_HEADER: &str = "x-global-cluster";

const SIDECAR_ADMIN: u16 = 15000;
const EGRESS_ADMIN: u16 = 15200;
const GATEWAY_ADMIN: u16 = 15000;
const SERVER_SIDECAR_ADMIN: u16 = 15100;
const SERVER_SIDECAR_PORT: u16 = 15006;
const HTTPBIN_PORT: u16 = 8000;
/// How soon a ServiceEntry applied or deleted while everything runs must be answered and
/// allowed, or refused again (issue 16).
pub const LIVE_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{0} is missing: {1}")]
    Missing(PathBuf, &'static str),
    #[error("{0}")]
    Step(String),
}

type Result<T> = std::result::Result<T, ScenarioError>;

fn step(message: impl Into<String>) -> ScenarioError {
    ScenarioError::Step(message.into())
}

/// The programs the scenario runs.
#[derive(Debug, Clone)]
pub struct Programs {
    pub envoy: PathBuf,
    pub dns_shim: PathBuf,
    pub webhook: PathBuf,
    pub controller: PathBuf,
    pub wasm: PathBuf,
    pub gunicorn: PathBuf,
    pub seed: PathBuf,
}

impl Programs {
    /// The usual places under the workspace root, as `make` builds and installs them.
    pub fn from_root(root: &Path) -> Self {
        Programs {
            envoy: root.join(".tools/envoy/envoy/_bin/envoy"),
            dns_shim: root.join("target/debug/dns-shim"),
            webhook: root.join("target/debug/admission-webhook"),
            controller: root.join("target/debug/globalmesh-controller"),
            wasm: root.join("target/wasm32-wasip1/release/global_guard.wasm"),
            gunicorn: root.join(".tools/venv/bin/gunicorn"),
            seed: root.join("tests/data/seed"),
        }
    }

    fn check(&self) -> Result<()> {
        for (path, what) in [
            (&self.envoy, "Envoy (make setup installs it)"),
            (&self.dns_shim, "dns-shim (cargo build -p dns-shim)"),
            (
                &self.webhook,
                "admission-webhook (cargo build -p admission-webhook)",
            ),
            (
                &self.controller,
                "globalmesh-controller (cargo build -p controller)",
            ),
            (&self.wasm, "global_guard.wasm (make build-filter)"),
            (
                &self.gunicorn,
                "gunicorn with httpbin (make setup installs them)",
            ),
        ] {
            if !path.exists() {
                return Err(ScenarioError::Missing(path.clone(), what));
            }
        }
        Ok(())
    }
}

/// One HTTP exchange as curl saw it.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the admission step answered.
#[derive(Debug, Clone)]
pub struct Admission {
    pub allowed: bool,
    pub message: String,
}

pub struct Scenario {
    pub host: Host,
    pub programs: Programs,
    pub work: PathBuf,
    pub options: Options,
    ca: MeshCa,
    sleep: Workload,
    webhook_url: String,
    webhook_ca: PathBuf,
    catalog_dir: PathBuf,
    /// The ECDS file globalmesh-controller writes and the client sidecar's global_guard reads.
    ecds_file: PathBuf,
    controller_admin: u16,
    uid: u64,
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.host.clean();
    }
}

fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| step(format!("no free port: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| step(format!("no free port: {e}")))?
        .port();
    Ok(port)
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|error| {
        ScenarioError::Host(HostError::File {
            path: path.to_path_buf(),
            error,
        })
    })
}

/// Polls until `check` holds, for up to 30 s.
fn wait(what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(step(format!("{what} did not come up within 30 s")))
}

impl Scenario {
    /// Creates both clusters and starts everything but the client sidecar, which needs an
    /// admitted ServiceEntry ([`Scenario::apply`]).
    pub fn up(host: Host, programs: Programs) -> Result<Scenario> {
        programs.check()?;
        let work = std::env::temp_dir().join(format!("globalmesh-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(|error| HostError::File {
            path: work.clone(),
            error,
        })?;
        host.own_path(&work);
        // The client sidecar runs as the proxy user and must read its files.
        run("chmod", &["0755", &work.display().to_string()])?;

        let ca = MeshCa::create(&work.join("pki")).map_err(|e| step(e.to_string()))?;
        let sleep = ca
            .workload("foo", "sleep")
            .map_err(|e| step(e.to_string()))?;
        let httpbin = ca
            .workload("bar", "httpbin")
            .map_err(|e| step(e.to_string()))?;
        run(
            "chmod",
            &["-R", "a+rX", &work.join("pki").display().to_string()],
        )?;

        host.namespace(CLUSTER1)?;
        host.namespace(CLUSTER2)?;
        host.link(
            (CLUSTER1, &format!("{CLUSTER1_ADDR}/15")),
            (CLUSTER2, &format!("{CLUSTER2_GW_ADDR}/15")),
        )?;

        let catalog_dir = work.join("cluster1-serviceentries");
        std::fs::create_dir_all(&catalog_dir).map_err(|error| HostError::File {
            path: catalog_dir.clone(),
            error,
        })?;
        let mut scenario = Scenario {
            host,
            programs,
            work,
            options: Options::default(),
            ca,
            sleep,
            webhook_url: String::new(),
            webhook_ca: PathBuf::new(),
            catalog_dir,
            ecds_file: PathBuf::new(),
            controller_admin: 0,
            uid: 0,
        };
        scenario.start_webhook()?;
        scenario.start_controller()?;
        scenario.start_cluster2(&httpbin)?;
        scenario.start_cluster1()?;
        Ok(scenario)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.work.join(format!("{name}.log"))
    }

    fn envoy_argv(&self, config: &Path, extra: &[&str]) -> Vec<String> {
        let mut args = Vec::new();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(self.programs.envoy.display().to_string());
        args.extend(argv(&[
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            "warn",
            "-c",
        ]));
        args.push(config.display().to_string());
        args
    }

    fn write_config(&self, name: &str, config: &Value) -> Result<PathBuf> {
        let path = self.work.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(config).map_err(|e| step(e.to_string()))?;
        write(&path, &text)?;
        Ok(path)
    }

    fn start_webhook(&mut self) -> Result<()> {
        let certs = self.work.join("webhook-certs");
        run(
            &self.programs.webhook.display().to_string(),
            &[
                "certs",
                "--service",
                "globalmesh-webhook",
                "--namespace",
                "globalmesh",
                "--dns",
                "localhost",
                "--out",
                &certs.display().to_string(),
            ],
        )?;
        let port = free_port()?;
        let admin = free_port()?;
        let args = vec![
            self.programs.webhook.display().to_string(),
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--admin".into(),
            format!("127.0.0.1:{admin}"),
            "--tls-cert".into(),
            certs.join("tls.crt").display().to_string(),
            "--tls-key".into(),
            certs.join("tls.key").display().to_string(),
            "--service-entries".into(),
            self.catalog_dir.display().to_string(),
        ];
        self.host.spawn(
            "admission-webhook",
            None,
            &args,
            &self.log("admission-webhook"),
        )?;
        let ready = format!("http://127.0.0.1:{admin}/readyz");
        wait("admission-webhook", || {
            run("curl", &["-sf", &ready]).is_ok()
        })?;
        self.webhook_url = format!("https://localhost:{port}/validate");
        self.webhook_ca = certs.join("ca.crt");
        Ok(())
    }

    /// globalmesh-controller keeps the ECDS file equal to the table of the catalog's
    /// ServiceEntries, as it would the WasmPlugin that istiod sends sidecars by ECDS; there is
    /// no istiod here, so the sidecar reads the file itself.
    fn start_controller(&mut self) -> Result<()> {
        let dir = self.work.join("ecds");
        std::fs::create_dir_all(&dir).map_err(|error| HostError::File {
            path: dir.clone(),
            error,
        })?;
        // The sidecar (uid 1337) watches the directory and reads the file.
        run("chmod", &["0755", &dir.display().to_string()])?;
        self.ecds_file = dir.join("global_guard.json");
        self.controller_admin = free_port()?;
        let args = vec![
            self.programs.controller.display().to_string(),
            "--service-entries".into(),
            self.catalog_dir.display().to_string(),
            "--no-wasmplugin".into(),
            "--ecds-file".into(),
            self.ecds_file.display().to_string(),
            "--wasm-module".into(),
            self.programs.wasm.display().to_string(),
            "--cluster-header".into(),
            CLUSTER_HEADER.into(),
            "--no-leader-election".into(),
            "--admin".into(),
            format!("127.0.0.1:{}", self.controller_admin),
        ];
        self.host.spawn(
            "globalmesh-controller",
            None,
            &args,
            &self.log("globalmesh-controller"),
        )?;
        // The sidecar's listeners wait for global_guard's configuration: the file comes first.
        self.wait_for_table()
    }

    /// Waits until the ECDS file holds the table of the catalog's ServiceEntries now.
    fn wait_for_table(&self) -> Result<()> {
        let entries: Vec<ServiceEntry> = catalog::load_path(&self.catalog_dir)
            .map_err(|e| step(e.to_string()))?
            .into_iter()
            .filter_map(|l| l.entry.ok())
            .collect();
        let table = Table::build(&entries, &self.options);
        let want = table.hash.unwrap_or_default();
        wait("globalmesh-controller writing the table", || {
            self.ecds_version().is_ok_and(|v| v == want)
        })
    }

    /// `version_info` of the ECDS file (the table's content hash).
    pub fn ecds_version(&self) -> Result<String> {
        let text = std::fs::read_to_string(&self.ecds_file).map_err(|error| HostError::File {
            path: self.ecds_file.clone(),
            error,
        })?;
        let response: Value = serde_json::from_str(&text)
            .map_err(|e| step(format!("{}: {e}", self.ecds_file.display())))?;
        response
            .get("version_info")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| step(format!("{}: no version_info", self.ecds_file.display())))
    }

    /// `version_info` of the global_guard configuration the client sidecar runs with.
    pub fn sidecar_ecds_version(&self) -> Result<String> {
        let url = format!("http://127.0.0.1:{SIDECAR_ADMIN}/config_dump?resource=ecds_filters");
        let out = run_in(CLUSTER1, "curl", &["-sf", &url])?;
        let dump: Value = serde_json::from_str(&out)
            .map_err(|e| step(format!("the sidecar's config_dump: {e}")))?;
        dump.pointer("/configs/0/version_info")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| step("the sidecar's config_dump has no ECDS filter"))
    }

    /// The lines of globalmesh-controller's /metrics that start with `name`.
    pub fn controller_metrics(&self, name: &str) -> Result<Vec<String>> {
        let url = format!("http://127.0.0.1:{}/metrics", self.controller_admin);
        let out = run("curl", &["-sf", &url])?;
        Ok(out
            .lines()
            .filter(|l| l.starts_with(name))
            .map(str::to_string)
            .collect())
    }

    fn start_cluster2(&self, httpbin: &Workload) -> Result<()> {
        let app = vec![
            self.programs.gunicorn.display().to_string(),
            "--bind".into(),
            format!("127.0.0.1:{HTTPBIN_PORT}"),
            "--workers".into(),
            "1".into(),
            "httpbin:app".into(),
        ];
        self.host
            .spawn("httpbin", Some(CLUSTER2), &app, &self.log("httpbin"))?;
        let identity = Identity {
            cert: &httpbin.cert,
            key: &httpbin.key,
            root: &self.ca.root,
        };
        let sidecar = envoy::server_sidecar(
            &identity,
            ("127.0.0.1", SERVER_SIDECAR_PORT),
            HTTPBIN_PORT,
            SERVER_SIDECAR_ADMIN,
        );
        let path = self.write_config("cluster2-httpbin-sidecar", &sidecar)?;
        self.host.spawn(
            "httpbin-sidecar",
            Some(CLUSTER2),
            &self.envoy_argv(&path, &[]),
            &self.log("cluster2-httpbin-sidecar"),
        )?;
        // The ingress gateway knows cluster2's services; it passes TLS through by SNI.
        let routes: BTreeMap<String, Vec<(String, u16)>> = [(
            envoy::sni("httpbin", "bar", HTTPBIN_PORT),
            vec![("127.0.0.1".to_string(), SERVER_SIDECAR_PORT)],
        )]
        .into();
        let gateway = envoy::sni_gateway(
            "istio-ingressgateway",
            (CLUSTER2_GW_ADDR, 15443),
            GATEWAY_ADMIN,
            &routes,
        );
        let path = self.write_config("cluster2-ingress-gateway", &gateway)?;
        self.host.spawn(
            "ingress-gateway",
            Some(CLUSTER2),
            &self.envoy_argv(&path, &[]),
            &self.log("cluster2-ingress-gateway"),
        )?;
        wait("httpbin", || {
            run_in(
                CLUSTER2,
                "curl",
                &["-sf", &format!("http://127.0.0.1:{HTTPBIN_PORT}/get")],
            )
            .is_ok()
        })?;
        for admin in [SERVER_SIDECAR_ADMIN, GATEWAY_ADMIN] {
            self.wait_envoy(CLUSTER2, admin)?;
        }
        Ok(())
    }

    fn wait_envoy(&self, netns: &str, admin: u16) -> Result<()> {
        let url = format!("http://127.0.0.1:{admin}/ready");
        wait(&format!("Envoy with admin port {admin} in {netns}"), || {
            run_in(netns, "curl", &["-sf", &url]).is_ok_and(|out| out.trim() == "LIVE")
        })
    }

    fn start_cluster1(&self) -> Result<()> {
        self.host.resolv_conf(
            CLUSTER1,
            "nameserver 127.0.0.1\nsearch foo.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
        )?;
        // dns-shim is the pod's resolver; nothing else resolves here, so its upstream is a
        // loopback port where nobody answers.
        let dns = vec![
            self.programs.dns_shim.display().to_string(),
            "--service-entries".into(),
            self.catalog_dir.display().to_string(),
            "--listen".into(),
            "127.0.0.1:53".into(),
            "--upstream".into(),
            "127.0.0.53:53".into(),
            "--upstream-timeout-ms".into(),
            "200".into(),
        ];
        self.host.spawn(
            "dns-shim",
            Some(CLUSTER1),
            &dns,
            &self.log("cluster1-dns-shim"),
        )?;
        // Outbound capture, as istio-init sets it up: everything to the VIP range goes to the
        // sidecar, except the sidecar's own traffic.
        run_in(
            CLUSTER1,
            "iptables",
            &[
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                "127.255.0.0/16",
                "-m",
                "owner",
                "!",
                "--uid-owner",
                PROXY_UID,
                "-j",
                "REDIRECT",
                "--to-ports",
                "15001",
            ],
        )?;
        wait("dns-shim", || {
            run_in(CLUSTER1, "curl", &["-sf", "http://127.0.0.1:15054/healthz"]).is_ok()
        })?;
        Ok(())
    }

    fn send_review(
        &mut self,
        operation: Operation,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Admission> {
        self.uid += 1;
        let uid = format!("demo-{}", self.uid);
        let review = api_server_review("admission.k8s.io/v1", &uid, operation, object, old, false);
        let body = self.work.join("review.json");
        write(&body, &review.to_string())?;
        let answer = run(
            "curl",
            &[
                "-sS",
                "--http2",
                "--cacert",
                &self.webhook_ca.display().to_string(),
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &format!("@{}", body.display()),
                &self.webhook_url,
            ],
        )?;
        let answer: Value = serde_json::from_str(&answer)
            .map_err(|e| step(format!("webhook answer is not JSON: {e}: {answer}")))?;
        let field = |path| answer.pointer(path).unwrap_or(&Value::Null);
        if field("/response/uid") != uid.as_str() {
            return Err(step(format!(
                "webhook answered uid {} for {uid}",
                field("/response/uid")
            )));
        }
        Ok(Admission {
            allowed: field("/response/allowed") == true,
            message: field("/response/status/message")
                .as_str()
                .unwrap_or("")
                .to_string(),
        })
    }

    /// Reviews a ServiceEntry through the webhook as the API server would; when admitted, it
    /// becomes the cluster's (the file dns-shim and the webhook read) and the client sidecar is
    /// rendered from it and (re)started.
    pub fn apply(&mut self, file: &str) -> Result<Admission> {
        let path = self.programs.seed.join(file);
        let text = std::fs::read_to_string(&path).map_err(|error| HostError::File {
            path: path.clone(),
            error,
        })?;
        let entry = load_one(&path)?;
        let object = serde_json::to_value(&entry).map_err(|e| step(e.to_string()))?;
        let current = self.catalog_dir.join("httpbin-bar.yaml");
        let old = match std::fs::read_to_string(&current) {
            Ok(_) => {
                Some(serde_json::to_value(load_one(&current)?).map_err(|e| step(e.to_string()))?)
            }
            Err(_) => None,
        };
        let operation = if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        };
        let admission = self.send_review(operation, Some(&object), old.as_ref())?;
        if !admission.allowed {
            return Ok(admission);
        }
        write(&current, &text)?;
        self.wait_for_table()?;
        self.start_sidecar(&[entry])?;
        let expected = entry_vip(&self.catalog_dir)?;
        wait("dns-shim answering the new ServiceEntry", || {
            run_in(
                CLUSTER1,
                "dig",
                &["+short", "+time=1", "+tries=1", "httpbin.bar.global"],
            )
            .is_ok_and(|out| out.lines().any(|l| l.trim() == expected))
        })?;
        Ok(admission)
    }

    /// The seed's direct ServiceEntry under another name and host, as JSON: the start of the
    /// rejected cases, which then change what they are about.
    pub fn seed_copy(&self, name: &str, host: &str) -> Result<Value> {
        let entry = load_one(&self.programs.seed.join("serviceentry-direct.yaml"))?;
        let mut object = serde_json::to_value(entry).map_err(|e| step(e.to_string()))?;
        if let Some(slot) = object.pointer_mut("/metadata/name") {
            *slot = Value::from(name);
        }
        if let Some(slot) = object.pointer_mut("/spec/hosts") {
            *slot = Value::from(vec![host]);
        }
        Ok(object)
    }

    /// Reviews `object` as a CREATE; when admitted, it joins the cluster's ServiceEntries as a
    /// file of its own in the catalog directory (moved into place whole, so no reader sees half
    /// of it). Nothing is restarted: dns-shim and globalmesh-controller follow the directory.
    pub fn create(&mut self, file: &str, object: &Value) -> Result<Admission> {
        let admission = self.send_review(Operation::Create, Some(object), None)?;
        if admission.allowed {
            let staged = self.work.join(file);
            write(&staged, &object.to_string())?;
            let path = self.catalog_dir.join(file);
            std::fs::rename(&staged, &path).map_err(|error| HostError::File { path, error })?;
        }
        Ok(admission)
    }

    /// Reviews the deletion of the ServiceEntry in catalog file `file`; when admitted, the
    /// file is removed.
    pub fn delete(&mut self, file: &str) -> Result<Admission> {
        let path = self.catalog_dir.join(file);
        let old = serde_json::to_value(load_one(&path)?).map_err(|e| step(e.to_string()))?;
        // As the API server sends a DELETE: no object, the stored one as the old.
        let admission = self.send_review(Operation::Delete, None, Some(&old))?;
        if admission.allowed {
            std::fs::remove_file(&path).map_err(|error| HostError::File { path, error })?;
        }
        Ok(admission)
    }

    /// Reviews a ServiceEntry that should be denied; nothing is applied.
    pub fn review_only(&mut self, object: &Value) -> Result<Admission> {
        self.send_review(Operation::Create, Some(object), None)
    }

    fn start_sidecar(&self, entries: &[ServiceEntry]) -> Result<()> {
        self.host.stop("sidecar");
        let addresses: BTreeMap<String, String> =
            [(EGRESS_GATEWAY_NAME.to_string(), CLUSTER1_ADDR.to_string())].into();
        let services = envoy::global_services(entries, &self.options, &addresses)
            .map_err(|e| step(e.to_string()))?;
        let identity = Identity {
            cert: &self.sleep.cert,
            key: &self.sleep.key,
            root: &self.ca.root,
        };
        let config = envoy::client_sidecar(
            &services,
            &SidecarConfig {
                identity,
                ecds_file: &self.ecds_file,
                admin_port: SIDECAR_ADMIN,
                outbound_port: 15001,
                cluster_header: CLUSTER_HEADER,
            },
        )
        .map_err(|e| step(e.to_string()))?;
        let path = self.write_config("cluster1-sidecar", &config)?;
        let as_proxy = [
            "setpriv",
            "--reuid",
            PROXY_UID,
            "--regid",
            PROXY_UID,
            "--clear-groups",
        ];
        self.host.spawn(
            "sidecar",
            Some(CLUSTER1),
            &self.envoy_argv(&path, &as_proxy),
            &self.log("cluster1-sidecar"),
        )?;
        self.wait_envoy(CLUSTER1, SIDECAR_ADMIN)?;
        // The egress gateway of cluster1 routes by SNI to endpoints in other networks.
        self.host.stop("egress-gateway");
        let routes = envoy::egress_routes(&services);
        if !routes.is_empty() {
            let gateway = envoy::sni_gateway(
                "istio-egressgateway",
                (CLUSTER1_ADDR, 15443),
                EGRESS_ADMIN,
                &routes,
            );
            let path = self.write_config("cluster1-egress-gateway", &gateway)?;
            self.host.spawn(
                "egress-gateway",
                Some(CLUSTER1),
                &self.envoy_argv(&path, &[]),
                &self.log("cluster1-egress-gateway"),
            )?;
            self.wait_envoy(CLUSTER1, EGRESS_ADMIN)?;
        }
        Ok(())
    }

    /// `curl` from the sleep pod (cluster1), as a non-proxy user.
    pub fn curl(&self, args: &[&str]) -> Result<Exchange> {
        self.curl_within("10", args)
    }

    fn curl_within(&self, max_time: &str, args: &[&str]) -> Result<Exchange> {
        let mut full = vec!["-sS", "-D", "-", "--max-time", max_time];
        full.extend_from_slice(args);
        let out = run_in(CLUSTER1, "curl", &full)?;
        Ok(parse_exchange(&out))
    }

    /// The client sidecar's count of requests global_guard allowed.
    pub fn guard_allowed(&self) -> Result<u64> {
        Ok(self
            .sidecar_stats("global_guard_allowed")?
            .iter()
            .filter(|(name, _)| name.ends_with("global_guard_allowed"))
            .map(|(_, n)| n)
            .sum())
    }

    /// Polls `curl args` until global_guard allows a request (no `x-global-guard` in the
    /// reply and its allowed counter up), for [`LIVE_DEADLINE`] from `since`: when, the
    /// exchange, and the counter before and after.
    pub fn until_allowed(
        &self,
        since: Instant,
        args: &[&str],
    ) -> Option<(Duration, (Exchange, u64, u64))> {
        eventually(since, LIVE_DEADLINE, || {
            let before = self.guard_allowed().ok()?;
            let exchange = self.curl_within("1", args).ok()?;
            let after = self.guard_allowed().ok()?;
            (exchange.status != 0 && exchange.header("x-global-guard").is_none() && after > before)
                .then_some((exchange, before, after))
        })
    }

    /// Polls `curl args` until global_guard refuses the request for `reason`, for
    /// [`LIVE_DEADLINE`] from `since`.
    pub fn until_refused(
        &self,
        since: Instant,
        args: &[&str],
        reason: &str,
    ) -> Option<(Duration, Exchange)> {
        eventually(since, LIVE_DEADLINE, || {
            let exchange = self.curl_within("1", args).ok()?;
            (exchange.header("x-global-guard") == Some(reason)).then_some(exchange)
        })
    }

    /// Polls dig until the pod's nameserver answers `name` with `rcode` (and, for NOERROR,
    /// an address), for [`LIVE_DEADLINE`] from `since`.
    pub fn until_dns(
        &self,
        since: Instant,
        name: &str,
        rcode: &str,
    ) -> Option<(Duration, DnsAnswer)> {
        eventually(since, LIVE_DEADLINE, || {
            let answer = self.dns_answer(name).ok()?;
            (answer.rcode == rcode && (rcode != "NOERROR" || !answer.addresses.is_empty()))
                .then_some(answer)
        })
    }

    /// The seed's verification: `curl -I httpbin.bar.global:8000/headers`.
    pub fn verify(&self) -> Result<Exchange> {
        let out = run_in(
            CLUSTER1,
            "curl",
            &[
                "-sSI",
                "--max-time",
                "10",
                "httpbin.bar.global:8000/headers",
            ],
        )?;
        Ok(parse_exchange(&out))
    }

    /// What the pod's resolver says, through glibc with the pod's search list and ndots.
    pub fn resolve(&self, name: &str) -> Result<String> {
        Ok(run_in(CLUSTER1, "getent", &["ahostsv4", name])?)
    }

    /// dig's answer section for a name, asked of the pod's nameserver.
    pub fn dig(&self, name: &str) -> Result<String> {
        Ok(run_in(CLUSTER1, "dig", &["+noall", "+answer", name])?)
    }

    /// What the pod's nameserver answers for `name`, asked once (dig, no search list).
    pub fn dns_answer(&self, name: &str) -> Result<DnsAnswer> {
        let out = run_in(
            CLUSTER1,
            "dig",
            &[
                "+time=1",
                "+tries=1",
                "+noall",
                "+comments",
                "+answer",
                name,
            ],
        )?;
        Ok(DnsAnswer::parse(&out))
    }

    /// One Envoy's counters whose names contain `filter`.
    pub fn stats(&self, netns: &str, admin: u16, filter: &str) -> Result<BTreeMap<String, u64>> {
        let url = format!("http://127.0.0.1:{admin}/stats?filter={filter}");
        let out = run_in(netns, "curl", &["-sf", &url])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(k, v)| v.trim().parse().ok().map(|v| (k.to_string(), v)))
            .collect())
    }

    pub fn sidecar_stats(&self, filter: &str) -> Result<BTreeMap<String, u64>> {
        self.stats(CLUSTER1, SIDECAR_ADMIN, filter)
    }

    pub fn egress_stats(&self, filter: &str) -> Result<BTreeMap<String, u64>> {
        self.stats(CLUSTER1, EGRESS_ADMIN, filter)
    }

    pub fn gateway_stats(&self, filter: &str) -> Result<BTreeMap<String, u64>> {
        self.stats(CLUSTER2, GATEWAY_ADMIN, filter)
    }

    pub fn server_sidecar_stats(&self, filter: &str) -> Result<BTreeMap<String, u64>> {
        self.stats(CLUSTER2, SERVER_SIDECAR_ADMIN, filter)
    }

    /// A TLS connection to the gateway with a certificate from outside the mesh: the server
    /// sidecar must refuse it. Returns curl's result.
    pub fn foreign_client(&self) -> std::result::Result<String, HostError> {
        let dir = self.work.join("foreign");
        let foreign = MeshCa::create(&dir)
            .and_then(|ca| ca.workload("foo", "sleep"))
            .map_err(|e| HostError::Command {
                command: "foreign CA".into(),
                stderr: e.to_string(),
            })?;
        let sni = envoy::sni("httpbin", "bar", HTTPBIN_PORT);
        let resolve = format!("{sni}:15443:{CLUSTER2_GW_ADDR}");
        run_in(
            CLUSTER1,
            "curl",
            &[
                "-sS",
                "--max-time",
                "10",
                "-k",
                "--cert",
                &foreign.cert.display().to_string(),
                "--key",
                &foreign.key.display().to_string(),
                "--resolve",
                &resolve,
                &format!("https://{sni}:15443/headers"),
            ],
        )
    }
}

/// dig's view of one answer: its response code and the addresses of its A records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    pub rcode: String,
    pub addresses: Vec<String>,
}

impl DnsAnswer {
    /// Reads `dig +noall +comments +answer` output.
    pub fn parse(out: &str) -> DnsAnswer {
        let rcode = out
            .lines()
            .find_map(|l| l.split_once("status: "))
            .and_then(|(_, rest)| rest.split(',').next())
            .unwrap_or("")
            .to_string();
        let addresses = out
            .lines()
            .filter(|l| !l.starts_with(';'))
            .filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                match fields.as_slice() {
                    [.., "A", address] => Some(address.to_string()),
                    _ => None,
                }
            })
            .collect();
        DnsAnswer { rcode, addresses }
    }
}

/// Polls `check` until it gives a value, for up to `within` counted from `since`: the value
/// and when it came. `None` when the deadline passed first (a value that came late included).
pub fn eventually<T>(
    since: Instant,
    within: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<(Duration, T)> {
    loop {
        let value = check();
        let elapsed = since.elapsed();
        if elapsed > within {
            return None;
        }
        if let Some(value) = value {
            return Some((elapsed, value));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn load_one(path: &Path) -> Result<ServiceEntry> {
    let loaded = catalog::load_path(path).map_err(|e| step(e.to_string()))?;
    loaded
        .into_iter()
        .find_map(|l| l.entry.ok())
        .ok_or_else(|| step(format!("{}: no valid ServiceEntry", path.display())))
}

fn entry_vip(dir: &Path) -> Result<String> {
    let entry = load_one(&dir.join("httpbin-bar.yaml"))?;
    entry
        .spec
        .addresses
        .first()
        .cloned()
        .ok_or_else(|| step("the ServiceEntry has no address"))
}

/// Splits `curl -D -` output into the final response's status, headers and body.
pub fn parse_exchange(out: &str) -> Exchange {
    let normalized = out.replace("\r\n", "\n");
    // With redirects or 100-continue there may be several header blocks; keep the last.
    let mut rest = normalized.as_str();
    let mut head = "";
    while rest.starts_with("HTTP/") {
        match rest.split_once("\n\n") {
            Some((h, b)) => {
                head = h;
                rest = b;
            }
            None => {
                head = rest;
                rest = "";
            }
        }
    }
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("").to_string();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Exchange {
        status_line,
        status,
        headers,
        body: rest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_last_response_of_curl_output() {
        let out = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nx-global-guard: unknown-host\r\ncontent-length: 5\r\n\r\nnope\n";
        let exchange = parse_exchange(out);
        assert_eq!(exchange.status, 404);
        assert_eq!(exchange.status_line, "HTTP/1.1 404 Not Found");
        assert_eq!(exchange.header("X-Global-Guard"), Some("unknown-host"));
        assert_eq!(exchange.body, "nope\n");
    }

    #[test]
    fn reads_the_response_code_and_addresses_of_dig_output() {
        let out = ";; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242\n;; flags: qr aa rd; QUERY: 1, ANSWER: 1\n\nlive.bar.global.\t30\tIN\tA\t127.255.0.9\n";
        let answer = DnsAnswer::parse(out);
        assert_eq!(answer.rcode, "NOERROR");
        assert_eq!(answer.addresses, vec!["127.255.0.9".to_string()]);
        let nx = DnsAnswer::parse(";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 7\n");
        assert_eq!(nx.rcode, "NXDOMAIN");
        assert!(nx.addresses.is_empty());
    }

    #[test]
    fn eventually_gives_up_at_the_deadline() {
        let since = Instant::now();
        assert!(eventually(since, Duration::from_millis(50), || None::<()>).is_none());
        let (elapsed, value) = eventually(since, Duration::from_secs(5), || Some(7)).unwrap();
        assert_eq!(value, 7);
        assert!(elapsed < Duration::from_secs(5));
    }
}
