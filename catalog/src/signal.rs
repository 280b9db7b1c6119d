//! The shutdown signals every globalmesh server drains on: SIGTERM (a rollout; as PID 1 in a
//! container it has no default action) and SIGINT.

use std::future::Future;
use std::io;

use tokio::signal::unix::{signal, SignalKind};

/// Installs the SIGTERM handler (within a tokio runtime) and returns a future that resolves
/// with the name of the first of SIGTERM and SIGINT to arrive.
pub fn shutdown() -> io::Result<impl Future<Output = &'static str>> {
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
    })
}
