//! Shared set-up of the Envoy tests: the built module, the seed's ServiceEntries and their
//! compact table, a loopback upstream that echoes request headers, an Envoy process (the filter
//! inline or through extension config discovery), curl, and a keep-alive client for load.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

/// Upper bound on polls while Envoy starts or stops (100 ms apart).
const MAX_POLLS: usize = 600;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the workspace")
        .to_path_buf()
}

/// `ENVOY_BIN`, or the copy that `make setup` installs.
pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/envoy/envoy/_bin/envoy"));
    assert!(
        path.is_file(),
        "Envoy not found at {}: run `make setup` (or set ENVOY_BIN to an Envoy 1.40 binary)",
        path.display()
    );
    path
}

/// The release module; the Makefile builds it before the tests.
pub fn module_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("wasm32-wasip1/release/global_guard.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `make build-filter` (cargo build --release --target wasm32-wasip1 -p wasm-filter) first",
        path.display()
    );
    path
}

/// Every ServiceEntry of the seed, as JSON objects for the plugin configuration.
pub fn seed_entries() -> Vec<Value> {
    let dir = repo_root().join("tests/data/seed");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("seed directory")
        .map(|e| e.expect("seed entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("seed file");
        for parsed in policy::parse_str(&text).expect("seed parses") {
            let entry = parsed.entry.expect("seed entry decodes");
            out.push(serde_json::to_value(entry).expect("entry to JSON"));
        }
    }
    assert!(!out.is_empty(), "no ServiceEntries in {}", dir.display());
    out
}

/// A ServiceEntry for `host` with the given ports and endpoint cluster labels.
pub fn service_entry(host: &str, ports: &[u16], clusters: &[&str]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({"name": format!("http-{p}"), "number": p, "protocol": "HTTP"}))
        .collect();
    let endpoints: Vec<Value> = clusters
        .iter()
        .map(|c| json!({"address": "198.18.2.1", "labels": {"cluster": c}, "ports": {}}))
        .collect();
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": host.replace('.', "-"), "namespace": "foo"},
        "spec": {"hosts": [host], "ports": ports, "resolution": "DNS", "endpoints": endpoints}
    })
}

/// The plugin configuration with the seed's ServiceEntries plus `extra`.
pub fn seed_config(extra: Vec<Value>) -> String {
    let mut entries = seed_entries();
    entries.extend(extra);
    json!({"service_entries": entries}).to_string()
}

/// The compact table of `entries`, as globalmesh-controller writes it.
pub fn table_of(entries: &[Value]) -> Value {
    let entries: Vec<policy::ServiceEntry> = entries
        .iter()
        .map(|e| serde_json::from_value(e.clone()).expect("a ServiceEntry"))
        .collect();
    let table = policy::table::Table::build(&entries, &policy::Options::default());
    serde_json::to_value(table).expect("table to JSON")
}

/// The plugin configuration in the table form: the seed's ServiceEntries plus `extra`.
pub fn seed_table_config(extra: Vec<Value>) -> String {
    let mut entries = seed_entries();
    entries.extend(extra);
    json!({"table": table_of(&entries)}).to_string()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// An HTTP/1.1 upstream on loopback that answers every request with its request head as the
/// body. Its threads end with the test process.
pub fn start_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let port = listener.local_addr().expect("echo address").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve_echo(stream));
        }
    });
    port
}

fn serve_echo(stream: TcpStream) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut head = String::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                content_length = value.trim().parse().unwrap_or(0);
            }
            head.push_str(line.trim_end());
            head.push('\n');
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{head}",
            head.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// One Envoy process: one worker, the V8 runtime, `global_guard` before the router, routes to
/// the echo upstream. Killed on drop.
pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    dir: tempfile::TempDir,
}

/// Why Envoy did not come up: its exit status and log.
#[derive(Debug)]
pub struct StartError {
    pub exited: Option<std::process::ExitStatus>,
    pub log: String,
}

impl Envoy {
    /// Starts Envoy with `configuration` as the plugin configuration and waits until it is
    /// ready; the listener uses `port`.
    pub fn start_on(port: u16, configuration: &str) -> Result<Envoy, StartError> {
        Envoy::launch(port, inline_filter(configuration), json!({}))
    }

    /// Starts Envoy with `filter` (the HTTP filter before the router: [`inline_filter`] or
    /// [`discovered_filter`]) and `node_metadata` as the bootstrap's `node.metadata`, and waits
    /// until it is ready.
    pub fn launch(port: u16, filter: Value, node_metadata: Value) -> Result<Envoy, StartError> {
        let upstream = start_echo();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = envoy_config(port, upstream, filter, node_metadata);
        let config_path = dir.path().join("envoy.json");
        fs::write(&config_path, config.to_string()).expect("write envoy config");
        let admin_path = dir.path().join("admin-address");
        let log = fs::File::create(dir.path().join("envoy.log")).expect("log file");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn envoy");
        let mut envoy = Envoy {
            child,
            port,
            admin_port: 0,
            dir,
        };
        for _ in 0..MAX_POLLS {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                return Err(StartError {
                    exited: Some(status),
                    log: envoy.log(),
                });
            }
            if envoy.admin_port == 0 {
                envoy.admin_port = fs::read_to_string(&admin_path)
                    .ok()
                    .and_then(|a| a.trim().rsplit(':').next()?.parse().ok())
                    .unwrap_or(0);
            }
            if envoy.admin_port != 0 {
                if let Some((200, body)) = http_get(envoy.admin_port, "/ready") {
                    if body.trim() == "LIVE" {
                        return Ok(envoy);
                    }
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(StartError {
            exited: None,
            log: envoy.log(),
        })
    }

    /// As [`Envoy::start_on`], on a free port, for a configuration that must work.
    pub fn start(configuration: &str) -> Envoy {
        Envoy::must(Envoy::start_on(free_port(), configuration))
    }

    /// The Envoy that started, or a panic with its log.
    pub fn must(started: Result<Envoy, StartError>) -> Envoy {
        match started {
            Ok(envoy) => envoy,
            Err(e) => panic!("envoy did not start ({:?}):\n{}", e.exited, e.log),
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// The `wasmcustom.` counters from the admin `/stats` endpoint.
    pub fn counter(&self, name: &str) -> u64 {
        let (status, body) =
            http_get(self.admin_port, "/stats?filter=wasmcustom").expect("admin /stats answers");
        assert_eq!(status, 200, "{body}");
        let key = format!("wasmcustom.{name}: ");
        body.lines()
            .find_map(|line| line.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no counter {name} in /stats:\n{body}"))
            .trim()
            .parse()
            .expect("counter value")
    }

    /// Sends one GET with curl; `host` becomes `Host` (HTTP/1.1) or `:authority` (HTTP/2).
    pub fn get(&self, version: Version, host: &str, headers: &[(&str, &str)]) -> Reply {
        curl(self.port, version, host, headers)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// global_guard with `configuration` in the listener's own configuration.
pub fn inline_filter(configuration: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "global_guard",
                "failure_policy": "FAIL_CLOSED",
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": module_path()}}
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration
                }
            }
        }
    })
}

/// global_guard through extension config discovery from `path`, a discovery response file that
/// Envoy reloads when it is moved into `path`'s directory (what istiod's ECDS does for a
/// WasmPlugin, from a file).
pub fn discovered_filter(path: &Path) -> Value {
    let dir = path.parent().expect("the file lies in a directory");
    json!({
        "name": "global_guard",
        "config_discovery": {
            "config_source": {
                "path_config_source": {
                    "path": path,
                    "watched_directory": {"path": dir}
                }
            },
            "type_urls": [controller::ecds::WASM_TYPE_URL]
        }
    })
}

fn envoy_config(port: u16, upstream: u16, filter: Value, node_metadata: Value) -> Value {
    json!({
        "node": {"id": "global-guard-test", "cluster": "test", "metadata": node_metadata},
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "main",
                        "codec_type": "AUTO",
                        "route_config": {"virtual_hosts": [{
                            "name": "all",
                            "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]
                        }]},
                        "http_filters": [
                            filter,
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                            }
                        ]
                    }
                }]}]
            }],
            "clusters": [{
                "name": "echo",
                "type": "STATIC",
                "connect_timeout": "5s",
                "load_assignment": {"cluster_name": "echo", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}}
                }]}]}
            }]
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    })
}

/// A plain HTTP/1.1 GET to the admin endpoint (Envoy refuses HTTP/1.0): status and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Some((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_string()
        },
    ))
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http1,
    Http2,
}

pub const VERSIONS: [Version; 2] = [Version::Http1, Version::Http2];

/// A response as curl received it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Lines of the echoed request head that carry header `name` (the upstream's view).
    pub fn upstream_header_lines(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}:");
        self.body
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
            .collect()
    }
}

pub fn curl(port: u16, version: Version, host: &str, headers: &[(&str, &str)]) -> Reply {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "10"]);
    cmd.arg(match version {
        Version::Http1 => "--http1.1",
        Version::Http2 => "--http2-prior-knowledge",
    });
    cmd.arg("-H").arg(format!("Host: {host}"));
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(format!("http://127.0.0.1:{port}/echo"));
    let output = cmd.output().expect("curl runs (scripts/ensure-apt curl)");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// One keep-alive HTTP/1.1 connection, for load: a request at a time, the answer read to its
/// end (`content-length`), so the next request goes on the same connection.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// What [`Client::get`] learnt of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The `x-global-guard` reason, if the filter answered.
    pub reason: Option<String>,
}

impl Client {
    pub fn connect(port: u16) -> std::io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    pub fn get(&mut self, host: &str) -> std::io::Result<Answer> {
        use std::io::{Error, ErrorKind};
        write!(self.writer, "GET /load HTTP/1.1\r\nHost: {host}\r\n\r\n")?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "connection closed"));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, format!("status line {line:?}")))?;
        let mut length = 0usize;
        let mut reason = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(Error::new(ErrorKind::UnexpectedEof, "connection closed"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "x-global-guard" => reason = Some(value.trim().to_string()),
                "transfer-encoding" => {
                    return Err(Error::new(ErrorKind::InvalidData, "chunked answer"));
                }
                _ => {}
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Answer { status, reason })
    }
}

/// One request on a fresh connection.
pub fn get_once(port: u16, host: &str) -> std::io::Result<Answer> {
    Client::connect(port)?.get(host)
}
