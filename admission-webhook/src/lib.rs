//! The globalmesh admission webhook: keeps `.global` ServiceEntries unique and pointed at the
//! gateway port. `check` runs the same rules offline.

pub mod admit;
pub mod catalog;
pub mod certs;
pub mod check;
pub mod claims;
pub mod manifests;
pub mod metrics;
pub mod repair;
pub mod review;
pub mod server;
pub mod tls;
pub mod verdict;
