//! Prometheus metrics of the webhook, served in text format on the admin port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub operation: &'static str,
    /// `allowed` or `denied`.
    pub verdict: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub reviews: Family<ReviewLabels, Counter>,
    pub denials: Family<ReasonLabels, Counter>,
    pub rejected_requests: Family<StatusLabels, Counter>,
    pub duration: Histogram,
    pub catalog_entries: Gauge,
    pub claims: Gauge,
    pub claims_repaired: Counter,
    pub claims_created_by_repair: Counter,
    pub claim_conflicts: Counter,
    pub allocations: Counter,
    pub leading: Gauge,
    pub connections_open: Gauge,
    pub connections_closed_idle: Counter,
    pub catalog_reload_errors: Counter,
    pub catalog_lists: Counter,
    pub catalog_events: Counter,
    pub catalog_invalid_objects: Counter,
    pub certificate_reloads: Counter,
    pub certificate_reload_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "admission_reviews",
            "AdmissionReviews answered, by operation and verdict",
            reviews.clone(),
        );
        let denials = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "admission_denials",
            "Denied reviews, by the rule that denied them",
            denials.clone(),
        );
        let rejected_requests = Family::<StatusLabels, Counter>::default();
        registry.register(
            "admission_rejected_requests",
            "Requests refused before review (bad content type, body or size), by HTTP status",
            rejected_requests.clone(),
        );
        // 50 µs to about 400 ms.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.000_05, 2.0, 14,
        ));
        registry.register(
            "admission_review_duration_seconds",
            "Time to decide one review, from parsed body to response",
            duration.clone(),
        );
        let catalog_entries = Gauge::default();
        registry.register(
            "admission_catalog_entries",
            "ServiceEntries in the catalog",
            catalog_entries.clone(),
        );
        let claims = Gauge::default();
        registry.register(
            "admission_claims",
            "VIP and host claims known (in the API, or held in this process from files)",
            claims.clone(),
        );
        let claims_repaired = Counter::default();
        registry.register(
            "admission_claims_repaired",
            "Claims removed by the repair because their owner does not hold them",
            claims_repaired.clone(),
        );
        let claims_created_by_repair = Counter::default();
        registry.register(
            "admission_claims_created_by_repair",
            "Claims created by the repair for stored ServiceEntries that had none",
            claims_created_by_repair.clone(),
        );
        let claim_conflicts = Counter::default();
        registry.register(
            "admission_claim_conflicts",
            "Keys that two stored ServiceEntries want, seen by the repair",
            claim_conflicts.clone(),
        );
        let allocations = Counter::default();
        registry.register(
            "admission_allocations",
            "VIPs given to ServiceEntries created without addresses",
            allocations.clone(),
        );
        let leading = Gauge::default();
        registry.register(
            "admission_repair_leader",
            "1 while this replica holds the repair Lease",
            leading.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "admission_connections_open",
            "TLS connections open now",
            connections_open.clone(),
        );
        let connections_closed_idle = Counter::default();
        registry.register(
            "admission_connections_closed_idle",
            "Connections closed after --client-timeout without a request",
            connections_closed_idle.clone(),
        );
        let catalog_reload_errors = Counter::default();
        registry.register(
            "admission_catalog_reload_errors",
            "Catalog reloads, or Kubernetes API calls, that failed; the last good catalog stays",
            catalog_reload_errors.clone(),
        );
        let catalog_lists = Counter::default();
        registry.register(
            "admission_catalog_lists",
            "Complete lists of ServiceEntries from the Kubernetes API (the first, and re-lists)",
            catalog_lists.clone(),
        );
        let catalog_events = Counter::default();
        registry.register(
            "admission_catalog_watch_events",
            "ServiceEntry additions, changes and deletions applied from the Kubernetes API",
            catalog_events.clone(),
        );
        let catalog_invalid_objects = Counter::default();
        registry.register(
            "admission_catalog_invalid_objects",
            "ServiceEntries in the Kubernetes API left out of the catalog because they could not be read",
            catalog_invalid_objects.clone(),
        );
        let certificate_reloads = Counter::default();
        registry.register(
            "admission_certificate_reloads",
            "Serving certificate reloads that took effect",
            certificate_reloads.clone(),
        );
        let certificate_reload_errors = Counter::default();
        registry.register(
            "admission_certificate_reload_errors",
            "Serving certificate reloads that failed and kept the old pair",
            certificate_reload_errors.clone(),
        );
        Metrics {
            registry,
            reviews,
            denials,
            rejected_requests,
            duration,
            catalog_entries,
            claims,
            claims_repaired,
            claims_created_by_repair,
            claim_conflicts,
            allocations,
            leading,
            connections_open,
            connections_closed_idle,
            catalog_reload_errors,
            catalog_lists,
            catalog_events,
            catalog_invalid_objects,
            certificate_reloads,
            certificate_reload_errors,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
