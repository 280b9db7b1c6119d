//! The host table the handler answers from, loaded from the `--service-entries` paths and
//! reloaded when a file under them changes, or kept in step with the Kubernetes API through
//! [`KubeSink`]. The table is immutable and swapped atomically, so
//! a query never waits for a reload. A load that fails keeps the last good table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use catalog::kubernetes;
use catalog::watch::{WatchError, WatchHandle};
use policy::resolve::{HostEntry, HostTable};
use policy::{ObjectKey, Options, ServiceEntry};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::zone::{Zone, ZoneConfig};

pub struct Catalog {
    paths: Vec<PathBuf>,
    options: Options,
    search_domains: Vec<String>,
    /// The namespace whose view is answered (`exportTo`).
    namespace: Option<String>,
    zone_config: ZoneConfig,
    zone: ArcSwap<Zone>,
    ready: AtomicBool,
    generation: AtomicU32,
    metrics: Arc<Metrics>,
}

impl Catalog {
    /// An empty, unready catalog; call [`Catalog::reload`] to load it.
    pub fn new(
        paths: Vec<PathBuf>,
        options: Options,
        search_domains: Vec<String>,
        namespace: Option<String>,
        zone_config: ZoneConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (empty, _) = HostTable::build([], &options, &search_domains, namespace.as_deref());
        Self {
            paths,
            options,
            search_domains,
            namespace,
            zone: ArcSwap::from_pointee(Zone::empty(empty, &zone_config)),
            zone_config,
            ready: AtomicBool::new(false),
            generation: AtomicU32::new(0),
            metrics,
        }
    }

    /// The current zone (cheap: an atomic load of an `Arc`).
    pub fn zone(&self) -> arc_swap::Guard<Arc<Zone>> {
        self.zone.load()
    }

    /// The current zone, held (for a loop that keeps it between queries and looks again with
    /// [`Catalog::generation`]).
    pub fn zone_full(&self) -> Arc<Zone> {
        self.zone.load_full()
    }

    /// Whether a load has succeeded since start.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Serial of the zone, raised on every successful load (the SOA serial).
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// Loads every path and swaps the table in. On an unreadable or unparsable file the last
    /// good table stays and the error is returned. Entries that do not fit the ServiceEntry
    /// schema are left out and counted. Files are read and parsed on several threads.
    pub fn reload(&self) -> Result<LoadStats, catalog::LoadError> {
        let started = Instant::now();
        let read = match load_parallel(&self.paths) {
            Ok(read) => read,
            Err(e) => {
                self.metrics.catalog_error();
                return Err(e);
            }
        };
        let read_time = started.elapsed();
        let entries = read.entries.len();
        let hosts = self.install(read.entries, read.invalid);
        Ok(LoadStats {
            hosts,
            entries,
            read: read_time,
            total: started.elapsed(),
        })
    }

    /// Builds a table from `entries` and swaps it in; `invalid` entries were left out before.
    /// Returns the number of hosts.
    fn install(&self, entries: Vec<HostEntry>, invalid: usize) -> usize {
        let (table, skipped) = HostTable::build_from(
            entries,
            &self.options,
            &self.search_domains,
            self.namespace.as_deref(),
        );
        if table.hidden() > 0 {
            debug!(
                hidden = table.hidden(),
                namespace = self.namespace.as_deref().unwrap_or("(unknown)"),
                "ServiceEntries not exported to this namespace left out"
            );
        }
        for s in &skipped {
            warn!(?s, "left out of the host table");
        }
        let hosts = table.len();
        let serial = self.generation.load(Ordering::Relaxed).wrapping_add(1);
        let zone = Zone::new(table, serial, &self.zone_config);
        // The old zone is freed here, before the next is built: two at once is the peak.
        self.zone.store(Arc::new(zone));
        self.generation.store(serial, Ordering::Release);
        self.ready.store(true, Ordering::Release);
        self.metrics.catalog_loaded(hosts, invalid + skipped.len());
        hosts
    }

    /// A sink for the Kubernetes source that rebuilds the table after each run of changes.
    pub fn kubernetes_sink(self: &Arc<Self>) -> KubeSink {
        KubeSink {
            catalog: Arc::clone(self),
            entries: BTreeMap::new(),
            invalid: BTreeSet::new(),
            dirty: false,
        }
    }

    /// Loads and logs the outcome.
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(stats) => info!(
                hosts = stats.hosts,
                entries = stats.entries,
                read_ms = stats.read.as_secs_f64() * 1e3,
                elapsed_ms = stats.total.as_secs_f64() * 1e3,
                "service entries loaded"
            ),
            Err(e) => {
                warn!(error = %e, ready = self.is_ready(), "service entries not loaded; keeping the last good table")
            }
        }
    }

    /// Reloads when anything under the paths changes, on a thread of its own (see
    /// `catalog::watch`: a directory is watched whole, since Kubernetes swaps its `..data`
    /// symlink; a file through its directory). Dropping the returned handle stops it.
    pub fn watch(self: &Arc<Self>) -> Result<WatchHandle, WatchError> {
        let catalog = Arc::clone(self);
        catalog::watch::watch(&self.paths, move || catalog.reload_logged())
    }
}

/// The ServiceEntries the Kubernetes API holds, kept between events. Ordered by
/// `namespace/name`, so that of two entries claiming one host the same one wins on every
/// rebuild and in every replica.
pub struct KubeSink {
    catalog: Arc<Catalog>,
    entries: BTreeMap<ObjectKey, HostEntry>,
    /// Objects in the API server now that could not be read, for the `dns_catalog_skipped`
    /// gauge.
    invalid: BTreeSet<ObjectKey>,
    dirty: bool,
}

impl kubernetes::Sink for KubeSink {
    fn reset(&mut self, entries: Vec<ServiceEntry>) {
        self.entries = entries
            .into_iter()
            .map(|e| (e.key(), HostEntry::from(e)))
            .collect();
        // The list's unreadable objects are reported right after this.
        self.invalid.clear();
        self.dirty = true;
        info!(entries = self.entries.len(), "service entries listed");
    }

    fn apply(&mut self, entry: ServiceEntry) {
        let key = entry.key();
        self.invalid.remove(&key);
        self.entries.insert(key, HostEntry::from(entry));
        self.dirty = true;
    }

    fn delete(&mut self, key: &ObjectKey) {
        let removed = self.entries.remove(key).is_some();
        let was_invalid = self.invalid.remove(key);
        self.dirty |= removed || was_invalid;
    }

    fn flush(&mut self) {
        if std::mem::take(&mut self.dirty) {
            let entries = self.entries.values().cloned().collect();
            let hosts = self.catalog.install(entries, self.invalid.len());
            debug!(hosts, entries = self.entries.len(), "host table rebuilt");
        }
    }

    fn trouble(&mut self, trouble: kubernetes::Trouble<'_>) {
        match trouble {
            kubernetes::Trouble::Api(error) => {
                self.catalog.metrics.catalog_error();
                warn!(%error, ready = self.catalog.is_ready(), "Kubernetes API; retrying, the last good table stays");
            }
            kubernetes::Trouble::Invalid(error) => {
                self.invalid.insert(error.key.clone());
                self.dirty = true;
                warn!(%error, "ServiceEntry left out");
            }
        }
    }
}

/// What a successful load found and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct LoadStats {
    pub hosts: usize,
    pub entries: usize,
    /// Reading and parsing the files.
    pub read: Duration,
    /// Reading, parsing and building the table.
    pub total: Duration,
}

/// The parts of the entries that the table needs, and how many entries did not decode.
#[derive(Default)]
struct Read {
    entries: Vec<HostEntry>,
    invalid: usize,
}

/// Reads the files of `paths` on one thread per core, in contiguous runs so that the result
/// keeps the files' order; the first failing file (in that order) wins. Each whole
/// ServiceEntry is dropped as soon as its hosts and addresses are taken, which keeps the peak
/// memory of a large catalog close to that of the table.
fn load_parallel(paths: &[PathBuf]) -> Result<Read, catalog::LoadError> {
    let mut files = Vec::new();
    for path in paths {
        files.extend(catalog::files(path)?);
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len());
    if workers <= 1 {
        return read_files(&files);
    }
    let chunk = files.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|run| scope.spawn(move || read_files(run)))
            .collect();
        let mut out = Read::default();
        for handle in handles {
            match handle.join() {
                Ok(read) => {
                    let read = read?;
                    out.entries.extend(read.entries);
                    out.invalid += read.invalid;
                }
                // A parser panic is a bug; keep the last good table rather than die.
                Err(_) => {
                    return Err(catalog::LoadError::Io {
                        path: PathBuf::from("<loader thread>"),
                        error: std::io::Error::other("loader thread panicked"),
                    })
                }
            }
        }
        Ok(out)
    })
}

fn read_files(files: &[PathBuf]) -> Result<Read, catalog::LoadError> {
    let mut out = Read::default();
    for file in files {
        for loaded in catalog::load_path(file)? {
            match loaded.entry {
                Ok(entry) => out.entries.push(HostEntry::from(entry)),
                Err(e) => {
                    out.invalid += 1;
                    warn!(file = %loaded.source.display(), error = %e, "ServiceEntry left out");
                }
            }
        }
    }
    Ok(out)
}
