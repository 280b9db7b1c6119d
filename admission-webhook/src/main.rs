use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use admission_webhook::check::{self, CheckConfig, Format};
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
    }
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
