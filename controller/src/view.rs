//! The controller's view of the cluster's ServiceEntries, fed by `catalog::kubernetes` (list,
//! then watch) or by files (`catalog::load_paths`, reloaded when they change), and the table
//! it makes of them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use catalog::kubernetes::{Sink, Trouble};
use policy::table::Table;
use policy::{ObjectKey, Options, ServiceEntry};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::Metrics;

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<ObjectKey, ServiceEntry>,
    /// After the first complete list.
    synced: bool,
    /// Raised by every change.
    generation: u64,
    /// When the oldest change since the last snapshot was seen.
    pending_since: Option<Instant>,
}

/// Shared between the source (which writes) and the sync loop (which reads).
#[derive(Clone)]
pub struct View {
    state: Arc<Mutex<State>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for View {
    fn default() -> Self {
        View {
            state: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

/// What the sync loop takes from the view at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub generation: u64,
    pub table: Table,
    pub entries: usize,
    /// When the oldest change it holds that no earlier snapshot held was seen.
    pub pending_since: Option<Instant>,
}

impl View {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells of every change (the value is the generation).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// When the oldest change since the last snapshot was seen.
    pub fn pending_since(&self) -> Option<Instant> {
        self.lock().pending_since
    }

    pub fn is_synced(&self) -> bool {
        self.lock().synced
    }

    /// The table of the entries now, once the first list is complete. The changes it holds
    /// are no longer pending: the caller writes them or keeps their time.
    pub fn snapshot(&self, options: &Options) -> Option<Snapshot> {
        let mut state = self.lock();
        if !state.synced {
            return None;
        }
        Some(Snapshot {
            generation: state.generation,
            table: Table::build(state.entries.values(), options),
            entries: state.entries.len(),
            pending_since: state.pending_since.take(),
        })
    }

    /// Replaces every entry (a complete list).
    pub fn replace(&self, entries: Vec<ServiceEntry>) {
        self.change(|state| {
            state.entries = entries.into_iter().map(|e| (e.key(), e)).collect();
            state.synced = true;
        });
    }

    /// Reads the files (a directory is walked) into the view. On an error (a file that cannot
    /// be read or parsed) the view keeps what it had; entries that parse but do not decode are
    /// left out and logged, as the API source leaves them out.
    pub fn load_files(
        &self,
        paths: &[PathBuf],
        metrics: &Metrics,
    ) -> Result<(), catalog::LoadError> {
        let loaded = catalog::load_paths(paths)?;
        let mut entries = Vec::with_capacity(loaded.len());
        for item in loaded {
            match item.entry {
                Ok(entry) => entries.push(entry),
                Err(error) => {
                    metrics.invalid_objects.inc();
                    tracing::warn!(file = %item.source.display(), document = item.document, error = %error, "ServiceEntry left out of the table");
                }
            }
        }
        metrics
            .service_entries
            .set(i64::try_from(entries.len()).unwrap_or(i64::MAX));
        self.replace(entries);
        Ok(())
    }

    /// The source's end of the view.
    pub fn sink(&self, metrics: Arc<Metrics>) -> ViewSink {
        ViewSink {
            view: self.clone(),
            metrics,
        }
    }

    /// Every change is told at once (not at the source's flush): the sync loop's debounce
    /// measures the quiet between changes themselves.
    fn change(&self, f: impl FnOnce(&mut State)) {
        let generation = {
            let mut state = self.lock();
            f(&mut state);
            state.generation += 1;
            state.pending_since.get_or_insert_with(Instant::now);
            state.generation
        };
        self.changed.send_replace(generation);
    }
}

pub struct ViewSink {
    view: View,
    metrics: Arc<Metrics>,
}

impl Sink for ViewSink {
    fn reset(&mut self, entries: Vec<ServiceEntry>) {
        self.view.replace(entries);
    }

    fn apply(&mut self, entry: ServiceEntry) {
        self.view.change(|state| {
            state.entries.insert(entry.key(), entry);
        });
    }

    fn delete(&mut self, key: &ObjectKey) {
        self.view.change(|state| {
            state.entries.remove(key);
        });
    }

    fn flush(&mut self) {
        let count = self.view.lock().entries.len();
        self.metrics
            .service_entries
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    fn trouble(&mut self, trouble: Trouble<'_>) {
        match trouble {
            Trouble::Api(message) => {
                self.metrics.source_errors.inc();
                tracing::warn!(
                    error = message,
                    "ServiceEntries not listed or watched; retrying"
                );
            }
            Trouble::Invalid(error) => {
                self.metrics.invalid_objects.inc();
                tracing::warn!(object = %error.key, error = %error, "ServiceEntry left out of the table");
            }
        }
    }
}
