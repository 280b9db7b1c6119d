//! The seed scenario of gateway-connected clusters, on one machine: each cluster a network
//! namespace, real Envoys, httpbin, and globalmesh's three parts in the path.

pub mod envoy;
pub mod host;
pub mod pki;
pub mod scenario;
