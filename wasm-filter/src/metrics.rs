//! The filter's counters, one per outcome. Envoy lists them in `/stats` with a `wasmcustom.`
//! prefix.

use policy::authority::Reason;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

/// Counter names, in the order of [`Outcome::index`].
pub const NAMES: [&str; 6] = [
    "global_guard_passed",
    "global_guard_allowed",
    "global_guard_rejected_malformed_host",
    "global_guard_rejected_unknown_host",
    "global_guard_rejected_unknown_port",
    "global_guard_rejected_unknown_cluster",
];

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not under the domain suffix.
    Passed,
    Allowed,
    Rejected(Reason),
}

impl Outcome {
    pub fn index(self) -> usize {
        match self {
            Outcome::Passed => 0,
            Outcome::Allowed => 1,
            Outcome::Rejected(Reason::MalformedHost) => 2,
            Outcome::Rejected(Reason::UnknownHost) => 3,
            Outcome::Rejected(Reason::UnknownPort) => 4,
            Outcome::Rejected(Reason::UnknownCluster) => 5,
        }
    }

    pub fn counter_name(self) -> &'static str {
        NAMES[self.index()]
    }
}

/// Counter ids of one VM.
#[derive(Debug, Clone, Copy)]
pub struct Metrics {
    ids: [u32; NAMES.len()],
}

impl Metrics {
    pub fn define() -> Result<Self, Status> {
        let mut ids = [0; NAMES.len()];
        for (id, name) in ids.iter_mut().zip(NAMES) {
            *id = hostcalls::define_metric(MetricType::Counter, name)?;
        }
        Ok(Self { ids })
    }

    pub fn increment(&self, outcome: Outcome) {
        // A counter that cannot be bumped must not fail the request.
        let _ = hostcalls::increment_metric(self.ids[outcome.index()], 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        let mut names: Vec<&str> = Reason::ALL
            .iter()
            .map(|r| Outcome::Rejected(*r).counter_name())
            .chain([
                Outcome::Passed.counter_name(),
                Outcome::Allowed.counter_name(),
            ])
            .collect();
        for reason in Reason::ALL {
            let name = Outcome::Rejected(reason).counter_name();
            assert!(name.ends_with(&reason.code().replace('-', "_")), "{name}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), NAMES.len());
    }
}
