//! globalmesh-controller: keeps global_guard's table in the WasmPlugin (and, for Envoys without
//! istiod, in an ECDS file) equal to the cluster's ServiceEntries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use catalog::kubernetes;
use catalog::lease::LeaseSettings;
use clap::Parser;
use controller::ecds::WasmSettings;
use controller::plugin::PluginRef;
use controller::run::{run, Config};
use controller::sync::{EcdsTarget, Timing, DEFAULT_MAX_TABLE_BYTES};
use policy::Options;

/// The Lease's name.
const LEASE_NAME: &str = "globalmesh-controller";

/// Keep global_guard's table equal to the cluster's ServiceEntries.
///
/// Watches every ServiceEntry through the Kubernetes API and writes the compact table of the
/// `.global` ones into the WasmPlugin's spec.pluginConfig.table by server-side apply (field
/// manager globalmesh-controller), one replica at a time (a Lease elects it); with
/// --ecds-file, also into an Envoy extension-config file.
#[derive(Debug, Parser)]
#[command(name = "globalmesh-controller", version)]
struct Args {
    /// Kubeconfig. Default: KUBECONFIG, ~/.kube/config, or the pod's service account.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Read the ServiceEntries of this namespace only. Default: all namespaces.
    #[arg(long, value_name = "NAMESPACE", conflicts_with = "service_entries")]
    namespace: Option<String>,
    /// Take the ServiceEntries from these files or directories (repeatable; reloaded when they
    /// change) instead of the Kubernetes API.
    #[arg(long, value_name = "PATH")]
    service_entries: Vec<PathBuf>,
    /// The WasmPlugin whose spec.pluginConfig.table is kept, as <namespace>/<name>.
    #[arg(
        long,
        value_name = "NS/NAME",
        default_value = "istio-system/global-guard"
    )]
    wasmplugin: PluginRef,
    /// Write no WasmPlugin (only the --ecds-file).
    #[arg(long, requires = "ecds_file")]
    no_wasmplugin: bool,
    /// Also write the table as an Envoy extension-config (ECDS) discovery file, replaced
    /// atomically on every change, for an Envoy whose global_guard comes from a
    /// config_discovery path source.
    #[arg(long, value_name = "FILE", requires = "wasm_module")]
    ecds_file: Option<PathBuf>,
    /// With --ecds-file: the global_guard.wasm module on the Envoy's file system.
    #[arg(long, value_name = "FILE", requires = "ecds_file")]
    wasm_module: Option<PathBuf>,
    /// With --ecds-file: the extension config's name, as the Envoy asks for it.
    #[arg(long, value_name = "NAME", default_value = "global_guard")]
    ecds_resource_name: String,
    /// With --ecds-file: the plugin's cluster routing header. Default: global_guard's own
    /// (x-global-cluster).
    #[arg(long, value_name = "HEADER", requires = "ecds_file")]
    cluster_header: Option<String>,
    /// Domain suffix of remote services.
    #[arg(long, value_name = "SUFFIX", default_value = policy::options::DEFAULT_DOMAIN_SUFFIX)]
    domain_suffix: String,
    /// The exportTo of ServiceEntries that set none, as meshConfig defaultServiceExportTo
    /// (repeat for several: ".", "*", "~" or namespace names).
    #[arg(long = "default-export-to", value_name = "TARGET", default_value = "*")]
    default_export_to: Vec<String>,
    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Write the WasmPlugin without a Lease (a single replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the Lease; default: $POD_NAMESPACE, or globalmesh.
    #[arg(long, value_name = "NS")]
    lease_namespace: Option<String>,
    /// This replica's name in the Lease; default: $POD_NAME, or the host name.
    #[arg(long, value_name = "NAME")]
    identity: Option<String>,
    /// Seconds the Lease lasts without renewal: how long a dead leader's successor waits.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    lease_duration: u64,
    /// Milliseconds without another change before a change is written.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    debounce: u64,
    /// Milliseconds a change waits at most while changes keep coming.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    max_delay: u64,
    /// Largest table written, in bytes of JSON; a larger one is refused and the previous
    /// table stays (etcd stores objects up to 1.5 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_TABLE_BYTES)]
    max_table_bytes: usize,
    /// Seconds one write to the API may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    request_timeout: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("globalmesh-controller: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn start(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // SIGTERM and SIGINT both drain and exit 0.
        let signal = catalog::signal::shutdown().context("installing the SIGTERM handler")?;
        tokio::spawn(async move {
            tracing::info!("{}", signal.await);
            let _ = stop.send(true);
        });
        run(config, stopped).await.map_err(anyhow::Error::from)
    })
}

fn config(args: Args) -> anyhow::Result<Config> {
    let mut options = Options::new(Some(&args.domain_suffix), &[], &[])?;
    options.default_export_to = args.default_export_to;
    let options = options.validated()?;
    let plugin = (!args.no_wasmplugin).then_some(args.wasmplugin);
    let lease = (plugin.is_some() && !args.no_leader_election).then(|| {
        let namespace = args
            .lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "globalmesh".to_string());
        let identity = args
            .identity
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("globalmesh-controller-{}", std::process::id()));
        LeaseSettings::new(
            &namespace,
            LEASE_NAME,
            &identity,
            Duration::from_secs(args.lease_duration.max(2)),
        )
    });
    let ecds = match (args.ecds_file, args.wasm_module) {
        (Some(path), Some(module)) => Some(EcdsTarget {
            path,
            resource_name: args.ecds_resource_name,
            wasm: WasmSettings::new(module),
            cluster_header: args.cluster_header,
        }),
        _ => None,
    };
    let kube = kubernetes::Settings {
        kubeconfig: args.kubeconfig,
        namespace: args.namespace,
        ..kubernetes::Settings::default()
    };
    let source = if args.service_entries.is_empty() {
        catalog::Source::Kubernetes(kube.clone())
    } else {
        catalog::Source::Files(args.service_entries)
    };
    Ok(Config {
        source,
        kube,
        options,
        plugin,
        ecds,
        lease,
        admin: args.admin,
        timing: Timing {
            debounce: Duration::from_millis(args.debounce),
            max_delay: Duration::from_millis(args.max_delay.max(args.debounce)),
        },
        max_table_bytes: args.max_table_bytes,
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
    })
}
