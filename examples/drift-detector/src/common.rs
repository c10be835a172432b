//! Options shared by several subcommands: the cluster, ConfigHub, Claude.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use drift_core::ports::Analyzer;

/// Which cluster.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
}

impl ClusterArgs {
    pub(crate) async fn client(&self) -> anyhow::Result<kube::Client> {
        kube_client(self.kubeconfig.as_deref(), self.context.as_deref()).await
    }
}

/// A kube client from a kubeconfig path (or the usual places) and a context.
pub(crate) async fn kube_client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    drift_kube::install_crypto_provider();
    let opts = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .with_context(|| format!("reading the kubeconfig {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .with_context(|| format!("using the kubeconfig {}", p.display()))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&opts)
            .await
            .context("reading the kubeconfig")?,
        None => kube::Config::infer()
            .await
            .context("finding a cluster (set KUBECONFIG, pass --kubeconfig, or run in a pod)")?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// ConfigHub connection.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct HubArgs {
    /// ConfigHub API base URL.
    #[arg(long = "cub-url", env = "CUB_API_URL", default_value = drift_confighub::DEFAULT_BASE_URL, value_name = "URL")]
    pub cub_url: String,
    /// ConfigHub token (`cub auth get-token`).
    #[arg(
        long = "cub-token",
        env = "CUB_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub cub_token: Option<String>,
    /// Which revision of a unit is the desired state: `released` (its last Release: what the cluster
    /// should run; edits not yet released are "unreleased changes", not drift) or `head`.
    #[arg(
        long = "desired-revision",
        env = "CUB_DESIRED_REVISION",
        default_value = "released",
        value_name = "released|head"
    )]
    pub desired_revision: drift_confighub::DesiredRevision,
}

impl HubArgs {
    /// Reads the server's version (`GET /info`); a server older than API 0.8 is an error. An unreachable
    /// server is only a warning here: the caller's own requests say what is wrong.
    pub(crate) async fn check_server(&self, c: &drift_confighub::ConfigHubClient) -> anyhow::Result<()> {
        match tokio::time::timeout(std::time::Duration::from_secs(10), c.check_server()).await {
            Ok(Ok(info)) => {
                tracing::info!(version = %info.version, url = %c.base_url(), "ConfigHub");
                Ok(())
            }
            Ok(Err(e @ drift_confighub::ConfigHubError::Unsupported { .. })) => Err(e.into()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not read ConfigHub's version (GET /info)");
                Ok(())
            }
            Err(_) => {
                tracing::warn!("ConfigHub did not answer GET /info within 10 s");
                Ok(())
            }
        }
    }

    pub(crate) fn client(&self) -> anyhow::Result<drift_confighub::ConfigHubClient> {
        let token = self
            .cub_token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .context("no ConfigHub token: set CUB_TOKEN or pass --cub-token")?;
        let cfg = drift_confighub::ClientConfig::default()
            .base_url(self.cub_url.clone())
            .token(token);
        Ok(drift_confighub::ConfigHubClient::new(cfg)?)
    }
}

/// The analyzer.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClaudeArgs {
    /// Anthropic API key: enables analysis by Claude (otherwise the deterministic analyzer).
    #[arg(
        long = "claude-key",
        env = "CLAUDE_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub claude_key: Option<String>,
    /// Claude model.
    #[arg(long = "claude-model", env = "CLAUDE_MODEL", default_value = drift_claude::DEFAULT_MODEL)]
    pub claude_model: String,
    /// Anthropic API base URL.
    #[arg(long = "claude-url", env = "CLAUDE_API_URL", default_value = drift_claude::api::DEFAULT_BASE_URL, hide = true)]
    pub claude_url: String,
    /// Send ConfigMap values to Claude (by default only a hash and a length are sent).
    #[arg(long = "claude-config-values")]
    pub claude_config_values: bool,
    /// Never call Claude, even with a key.
    #[arg(long = "no-claude")]
    pub no_claude: bool,
}

impl ClaudeArgs {
    /// The analyzer and a sentence saying which it is.
    pub(crate) async fn analyzer(&self) -> (Arc<dyn Analyzer>, String) {
        let deterministic = || -> Arc<dyn Analyzer> { Arc::new(drift_core::analysis::DeterministicAnalyzer) };
        let Some(key) = self
            .claude_key
            .clone()
            .filter(|k| !k.trim().is_empty() && !self.no_claude)
        else {
            return (
                deterministic(),
                "deterministic analyzer (no CLAUDE_API_KEY)".into(),
            );
        };
        let client = drift_claude::api::ClientConfig::new(key.clone()).base_url(self.claude_url.clone());
        let prompt =
            drift_claude::prompt::PromptPolicy::default().allow_config_values(self.claude_config_values);
        let cfg = drift_claude::ClaudeConfig::new(key)
            .client(client)
            .model(self.claude_model.clone())
            .prompt(prompt);
        match drift_claude::ClaudeAnalyzer::new(cfg) {
            Ok(a) => match a.check().await {
                Ok(m) => (
                    Arc::new(a),
                    format!(
                        "Claude analysis with {} (checked against /v1/models); the deterministic analyzer answers when it cannot",
                        m.id
                    ),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "Claude is not usable; using the deterministic analyzer");
                    (
                        deterministic(),
                        format!("deterministic analyzer (Claude unusable: {e})"),
                    )
                }
            },
            Err(e) => (
                deterministic(),
                format!("deterministic analyzer (Claude client: {e})"),
            ),
        }
    }
}

/// Where the state file of `drift-detector sandbox` lives.
pub(crate) fn sandbox_state_file(state_dir: &Path) -> PathBuf {
    state_dir.join("sandbox.json")
}

/// The demo workloads (backend-api, frontend-web, database-postgres in drift-test).
pub(crate) const WORKLOADS: &str = include_str!("../demo/test-workloads.yaml");

/// The detector's own manifests, as ConfigHub units.
pub(crate) const BASE_UNITS: [(&str, &str); 4] = [
    (
        "drift-detector-namespace",
        include_str!("../deploy/namespace.yaml"),
    ),
    ("drift-detector-rbac", include_str!("../deploy/rbac.yaml")),
    (
        "drift-detector-statefulset",
        include_str!("../deploy/statefulset.yaml"),
    ),
    ("drift-detector-service", include_str!("../deploy/service.yaml")),
];
