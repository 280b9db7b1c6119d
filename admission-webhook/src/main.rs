use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use admission_webhook::check::{self, CheckConfig, Format};
use admission_webhook::manifests::{self, ManifestConfig};
use admission_webhook::server::{self, ServeConfig};
use anyhow::Context;
use catalog::{kubernetes, Source};
use clap::{Args, Parser, Subcommand};
use policy::Options;

/// Validating webhook and offline checker for .global ServiceEntries.
#[derive(Debug, Parser)]
#[command(name = "admission-webhook", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check ServiceEntry files offline with the webhook's rules.
    ///
    /// Exit status: 0 when no errors (warnings allowed), 1 on violations, 2 on unreadable or
    /// unparseable input or bad usage.
    Check(CheckArgs),
    /// Serve POST /validate and POST /mutate over TLS for the Kubernetes API server.
    Serve(Box<ServeArgs>),
    /// List addresses held by more than one ServiceEntry (exit 1 when there are any).
    Audit(AuditArgs),
    /// Write a CA (ca.crt) and a serving pair (tls.crt, tls.key) for the webhook's Service.
    Certs(CertsArgs),
    /// Print the ValidatingWebhookConfiguration with the CA bundle filled in (the rest of the
    /// install is in deploy/).
    Manifests(ManifestsArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address of the TLS listener.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// PEM certificate chain; reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    tls_cert: PathBuf,
    /// PEM private key; reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    tls_key: PathBuf,
    /// Require client certificates signed by this PEM CA.
    #[arg(long, value_name = "FILE")]
    client_ca: Option<PathBuf>,
    #[command(flatten)]
    source: SourceArgs,
    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Seconds a client may take for its TLS handshake, its headers or its body, and that a
    /// connection may stay idle between requests.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    client_timeout: u64,
    /// TLS connections served at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds that reviews in flight get to finish once the listener is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    drain_timeout: u64,
    /// Seconds between SIGTERM (/readyz turns 503) and closing the listener, for the API
    /// server to stop sending reviews to this replica.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    shutdown_delay: u64,
    /// Seconds a claim of a ServiceEntry that is not stored is held (KEP-1880's repair waits
    /// 60 s); then another may take it and the repair removes it.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    claim_grace: u64,
    /// Claims of unstored ServiceEntries a namespace may hold at once when callers present no
    /// client certificate (no --client-ca).
    #[arg(long, value_name = "N", default_value_t = 100)]
    max_unstored_claims: usize,
    /// Milliseconds the claims of one review may take in all (the API server waits 5 s for
    /// the webhook: timeoutSeconds in deploy/).
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    claim_timeout: u64,
    /// Do not give VIPs to .global ServiceEntries created without addresses (/mutate then
    /// changes nothing).
    #[arg(long)]
    no_allocate: bool,
    /// Namespace of the repair Lease (with --kubernetes); default: $POD_NAMESPACE, or
    /// globalmesh.
    #[arg(long, value_name = "NS")]
    lease_namespace: Option<String>,
    /// This replica's name in the Lease; default: $POD_NAME, or the host name.
    #[arg(long, value_name = "NAME")]
    identity: Option<String>,
    /// Seconds the repair Lease lasts without renewal.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    lease_duration: u64,
    /// Seconds between two repairs of the leader.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    repair_interval: u64,
    #[command(flatten)]
    rules: RuleArgs,
}

/// The repair Lease's name.
const LEASE_NAME: &str = "globalmesh-webhook-repair";

#[derive(Debug, Args)]
struct AuditArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    rules: RuleArgs,
}

/// Where the cluster's ServiceEntries come from: files, or the Kubernetes API.
#[derive(Debug, Args)]
struct SourceArgs {
    /// The cluster's ServiceEntries (files or directories; repeatable); reloaded on change.
    #[arg(
        long = "service-entries",
        value_name = "PATH",
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    service_entries: Vec<PathBuf>,
    #[command(flatten)]
    kube: kubernetes::Flags,
}

impl SourceArgs {
    fn source(self) -> Source {
        match self.kube.settings() {
            Some(settings) => Source::Kubernetes(settings),
            None => Source::Files(self.service_entries),
        }
    }
}

#[derive(Debug, Args)]
struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long)]
    service: String,
    /// Namespace of the webhook's Service.
    #[arg(long)]
    namespace: String,
    /// Folder to write ca.crt, tls.crt and tls.key into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Extra IP address for the certificate (repeatable).
    #[arg(long = "ip", value_name = "IP")]
    ips: Vec<IpAddr>,
    /// Extra DNS name for the certificate (repeatable).
    #[arg(long = "dns", value_name = "NAME")]
    dns: Vec<String>,
}

#[derive(Debug, Args)]
struct ManifestsArgs {
    /// Namespace the webhook runs in (excluded from its own rules, with kube-system).
    #[arg(long)]
    namespace: String,
    /// PEM CA that signed the serving certificate (ca.crt from `certs`).
    #[arg(long, value_name = "FILE")]
    ca_bundle: PathBuf,
    /// Name of the webhook's Service.
    #[arg(long, default_value = "globalmesh-webhook")]
    service: String,
}

#[derive(Debug, Args)]
struct RuleArgs {
    /// Domain suffix of remote services.
    #[arg(long, value_name = "SUFFIX", default_value = policy::options::DEFAULT_DOMAIN_SUFFIX)]
    domain_suffix: String,
    /// Port that .global endpoints must use (repeat for several, such as a NodePort); default 15443.
    #[arg(long = "gateway-port", value_name = "PORT")]
    gateway_ports: Vec<u16>,
    /// Range that .global VIPs are expected in (repeat for several); default 127.255.0.0/16,
    /// 240.0.0.0/16 and 240.240.0.0/16.
    #[arg(long = "vip-range", value_name = "CIDR")]
    vip_ranges: Vec<String>,
}

impl RuleArgs {
    fn options(&self) -> Result<Options, policy::OptionsError> {
        Options::new(
            Some(&self.domain_suffix),
            &self.gateway_ports,
            &self.vip_ranges,
        )
    }
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// ServiceEntries already in the cluster (file or directory; repeatable); their addresses
    /// are taken.
    #[arg(long, value_name = "PATH")]
    existing: Vec<PathBuf>,
    #[command(flatten)]
    rules: RuleArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Files or directories (walked for .yaml, .yml, .json) to check.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("admission-webhook: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => run_check(args),
        Command::Serve(args) => run_serve(*args),
        Command::Audit(args) => run_audit(args),
        Command::Certs(args) => run_certs(args),
        Command::Manifests(args) => run_manifests(args),
    }
}

fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let source = args.source.source();
    let lease = matches!(source, Source::Kubernetes(_)).then(|| {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "globalmesh".to_string());
        let identity = args
            .identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("admission-webhook-{}", std::process::id()));
        (namespace, LEASE_NAME.to_string(), identity)
    });
    let config = ServeConfig {
        listen: args.listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        client_ca: args.client_ca,
        admin: args.admin,
        options: args.rules.options()?,
        client_timeout: Duration::from_secs(args.client_timeout.max(1)),
        max_connections: args.max_connections.max(1),
        drain_timeout: Duration::from_secs(args.drain_timeout),
        shutdown_delay: Duration::from_secs(args.shutdown_delay),
        claims: server::ClaimSettings {
            grace: Duration::from_secs(args.claim_grace),
            max_unstored: args.max_unstored_claims,
            allocate: !args.no_allocate,
            timeout: Duration::from_millis(args.claim_timeout.max(1)),
            lease,
            lease_duration: Duration::from_secs(args.lease_duration.max(2)),
            repair_interval: Duration::from_secs(args.repair_interval.max(1)),
        },
    };
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
        server::run(config, source, stopped)
            .await
            .map_err(anyhow::Error::from)
    })?;
    Ok(ExitCode::SUCCESS)
}

fn run_audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let options = args.rules.options()?;
    let (loaded, claims): (
        Vec<Result<policy::ServiceEntry, policy::document::DecodeError>>,
        Option<Vec<admission_webhook::claims::Claim>>,
    ) = match args.source.source() {
        Source::Files(paths) => (
            catalog::load_paths(&paths)?
                .into_iter()
                .map(|l| l.entry)
                .collect(),
            None,
        ),
        Source::Kubernetes(settings) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(async {
                let source = kubernetes::Source::connect(&settings).await?;
                let entries = source.list().await?;
                let mut claims = list_claims(&settings).await?;
                // Claims are cluster-wide; an audit of one namespace judges that
                // namespace's.
                if let Some(namespace) = &settings.namespace {
                    claims.retain(|c| c.owner.namespace == *namespace);
                }
                anyhow::Ok((entries, Some(claims)))
            })?,
    };
    let mut entries = Vec::with_capacity(loaded.len());
    for entry in &loaded {
        match entry {
            Ok(entry) => entries.push(entry),
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "left out: {e}");
            }
        }
    }
    let duplicates = policy::find_duplicates(entries.iter().copied());
    let mut out = std::io::stdout().lock();
    for dup in &duplicates {
        let owners: Vec<String> = dup.owners.iter().map(ToString::to_string).collect();
        writeln!(out, "{}: {}", dup.address, owners.join(", "))?;
    }
    let mut disagreements = Vec::new();
    if let Some(claims) = &claims {
        disagreements = admission_webhook::claims::audit(&entries, claims, &options);
        for line in &disagreements {
            writeln!(out, "claim {line}")?;
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "audited {} ServiceEntries: {} duplicate addresses{}",
        entries.len(),
        duplicates.len(),
        match &claims {
            Some(claims) => format!(
                "; {} claims, {} disagreeing with the stored entries",
                claims.len(),
                disagreements.len()
            ),
            None => String::new(),
        }
    );
    Ok(if duplicates.is_empty() && disagreements.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Every AddressClaim and HostClaim in the API server (a cluster without globalmesh's CRDs
/// has none).
async fn list_claims(
    settings: &kubernetes::Settings,
) -> anyhow::Result<Vec<admission_webhook::claims::Claim>> {
    use admission_webhook::claims::{Claim, ClaimKey};
    let (client, server) = kubernetes::client(settings).await?;
    let mut claims = Vec::new();
    for key in [
        ClaimKey::Address([0, 0, 0, 0].into()),
        ClaimKey::Host(String::new()),
    ] {
        let resource = key.resource();
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::all_with(client.clone(), &resource);
        match api.list(&kube::api::ListParams::default()).await {
            Ok(list) => claims.extend(list.items.iter().filter_map(Claim::from_object)),
            Err(e) if kubernetes::api_status(&e) == Some(404) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("listing {} at {server}", resource.plural)))
            }
        }
    }
    Ok(claims)
}

fn run_certs(args: CertsArgs) -> anyhow::Result<ExitCode> {
    let written = admission_webhook::certs::generate(
        &args.service,
        &args.namespace,
        &args.dns,
        &args.ips,
        &args.out,
    )?;
    println!(
        "wrote {}, {} and {} for {}",
        written.ca.display(),
        written.cert.display(),
        written.key.display(),
        written.sans.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn run_manifests(args: ManifestsArgs) -> anyhow::Result<ExitCode> {
    let ca_bundle_pem = std::fs::read_to_string(&args.ca_bundle)
        .with_context(|| format!("{}", args.ca_bundle.display()))?;
    if !ca_bundle_pem.contains("-----BEGIN CERTIFICATE-----") {
        anyhow::bail!("{}: no PEM certificate found", args.ca_bundle.display());
    }
    let config = ManifestConfig {
        namespace: args.namespace,
        service: args.service,
        ca_bundle_pem,
        port: 443,
    };
    print!("{}", manifests::render(&config)?);
    Ok(ExitCode::SUCCESS)
}

fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = CheckConfig {
        paths: args.paths,
        existing: args.existing,
        options: args.rules.options()?,
        format: args.format,
    };
    let report = check::check(&config)?;
    let stdout = std::io::stdout();
    check::write_report(&report, config.format, &mut stdout.lock())?;
    let _ = writeln!(std::io::stderr(), "{}", check::summary(&report));
    Ok(if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
