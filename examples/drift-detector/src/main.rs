//! `drift-detector`: detects Kubernetes configuration drift against ConfigHub or plain manifests.
//!
//! Run with `cargo run -p drift-detector -- --help`.

mod diff_cmd;
mod report;

use std::io::Write as _;

use clap::{Parser, Subcommand};

/// Detects Kubernetes configuration drift: compares what runs in a cluster with the source of truth
/// (ConfigHub units or plain manifests), field by field, without false positives on server defaults.
///
/// Exit status: 0 in sync, 1 drift found, 2 error.
#[derive(Debug, Parser)]
#[command(
    name = "drift-detector",
    version,
    propagate_version = true,
    max_term_width = 110
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    Diff(diff_cmd::DiffArgs),
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,drift_detector=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Diff(args) => diff_cmd::run(args),
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            #[allow(clippy::print_stderr)] // the binary reports its own fatal errors
            {
                eprintln!("error: {e:#}");
            }
            2
        }
    };
    #[allow(clippy::disallowed_methods)] // main owns the exit code
    std::process::exit(code);
}
