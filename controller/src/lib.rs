//! `globalmesh-controller`: keeps global_guard's compact table (`policy::table`) equal to the
//! cluster's ServiceEntries, in the WasmPlugin's `pluginConfig` (which Istio delivers to every
//! sidecar by extension config discovery) or in an ECDS file for Envoys without Istio.
//!
//! A thin host on `catalog` (the ServiceEntry source and the Lease) and `policy` (the table):
//! [`view`] holds what the API has, [`sync`] writes it, [`plugin`] and [`ecds`] are the two
//! targets, [`run`] wires them with the admin endpoint and the leader election.

pub mod admin;
pub mod ecds;
pub mod metrics;
pub mod plugin;
pub mod run;
pub mod sync;
pub mod view;
