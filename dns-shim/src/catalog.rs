//! The host table the handler answers from, loaded from the `--service-entries` paths and
//! reloaded when a file under them changes. The table is immutable and swapped atomically, so
//! a query never waits for a reload. A load that fails keeps the last good table.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use notify::{EventKind, RecursiveMode, Watcher};
use policy::resolve::{HostEntry, HostTable};
use policy::Options;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Events closer together than this are taken as one change (a ConfigMap update is several).
const SETTLE: Duration = Duration::from_millis(200);

pub struct Catalog {
    paths: Vec<PathBuf>,
    options: Options,
    search_domains: Vec<String>,
    table: ArcSwap<HostTable>,
    ready: AtomicBool,
    generation: AtomicU32,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

impl Catalog {
    /// An empty, unready catalog; call [`Catalog::reload`] to load it.
    pub fn new(
        paths: Vec<PathBuf>,
        options: Options,
        search_domains: Vec<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (empty, _) = HostTable::build([], &options, &search_domains);
        Self {
            paths,
            options,
            search_domains,
            table: ArcSwap::from_pointee(empty),
            ready: AtomicBool::new(false),
            generation: AtomicU32::new(0),
            metrics,
        }
    }

    /// The current table (cheap: an atomic load of an `Arc`).
    pub fn table(&self) -> arc_swap::Guard<Arc<HostTable>> {
        self.table.load()
    }

    /// Whether a load has succeeded since start.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Serial of the table, raised on every successful load (the SOA serial).
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed)
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
        let (table, skipped) =
            HostTable::build_from(read.entries, &self.options, &self.search_domains);
        for s in &skipped {
            warn!(?s, "left out of the host table");
        }
        let hosts = table.len();
        self.table.store(Arc::new(table));
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.ready.store(true, Ordering::Release);
        self.metrics
            .catalog_loaded(hosts, read.invalid + skipped.len());
        Ok(LoadStats {
            hosts,
            entries,
            read: read_time,
            total: started.elapsed(),
        })
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

    /// Watches the paths and reloads on a change, on a thread of its own. A directory is
    /// watched whole (Kubernetes swaps its `..data` symlink); a file is watched through its
    /// directory, so replacing the file is seen too. Dropping the returned watcher stops it.
    pub fn watch(self: &Arc<Self>) -> Result<notify::RecommendedWatcher, WatchError> {
        let (tx, rx) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match event {
                    // Reads (including the reload's own) are not changes.
                    Ok(e) => !matches!(
                        e.kind,
                        EventKind::Access(notify::event::AccessKind::Open(_))
                            | EventKind::Access(notify::event::AccessKind::Read)
                            | EventKind::Access(notify::event::AccessKind::Close(
                                notify::event::AccessMode::Read
                            ))
                    ),
                    Err(_) => true,
                };
                if relevant {
                    let _ = tx.send(());
                }
            })
            .map_err(|source| WatchError::Watch {
                path: PathBuf::new(),
                source,
            })?;
        for path in &self.paths {
            let (target, mode) = watch_target(path);
            watcher
                .watch(&target, mode)
                .map_err(|source| WatchError::Watch {
                    path: target.clone(),
                    source,
                })?;
        }
        let catalog = Arc::clone(self);
        std::thread::Builder::new()
            .name("catalog-watch".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // Let a burst of events settle, then load once.
                    std::thread::sleep(SETTLE);
                    while rx.try_recv().is_ok() {}
                    catalog.reload_logged();
                }
            })
            .map_err(|e| WatchError::Watch {
                path: PathBuf::new(),
                source: notify::Error::io(e),
            })?;
        Ok(watcher)
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

fn watch_target(path: &Path) -> (PathBuf, RecursiveMode) {
    if path.is_dir() {
        return (path.to_path_buf(), RecursiveMode::Recursive);
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    (parent.to_path_buf(), RecursiveMode::NonRecursive)
}
