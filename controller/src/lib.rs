//! `globalmesh-controller`: keeps global_guard's compact table (`policy::table`) equal to the
//! cluster's ServiceEntries, in the WasmPlugin's `pluginConfig` (which Istio delivers to every
//! sidecar by extension config discovery) or in an ECDS file for Envoys without Istio.

pub mod ecds;
