//! The globalmesh policy core for JavaScript: the verdicts of `admission-webhook check` as
//! plain values, for Node and the browser. The logic lives in plain Rust functions
//! ([`validate`], [`next_free_address`]) tested natively; [`bindings`] only converts between
//! them and JavaScript values.

pub mod bindings;
pub mod input;
pub mod next_free;
pub mod report;

pub use input::OptionsInput;
pub use next_free::{next_free_address, NextFree};
pub use report::{validate, Report, Violation};
