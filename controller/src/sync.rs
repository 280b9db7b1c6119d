//! The loop that keeps every target equal to the table of the current ServiceEntries.
//!
//! - **Debounced**: after a change it waits for [`Timing::debounce`] without another, but never
//!   longer than [`Timing::max_delay`] after the first, so that a burst of changes costs one
//!   write and a change is written within `max_delay` (plus the source's 200 ms batching and
//!   the write itself).
//! - **Skipped when unchanged**: a table whose content hash the target already holds is not
//!   written again.
//! - **Repaired**: the leader watches the WasmPlugin; when its table stops matching (a hand
//!   edit, a restore from backup), the leader applies its own again, forced.
//! - **Bounded**: a table over `max_table_bytes` is not written (the previous one stays, and
//!   the error names the size); failed writes are retried with backoff (200 ms doubling to
//!   30 s), each bounded by the request timeout.
//! - Only the leader writes the WasmPlugin; every replica writes its ECDS file, if it has one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use policy::table::Table;
use policy::Options;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ecds::{self, WasmSettings};
use crate::metrics::{Metrics, ECDS_FILE, WASM_PLUGIN};
use crate::plugin::{Observed, Plugin};
use crate::view::{Snapshot, View};

/// The default largest table written: 1 MiB, which leaves room in the WasmPlugin for the rest
/// of the object under etcd's 1.5 MiB limit.
pub const DEFAULT_MAX_TABLE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Quiet time after a change before writing.
    pub debounce: Duration,
    /// Longest wait after the first of a run of changes.
    pub max_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        }
    }
}

/// An Envoy extension-config file, for Envoys that read global_guard's configuration from a
/// `config_discovery` path source.
#[derive(Debug, Clone)]
pub struct EcdsTarget {
    pub path: PathBuf,
    /// The extension config's name, as the Envoy's `config_discovery` asks for it.
    pub resource_name: String,
    pub wasm: WasmSettings,
    /// `cluster_header` of the plugin configuration, if not the filter's default.
    pub cluster_header: Option<String>,
}

impl EcdsTarget {
    /// The plugin configuration this file carries.
    pub fn configuration(&self, table: &Table) -> serde_json::Value {
        let mut configuration = serde_json::Map::new();
        configuration.insert("table".to_string(), serde_json::json!(table));
        if let Some(header) = &self.cluster_header {
            configuration.insert("cluster_header".to_string(), serde_json::json!(header));
        }
        serde_json::Value::Object(configuration)
    }
}

pub struct Sync {
    pub view: View,
    pub options: Options,
    pub plugin: Option<Plugin>,
    pub ecds: Option<EcdsTarget>,
    pub metrics: Arc<Metrics>,
    pub timing: Timing,
    pub max_table_bytes: usize,
}

/// What the loop remembers between rounds.
#[derive(Debug, Default)]
struct State {
    /// Hash last written to the ECDS file.
    file_hash: Option<String>,
    /// Hash last applied to the WasmPlugin by this replica, and the WasmPlugin's
    /// resourceVersion as the watch had it then.
    applied: Option<(String, String)>,
    /// The oldest change taken from the view and not yet written.
    carried: Option<Instant>,
    /// Generation refused as too large (logged once).
    too_large: Option<u64>,
    /// The WasmPlugin was reported missing (logged once until it appears).
    missing_logged: bool,
    backoff: Option<Duration>,
}

/// Why a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Start,
    Entries,
    Plugin,
    Leadership,
    Retry,
}

/// What a round left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Every target holds the table (or waits for something outside: the first list, the
    /// WasmPlugin to exist).
    Settled,
    /// A write failed: try again after the backoff.
    Retry,
}

impl Sync {
    /// Runs until `stop`; a round in progress (a write) finishes first.
    pub async fn run(
        self,
        mut observed: watch::Receiver<Observed>,
        mut leading: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut changes = self.view.changes();
        let mut state = State::default();
        let mut cause = Cause::Start;
        loop {
            let observed_now = observed.borrow_and_update().clone();
            let lead = *leading.borrow_and_update();
            let outcome = self.round(&mut state, cause, &observed_now, lead).await;
            let retry_at = match outcome {
                Outcome::Settled => {
                    state.backoff = None;
                    None
                }
                Outcome::Retry => {
                    let delay = state.backoff.map_or(Duration::from_millis(200), |d| {
                        (d * 2).min(Duration::from_secs(30))
                    });
                    state.backoff = Some(delay);
                    Some(Instant::now() + delay)
                }
            };
            let woken = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => None,
                changed = changes.changed() => changed.ok().map(|()| Cause::Entries),
                changed = observed.changed() => changed.ok().map(|()| Cause::Plugin),
                changed = leading.changed() => changed.ok().map(|()| Cause::Leadership),
                () = sleep_until(retry_at), if retry_at.is_some() => Some(Cause::Retry),
            };
            cause = match woken {
                None => return,
                Some(cause) => {
                    // Changes of the entries are written once they settle, whatever woke the
                    // loop (the WasmPlugin's watch reporting the last write, say).
                    let pending = cause == Cause::Entries || self.view.pending_since().is_some();
                    if pending {
                        changes.borrow_and_update();
                        if self.settle(&mut changes, &mut stop, state.carried).await {
                            return;
                        }
                    }
                    if pending && cause == Cause::Plugin {
                        Cause::Entries
                    } else {
                        cause
                    }
                }
            };
        }
    }

    /// Waits out a burst of changes; true when stopped meanwhile.
    async fn settle(
        &self,
        changes: &mut watch::Receiver<u64>,
        stop: &mut watch::Receiver<bool>,
        carried: Option<Instant>,
    ) -> bool {
        // From the oldest change not yet written, so that no change waits longer.
        let now = Instant::now();
        let oldest = match (carried, self.view.pending_since()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let latest = oldest.map_or(now + self.timing.max_delay, |since| {
            (since + self.timing.max_delay).max(now)
        });
        loop {
            let quiet = (Instant::now() + self.timing.debounce).min(latest);
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return true,
                () = tokio::time::sleep_until(quiet) => return false,
                changed = changes.changed() => {
                    if changed.is_err() || Instant::now() >= latest {
                        return false;
                    }
                }
            }
        }
    }

    async fn round(
        &self,
        state: &mut State,
        cause: Cause,
        observed: &Observed,
        leading: bool,
    ) -> Outcome {
        self.metrics.leading.set(i64::from(leading));
        let Some(snapshot) = self.view.snapshot(&self.options) else {
            return Outcome::Settled;
        };
        let pending_since = match (state.carried.take(), snapshot.pending_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let hash = snapshot.table.content_hash();
        let bytes = serde_json::to_vec(&snapshot.table).map_or(0, |b| b.len());
        self.metrics
            .table_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.metrics
            .table_hosts
            .set(i64::try_from(snapshot.table.hosts.len()).unwrap_or(i64::MAX));
        if bytes > self.max_table_bytes {
            if state.too_large != Some(snapshot.generation) {
                state.too_large = Some(snapshot.generation);
                self.metrics.table_too_large.inc();
                tracing::error!(
                    bytes,
                    limit = self.max_table_bytes,
                    hosts = snapshot.table.hosts.len(),
                    "table not written: {bytes} bytes of {} .global hosts is over --max-table-bytes {}; the previous table stays",
                    snapshot.table.hosts.len(),
                    self.max_table_bytes
                );
            }
            self.metrics.in_sync.set(0);
            state.carried = pending_since;
            return Outcome::Settled;
        }
        let mut outcome = Outcome::Settled;
        let mut in_sync = true;
        let mut wrote = false;
        if let Some(target) = &self.ecds {
            match self
                .write_file(state, target, &snapshot, &hash, cause)
                .await
            {
                Ok(written) => wrote |= written,
                Err(()) => {
                    outcome = Outcome::Retry;
                    in_sync = false;
                }
            }
        }
        if let Some(plugin) = &self.plugin {
            if leading {
                match self
                    .write_plugin(state, plugin, &snapshot, &hash, cause, observed)
                    .await
                {
                    Ok(Some(written)) => wrote |= written,
                    Ok(None) => in_sync = false,
                    Err(()) => {
                        outcome = Outcome::Retry;
                        in_sync = false;
                    }
                }
            }
        }
        self.metrics.in_sync.set(i64::from(in_sync));
        if in_sync {
            if let Some(since) = pending_since.filter(|_| wrote) {
                self.metrics.lag.observe(since.elapsed().as_secs_f64());
            }
        } else {
            state.carried = pending_since;
        }
        outcome
    }

    /// Ok(true) when written, Ok(false) when it already held the table.
    async fn write_file(
        &self,
        state: &mut State,
        target: &EcdsTarget,
        snapshot: &Snapshot,
        hash: &str,
        cause: Cause,
    ) -> Result<bool, ()> {
        if state.file_hash.as_deref() == Some(hash) {
            if cause == Cause::Entries {
                self.metrics.skipped_writes.get_or_create(&ECDS_FILE).inc();
            }
            return Ok(false);
        }
        let configuration = target.configuration(&snapshot.table).to_string();
        let response =
            ecds::discovery_response(&target.resource_name, hash, &target.wasm, &configuration);
        let path = target.path.clone();
        let written =
            tokio::task::spawn_blocking(move || ecds::write_atomically(&path, &response)).await;
        match written {
            Ok(Ok(())) => {
                self.metrics.writes.get_or_create(&ECDS_FILE).inc();
                tracing::info!(path = %target.path.display(), hosts = snapshot.table.hosts.len(), hash, "table written to the ECDS file");
                state.file_hash = Some(hash.to_string());
                Ok(true)
            }
            Ok(Err(e)) => {
                self.metrics.write_errors.get_or_create(&ECDS_FILE).inc();
                tracing::error!(path = %target.path.display(), error = %e, "ECDS file not written; retrying");
                Err(())
            }
            Err(e) => {
                self.metrics.write_errors.get_or_create(&ECDS_FILE).inc();
                tracing::error!(path = %target.path.display(), error = %e, "ECDS file writer failed; retrying");
                Err(())
            }
        }
    }

    /// Ok(Some(true)) when applied, Ok(Some(false)) when the WasmPlugin already held the
    /// table, Ok(None) when there is nothing to write to yet.
    async fn write_plugin(
        &self,
        state: &mut State,
        plugin: &Plugin,
        snapshot: &Snapshot,
        hash: &str,
        cause: Cause,
        observed: &Observed,
    ) -> Result<Option<bool>, ()> {
        let (resource_version, held) = match observed {
            Observed::Unknown => return Ok(None),
            Observed::Missing => {
                if !state.missing_logged {
                    state.missing_logged = true;
                    tracing::warn!(wasmplugin = %plugin.target(), "WasmPlugin not found: install it (deploy/wasm-filter/wasmplugin.yaml); the table is written once it exists");
                }
                return Ok(None);
            }
            Observed::Present {
                resource_version,
                hash,
            } => (resource_version.as_str(), hash.as_deref()),
        };
        state.missing_logged = false;
        if held == Some(hash) {
            if cause == Cause::Entries {
                self.metrics
                    .skipped_writes
                    .get_or_create(&WASM_PLUGIN)
                    .inc();
            }
            return Ok(Some(false));
        }
        // This replica applied this very table and the WasmPlugin does not hold it: if the
        // WasmPlugin changed since (its resourceVersion moved), someone else changed the table
        // after the write; if not, the watch has not caught up with the write yet.
        let mine = state
            .applied
            .as_ref()
            .is_some_and(|(applied, _)| applied == hash);
        let moved = state
            .applied
            .as_ref()
            .is_none_or(|(_, at)| at != resource_version);
        if mine && !moved && cause != Cause::Retry && cause != Cause::Leadership {
            return Ok(Some(false));
        }
        match plugin.apply(&snapshot.table).await {
            Ok(()) => {
                self.metrics.writes.get_or_create(&WASM_PLUGIN).inc();
                if mine {
                    self.metrics.repairs.inc();
                    tracing::warn!(wasmplugin = %plugin.target(), hash, "the WasmPlugin's table was changed by someone else; put back");
                } else {
                    tracing::info!(wasmplugin = %plugin.target(), hosts = snapshot.table.hosts.len(), entries = snapshot.entries, hash, "table applied");
                }
                state.applied = Some((hash.to_string(), resource_version.to_string()));
                Ok(Some(true))
            }
            Err(e) => {
                self.metrics.write_errors.get_or_create(&WASM_PLUGIN).inc();
                tracing::error!(error = %catalog::kubernetes::chain(&e), "table not applied; retrying");
                Err(())
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
