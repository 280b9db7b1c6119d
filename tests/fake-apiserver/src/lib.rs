//! A stand-in for kube-apiserver, in process, for tests: discovery, list and watch of
//! `serviceentries.networking.istio.io` over HTTPS with a bearer token, as the real server
//! serves them (<https://kubernetes.io/docs/reference/using-api/api-concepts/>):
//!
//! - `GET /apis`, `/apis/networking.istio.io` and `/apis/networking.istio.io/{version}`:
//!   APIGroupList, APIGroup and APIResourceList for the versions the test chose to serve;
//!   an unserved version is 404.
//! - `GET .../serviceentries` and `.../namespaces/{ns}/serviceentries`: a ServiceEntryList with
//!   `metadata.resourceVersion`, paged by `limit` and `continue` (a continue token reads the
//!   snapshot it was issued at: `410 Expired` once that is compacted; 400 together with
//!   `resourceVersion`). `resourceVersion` with `resourceVersionMatch=Exact` reads an older
//!   snapshot the same way.
//! - the same with `watch=true`: a chunked stream of `{"type":…,"object":…}` lines —
//!   ADDED, MODIFIED and DELETED after the given resourceVersion (every current object as ADDED
//!   when it is unset or "0"), BOOKMARK when asked and `allowWatchBookmarks=true`, and an
//!   ERROR event carrying a `410 Expired` Status when the resourceVersion is older than the
//!   compacted history (HTTP 200 first, as the watch cache does). `timeoutSeconds` ends the
//!   stream cleanly.
//! - no or a wrong token: 401 Status. Anything else: 404 or 405 Status.
//!
//! Tests drive it: [`FakeApiServer::create`], [`update`](FakeApiServer::update) and
//! [`delete`](FakeApiServer::delete) change the store; [`compact`](FakeApiServer::compact),
//! [`expire_watches`](FakeApiServer::expire_watches), [`drop_watches`](FakeApiServer::drop_watches),
//! [`bookmark`](FakeApiServer::bookmark), [`hold_lists`](FakeApiServer::hold_lists),
//! [`send_garbage`](FakeApiServer::send_garbage) and [`break_lists`](FakeApiServer::break_lists) make
//! the situations a client must survive; [`requests`](FakeApiServer::requests) tells what it
//! asked.
// Test support: a failing unwrap fails the test that uses it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod admission;
pub mod apply;
mod resources;
pub mod webhook_client;

pub use resources::{
    now_rfc3339, Kind, ADDRESS_CLAIMS, HOST_CLAIMS, LEASES, MAX_OBJECT_BYTES, WASM_PLUGINS,
};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request as HttpRequest, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

pub const GROUP: &str = "networking.istio.io";
const PLURAL: &str = "serviceentries";

type Body = BoxBody<Bytes, std::io::Error>;
type Key = (String, String);
/// Objects are shared between the snapshots of successive resourceVersions.
type Objects = BTreeMap<Key, Arc<Value>>;

/// One request the server answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
}

impl Request {
    /// The field manager of a write: `fieldManager`, else the user agent's program.
    pub fn manager(&self) -> String {
        apply::manager_of(self.param("fieldManager"), self.user_agent.as_deref())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }

    /// A list or watch of ServiceEntries.
    pub fn is_collection(&self) -> bool {
        self.path.ends_with(PLURAL)
    }

    pub fn is_list(&self) -> bool {
        self.is_collection() && !self.is_watch()
    }
}

struct Event {
    rv: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

struct Store {
    rv: u64,
    objects: Objects,
    /// The objects at each resourceVersion not yet compacted.
    snapshots: BTreeMap<u64, Arc<Objects>>,
    events: Vec<Event>,
    /// The oldest resourceVersion a watch or a continue token may start from.
    oldest: u64,
    versions: Vec<String>,
    lists_held: bool,
    bookmarks: u64,
    drops: u64,
    expiries: u64,
    garbage: u64,
    broken_lists: usize,
    open_watches: usize,
    uid: u64,
    log: Vec<Request>,
    /// Objects of the other kinds ([`resources`]), and their watch events.
    others: BTreeMap<resources::Key, Value>,
    other_events: Vec<resources::Event>,
    /// Names handed out for `generateName`.
    names: u64,
}

struct Shared {
    store: Mutex<Store>,
    changed: watch::Sender<u64>,
    token: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The running server; stops when dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Serves v1, v1beta1 and v1alpha3 of networking.istio.io, as Istio 1.22 and later do.
    pub async fn start() -> Self {
        Self::serving(&["v1", "v1beta1", "v1alpha3"]).await
    }

    /// Serves only the given versions of networking.istio.io (none: Istio is not installed).
    /// Must be called inside a tokio runtime.
    pub async fn serving(versions: &[&str]) -> Self {
        let (acceptor, ca_pem) = tls();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let store = Store {
            rv: 1,
            objects: Objects::new(),
            snapshots: BTreeMap::from([(1, Arc::new(Objects::new()))]),
            events: Vec::new(),
            oldest: 1,
            versions: versions.iter().map(|v| v.to_string()).collect(),
            lists_held: false,
            bookmarks: 0,
            drops: 0,
            expiries: 0,
            garbage: 0,
            broken_lists: 0,
            open_watches: 0,
            uid: 0,
            log: Vec::new(),
            others: BTreeMap::new(),
            other_events: Vec::new(),
            names: 0,
        };
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            changed: watch::channel(0).0,
            token: format!("fake-token-{}", addr.port()),
        });
        let task = tokio::spawn(accept(listener, acceptor, Arc::clone(&shared)));
        FakeApiServer {
            shared,
            addr,
            ca_pem,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Writes a kubeconfig for this server (CA data, bearer token) into `dir`.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        self.write_kubeconfig_with_token(dir, self.token())
    }

    /// Writes a kubeconfig that presents `token` (to see a refused client).
    pub fn write_kubeconfig_with_token(&self, dir: &Path, token: &str) -> PathBuf {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: globalmesh\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: globalmesh\ncurrent-context: fake\n",
            self.url()
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Stores a new object (any `apiVersion` of the group; the namespace defaults to
    /// `default`) and returns its resourceVersion. Panics when it exists. A `metadata.uid` in
    /// the object is kept: the one the API server assigned before admission.
    pub fn create(&self, object: Value) -> u64 {
        self.write("ADDED", object)
    }

    /// Replaces an existing object; panics when it does not exist.
    pub fn update(&self, object: Value) -> u64 {
        self.write("MODIFIED", object)
    }

    /// Deletes an object; panics when it does not exist.
    pub fn delete(&self, namespace: &str, name: &str) -> u64 {
        let key = (namespace.to_string(), name.to_string());
        let rv = {
            let mut store = self.shared.lock();
            let mut object = Arc::unwrap_or_clone(
                store
                    .objects
                    .remove(&key)
                    .unwrap_or_else(|| panic!("{namespace}/{name} does not exist")),
            );
            let rv = store.rv + 1;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            store.commit(rv, "DELETED", key, object);
            rv
        };
        self.shared.notify();
        rv
    }

    fn write(&self, kind: &'static str, mut object: Value) -> u64 {
        let key = object_key(&object);
        let rv = {
            let mut store = self.shared.lock();
            let rv = store.rv + 1;
            let existing = store.objects.get(&key).cloned();
            let (namespace, name) = &key;
            match (kind, &existing) {
                ("ADDED", Some(_)) => panic!("{namespace}/{name} already exists"),
                ("MODIFIED", None) => panic!("{namespace}/{name} does not exist"),
                _ => {}
            }
            store.stamp(&mut object, &key, rv, existing.as_deref());
            store.objects.insert(key.clone(), Arc::new(object.clone()));
            store.commit(rv, kind, key, object);
            rv
        };
        self.shared.notify();
        rv
    }

    /// Forgets all history: watches and continue tokens from before now get 410 Expired, as
    /// after an etcd compaction.
    pub fn compact(&self) {
        let mut store = self.shared.lock();
        let rv = store.rv;
        store.compact_to(rv);
    }

    /// Stores many objects at once, under one new resourceVersion and with no watch events, as
    /// objects created before the history a watch can see (for load tests: storing them one by
    /// one keeps a snapshot per write).
    pub fn preload(&self, objects: impl IntoIterator<Item = Value>) {
        let mut store = self.shared.lock();
        let rv = store.rv + 1;
        for mut object in objects {
            let key = object_key(&object);
            store.stamp(&mut object, &key, rv, None);
            store.objects.insert(key, Arc::new(object));
        }
        store.rv = rv;
        let snapshot = Arc::new(store.objects.clone());
        store.snapshots.insert(rv, snapshot);
        store.compact_to(rv);
    }

    /// Compacts and ends every open watch with an ERROR event carrying 410 Expired, as the
    /// watch cache does to a watcher that fell too far behind.
    pub fn expire_watches(&self) {
        {
            let mut store = self.shared.lock();
            let rv = store.rv;
            store.compact_to(rv);
            store.expiries += 1;
        }
        self.shared.notify();
    }

    /// Cuts every open watch connection without ending its stream.
    pub fn drop_watches(&self) {
        self.shared.lock().drops += 1;
        self.shared.notify();
    }

    /// Sends a BOOKMARK with the current resourceVersion to watches that allow bookmarks.
    pub fn bookmark(&self) {
        self.shared.lock().bookmarks += 1;
        self.shared.notify();
    }

    /// Changes the versions of networking.istio.io served from now on (an Istio upgrade).
    pub fn serve_versions(&self, versions: &[&str]) {
        self.shared.lock().versions = versions.iter().map(|v| v.to_string()).collect();
    }

    /// Writes a line that is not JSON into every open watch stream.
    pub fn send_garbage(&self) {
        self.shared.lock().garbage += 1;
        self.shared.notify();
    }

    /// Answers the next `count` lists with HTTP 200 and a body cut off mid-object.
    pub fn break_lists(&self, count: usize) {
        self.shared.lock().broken_lists = count;
    }

    /// While held, list requests wait (a slow or busy API server).
    pub fn hold_lists(&self, held: bool) {
        self.shared.lock().lists_held = held;
        self.shared.notify();
    }

    /// Watch streams open now.
    pub fn open_watches(&self) -> usize {
        self.shared.lock().open_watches
    }

    /// The stored objects of one of the other kinds, by `(namespace, name)` (the namespace is
    /// empty for cluster-scoped kinds), as served.
    pub fn objects(&self, kind: Kind) -> BTreeMap<(String, String), Value> {
        resources::objects(&self.shared.lock(), kind)
    }

    /// Stores an object of one of the other kinds, as a create through the API would.
    pub fn put(&self, kind: Kind, object: Value) {
        resources::put(&self.shared, kind, object);
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().log.clone()
    }

    /// Waits (up to `timeout`) for a watch that starts from resourceVersion `rv`.
    pub async fn wait_for_watch_from(&self, rv: u64, timeout: Duration) -> bool {
        let rv = rv.to_string();
        self.wait_for_requests(
            |r| r.is_watch() && r.param("resourceVersion") == Some(rv.as_str()),
            1,
            timeout,
        )
        .await
    }

    /// Waits (up to `timeout`) until `count` requests match `pred`; returns whether they did.
    pub async fn wait_for_requests(
        &self,
        pred: impl Fn(&Request) -> bool,
        count: usize,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.requests().iter().filter(|r| pred(r)).count() >= count {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Store {
    /// Sets what the API server sets on a write: the namespace, the resourceVersion, and uid,
    /// creationTimestamp and generation (new, or carried over from the `existing` version, the
    /// generation raised when the spec changed). Stored version-neutral: the apiVersion asked
    /// for is set when served.
    fn stamp(&mut self, object: &mut Value, key: &Key, rv: u64, existing: Option<&Value>) {
        let spec_changed = existing.is_some_and(|old| old["spec"] != object["spec"]);
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(key.0);
        meta["resourceVersion"] = json!(rv.to_string());
        match existing {
            Some(old) => {
                meta["uid"] = old["metadata"]["uid"].clone();
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
                let generation = old["metadata"]["generation"].as_u64().unwrap_or(1);
                meta["generation"] = json!(generation + u64::from(spec_changed));
            }
            None => {
                // A uid the test gives is the one the API server set before admission (a
                // validating webhook saw it); otherwise one is made here.
                if !meta["uid"].is_string() {
                    self.uid += 1;
                    meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", self.uid));
                }
                meta["creationTimestamp"] = json!("2026-11-25T00:00:00Z");
                meta["generation"] = json!(1);
            }
        }
        if let Some(map) = object.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
    }

    fn commit(&mut self, rv: u64, kind: &'static str, key: Key, object: Value) {
        self.rv = rv;
        self.events.push(Event {
            rv,
            kind,
            key,
            object,
        });
        self.snapshots.insert(rv, Arc::new(self.objects.clone()));
    }

    fn compact_to(&mut self, rv: u64) {
        self.oldest = rv;
        self.events.retain(|e| e.rv > rv);
        self.other_events.retain(|e| e.rv > rv);
        self.snapshots = self.snapshots.split_off(&rv);
    }

    /// A write of another kind: the ServiceEntries at `rv` are those of the revision before.
    fn commit_other(&mut self, rv: u64, kind: &'static str, key: resources::Key, object: Value) {
        let previous = self
            .snapshots
            .get(&self.rv)
            .cloned()
            .unwrap_or_else(|| Arc::new(self.objects.clone()));
        self.rv = rv;
        self.snapshots.insert(rv, previous);
        self.other_events.push(resources::Event {
            rv,
            kind,
            key,
            object,
        });
    }
}

fn tls() -> (TlsAcceptor, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("ca key");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (TlsAcceptor::from(Arc::new(config)), ca.pem())
}

async fn accept(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(req, &shared).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn full(status: StatusCode, body: &Value) -> Response<Body> {
    let body = Full::new(Bytes::from(body.to_string()))
        .map_err(|never| match never {})
        .boxed();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .unwrap_or_default()
}

/// A `meta/v1` Status, the body of every error the API server returns.
fn status(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

/// The 410 Expired Status for a resourceVersion older than the history kept.
fn too_old(rv: u64, oldest: u64) -> Value {
    status(
        StatusCode::GONE,
        "Expired",
        &format!("too old resource version: {rv} ({oldest})"),
    )
}

fn error(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    full(code, &status(code, reason, message))
}

/// Largest request body read; kube-apiserver's limit is 3 MiB for most writes.
const MAX_BODY: usize = 3 * 1024 * 1024;

async fn handle(req: HttpRequest<Incoming>, shared: &Arc<Shared>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: BTreeMap<String, String> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", shared.token));
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let request = Request {
        method: method.to_string(),
        path,
        query,
        content_type: header("content-type"),
        user_agent: header("user-agent"),
    };
    shared.lock().log.push(request.clone());
    let parts: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    if resources::serves(&parts) {
        let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    "the request body is too large",
                )
            }
        };
        return resources::handle(shared, &request, &method, &body, &parts).await;
    }
    if method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
    }
    let versions = shared.lock().versions.clone();
    match parts.as_slice() {
        ["apis"] => full(StatusCode::OK, &group_list(&versions)),
        ["apis", group] if resources::groups().iter().any(|g| g["name"] == *group) => {
            let found = resources::groups()
                .into_iter()
                .find(|g| g["name"] == *group);
            let mut found = found.unwrap_or_default();
            found["kind"] = json!("APIGroup");
            found["apiVersion"] = json!("v1");
            full(StatusCode::OK, &found)
        }
        ["apis", group, version] if resources::resource_list(group, version).is_some() => full(
            StatusCode::OK,
            &resources::resource_list(group, version).unwrap_or_default(),
        ),
        ["apis", GROUP] if !versions.is_empty() => full(StatusCode::OK, &group(&versions)),
        ["apis", GROUP, version] if versions.iter().any(|v| v == version) => {
            full(StatusCode::OK, &resource_list(version))
        }
        ["apis", GROUP, version, PLURAL] if versions.iter().any(|v| v == version) => {
            collection(shared, &request, version, None).await
        }
        ["apis", GROUP, version, "namespaces", namespace, PLURAL]
            if versions.iter().any(|v| v == version) =>
        {
            collection(shared, &request, version, Some(namespace)).await
        }
        ["apis", GROUP, version, "namespaces", namespace, PLURAL, name]
            if versions.iter().any(|v| v == version) =>
        {
            let key = (namespace.to_string(), name.to_string());
            match shared.lock().objects.get(&key) {
                Some(object) => full(StatusCode::OK, &served(object, version)),
                None => error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{PLURAL}.{GROUP} \"{name}\" not found"),
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

fn group_list(versions: &[String]) -> Value {
    let mut groups = vec![json!({
        "name": "apps",
        "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
    })];
    if !versions.is_empty() {
        groups.push(group(versions));
    }
    groups.extend(resources::groups());
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group(versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{GROUP}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "preferredVersion": versions[0],
        "versions": versions,
    })
}

fn resource_list(version: &str) -> Value {
    let verbs = [
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "create",
        "update",
        "watch",
    ];
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{version}"),
        "resources": [
            {"name": PLURAL, "singularName": "serviceentry", "namespaced": true,
             "kind": "ServiceEntry", "verbs": verbs, "shortNames": ["se"],
             "categories": ["istio-io", "networking-istio-io"]},
            {"name": format!("{PLURAL}/status"), "singularName": "", "namespaced": true,
             "kind": "ServiceEntry", "verbs": ["get", "patch", "update"]},
        ],
    })
}

/// A stored object as served in `version`.
fn served(object: &Value, version: &str) -> Value {
    let mut out = json!({"apiVersion": format!("{GROUP}/{version}"), "kind": "ServiceEntry"});
    if let (Some(out), Some(fields)) = (out.as_object_mut(), object.as_object()) {
        for (k, v) in fields {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// `(namespace, name)` of an object handed to the server; the namespace defaults to `default`.
fn object_key(object: &Value) -> Key {
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let name = object["metadata"]["name"].as_str().expect("metadata.name");
    (namespace.to_string(), name.to_string())
}

fn in_namespace(key: &Key, namespace: Option<&str>) -> bool {
    namespace.is_none_or(|ns| key.0 == ns)
}

async fn collection(
    shared: &Arc<Shared>,
    request: &Request,
    version: &str,
    namespace: Option<&str>,
) -> Response<Body> {
    if request.is_watch() {
        return watch_stream(shared, request, version, namespace);
    }
    // Lists wait while held.
    let mut changed = shared.changed.subscribe();
    while shared.lock().lists_held {
        if changed.changed().await.is_err() {
            break;
        }
    }
    list(shared, request, version, namespace)
}

fn list(
    shared: &Shared,
    request: &Request,
    version: &str,
    namespace: Option<&str>,
) -> Response<Body> {
    let bad = |message: &str| error(StatusCode::BAD_REQUEST, "BadRequest", message);
    let limit = match request.param("limit").map(str::parse::<usize>) {
        None => None,
        Some(Ok(0)) => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return bad("limit: invalid value"),
    };
    let mut store = shared.lock();
    if store.broken_lists > 0 {
        store.broken_lists -= 1;
        let body = format!(
            "{{\"apiVersion\":\"{GROUP}/{version}\",\"kind\":\"ServiceEntryList\",\"metadata\":{{\"resourceVersion\":\"{}\"}},\"items\":[{{\"metadata\":",
            store.rv
        );
        return Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(
                Full::new(Bytes::from(body))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap_or_default();
    }
    let (rv, objects, after) = if let Some(token) = request.param("continue") {
        if request
            .param("resourceVersion")
            .is_some_and(|rv| !rv.is_empty())
        {
            return bad("specifying resource version is not allowed when using continue");
        }
        let Some((rv, after)) = decode_continue(token) else {
            return bad("continue key is not valid: illegal base64 data");
        };
        match store.snapshots.get(&rv) {
            Some(objects) if rv >= store.oldest => (rv, Arc::clone(objects), Some(after)),
            _ => return error(
                StatusCode::GONE,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            ),
        }
    } else {
        match (
            request.param("resourceVersion").unwrap_or(""),
            request.param("resourceVersionMatch"),
        ) {
            (rv, Some("Exact")) => {
                let Ok(rv) = rv.parse::<u64>() else {
                    return bad("resourceVersionMatch: Exact requires a resourceVersion");
                };
                match store.snapshots.get(&rv) {
                    Some(objects) if rv >= store.oldest => (rv, Arc::clone(objects), None),
                    _ => return full(StatusCode::GONE, &too_old(rv, store.oldest)),
                }
            }
            _ => (store.rv, Arc::new(store.objects.clone()), None),
        }
    };
    drop(store);
    let mut items = Vec::new();
    let mut next = None;
    let rest: Box<dyn Iterator<Item = (&Key, &Arc<Value>)>> = match &after {
        Some(after) => Box::new(objects.range((
            std::ops::Bound::Excluded(after.clone()),
            std::ops::Bound::Unbounded,
        ))),
        None => Box::new(objects.iter()),
    };
    for (key, object) in rest {
        if !in_namespace(key, namespace) {
            continue;
        }
        if limit.is_some_and(|l| items.len() == l) {
            // More follow. (remainingItemCount is optional, and left out.)
            next = Some(encode_continue(rv, &items_last_key(&items)));
            break;
        }
        items.push((key.clone(), served(object, version)));
    }
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(token) = next {
        metadata["continue"] = json!(token);
    }
    let items: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
    full(
        StatusCode::OK,
        &json!({
            "apiVersion": format!("{GROUP}/{version}"),
            "kind": "ServiceEntryList",
            "metadata": metadata,
            "items": items,
        }),
    )
}

fn items_last_key(items: &[(Key, Value)]) -> Key {
    items.last().map(|(k, _)| k.clone()).unwrap_or_default()
}

fn encode_continue(rv: u64, after: &Key) -> String {
    let text = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": [after.0, after.1]}).to_string();
    base64::engine::general_purpose::URL_SAFE.encode(text)
}

fn decode_continue(token: &str) -> Option<(u64, Key)> {
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let start = value["start"].as_array()?;
    Some((
        value["rv"].as_u64()?,
        (
            start.first()?.as_str()?.to_string(),
            start.get(1)?.as_str()?.to_string(),
        ),
    ))
}

/// One open watch stream, counted while it lives.
struct OpenWatch(Arc<Shared>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.lock().open_watches -= 1;
    }
}

fn line(kind: &str, object: Value) -> Result<Frame<Bytes>, std::io::Error> {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Ok(Frame::data(Bytes::from(text)))
}

fn watch_stream(
    shared: &Arc<Shared>,
    request: &Request,
    version: &str,
    namespace: Option<&str>,
) -> Response<Body> {
    let bookmarks = request.param("allowWatchBookmarks") == Some("true");
    // kube-apiserver picks a timeout between --min-request-timeout and twice that.
    let timeout = request
        .param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1800u64);
    let from = request.param("resourceVersion").unwrap_or("").to_string();
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(256);
    let version = version.to_string();
    let namespace = namespace.map(str::to_string);
    let mut changed = shared.changed.subscribe();
    let start = {
        let mut store = shared.lock();
        store.open_watches += 1;
        (store.bookmarks, store.drops, store.expiries, store.garbage)
    };
    // Counted from here until the stream ends.
    let open = OpenWatch(Arc::clone(shared));
    // Work out, under the lock, what to send first.
    let mut frames = Vec::new();
    let mut sent;
    {
        let store = shared.lock();
        match from.as_str() {
            "" | "0" => {
                for (key, object) in &store.objects {
                    if in_namespace(key, namespace.as_deref()) {
                        frames.push(line("ADDED", served(object, &version)));
                    }
                }
                sent = store.rv;
            }
            rv => match rv.parse::<u64>() {
                Ok(rv) if rv >= store.oldest => sent = rv,
                Ok(rv) => {
                    frames.push(line("ERROR", too_old(rv, store.oldest)));
                    sent = u64::MAX;
                }
                Err(_) => {
                    drop(store);
                    return error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("resourceVersion: Invalid value: {rv:?}"),
                    );
                }
            },
        }
    }
    let shared_events = Arc::clone(shared);
    tokio::spawn(async move {
        let _open = open;
        let (mut bookmarks_seen, drops_seen, expiries_seen, mut garbage_seen) = start;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        for frame in frames.drain(..) {
            if tx.send(frame).await.is_err() {
                return;
            }
        }
        if sent == u64::MAX {
            return;
        }
        loop {
            let mut out = Vec::new();
            {
                let store = shared_events.lock();
                if store.drops != drops_seen {
                    out.push(Err(std::io::Error::other("connection cut by the test")));
                    sent = u64::MAX;
                } else if store.expiries != expiries_seen {
                    out.push(line("ERROR", too_old(sent, store.oldest)));
                    sent = u64::MAX;
                } else {
                    if store.garbage != garbage_seen {
                        garbage_seen = store.garbage;
                        out.push(Ok(Frame::data(Bytes::from_static(
                            b"{\"type\":\"ADDED\",\"object\":{not json\n",
                        ))));
                    }
                    for event in store.events.iter().filter(|e| e.rv > sent) {
                        if in_namespace(&event.key, namespace.as_deref()) {
                            out.push(line(event.kind, served(&event.object, &version)));
                        }
                    }
                    sent = sent.max(store.rv);
                    if store.bookmarks != bookmarks_seen {
                        bookmarks_seen = store.bookmarks;
                        if bookmarks {
                            out.push(line(
                                "BOOKMARK",
                                json!({
                                    "apiVersion": format!("{GROUP}/{version}"),
                                    "kind": "ServiceEntry",
                                    "metadata": {"resourceVersion": store.rv.to_string()},
                                }),
                            ));
                        }
                    }
                }
            }
            for frame in out {
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
            if sent == u64::MAX {
                return;
            }
            tokio::select! {
                changed = changed.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(deadline) => return,
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_default()
}

/// The seed's ServiceEntry as stored in the API server: `foo/httpbin-bar`, host
/// `httpbin.bar.global`, VIP 127.255.0.2.
pub fn seed_service_entry() -> Value {
    service_entry("foo", "httpbin-bar", "httpbin.bar.global", "127.255.0.2")
}

/// The documents `kubectl kustomize DIR` renders, as an API server would be handed them;
/// kubectl is `$KUBECTL` when set (the Makefile pins one), else the one on the PATH.
pub fn kustomize(dir: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let output = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl (kubectl kustomize renders deploy/)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 from kubectl");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .collect()
}

/// A `.global` ServiceEntry as stored in the API server: one HTTP port 8000 behind a gateway
/// at 198.18.2.1:15443, as in the seed.
pub fn service_entry(namespace: &str, name: &str, host: &str, address: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [host],
            "location": "MESH_INTERNAL",
            "ports": [{"name": "http1", "number": 8000, "protocol": "http"}],
            "resolution": "DNS",
            "addresses": [address],
            "endpoints": [{"address": "198.18.2.1", "ports": {"http1": 15443}}],
        }
    })
}
