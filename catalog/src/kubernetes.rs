//! The Kubernetes API as a source: lists and watches `serviceentries.networking.istio.io` and
//! hands each change to a [`Sink`], the same way the file source hands over a reload.
//!
//! - **Connection**: `--kubeconfig` when given, else `KUBECONFIG`, `~/.kube/config`, or the
//!   pod's service account (kube-rs's `Config::infer`).
//! - **Version**: the API server's discovery picks the first served of `v1`, `v1beta1` and
//!   `v1alpha3`, so clusters with an older Istio work too; when that version starts answering
//!   404, discovery runs again.
//! - **Sync**: kube-runtime's watcher lists (in pages), then watches from the list's
//!   resourceVersion with bookmarks. A dropped watch resumes from the last resourceVersion seen;
//!   a `410 Gone` lists again, and the new list replaces the whole view through
//!   [`Sink::reset`], which also drops objects deleted while the watch was down. Errors are
//!   retried with exponential backoff (0.8 s doubling to 30 s, with jitter, reset by the next
//!   success); the last good view keeps serving.
//! - **Batching**: [`Sink::flush`] follows each run of changes, at most once per
//!   [`FLUSH_INTERVAL`], so a burst of events costs one rebuild of a derived table.
//! - **Readiness**: nothing reaches the sink before the first complete list, so a server that
//!   reports ready only after its first [`Sink::reset`] is ready exactly when it is in sync.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config};
use policy::document::{decode, DecodeError};
use policy::{ObjectKey, ServiceEntry};
use serde_json::Value;

pub use policy::model::{GROUP, KIND, VERSIONS};
const PLURAL: &str = "serviceentries";
/// Shortest time between two flushes: changes arriving closer together are flushed together.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Objects per list page by default, as kube-runtime's watcher and kubectl ask.
pub const PAGE_SIZE: u32 = 500;

/// How to reach the API server and what to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A kubeconfig file; `None` infers the configuration (KUBECONFIG, ~/.kube/config, or
    /// in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// One namespace to watch; `None` watches all of them.
    pub namespace: Option<String>,
    /// Objects per list page.
    pub page_size: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            kubeconfig: None,
            namespace: None,
            page_size: PAGE_SIZE,
        }
    }
}

/// The source's command-line flags, the same in every server that has them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// Take the ServiceEntries from the Kubernetes API (list and watch) instead of files.
    #[arg(long)]
    pub kubernetes: bool,
    /// Kubeconfig for --kubernetes. Default: KUBECONFIG, ~/.kube/config, or the pod's
    /// service account.
    #[arg(long, value_name = "FILE", requires = "kubernetes")]
    pub kubeconfig: Option<PathBuf>,
    /// With --kubernetes, read this namespace only. Default: all namespaces.
    #[arg(long, value_name = "NAMESPACE", requires = "kubernetes")]
    pub namespace: Option<String>,
}

impl Flags {
    /// The settings, when --kubernetes was given.
    pub fn settings(self) -> Option<Settings> {
        self.kubernetes.then(|| Settings {
            kubeconfig: self.kubeconfig,
            namespace: self.namespace,
            ..Settings::default()
        })
    }
}

/// Why the Kubernetes API cannot be used. Each variant keeps the error it comes from as its
/// [`source`](std::error::Error::source), so a caller can tell an answer of the API server
/// ([`KubeError::status`]: 401, 403, 404, 5xx) from a connection that failed;
/// [`KubeError::chain`] writes the error and its causes on one line.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig {}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration found (not in a pod, no KUBECONFIG, no ~/.kube/config)")]
    NoConfig(#[source] kube::config::InferConfigError),
    #[error("Kubernetes client for {server}")]
    Client {
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error("API discovery at {server} ({what})")]
    Discovery {
        server: String,
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{server} serves no ServiceEntries: the {GROUP} group (v1, v1beta1 or v1alpha3) is not installed; install Istio's CRDs first")]
    NotServed { server: String },
    #[error("listing ServiceEntries at {server}")]
    List {
        server: String,
        #[source]
        source: kube::Error,
    },
}

impl KubeError {
    /// The HTTP status of the API server's answer, when the error is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Client { source, .. }
            | KubeError::Discovery { source, .. }
            | KubeError::List { source, .. } => api_status(source),
            KubeError::Kubeconfig { .. } | KubeError::NoConfig(_) | KubeError::NotServed { .. } => {
                None
            }
        }
    }

    /// The error and its causes, joined by `: `.
    pub fn chain(&self) -> String {
        chain(self)
    }
}

/// An error and its causes on one line, `outer: inner: innermost`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their cause in their own text.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The HTTP status code of an answer of the API server.
pub fn api_status(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Something the source ran into and will get over by itself; for logs and metrics.
#[derive(Debug)]
pub enum Trouble<'a> {
    /// Connecting, discovery, a list or a watch failed; retried after a backoff.
    Api(&'a str),
    /// An object in the API server that is not a ServiceEntry globalmesh can read. It is left
    /// out of the view (an earlier version of it is deleted first). Objects of a list are
    /// reported right after its [`Sink::reset`].
    Invalid(&'a DecodeError),
}

/// Where the source delivers the cluster's ServiceEntries.
pub trait Sink: Send {
    /// The complete view: after the first list, and after every re-list.
    fn reset(&mut self, entries: Vec<ServiceEntry>);
    /// An object was added or modified.
    fn apply(&mut self, entry: ServiceEntry);
    /// An object was deleted (or changed into one that cannot be read).
    fn delete(&mut self, key: &ObjectKey);
    /// Called after each run of changes that arrived together, at most once per
    /// [`FLUSH_INTERVAL`]; a sink that rebuilds a table rebuilds it here rather than once per
    /// change.
    fn flush(&mut self) {}
    /// A problem the source retries or skips by itself.
    fn trouble(&mut self, _trouble: Trouble<'_>) {}
}

/// A connected source: the client and the ServiceEntry version the API server serves.
#[derive(Clone)]
pub struct Source {
    client: Client,
    resource: ApiResource,
    namespace: Option<String>,
    page_size: u32,
    server: String,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("server", &self.server)
            .field("api_version", &self.resource.api_version)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Source {
    /// Builds the client and asks the API server which ServiceEntry version it serves.
    pub async fn connect(settings: &Settings) -> Result<Self, KubeError> {
        let (client, server) = client(settings).await?;
        let version = served_version(&client, &server).await?;
        let resource = ApiResource {
            group: GROUP.to_string(),
            version: version.to_string(),
            api_version: format!("{GROUP}/{version}"),
            kind: KIND.to_string(),
            plural: PLURAL.to_string(),
        };
        Ok(Source {
            client,
            resource,
            namespace: settings.namespace.clone(),
            page_size: settings.page_size.max(1),
            server,
        })
    }

    /// The API server's address.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The version in use, such as `networking.istio.io/v1`.
    pub fn api_version(&self) -> &str {
        &self.resource.api_version
    }

    fn api(&self) -> Api<DynamicObject> {
        match &self.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &self.resource),
            None => Api::all_with(self.client.clone(), &self.resource),
        }
    }

    /// Lists every ServiceEntry once, page by page. Objects that cannot be read are returned
    /// as errors beside the others.
    pub async fn list(&self) -> Result<Vec<Result<ServiceEntry, DecodeError>>, KubeError> {
        let api = self.api();
        let mut params = ListParams::default().limit(self.page_size);
        let mut out = Vec::new();
        loop {
            let page = api.list(&params).await.map_err(|source| KubeError::List {
                server: self.server.clone(),
                source,
            })?;
            out.extend(page.items.into_iter().map(|o| self.entry(o)));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(out),
            }
        }
    }

    /// Follows the API server, feeding `sink`, until the version in use is no longer served.
    pub async fn follow(&self, sink: &mut impl Sink) {
        let config = watcher::Config::default().page_size(self.page_size);
        // Backoff is drive's own: kube-runtime's resets on every Ok item, and the watcher sends
        // one (Init) before every list, so failing lists would be retried about once a second.
        let stream = watcher::watcher(self.api(), config);
        self.drive(stream, sink).await;
    }

    async fn drive<S>(&self, stream: S, sink: &mut impl Sink)
    where
        S: Stream<Item = Result<Event<DynamicObject>, watcher::Error>>,
    {
        let mut stream = std::pin::pin!(stream);
        // A list in progress; the view changes only when it is complete.
        let mut listing: Option<Listing> = None;
        let mut last_flush: Option<tokio::time::Instant> = None;
        let mut backoff = Backoff::default();
        loop {
            let Some(event) = stream.next().await else {
                return;
            };
            let mut step = self.handle(event, &mut listing, &mut backoff, sink);
            let mut ended = false;
            // Changes within FLUSH_INTERVAL of the last flush wait for the interval to pass, so
            // that a burst of events costs one flush.
            if let Some(last) = last_flush.filter(|_| step == Step::Ok && listing.is_none()) {
                let until = last + FLUSH_INTERVAL;
                while step == Step::Ok {
                    tokio::select! {
                        event = stream.next() => match event {
                            Some(event) => step = self.handle(event, &mut listing, &mut backoff, sink),
                            None => {
                                ended = true;
                                break;
                            }
                        },
                        () = tokio::time::sleep_until(until) => break,
                    }
                }
            }
            // And whatever else has already arrived.
            while step == Step::Ok && !ended {
                match futures::FutureExt::now_or_never(stream.next()) {
                    Some(Some(event)) => {
                        step = self.handle(event, &mut listing, &mut backoff, sink)
                    }
                    Some(None) => ended = true,
                    None => break,
                }
            }
            if listing.is_none() {
                sink.flush();
                last_flush = Some(tokio::time::Instant::now());
            }
            match step {
                _ if ended => return,
                Step::Gone => return,
                Step::Failed => tokio::time::sleep(backoff.delay()).await,
                Step::Ok => {}
            }
        }
    }

    /// Applies one event of the watcher to the listing in progress or to the sink.
    fn handle(
        &self,
        event: Result<Event<DynamicObject>, watcher::Error>,
        listing: &mut Option<Listing>,
        backoff: &mut Backoff,
        sink: &mut impl Sink,
    ) -> Step {
        match event {
            Ok(Event::Init) => *listing = Some(Listing::default()),
            Ok(Event::InitApply(object)) => {
                let listing = listing.get_or_insert_with(Listing::default);
                match self.entry(object) {
                    Ok(entry) => listing.entries.push(entry),
                    Err(e) => listing.invalid.push(e),
                }
            }
            Ok(Event::InitDone) => {
                let Listing { entries, invalid } = listing.take().unwrap_or_default();
                sink.reset(entries);
                // After the reset, so that a sink counting unreadable objects starts afresh.
                for e in &invalid {
                    sink.trouble(Trouble::Invalid(e));
                }
                backoff.reset();
            }
            Ok(Event::Apply(object)) => {
                let key = key_of(&object);
                match self.entry(object) {
                    Ok(entry) => sink.apply(entry),
                    Err(e) => {
                        // The earlier version leaves the view; then the object is reported.
                        sink.delete(&key);
                        sink.trouble(Trouble::Invalid(&e));
                    }
                }
                backoff.reset();
            }
            Ok(Event::Delete(object)) => {
                sink.delete(&key_of(&object));
                backoff.reset();
            }
            Err(e) if is_gone(&e) => {
                sink.trouble(Trouble::Api(&format!(
                    "{} is no longer served (404); asking the API server again which version it serves",
                    self.resource.api_version
                )));
                return Step::Gone;
            }
            Err(e) => {
                sink.trouble(Trouble::Api(&chain(&e)));
                return Step::Failed;
            }
        }
        Step::Ok
    }

    /// The object as the policy core's ServiceEntry. The object's fields are moved, not
    /// copied, and of its metadata only what the model reads is kept (`managedFields` and
    /// the like can be most of an object's size).
    fn entry(&self, object: DynamicObject) -> Result<ServiceEntry, DecodeError> {
        let key = key_of(&object);
        let DynamicObject {
            types,
            metadata,
            data,
        } = object;
        let Value::Object(mut fields) = data else {
            return Err(DecodeError {
                key,
                path: ".".to_string(),
                message: "the object is not a JSON object".to_string(),
            });
        };
        let mut meta = serde_json::Map::new();
        for (name, value) in [
            ("name", metadata.name),
            ("generateName", metadata.generate_name),
            ("namespace", metadata.namespace),
            ("uid", metadata.uid),
        ] {
            if let Some(value) = value {
                meta.insert(name.to_string(), Value::String(value));
            }
        }
        for (name, map) in [
            ("labels", metadata.labels),
            ("annotations", metadata.annotations),
        ] {
            if let Some(map) = map {
                let map = map.into_iter().map(|(k, v)| (k, Value::String(v)));
                meta.insert(name.to_string(), Value::Object(map.collect()));
            }
        }
        if let Some(time) = metadata.creation_timestamp {
            if let Ok(time) = serde_json::to_value(time) {
                meta.insert("creationTimestamp".to_string(), time);
            }
        }
        // Items of a list may come without apiVersion and kind; they are those of the list.
        let (api_version, kind) = match types {
            Some(types) => (types.api_version, types.kind),
            None => (self.resource.api_version.clone(), KIND.to_string()),
        };
        fields.insert("apiVersion".to_string(), Value::String(api_version));
        fields.insert("kind".to_string(), Value::String(kind));
        fields.insert("metadata".to_string(), Value::Object(meta));
        decode(Value::Object(fields))
    }
}

/// [`run`] on a task of the current tokio runtime; dropping the result stops it.
pub fn spawn(settings: Settings, sink: impl Sink + 'static) -> crate::Follower {
    crate::Follower::Kubernetes(tokio::spawn(run(settings, sink)))
}

/// Connects (retrying with backoff until it succeeds) and follows the API server for ever;
/// when the version in use stops being served, discovers the version again.
pub async fn run(settings: Settings, mut sink: impl Sink) {
    let mut backoff = Backoff::default();
    loop {
        match Source::connect(&settings).await {
            Ok(source) => {
                tracing::info!(server = source.server(), api_version = source.api_version(), namespace = ?settings.namespace, "watching ServiceEntries");
                source.follow(&mut sink).await;
            }
            Err(e) => sink.trouble(Trouble::Api(&e.chain())),
        }
        // Connecting failed, or the version in use went away: wait before asking again.
        tokio::time::sleep(backoff.delay()).await;
    }
}

/// What [`Source::handle`] made of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Ok,
    /// An API error: wait for the backoff before the watcher tries again.
    Failed,
    /// The version in use is no longer served.
    Gone,
}

/// A list in progress: what decoded, and what did not (reported once the list is complete).
#[derive(Default)]
struct Listing {
    entries: Vec<ServiceEntry>,
    invalid: Vec<DecodeError>,
}

/// Whether a list or watch was answered 404: the version in use is gone (an Istio upgrade
/// removed it, or its CRD was deleted).
fn is_gone(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::InitialListFailed(kube::Error::Api(status))
            | watcher::Error::WatchStartFailed(kube::Error::Api(status))
            if status.code == 404
    )
}

/// Delays between retries after API errors: from [`Backoff::FIRST`] doubling to
/// [`Backoff::MAX`], each shortened by up to a fifth at random so that many clients (a
/// dns-shim in every pod) do not retry in step; back to the start after a success.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(800);
    const MAX: Duration = Duration::from_secs(30);

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The delay to wait now; the one after is twice as long, up to the maximum.
    fn delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay - delay.mul_f64(jitter() * 0.2)
    }
}

/// A number in [0, 1), different on every call.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

fn key_of(object: &DynamicObject) -> ObjectKey {
    let meta = &object.metadata;
    ObjectKey::from_metadata(
        meta.namespace.as_deref(),
        meta.name.as_deref(),
        meta.generate_name.as_deref(),
    )
}

/// A client for the API server that `settings` name, and the server's address.
pub async fn client(settings: &Settings) -> Result<(Client, String), KubeError> {
    let config = load_config(settings.kubeconfig.as_deref()).await?;
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|source| KubeError::Client {
        server: server.clone(),
        source,
    })?;
    Ok((client, server))
}

async fn load_config(path: Option<&Path>) -> Result<Config, KubeError> {
    match path {
        Some(path) => {
            let err = |source| KubeError::Kubeconfig {
                path: path.to_path_buf(),
                source,
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(err)?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(err)
        }
        None => Config::infer().await.map_err(KubeError::NoConfig),
    }
}

/// The most preferred ServiceEntry version that the API server serves.
async fn served_version(client: &Client, server: &str) -> Result<&'static str, KubeError> {
    let discovery = |what: String, source| KubeError::Discovery {
        server: server.to_string(),
        what,
        source,
    };
    let groups = client
        .list_api_groups()
        .await
        .map_err(|e| discovery("/apis".to_string(), e))?;
    let Some(group) = groups.groups.iter().find(|g| g.name == GROUP) else {
        return Err(KubeError::NotServed {
            server: server.to_string(),
        });
    };
    // A version whose resource list cannot be read is passed over for the next one; the
    // error is returned only when no version serves ServiceEntries.
    let mut failure = None;
    for version in VERSIONS {
        if !group.versions.iter().any(|v| v.version == version) {
            continue;
        }
        match client
            .list_api_group_resources(&format!("{GROUP}/{version}"))
            .await
        {
            Ok(resources) if resources.resources.iter().any(|r| r.name == PLURAL) => {
                return Ok(version)
            }
            Ok(_) => {}
            Err(e) => failure = Some(discovery(format!("{GROUP}/{version}"), e)),
        }
    }
    Err(failure.unwrap_or_else(|| KubeError::NotServed {
        server: server.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_maximum_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let mut nominal = Backoff::FIRST;
        for _ in 0..12 {
            let delay = backoff.delay();
            assert!(
                delay <= nominal && delay >= nominal.mul_f64(0.8),
                "{delay:?} for {nominal:?}"
            );
            nominal = (nominal * 2).min(Backoff::MAX);
        }
        assert_eq!(backoff.next, Backoff::MAX);
        backoff.reset();
        assert!(backoff.delay() <= Backoff::FIRST);
    }

    #[test]
    fn only_404_from_a_list_or_watch_start_means_gone() {
        let status = |code| {
            Box::new(kube::core::Status {
                code,
                ..kube::core::Status::default()
            })
        };
        assert!(is_gone(&watcher::Error::InitialListFailed(
            kube::Error::Api(status(404))
        )));
        assert!(is_gone(&watcher::Error::WatchStartFailed(
            kube::Error::Api(status(404))
        )));
        assert!(!is_gone(&watcher::Error::InitialListFailed(
            kube::Error::Api(status(403))
        )));
        assert!(!is_gone(&watcher::Error::WatchError(status(410))));
    }
}
