//! `global_guard`: a proxy-wasm HTTP filter for Envoy that answers requests for unknown or
//! malformed `.global` hosts, undeclared ports and unknown cluster subsets itself, and sets the
//! cluster routing header. The decisions live in `policy::authority`; this crate only talks to
//! the host.

pub mod config;
pub mod metrics;

use std::rc::Rc;

use log::{debug, error, info, warn};
use policy::authority::Decision;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::config::{Config, Source};
use crate::metrics::{Metrics, Outcome};

/// The reply header that carries the reason code of a local reply.
pub const REASON_HEADER: &str = "x-global-guard";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(GuardRoot::default()));
}}

/// Follows the level Envoy runs with, so disabled levels cost no formatting.
fn sync_log_level() {
    if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
}

#[derive(Default)]
struct GuardRoot {
    metrics: Option<Metrics>,
    config: Option<Rc<Config>>,
}

impl Context for GuardRoot {}

impl RootContext for GuardRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        sync_log_level();
        self.ensure_metrics()
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        sync_log_level();
        if !self.ensure_metrics() {
            return false;
        }
        let started = self.get_current_time();
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let parsed = config::parse_for(&bytes, || {
            // Envoy 1.40 serves the node as `xds.node`; older ones as `node`.
            self.get_property(vec!["xds", "node", "metadata", "NAMESPACE"])
                .or_else(|| self.get_property(vec!["node", "metadata", "NAMESPACE"]))
                .and_then(|bytes| String::from_utf8(bytes).ok())
        });
        match parsed {
            Ok(config) => {
                let micros = self
                    .get_current_time()
                    .duration_since(started)
                    .map_or(0, |d| {
                        // u64 arithmetic: u128 formatting would cost 2 KB of module.
                        d.as_secs()
                            .saturating_mul(1_000_000)
                            .saturating_add(u64::from(d.subsec_micros()))
                    });
                if config.source == Source::Empty {
                    warn!(
                        "global_guard: the configuration holds no table; every .{} host is refused as unknown-host until one arrives",
                        config.table.suffix()
                    );
                }
                info!(
                    "global_guard: {}, {} .global hosts, cluster header {}, {}, configured in {micros} us",
                    config.source,
                    config.table.len(),
                    config.cluster_header,
                    config.viewer
                );
                // Request contexts created from now on take the new table; those in flight
                // keep the one they started with.
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                match &self.config {
                    Some(old) => error!(
                        "global_guard: invalid configuration: {e}; still serving the previous one ({}, {} .global hosts)",
                        old.source,
                        old.table.len()
                    ),
                    None => error!("global_guard: invalid configuration: {e}"),
                }
                // Tells the host the configuration is refused; a root context that was
                // configured before keeps answering with its previous table.
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(GuardRequest {
            config: self.config.clone(),
            metrics: self.metrics,
        }))
    }
}

impl GuardRoot {
    /// Defines the counters once per VM (in `on_vm_start`; `on_configure` covers a root context
    /// that shares a VM started by another plugin).
    fn ensure_metrics(&mut self) -> bool {
        if self.metrics.is_some() {
            return true;
        }
        match Metrics::define() {
            Ok(metrics) => {
                self.metrics = Some(metrics);
                true
            }
            Err(status) => {
                error!("global_guard: cannot define counters: {status:?}");
                false
            }
        }
    }
}

struct GuardRequest {
    config: Option<Rc<Config>>,
    metrics: Option<Metrics>,
}

impl Context for GuardRequest {}

impl HttpContext for GuardRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.as_deref() else {
            // Envoy does not create request contexts for a plugin whose configuration failed;
            // should it happen anyway, fail closed.
            self.send_http_response(503, vec![(REASON_HEADER, "unconfigured")], None);
            return Action::Pause;
        };
        let authority = self
            .get_http_request_header(":authority")
            .or_else(|| {
                self.get_property(vec!["request", "host"])
                    .and_then(|bytes| String::from_utf8(bytes).ok())
            })
            .unwrap_or_default();
        let decision = config.table.decide_with(
            &authority,
            || self.destination_port(),
            || self.get_http_request_header(&config.cluster_header),
        );
        match decision {
            Decision::Pass => {
                self.count(Outcome::Passed);
                Action::Continue
            }
            Decision::Allow { cluster } => {
                if let Some(cluster) = cluster {
                    // `set` replaces every value a client sent: no stacking.
                    self.set_http_request_header(&config.cluster_header, Some(cluster));
                }
                self.count(Outcome::Allowed);
                Action::Continue
            }
            Decision::Reject(rejection) => {
                self.count(Outcome::Rejected(rejection.reason));
                debug!(
                    "global_guard: {} {}",
                    rejection.status(),
                    rejection.body.trim_end()
                );
                self.send_http_response(
                    u32::from(rejection.status()),
                    vec![(REASON_HEADER, rejection.reason.code())],
                    Some(rejection.body.as_bytes()),
                );
                Action::Pause
            }
        }
    }
}

impl GuardRequest {
    /// The `destination.port` property: a little-endian 64-bit integer.
    fn destination_port(&self) -> Option<u16> {
        let bytes = self.get_property(vec!["destination", "port"])?;
        let bytes: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        u16::try_from(u64::from_le_bytes(bytes)).ok()
    }

    fn count(&self, outcome: Outcome) {
        if let Some(metrics) = &self.metrics {
            metrics.increment(outcome);
        }
    }
}
