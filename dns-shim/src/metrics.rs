//! Counters kept in atomics and rendered in the Prometheus text format. Names follow Istio's DNS
//! proxy where it has one (`dns_requests_total`, `dns_upstream_failures_total`, ...).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hickory_server::proto::rr::RecordType;

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
    /// No answer could be given (not ready, or every upstream failed).
    ServFail,
    /// Refused or not implemented (other classes or opcodes).
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
    Refused,
    Network,
    Malformed,
}

const FAILURES: [&str; 4] = ["timeout", "refused", "network", "malformed"];

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

#[derive(Default)]
struct UpstreamStats {
    requests: AtomicU64,
    connections: AtomicU64,
    failures: [AtomicU64; FAILURES.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_sum_ns: AtomicU64,
    latency_count: AtomicU64,
}

pub struct Metrics {
    requests: [[AtomicU64; OUTCOMES.len()]; QTYPES.len()],
    upstreams: Vec<(SocketAddr, UpstreamStats)>,
    catalog_hosts: AtomicU64,
    catalog_reloads: AtomicU64,
    catalog_reload_errors: AtomicU64,
    catalog_skipped: AtomicU64,
    ready: AtomicU64,
}

impl Metrics {
    pub fn new(upstreams: &[SocketAddr]) -> Self {
        Self {
            requests: Default::default(),
            upstreams: upstreams
                .iter()
                .map(|a| (*a, UpstreamStats::default()))
                .collect(),
            catalog_hosts: AtomicU64::new(0),
            catalog_reloads: AtomicU64::new(0),
            catalog_reload_errors: AtomicU64::new(0),
            catalog_skipped: AtomicU64::new(0),
            ready: AtomicU64::new(0),
        }
    }

    pub fn request(&self, qtype: RecordType, outcome: Outcome) {
        if let Some(count) = self
            .requests
            .get(qtype_index(qtype))
            .and_then(|row| row.get(outcome as usize))
        {
            count.fetch_add(1, Relaxed);
        }
    }

    /// Requests counted so far for an outcome, over all types.
    pub fn requests_with(&self, outcome: Outcome) -> u64 {
        self.requests
            .iter()
            .filter_map(|row| row.get(outcome as usize))
            .map(|count| count.load(Relaxed))
            .sum()
    }

    pub fn upstream_request(&self, upstream: usize) {
        if let Some((_, s)) = self.upstreams.get(upstream) {
            s.requests.fetch_add(1, Relaxed);
        }
    }

    pub fn upstream_connection(&self, upstream: usize) {
        if let Some((_, s)) = self.upstreams.get(upstream) {
            s.connections.fetch_add(1, Relaxed);
        }
    }

    pub fn upstream_failure(&self, upstream: usize, failure: UpstreamFailure) {
        if let Some((_, s)) = self.upstreams.get(upstream) {
            if let Some(count) = s.failures.get(failure as usize) {
                count.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn upstream_latency(&self, upstream: usize, elapsed: Duration) {
        let Some((_, s)) = self.upstreams.get(upstream) else {
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

    pub fn catalog_loaded(&self, hosts: usize, skipped: usize) {
        self.catalog_hosts.store(hosts as u64, Relaxed);
        self.catalog_skipped.store(skipped as u64, Relaxed);
        self.catalog_reloads.fetch_add(1, Relaxed);
        self.ready.store(1, Relaxed);
    }

    pub fn catalog_error(&self) {
        self.catalog_reload_errors.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP dns_requests_total DNS requests by query type and outcome.\n");
        out.push_str("# TYPE dns_requests_total counter\n");
        for (qtype, row) in QTYPES.iter().zip(&self.requests) {
            for (outcome, count) in OUTCOMES.iter().zip(row) {
                let _ = writeln!(
                    out,
                    "dns_requests_total{{qtype=\"{qtype}\",outcome=\"{outcome}\"}} {}",
                    count.load(Relaxed)
                );
            }
        }
        out.push_str("# HELP dns_upstream_requests_total Queries sent to each upstream.\n");
        out.push_str("# TYPE dns_upstream_requests_total counter\n");
        for (addr, s) in &self.upstreams {
            let _ = writeln!(
                out,
                "dns_upstream_requests_total{{upstream=\"{addr}\"}} {}",
                s.requests.load(Relaxed)
            );
        }
        out.push_str(
            "# HELP dns_upstream_tcp_connections_total TCP connections opened to each upstream.\n",
        );
        out.push_str("# TYPE dns_upstream_tcp_connections_total counter\n");
        for (addr, s) in &self.upstreams {
            let _ = writeln!(
                out,
                "dns_upstream_tcp_connections_total{{upstream=\"{addr}\"}} {}",
                s.connections.load(Relaxed)
            );
        }
        out.push_str(
            "# HELP dns_upstream_failures_total Failed queries to each upstream by reason.\n",
        );
        out.push_str("# TYPE dns_upstream_failures_total counter\n");
        for (addr, s) in &self.upstreams {
            for (reason, count) in FAILURES.iter().zip(&s.failures) {
                let _ = writeln!(
                    out,
                    "dns_upstream_failures_total{{upstream=\"{addr}\",reason=\"{reason}\"}} {}",
                    count.load(Relaxed)
                );
            }
        }
        out.push_str(
            "# HELP dns_upstream_request_duration_seconds Time to an upstream's answer.\n",
        );
        out.push_str("# TYPE dns_upstream_request_duration_seconds histogram\n");
        for (addr, s) in &self.upstreams {
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(&s.buckets) {
                cumulative += bucket.load(Relaxed);
                let _ = writeln!(
                    out,
                    "dns_upstream_request_duration_seconds_bucket{{upstream=\"{addr}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = s.latency_count.load(Relaxed);
            let _ = writeln!(
                out,
                "dns_upstream_request_duration_seconds_bucket{{upstream=\"{addr}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "dns_upstream_request_duration_seconds_sum{{upstream=\"{addr}\"}} {}",
                s.latency_sum_ns.load(Relaxed) as f64 / 1e9
            );
            let _ = writeln!(
                out,
                "dns_upstream_request_duration_seconds_count{{upstream=\"{addr}\"}} {count}"
            );
        }
        let gauges = [
            (
                "dns_catalog_hosts",
                "gauge",
                "Hosts in the table answered from.",
                &self.catalog_hosts,
            ),
            (
                "dns_catalog_skipped",
                "gauge",
                "Entries, hosts or addresses left out of the last table.",
                &self.catalog_skipped,
            ),
            (
                "dns_catalog_reloads_total",
                "counter",
                "Successful catalog loads.",
                &self.catalog_reloads,
            ),
            (
                "dns_catalog_reload_errors_total",
                "counter",
                "Catalog loads, or Kubernetes API calls, that failed; the last good table stays.",
                &self.catalog_reload_errors,
            ),
            (
                "dns_ready",
                "gauge",
                "1 once the first catalog load succeeded.",
                &self.ready,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::new(&["127.0.0.1:53".parse().unwrap()]);
        m.request(RecordType::AAAA, Outcome::NoData);
        m.upstream_latency(0, Duration::from_micros(300));
        let text = m.render();
        assert!(
            text.contains("dns_requests_total{qtype=\"AAAA\",outcome=\"nodata\"} 1"),
            "{text}"
        );
        assert!(text.contains("dns_upstream_request_duration_seconds_bucket{upstream=\"127.0.0.1:53\",le=\"0.0005\"} 1"));
        assert!(text
            .contains("dns_upstream_request_duration_seconds_count{upstream=\"127.0.0.1:53\"} 1"));
    }
}
