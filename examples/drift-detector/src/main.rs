//! `drift-detector`: detects Kubernetes configuration drift against ConfigHub or plain manifests.
//!
//! Run with `cargo run -p drift-detector -- --help`.

mod alerts;
mod bridge;
mod common;
mod config;
mod demo;
mod diff_cmd;
mod engine;
mod files;
mod http;
mod hub_cmd;
mod hub_log;
mod leader;
mod membership;
mod metrics;
mod report;
mod sandbox_cmd;
mod scan_cmd;
mod secrets;
mod store;
mod watch_cmd;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// The whole story offline: a sandbox cluster and a ConfigHub simulator in-process, drift made
    /// through the Kubernetes API, found, analysed, fixed through ConfigHub, every step verified.
    Demo(demo::DemoArgs),
    Watch(Box<watch_cmd::WatchArgs>),
    Scan(scan_cmd::ScanArgs),
    Diff(diff_cmd::DiffArgs),
    Sandbox(sandbox_cmd::SandboxArgs),
    Hub(hub_cmd::HubCmdArgs),
}

fn init_logging(format: LogFormat, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Writes to stdout, ignoring a closed pipe.
pub(crate) fn out(text: &str) {
    let _ = print_stdout(text);
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
    if matches!(cli.command, Command::Diff(_) | Command::Scan(_)) {
        // One-shot: DRIFT_REDACTION_KEY when set (hashes comparable between runs), else a process key.
        secrets::install_redactor(None, None)?;
    }
    if let Command::Diff(args) = cli.command {
        return diff_cmd::run(args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Demo(a) => demo::run(a).await,
            Command::Watch(a) => watch_cmd::run(*a).await,
            Command::Scan(a) => scan_cmd::run(a).await,
            Command::Sandbox(a) => sandbox_cmd::run(a).await,
            Command::Hub(a) => hub_cmd::run(a).await,
            Command::Diff(_) => Ok(2),
        }
    })
}

fn main() {
    let cli = Cli::parse();
    // The demo and the one-shot commands tell their story on stdout; the daemon logs.
    let default = match cli.command {
        Command::Watch(_) => "warn,drift_detector=info",
        Command::Demo(_) => "error",
        _ => "warn",
    };
    init_logging(cli.log_format, default);
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// The shipped manifest starts: its args parse with the real parser, and every environment
    /// variable it sets is one the binary reads.
    #[test]
    fn the_deploy_manifest_args_and_env_are_the_binarys() {
        use clap::{CommandFactory, Parser};
        let doc: serde_json::Value =
            serde_saphyr::from_str(include_str!("../deploy/statefulset.yaml")).expect("manifest");
        let c = &doc["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<String> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string").to_string())
            .collect();
        let cli =
            super::Cli::try_parse_from(std::iter::once("drift-detector".to_string()).chain(args.clone()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(matches!(cli.command, super::Command::Watch(_)));
        let watch = super::Cli::command()
            .find_subcommand("watch")
            .expect("watch")
            .clone();
        let mut read: Vec<String> = watch
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        read.push(crate::secrets::KEY_ENV.to_string());
        for e in c["env"].as_array().expect("env") {
            let name = e["name"].as_str().expect("name");
            assert!(
                read.iter().any(|r| r == name),
                "the manifest sets {name}, which nothing reads: {read:?}"
            );
        }
        // The state directory is on the volume that survives a reschedule.
        let mount = c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["name"] == "state")
            .expect("state mount");
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--state-dir" && w[1] == mount["mountPath"])
        );
        assert_eq!(
            doc["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
            "state"
        );
        // The image is the one the Dockerfile builds and the kustomization names.
        assert!(c["image"].as_str().expect("image").starts_with("drift-detector:"));
        assert!(include_str!("../Dockerfile").contains("drift-detector"));
    }
}
