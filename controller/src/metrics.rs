//! Prometheus metrics of the controller, served in text format on the admin port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Where a table went: `wasmplugin` (the API) or `ecds_file`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: &'static str,
}

pub const WASM_PLUGIN: TargetLabels = TargetLabels {
    target: "wasmplugin",
};
pub const ECDS_FILE: TargetLabels = TargetLabels {
    target: "ecds_file",
};

pub struct Metrics {
    registry: Registry,
    pub writes: Family<TargetLabels, Counter>,
    pub write_errors: Family<TargetLabels, Counter>,
    pub skipped_writes: Family<TargetLabels, Counter>,
    pub repairs: Counter,
    pub lag: Histogram,
    pub table_bytes: Gauge,
    pub table_hosts: Gauge,
    pub table_too_large: Counter,
    pub service_entries: Gauge,
    pub invalid_objects: Counter,
    pub source_errors: Counter,
    pub leading: Gauge,
    pub in_sync: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let writes = Family::<TargetLabels, Counter>::default();
        registry.register(
            "globalmesh_controller_writes",
            "Tables written, by target",
            writes.clone(),
        );
        let write_errors = Family::<TargetLabels, Counter>::default();
        registry.register(
            "globalmesh_controller_write_errors",
            "Writes that failed (retried with backoff), by target",
            write_errors.clone(),
        );
        let skipped_writes = Family::<TargetLabels, Counter>::default();
        registry.register(
            "globalmesh_controller_skipped_writes",
            "Changes of ServiceEntries that left the table's hash as it was, by target",
            skipped_writes.clone(),
        );
        let repairs = Counter::default();
        registry.register(
            "globalmesh_controller_repairs",
            "Tables in the WasmPlugin changed by someone else and put back",
            repairs.clone(),
        );
        // 10 ms to about 40 s.
        let lag = Histogram::new(exponential_buckets(0.01, 2.0, 13));
        registry.register(
            "globalmesh_controller_lag_seconds",
            "From a change of ServiceEntries seen in the API to the written table holding it",
            lag.clone(),
        );
        let table_bytes = Gauge::default();
        registry.register(
            "globalmesh_controller_table_bytes",
            "Size of the current table as JSON",
            table_bytes.clone(),
        );
        let table_hosts = Gauge::default();
        registry.register(
            "globalmesh_controller_table_hosts",
            ".global hosts in the current table",
            table_hosts.clone(),
        );
        let table_too_large = Counter::default();
        registry.register(
            "globalmesh_controller_table_too_large",
            "Tables not written because they were over --max-table-bytes",
            table_too_large.clone(),
        );
        let service_entries = Gauge::default();
        registry.register(
            "globalmesh_controller_service_entries",
            "ServiceEntries in the view",
            service_entries.clone(),
        );
        let invalid_objects = Counter::default();
        registry.register(
            "globalmesh_controller_invalid_objects",
            "ServiceEntry objects in the API that could not be read (left out of the table)",
            invalid_objects.clone(),
        );
        let source_errors = Counter::default();
        registry.register(
            "globalmesh_controller_source_errors",
            "Failed lists and watches of the API (retried)",
            source_errors.clone(),
        );
        let leading = Gauge::default();
        registry.register(
            "globalmesh_controller_leader",
            "1 while this replica holds the Lease and writes the WasmPlugin",
            leading.clone(),
        );
        let in_sync = Gauge::default();
        registry.register(
            "globalmesh_controller_in_sync",
            "1 while every target holds the table of the current ServiceEntries",
            in_sync.clone(),
        );
        Metrics {
            registry,
            writes,
            write_errors,
            skipped_writes,
            repairs,
            lag,
            table_bytes,
            table_hosts,
            table_too_large,
            service_entries,
            invalid_objects,
            source_errors,
            leading,
            in_sync,
        }
    }

    /// The text exposition (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
