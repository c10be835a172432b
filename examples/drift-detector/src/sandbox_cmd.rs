//! `drift-detector sandbox`: the sandbox API server (and optionally the ConfigHub simulator) alone.

use std::path::PathBuf;

use anyhow::Context as _;
use drift_kube::sandbox::{Sandbox, SandboxConfig};
use serde_json::json;

/// Runs the sandbox Kubernetes API server on 127.0.0.1 until interrupted, so `kubectl`, `scan` and
/// `watch` can be used against it exactly as against a cluster.
///
/// With --hub it also runs the ConfigHub simulator (API v0.8.5; every Release published there is
/// synced into the sandbox, as a GitOps agent would) and `drift-detector hub --sandbox ...` finds it
/// through `<state-dir>/sandbox.json`.
///
/// Example:
///   drift-detector sandbox --hub &
///   kubectl --kubeconfig sandbox.kubeconfig get ns
///   drift-detector hub --sandbox install-base
///   drift-detector hub --sandbox deploy-test && drift-detector hub --sandbox publish test
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct SandboxArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Where to write the kubeconfig.
    #[arg(long, default_value = "sandbox.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Also run the in-process ConfigHub simulator and print its URL and token.
    #[arg(long)]
    pub hub: bool,
    /// Where to record the addresses for `hub --sandbox`.
    #[arg(long, default_value = ".drift-detector")]
    pub state_dir: PathBuf,
}

pub(crate) async fn run(args: SandboxArgs) -> anyhow::Result<i32> {
    let sandbox = Sandbox::start(SandboxConfig::default().port(args.port))
        .await
        .context("starting the sandbox API server")?;
    sandbox
        .write_kubeconfig(&args.kubeconfig)
        .with_context(|| format!("writing {}", args.kubeconfig.display()))?;
    let kubeconfig = std::fs::canonicalize(&args.kubeconfig).unwrap_or(args.kubeconfig.clone());
    crate::out(&format!(
        "sandbox Kubernetes API server: {}\nkubeconfig: {}\n",
        sandbox.url(),
        kubeconfig.display()
    ));
    let mut state = json!({"kubeconfig": kubeconfig, "apiServer": sandbox.url()});
    let hub = if args.hub {
        let hub = drift_confighub::fake::FakeHub::start(
            drift_confighub::fake::FakeHubConfig::default().auto_target("k8s-sandbox"),
        )
        .await
        .context("starting the ConfigHub simulator")?;
        hub.on_release(crate::bridge::gitops_hook(sandbox.client()?));
        crate::out(&format!(
            "ConfigHub simulator (API v0.8.5): {}  token: {}\n  (every space gets the release Target k8s-sandbox; a simulated GitOps agent syncs each Release into the sandbox)\n  export CUB_API_URL={} CUB_TOKEN={}\n",
            hub.url(),
            hub.token(),
            hub.url(),
            hub.token()
        ));
        state["hubUrl"] = json!(hub.url());
        state["hubToken"] = json!(hub.token());
        Some(hub)
    } else {
        None
    };
    std::fs::create_dir_all(&args.state_dir)?;
    let file = crate::common::sandbox_state_file(&args.state_dir);
    std::fs::write(&file, serde_json::to_string_pretty(&state)?)
        .with_context(|| format!("writing {}", file.display()))?;
    crate::out("running; Ctrl-C stops it\n");
    crate::watch_cmd::wait_for_signal().await;
    let _ = std::fs::remove_file(&file);
    drop(hub);
    sandbox.shutdown().await;
    Ok(0)
}
