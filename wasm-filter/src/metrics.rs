//! The filter's counters, one per outcome. Envoy lists them in `/stats` with a `wasmcustom.`
//! prefix.

use policy::authority::Reason;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not under the domain suffix.
    Passed,
    Allowed,
    Rejected(Reason),
}

impl Outcome {
    /// Every outcome, each with a counter of its own.
    pub const ALL: [Outcome; 7] = [
        Outcome::Passed,
        Outcome::Allowed,
        Outcome::Rejected(Reason::MalformedHost),
        Outcome::Rejected(Reason::UnknownHost),
        Outcome::Rejected(Reason::NotExported),
        Outcome::Rejected(Reason::UnknownPort),
        Outcome::Rejected(Reason::UnknownCluster),
    ];

    pub fn counter_name(self) -> &'static str {
        match self {
            Outcome::Passed => "global_guard_passed",
            Outcome::Allowed => "global_guard_allowed",
            Outcome::Rejected(Reason::MalformedHost) => "global_guard_rejected_malformed_host",
            Outcome::Rejected(Reason::UnknownHost) => "global_guard_rejected_unknown_host",
            Outcome::Rejected(Reason::NotExported) => "global_guard_rejected_not_exported",
            Outcome::Rejected(Reason::UnknownPort) => "global_guard_rejected_unknown_port",
            Outcome::Rejected(Reason::UnknownCluster) => "global_guard_rejected_unknown_cluster",
        }
    }
}

/// Counter ids of one VM, in the order of [`Outcome::ALL`].
#[derive(Debug, Clone, Copy)]
pub struct Metrics {
    ids: [u32; Outcome::ALL.len()],
}

impl Metrics {
    pub fn define() -> Result<Self, Status> {
        let mut ids = [0; Outcome::ALL.len()];
        for (id, outcome) in ids.iter_mut().zip(Outcome::ALL) {
            *id = hostcalls::define_metric(MetricType::Counter, outcome.counter_name())?;
        }
        Ok(Self { ids })
    }

    pub fn increment(&self, outcome: Outcome) {
        let id = Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .and_then(|i| self.ids.get(i));
        // A counter that cannot be bumped must not fail the request.
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(*id, 1);
        }
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
        assert_eq!(names.len(), Outcome::ALL.len());
    }
}
