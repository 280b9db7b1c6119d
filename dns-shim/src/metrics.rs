//! dns-shim's metrics, exposed with prometheus-client. Names follow Istio's DNS proxy where it
//! has one (`dns_requests_total`, `dns_upstream_failures_total`, ...).
//!
//! Queries are counted in plain atomics, one block per UDP thread ([`Metrics::shard`]), so the
//! fast path never shares a cache line with another thread or takes a lock; a
//! prometheus-client [`Collector`] adds the blocks up when `/metrics` is scraped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_server::proto::rr::RecordType;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::forward::Overload;

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered locally with records.
    Local,
    /// Answered locally: the name exists, the type does not.
    NoData,
    /// Answered locally: no such name under the suffix.
    NxDomain,
    /// Relayed from an upstream.
    Forwarded,
    /// No answer could be given (not ready, every upstream failed or is down, or too many
    /// queries in flight).
    ServFail,
    /// Refused, not implemented, malformed or of an unsupported EDNS version.
    Refused,
}

const OUTCOMES: [&str; 6] = [
    "local",
    "nodata",
    "nxdomain",
    "forwarded",
    "servfail",
    "refused",
];
const QTYPES: [&str; 12] = [
    "A", "AAAA", "CNAME", "SRV", "TXT", "MX", "PTR", "NS", "SOA", "HTTPS", "ANY", "other",
];
/// Upper bounds of the upstream latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0,
];

/// Why a query to an upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    Timeout,
    /// The upstream answered REFUSED.
    Refused,
    Network,
    Malformed,
    /// ICMP port or host unreachable: nothing listens there.
    Unreachable,
}

const FAILURES: [&str; 5] = ["timeout", "refused", "network", "malformed", "unreachable"];

/// Why a datagram from an upstream was not taken as the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    Id,
    Question,
    Malformed,
}

const MISMATCHES: [&str; 3] = ["id", "question", "malformed"];

fn qtype_index(qtype: RecordType) -> usize {
    match qtype {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        RecordType::CNAME => 2,
        RecordType::SRV => 3,
        RecordType::TXT => 4,
        RecordType::MX => 5,
        RecordType::PTR => 6,
        RecordType::NS => 7,
        RecordType::SOA => 8,
        RecordType::HTTPS => 9,
        RecordType::ANY => 10,
        _ => 11,
    }
}

/// Request counts by query type and outcome: one block per UDP thread, one for the rest.
#[derive(Default, Debug)]
pub struct Requests([[AtomicU64; OUTCOMES.len()]; QTYPES.len()]);

impl Requests {
    pub fn count(&self, qtype: RecordType, outcome: Outcome) {
        if let Some(count) = self
            .0
            .get(qtype_index(qtype))
            .and_then(|row| row.get(outcome as usize))
        {
            count.fetch_add(1, Relaxed);
        }
    }
}

#[derive(Default, Debug)]
struct UpstreamStats {
    requests: AtomicU64,
    connections: AtomicU64,
    skipped: AtomicU64,
    healthy: AtomicU64,
    failures: [AtomicU64; FAILURES.len()],
    mismatches: [AtomicU64; MISMATCHES.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_sum_ns: AtomicU64,
    latency_count: AtomicU64,
}

#[derive(Debug)]
pub struct Metrics {
    shared: Arc<Requests>,
    shards: Mutex<Vec<Arc<Requests>>>,
    upstreams: Vec<(SocketAddr, UpstreamStats)>,
    overload: [AtomicU64; 2],
    in_flight: std::sync::OnceLock<Arc<crate::forward::Limit>>,
    catalog_hosts: AtomicU64,
    catalog_reloads: AtomicU64,
    catalog_reload_errors: AtomicU64,
    catalog_skipped: AtomicU64,
    ready: AtomicU64,
    tcp_refused: AtomicU64,
}

impl Metrics {
    pub fn new(upstreams: &[SocketAddr]) -> Self {
        Self {
            shared: Arc::default(),
            shards: Mutex::new(Vec::new()),
            upstreams: upstreams
                .iter()
                .map(|a| {
                    let stats = UpstreamStats::default();
                    stats.healthy.store(1, Relaxed);
                    (*a, stats)
                })
                .collect(),
            overload: Default::default(),
            in_flight: std::sync::OnceLock::new(),
            catalog_hosts: AtomicU64::new(0),
            catalog_reloads: AtomicU64::new(0),
            catalog_reload_errors: AtomicU64::new(0),
            catalog_skipped: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            tcp_refused: AtomicU64::new(0),
        }
    }

    /// A block of request counters for one thread's own use.
    pub fn shard(&self) -> Arc<Requests> {
        let shard = Arc::<Requests>::default();
        self.shards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&shard));
        shard
    }

    /// Counts a request in the shared block (TCP, and the paths off the fast path).
    pub fn request(&self, qtype: RecordType, outcome: Outcome) {
        self.shared.count(qtype, outcome);
    }

    /// Requests counted so far for an outcome, over all types and threads.
    pub fn requests_with(&self, outcome: Outcome) -> u64 {
        let shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        std::iter::once(&self.shared)
            .chain(shards.iter())
            .flat_map(|block| block.0.iter())
            .filter_map(|row| row.get(outcome as usize))
            .map(|count| count.load(Relaxed))
            .sum()
    }

    fn upstream(&self, i: usize) -> Option<&UpstreamStats> {
        self.upstreams.get(i).map(|(_, s)| s)
    }

    pub fn upstream_request(&self, i: usize) {
        if let Some(s) = self.upstream(i) {
            s.requests.fetch_add(1, Relaxed);
        }
    }

    pub fn upstream_connection(&self, i: usize) {
        if let Some(s) = self.upstream(i) {
            s.connections.fetch_add(1, Relaxed);
        }
    }

    pub fn upstream_skipped(&self, i: usize) {
        if let Some(s) = self.upstream(i) {
            s.skipped.fetch_add(1, Relaxed);
        }
    }

    pub fn upstream_health(&self, i: usize, up: bool) {
        if let Some(s) = self.upstream(i) {
            s.healthy.store(u64::from(up), Relaxed);
        }
    }

    pub fn upstream_failure(&self, i: usize, failure: UpstreamFailure) {
        if let Some(count) = self
            .upstream(i)
            .and_then(|s| s.failures.get(failure as usize))
        {
            count.fetch_add(1, Relaxed);
        }
    }

    pub fn upstream_mismatch(&self, i: usize, mismatch: Mismatch) {
        if let Some(count) = self
            .upstream(i)
            .and_then(|s| s.mismatches.get(mismatch as usize))
        {
            count.fetch_add(1, Relaxed);
        }
    }

    pub fn upstream_latency(&self, i: usize, elapsed: Duration) {
        let Some(s) = self.upstream(i) else {
            return;
        };
        let secs = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .and_then(|i| s.buckets.get(i))
        {
            bucket.fetch_add(1, Relaxed);
        }
        s.latency_sum_ns.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Relaxed,
        );
        s.latency_count.fetch_add(1, Relaxed);
    }

    /// A forwarded query refused a permit: answered SERVFAIL at once.
    pub fn overload(&self, limit: Overload) {
        if let Some(count) = self.overload.get(limit as usize) {
            count.fetch_add(1, Relaxed);
        }
    }

    /// The limit whose queries in flight `dns_forward_in_flight` shows.
    pub fn watch_in_flight(&self, limit: &Arc<crate::forward::Limit>) {
        let _ = self.in_flight.set(Arc::clone(limit));
    }

    /// A TCP connection closed at once because the connection limit was reached.
    pub fn tcp_refused(&self) {
        self.tcp_refused.fetch_add(1, Relaxed);
    }

    pub fn catalog_loaded(&self, hosts: usize, skipped: usize) {
        self.catalog_hosts.store(hosts as u64, Relaxed);
        self.catalog_skipped.store(skipped as u64, Relaxed);
        self.catalog_reloads.fetch_add(1, Relaxed);
        self.ready.store(1, Relaxed);
    }

    pub fn catalog_error(&self) {
        self.catalog_reload_errors.fetch_add(1, Relaxed);
    }

    /// A registry holding these metrics, for the admin endpoint to encode.
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Arc::clone(self)));
        registry
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(self: &Arc<Self>) -> String {
        let mut out = String::with_capacity(16384);
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Vec<(&'static str, String)>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        if labels.is_empty() {
            // One series without labels.
            return ConstCounter::new(value).encode(metric);
        }
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Vec<(&'static str, String)>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        let value = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
        if labels.is_empty() {
            return value.encode(metric);
        }
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut requests = [[0u64; OUTCOMES.len()]; QTYPES.len()];
        {
            let shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
            for block in std::iter::once(&self.shared).chain(shards.iter()) {
                for (sum, row) in requests.iter_mut().zip(&block.0) {
                    for (s, count) in sum.iter_mut().zip(row) {
                        *s += count.load(Relaxed);
                    }
                }
            }
        }
        counter(
            &mut encoder,
            "dns_requests",
            "DNS requests by query type and outcome.",
            QTYPES.iter().zip(requests).flat_map(|(qtype, row)| {
                OUTCOMES.iter().zip(row).map(|(outcome, n)| {
                    (
                        vec![
                            ("qtype", qtype.to_string()),
                            ("outcome", outcome.to_string()),
                        ],
                        n,
                    )
                })
            }),
        )?;
        let up = |addr: &SocketAddr| vec![("upstream", addr.to_string())];
        let each = |f: fn(&UpstreamStats) -> u64| {
            self.upstreams
                .iter()
                .map(move |(addr, s)| (up(addr), f(s)))
                .collect::<Vec<_>>()
        };
        counter(
            &mut encoder,
            "dns_upstream_requests",
            "Queries sent to each upstream.",
            each(|s| s.requests.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "dns_upstream_tcp_connections",
            "TCP connections opened to each upstream.",
            each(|s| s.connections.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "dns_upstream_skipped",
            "Queries that skipped an upstream marked down.",
            each(|s| s.skipped.load(Relaxed)),
        )?;
        gauge(
            &mut encoder,
            "dns_upstream_healthy",
            "1 while an upstream is not marked down.",
            each(|s| s.healthy.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "dns_upstream_failures",
            "Failed queries to each upstream by reason.",
            self.upstreams.iter().flat_map(|(addr, s)| {
                FAILURES.iter().zip(&s.failures).map(|(reason, n)| {
                    (
                        vec![
                            ("upstream", addr.to_string()),
                            ("reason", reason.to_string()),
                        ],
                        n.load(Relaxed),
                    )
                })
            }),
        )?;
        counter(
            &mut encoder,
            "dns_upstream_mismatched_answers",
            "Datagrams from an upstream that did not answer the query sent (wrong ID or question).",
            self.upstreams.iter().flat_map(|(addr, s)| {
                MISMATCHES.iter().zip(&s.mismatches).map(|(reason, n)| {
                    (
                        vec![
                            ("upstream", addr.to_string()),
                            ("reason", reason.to_string()),
                        ],
                        n.load(Relaxed),
                    )
                })
            }),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "dns_upstream_request_duration_seconds",
                "Time to an upstream's answer.",
                None,
                MetricType::Histogram,
            )?;
            for (addr, s) in &self.upstreams {
                let buckets: Vec<(f64, u64)> = BUCKETS
                    .iter()
                    .zip(&s.buckets)
                    .map(|(b, n)| (*b, n.load(Relaxed)))
                    .collect();
                let labels = up(addr);
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(
                        s.latency_sum_ns.load(Relaxed) as f64 / 1e9,
                        s.latency_count.load(Relaxed),
                        &buckets,
                        None,
                    )?;
            }
        }
        counter(
            &mut encoder,
            "dns_forward_overload",
            "Forwarded queries answered SERVFAIL at once: too many in flight on their thread or in all.",
            [
                (vec![("limit", "thread".to_string())], self.overload[0].load(Relaxed)),
                (vec![("limit", "total".to_string())], self.overload[1].load(Relaxed)),
            ],
        )?;
        gauge(
            &mut encoder,
            "dns_forward_in_flight",
            "Forwarded queries waiting for an upstream.",
            [(
                vec![],
                self.in_flight.get().map_or(0, |l| l.in_flight() as u64),
            )],
        )?;
        counter(
            &mut encoder,
            "dns_tcp_refused_connections",
            "TCP connections closed at once: the connection limit was reached.",
            [(vec![], self.tcp_refused.load(Relaxed))],
        )?;
        gauge(
            &mut encoder,
            "dns_catalog_hosts",
            "Hosts in the table answered from.",
            [(vec![], self.catalog_hosts.load(Relaxed))],
        )?;
        gauge(
            &mut encoder,
            "dns_catalog_skipped",
            "Entries, hosts or addresses left out of the last table.",
            [(vec![], self.catalog_skipped.load(Relaxed))],
        )?;
        counter(
            &mut encoder,
            "dns_catalog_reloads",
            "Successful catalog loads.",
            [(vec![], self.catalog_reloads.load(Relaxed))],
        )?;
        counter(
            &mut encoder,
            "dns_catalog_reload_errors",
            "Catalog loads, or Kubernetes API calls, that failed; the last good table stays.",
            [(vec![], self.catalog_reload_errors.load(Relaxed))],
        )?;
        gauge(
            &mut encoder,
            "dns_ready",
            "1 once the first catalog load succeeded.",
            [(vec![], self.ready.load(Relaxed))],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels_summed_over_threads() {
        let m = Arc::new(Metrics::new(&["127.0.0.1:53".parse().unwrap()]));
        m.request(RecordType::AAAA, Outcome::NoData);
        m.shard().count(RecordType::AAAA, Outcome::NoData);
        m.upstream_latency(0, Duration::from_micros(300));
        m.upstream_failure(0, UpstreamFailure::Unreachable);
        let text = m.render();
        assert!(
            text.contains("dns_requests_total{qtype=\"AAAA\",outcome=\"nodata\"} 2"),
            "{text}"
        );
        assert!(text.contains("dns_upstream_request_duration_seconds_bucket{le=\"0.0005\",upstream=\"127.0.0.1:53\"} 1")
            || text.contains("dns_upstream_request_duration_seconds_bucket{upstream=\"127.0.0.1:53\",le=\"0.0005\"} 1"), "{text}");
        assert!(
            text.contains(
                "dns_upstream_request_duration_seconds_count{upstream=\"127.0.0.1:53\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "dns_upstream_failures_total{upstream=\"127.0.0.1:53\",reason=\"unreachable\"} 1"
        ));
        assert!(text.contains("dns_catalog_hosts 0"), "{text}");
        assert!(text.contains("dns_ready 0"), "{text}");
        assert_eq!(m.requests_with(Outcome::NoData), 2);
    }
}
