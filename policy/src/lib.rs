//! The globalmesh policy core: the ServiceEntry model, Istio's and the `.global` rules, and the
//! address index. Pure: no I/O, no async runtime, no host bindings; it builds for
//! `wasm32-wasip1` (the Envoy filter) and `wasm32-unknown-unknown` (the browser) as well as
//! natively (the DNS shim and the webhook).

pub mod authority;
pub mod check;
pub mod cluster;
pub mod document;
pub mod finding;
pub mod hosts;
pub mod index;
pub mod model;
pub mod names;
pub mod options;
pub mod resolve;
pub mod rules;
pub mod table;
pub mod visibility;
#[cfg(feature = "yaml")]
pub mod yaml;

pub use check::{
    check_addresses, check_entry, check_objects, check_set, find_duplicates, Checked,
    DuplicateAddress,
};
pub use cluster::Cluster;
#[cfg(feature = "yaml")]
pub use document::parse_str;
pub use document::{DecodeError, ParseError, Parsed};
pub use finding::{Enforcer, Finding, Findings, Rule, Severity};
pub use hosts::HostIndex;
pub use index::{AddressIndex, Conflict};
pub use model::{ObjectKey, ServiceEntry};
pub use options::{Options, OptionsError};
pub use rules::istio::{parse_address, parse_ip};
pub use rules::validate;
