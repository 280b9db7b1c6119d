//! The globalmesh admission webhook: keeps `.global` ServiceEntries unique and pointed at the
//! gateway port. `check` runs the same rules offline.

pub mod check;
