//! The controller's process: the ServiceEntry source, the WasmPlugin's watch, the Lease, the
//! sync loop and the admin endpoint, until SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use catalog::kubernetes::{self, KubeError};
use catalog::lease::{Elector, LeaseSettings};
use catalog::watch::WatchError;
use catalog::{LoadError, Source};
use policy::Options;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin;
use crate::metrics::Metrics;
use crate::plugin::{Observed, Plugin, PluginRef};
use crate::sync::{EcdsTarget, Sync, Timing};
use crate::view::View;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the ServiceEntries are: the Kubernetes API, or files.
    pub source: Source,
    /// The API server of the WasmPlugin and the Lease (and of the ServiceEntries, with
    /// `Source::Kubernetes`).
    pub kube: kubernetes::Settings,
    pub options: Options,
    /// The WasmPlugin to keep; `None` writes the ECDS file only.
    pub plugin: Option<PluginRef>,
    pub ecds: Option<EcdsTarget>,
    /// The Lease that elects the one replica writing the WasmPlugin; `None`: this process
    /// always writes (a single replica, or ECDS files only).
    pub lease: Option<LeaseSettings>,
    pub admin: Option<SocketAddr>,
    pub timing: Timing,
    pub max_table_bytes: usize,
    /// Longest wait for one write to the API.
    pub request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("nothing to write: give a WasmPlugin or an ECDS file")]
    NoTarget,
    #[error("admin address {addr}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("reading the ServiceEntries")]
    Load(#[from] LoadError),
    #[error("watching the ServiceEntry files")]
    Watch(#[from] WatchError),
}

/// Runs until `stop` turns true: the write in progress finishes, the Lease is given up, then
/// the admin endpoint (answering `/readyz` 503 meanwhile) closes.
pub async fn run(config: Config, stop: watch::Receiver<bool>) -> Result<(), RunError> {
    if config.plugin.is_none() && config.ecds.is_none() {
        return Err(RunError::NoTarget);
    }
    let metrics = Arc::new(Metrics::new());
    let view = View::default();
    let (admin_stop, admin_stopped) = watch::channel(false);
    let admin_task = match config.admin {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Admin { addr, source })?;
            tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "admin listening");
            let router = admin::router(view.clone(), Arc::clone(&metrics), stop.clone());
            let mut admin_stopped = admin_stopped.clone();
            Some(tokio::spawn(admin::serve(listener, router, async move {
                let _ = admin_stopped.wait_for(|s| *s).await;
            })))
        }
        None => None,
    };
    // Files are read once before anything else (an unreadable file stops the start, naming
    // it), then again whenever they change; the API is listed, then watched.
    let (source, _files) = match &config.source {
        Source::Kubernetes(settings) => (
            Some(tokio::spawn(kubernetes::run(
                settings.clone(),
                view.sink(Arc::clone(&metrics)),
            ))),
            None,
        ),
        Source::Files(paths) => {
            view.load_files(paths, &metrics)?;
            let (reload_view, reload_metrics, reload_paths) =
                (view.clone(), Arc::clone(&metrics), paths.clone());
            let handle = catalog::watch::watch(paths, move || {
                if let Err(e) = reload_view.load_files(&reload_paths, &reload_metrics) {
                    reload_metrics.source_errors.inc();
                    tracing::error!(error = %e, "ServiceEntry files not reloaded; the previous table stays");
                }
            })?;
            (None, Some(handle))
        }
    };
    let (observed_tx, observed) = watch::channel(Observed::Unknown);
    let mut tasks = Vec::new();
    let mut elector = None;
    // Without a Lease this process always leads; the sender lives as long as the loop.
    let (_always, mut leading) = watch::channel(true);
    let plugin = match &config.plugin {
        Some(target) => {
            let (client, _) = kubernetes::client(&config.kube).await?;
            let plugin = Plugin::new(client.clone(), target.clone(), config.request_timeout);
            let watcher = Plugin::new(client.clone(), target.clone(), config.request_timeout);
            tasks.push(tokio::spawn(
                async move { watcher.watch(observed_tx).await },
            ));
            if let Some(lease) = config.lease.clone() {
                let e = Arc::new(Elector::new(client, lease));
                leading = e.leading();
                let runner = Arc::clone(&e);
                let stop = stop.clone();
                elector = Some((e, tokio::spawn(async move { runner.run(stop).await })));
            }
            Some(plugin)
        }
        None => None,
    };
    let sync = Sync {
        view,
        options: config.options,
        plugin,
        ecds: config.ecds,
        metrics,
        timing: config.timing,
        max_table_bytes: config.max_table_bytes,
    };
    sync.run(observed, leading, stop.clone()).await;
    tracing::info!("stopping");
    // The elector sees `stop` too and gives the Lease up; wait for it, briefly.
    if let Some((_, task)) = elector {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if let Some(source) = source {
        source.abort();
    }
    for task in tasks {
        task.abort();
    }
    let _ = admin_stop.send(true);
    if let Some(task) = admin_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    Ok(())
}
