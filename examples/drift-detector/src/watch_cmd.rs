//! `drift-detector watch`: the daemon.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use drift_core::detector::DetectorConfig;
use drift_core::ports::{DesiredStore, DriftLog, LiveSource, Remediator};
use drift_kube::{KubeLiveSource, KubeRemediator, LiveSourceConfig};
use tokio::sync::watch;

use crate::alerts::AlertSink;
use crate::common::{ClaudeArgs, ClusterArgs, HubArgs};
use crate::config::FileConfig;
use crate::engine::{self, Parts};
use crate::store::Store;

/// Where fixes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RemediateVia {
    /// Through ConfigHub: the guarded patch of the drifted fields to the cluster, the audit line and
    /// outcome in ConfigHub; adopting writes the live value into the unit and releases it. Needs
    /// ConfigHub and rbac-remediate.yaml.
    Confighub,
    /// Patch the cluster directly (guarded JSON Patch, dry run first); needs rbac-remediate.yaml.
    Cluster,
    /// Never fix; alert only.
    None,
}

/// Watches a cluster and reports drift the moment it happens; serves the dashboard, the API,
/// /health, /ready and /metrics.
///
/// Desired state comes from ConfigHub (`CUB_TOKEN` and `CUB_SPACE`) or from `--desired` manifests.
/// Without ConfigHub the drift history lives in `--state-dir`. Stop with SIGTERM or Ctrl-C: in-flight
/// history is written first.
///
/// Examples:
///   drift-detector watch --desired ./manifests -n shop
///   CUB_TOKEN=$(cub auth get-token) CUB_SPACE=shop-prod drift-detector watch --auto-fix
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct WatchArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Namespaces to watch (default: all).
    #[arg(short = 'n', long = "namespace", env = "NAMESPACE", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Manifests (files or directories) as the desired state, instead of ConfigHub.
    #[arg(long, value_name = "PATH")]
    pub desired: Vec<PathBuf>,
    #[command(flatten)]
    pub hub: HubArgs,
    /// ConfigHub spaces whose units are the desired state.
    #[arg(long = "cub-space", env = "CUB_SPACE", value_delimiter = ',')]
    pub spaces: Vec<String>,
    /// Only units matching this ConfigHub where-clause (e.g. "Labels.tier = 'critical'").
    #[arg(long = "cub-where")]
    pub cub_where: Option<String>,
    /// The ConfigHub space that holds drift records (default: `<first space>-drift-records`).
    #[arg(long = "records-space")]
    pub records_space: Option<String>,
    /// This cluster's name, labelled on every drift record (`cluster`), so one records space serves a
    /// fleet of detectors.
    #[arg(long = "cluster-name", env = "CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Fix auto-correctable drifts without waiting for a person (never critical ones).
    #[arg(long, env = "AUTO_FIX")]
    pub auto_fix: Option<bool>,
    /// Where fixes go (default: confighub with ConfigHub, otherwise none).
    #[arg(long, value_enum)]
    pub remediate: Option<RemediateVia>,
    /// YAML config file: ignore rules, policy, prices, managers, limits (see the README).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub claude: ClaudeArgs,
    /// Address of the HTTP server.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Bearer token for changes through the API and dashboard (and for reads when --listen is not
    /// loopback). Default: generated and written to `<state-dir>/dashboard.token` (0600), never logged.
    #[arg(long, env = "DRIFT_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the token (a mounted Secret); surrounding white space is ignored.
    #[arg(
        long,
        env = "DRIFT_DASHBOARD_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
    /// Connections served at once (more get a 503).
    #[arg(long, default_value_t = 512, hide = true)]
    pub max_connections: usize,
    /// Event streams (/api/events) served at once (more get a 503).
    #[arg(long, default_value_t = 32, hide = true)]
    pub max_event_streams: usize,
    /// Directory of the local state (history without ConfigHub; the spool with it).
    #[arg(long, default_value = ".drift-detector")]
    pub state_dir: PathBuf,
    /// Run with others on a coordination.k8s.io Lease: only the leader fixes and writes history.
    #[arg(long, conflicts_with = "sharding")]
    pub leader_elect: bool,
    /// Split the cluster with other replicas: each keeps a membership Lease
    /// (`<lease-name>-member-<identity>` in --lease-namespace), namespaces go to the live members by rendezvous hashing, and
    /// each replica watches, reports and fixes only its own (namespace-scoped watches). A dead
    /// replica's namespaces move within two lease periods. `-n` names the namespaces to split
    /// (default: those the desired state names). See the README, "Scaling out".
    #[arg(long, env = "DRIFT_SHARDING")]
    pub sharding: bool,
    /// Lease name (with --sharding: the group's name, the prefix of the membership Leases).
    #[arg(long, default_value = "drift-detector")]
    pub lease_name: String,
    /// Lease namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "drift-detector")]
    pub lease_namespace: String,
    /// This replica's identity in the lease (default: the host name and the process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
    /// Alerts as JSON POSTs to this URL (retried).
    #[arg(long, env = "DRIFT_WEBHOOK_URL")]
    pub webhook: Option<String>,
    /// Write each drift transition as a Kubernetes Event on the drifted object (`kubectl describe`
    /// and `kubectl get events` show it). Needs `create` on `events`.
    #[arg(long, env = "DRIFT_KUBE_EVENTS", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub kube_events: bool,
}

/// Desired state, history, spool, ConfigHub remediator, ConfigHub counters, and a description.
type Sources = (
    Arc<dyn DesiredStore>,
    Arc<dyn DriftLog>,
    Option<Arc<Store>>,
    Option<Arc<dyn Remediator>>,
    Option<Arc<drift_confighub::ClientStats>>,
    String,
);

pub(crate) async fn run(args: WatchArgs) -> anyhow::Result<i32> {
    let file = FileConfig::load(args.config.as_deref())?;
    // Before anything is read: the install's key, so hashes agree across restarts and replicas.
    let key_source =
        crate::secrets::install_redactor(Some(&args.state_dir), file.sensitive_names.as_deref())?;
    tracing::info!(?key_source, "secret values are hashed with the install's key");
    let engine_cfg = file.engine(
        &args
            .config
            .as_ref()
            .map_or_else(|| "defaults".into(), |p| p.display().to_string()),
    )?;
    let client = args.cluster.client().await?;
    let mut live_cfg = LiveSourceConfig::default()
        .namespaces(args.namespaces.clone())
        .sharded(args.sharding);
    live_cfg = live_cfg.keep_managers(file.appliers.iter().chain(&file.ignore_managers).cloned());
    let live: Arc<dyn LiveSource> = Arc::new(KubeLiveSource::new(client.clone(), live_cfg)?);

    let use_hub = args.desired.is_empty();
    let state = Arc::new(Store::open(&args.state_dir)?);
    let (desired, log, spool, hub_remediator, hub_stats, mode): Sources = if use_hub {
        if args.spaces.is_empty() {
            anyhow::bail!(
                "no desired state: pass --desired PATH, or set CUB_TOKEN and CUB_SPACE for ConfigHub"
            );
        }
        let hub = args.hub.client()?;
        args.hub.check_server(&hub).await?;
        let mut dcfg = drift_confighub::DesiredStoreConfig::spaces(args.spaces.clone())
            .revision(args.hub.desired_revision);
        if let Some(w) = &args.cub_where {
            dcfg = dcfg.with_where(w.clone());
        }
        let records = args
            .records_space
            .clone()
            .unwrap_or_else(|| format!("{}-drift-records", args.spaces[0]));
        // ConfigHub down at start is an outage to ride out, not a reason to crash-loop: the daemon
        // starts, detects, keeps events in the spool and connects once ConfigHub answers.
        let log = match tokio::time::timeout(
            std::time::Duration::from_secs(10),
            drift_confighub::ConfigHubDriftLog::connect(hub.clone(), &records),
        )
        .await
        {
            Ok(Ok(mut l)) => {
                if let Some(name) = &args.cluster_name {
                    l = l.with_cluster(name.clone());
                }
                crate::hub_log::LazyHubLog::opened(l, hub.clone(), &records)
            }
            Ok(Err(e @ drift_confighub::ConfigHubError::Unauthorized { .. })) => {
                return Err(
                    anyhow::Error::new(e).context(format!("opening the drift records space {records}"))
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, space = %records, "ConfigHub is not reachable: starting anyway, events wait in the spool");
                crate::hub_log::LazyHubLog::new(hub.clone(), &records, args.cluster_name.clone())
            }
            Err(_) => {
                tracing::warn!(space = %records, "ConfigHub did not answer within 10 s: starting anyway, events wait in the spool");
                crate::hub_log::LazyHubLog::new(hub.clone(), &records, args.cluster_name.clone())
            }
        };
        // ConfigHub applies nothing: "ConfigHub wins" is the engine's guarded patch sent to the cluster.
        let rem = drift_confighub::ConfigHubRemediator::new(
            hub.clone(),
            drift_confighub::RemediatorConfig::default().desired(args.hub.desired_revision),
        )
        .with_cluster(Arc::new(KubeRemediator::new(client.clone())));
        let mode = format!(
            "ConfigHub {} (spaces {}; records in {records})",
            args.hub.cub_url,
            args.spaces.join(", ")
        );
        (
            Arc::new(drift_confighub::ConfigHubDesiredStore::new(hub.clone(), dcfg)),
            Arc::new(log),
            Some(state.clone()),
            Some(Arc::new(rem)),
            Some(hub.stats()),
            mode,
        )
    } else {
        let ns = args
            .namespaces
            .first()
            .cloned()
            .unwrap_or_else(|| "default".into());
        let mode = format!("manifests {:?}; history in {}", args.desired, state.path());
        (
            Arc::new(crate::files::FileDesiredStore::new(args.desired.clone(), &ns)),
            state.clone(),
            None,
            None,
            None,
            mode,
        )
    };
    let remediator: Option<Arc<dyn Remediator>> = match args.remediate.unwrap_or(if use_hub {
        RemediateVia::Confighub
    } else {
        RemediateVia::None
    }) {
        RemediateVia::Confighub => {
            if hub_remediator.is_none() {
                anyhow::bail!("--remediate confighub needs ConfigHub (CUB_TOKEN and CUB_SPACE)");
            }
            hub_remediator
        }
        RemediateVia::Cluster => Some(Arc::new(KubeRemediator::new(client.clone()))),
        RemediateVia::None => None,
    };

    let mut detector = DetectorConfig::default();
    if let Some(p) = file.policy.clone() {
        detector.policy = p;
    }
    if let Some(a) = args.auto_fix {
        detector.policy.auto_fix = a;
    }
    if let Some(p) = file.prices {
        detector.prices = p;
    }
    if let Some(r) = file.rate_limit {
        detector.rate_limit = r;
    }
    if let Some(f) = file.flap_guard {
        detector.flap_guard = f;
    }
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "drift-detector".into());
        format!("{host}-{}", std::process::id())
    });
    detector.actor = format!("drift-detector/{identity}");

    let (analyzer, analyzer_note) = args.claude.analyzer().await;
    let alerts = match args.webhook.clone().or(file.webhook.clone()) {
        Some(url) => AlertSink::webhook(url),
        None => AlertSink::log_only(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let leader = if args.leader_elect {
        let mut cfg = crate::leader::LeaseConfig::new(&args.lease_namespace, &args.lease_name, &identity);
        cfg.lease_duration = std::time::Duration::from_secs(args.lease_seconds.max(2));
        cfg.renew_deadline = cfg.lease_duration * 2 / 3;
        cfg.retry_period = (cfg.lease_duration / 5).max(std::time::Duration::from_millis(200));
        crate::leader::spawn(client.clone(), cfg, stop_rx.clone())
    } else {
        // Without an election this replica always leads (the sender goes away; the value stays).
        watch::channel(true).1
    };
    // In a pod: label it with its role, so the Service routes the dashboard and approvals to the leader.
    if let (Ok(pod), Ok(ns)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE")) {
        label_pod_with_role(client.clone(), ns, pod, leader.clone());
    }
    let parts = Parts {
        live,
        desired,
        log: log.clone(),
        spool,
        remediator: remediator.clone(),
        analyzer,
        alerts,
        leader,
        detector: detector.clone(),
        engine: engine_cfg,
        confighub_stats: hub_stats,
        kube_events: args
            .kube_events
            .then(|| drift_kube::KubeEventRecorder::new(client.clone(), identity.clone())),
        shard: args.sharding.then(|| {
            let cfg = crate::membership::MembershipConfig {
                namespace: args.lease_namespace.clone(),
                group: args.lease_name.clone(),
                identity: identity.clone(),
                lease_duration: std::time::Duration::from_secs(args.lease_seconds.max(2)),
            };
            tracing::info!(lease = %cfg.lease_name(), namespace = %cfg.namespace, "sharding: joining the group");
            engine::ShardParts {
                identity: identity.clone(),
                members: crate::membership::spawn(client.clone(), cfg, stop_rx.clone()),
                namespaces: args.namespaces.clone(),
            }
        }),
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let handle = Arc::new(engine::start(parts, metrics));

    let (token, token_note) = dashboard_token(&args)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%mode, "desired state");
    tracing::info!(analysis = %analyzer_note, "analysis");
    tracing::info!(
        auto_fix = detector.policy.auto_fix,
        remediator = remediator.as_ref().map_or("none", |r| r.name()),
        leader_election = args.leader_elect,
        "remediation"
    );
    #[allow(clippy::print_stderr)] // where the dashboard is, once, for a person; never the token
    {
        eprintln!("dashboard: http://{addr}/  ({token_note})");
    }
    let limits = crate::http::Limits {
        connections: args.max_connections.max(1),
        streams: args.max_event_streams,
        ..crate::http::Limits::default()
    };
    let app = Arc::new(
        crate::http::App::new(handle.clone(), log, token, mode)
            .bound_to(addr)
            .limits(limits),
    );
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(crate::http::serve(listener, app, async move {
        let _ = http_stop.changed().await;
    }));

    wait_for_signal().await;
    exit_on_second_signal();
    tracing::info!("stopping: writing in-flight history (a second signal exits at once)");
    let _ = stop_tx.send(true);
    let _ = server.await;
    match Arc::try_unwrap(handle) {
        Ok(h) => h.shutdown().await,
        Err(_) => tracing::warn!("the pipeline is still referenced; it stops with the process"),
    }
    // Give the lease release a moment.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tracing::info!("stopped");
    Ok(0)
}

/// The token for changes: `--token`/`DRIFT_DASHBOARD_TOKEN`, `--token-file`, or one generated into
/// `<state-dir>/dashboard.token`; and where it came from, for the log (never the token itself).
fn dashboard_token(args: &WatchArgs) -> anyhow::Result<(String, String)> {
    if let Some(t) = &args.token {
        let t = t.trim();
        if t.is_empty() {
            anyhow::bail!(
                "DRIFT_DASHBOARD_TOKEN (or --token) is set but empty: set a token, or unset it to have one generated"
            );
        }
        return Ok((t.to_string(), "token from DRIFT_DASHBOARD_TOKEN".into()));
    }
    if let Some(path) = &args.token_file {
        match std::fs::read_to_string(path) {
            Ok(t) if t.trim().is_empty() => anyhow::bail!("the token file {} is empty", path.display()),
            Ok(t) => return Ok((t.trim().to_string(), format!("token from {}", path.display()))),
            // An optional Secret that is not there: generate one, as without a file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(file = %path.display(), "no token file: generating a token");
            }
            Err(e) => return Err(anyhow::anyhow!("reading the token file {}: {e}", path.display())),
        }
    }
    crate::secrets::private_dir(&args.state_dir)?;
    let path = args.state_dir.join("dashboard.token");
    let token = crate::http::random_token();
    crate::secrets::private_file(&path)?;
    std::fs::write(&path, format!("{token}\n")).with_context(|| format!("writing {}", path.display()))?;
    Ok((token, format!("token for changes in {}", path.display())))
}

/// Keeps the pod's `drift-detector.io/role` label (`leader` or `standby`) in step with the election.
fn label_pod_with_role(
    client: kube::Client,
    namespace: String,
    pod: String,
    mut leader: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let ar = kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("", "v1", "Pod"),
            "pods",
        );
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(client, &namespace, &ar);
        let mut warned = false;
        loop {
            let role = if *leader.borrow_and_update() {
                "leader"
            } else {
                "standby"
            };
            let patch = serde_json::json!({"metadata": {"labels": {"drift-detector.io/role": role}}});
            match api
                .patch(
                    &pod,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => tracing::info!(%pod, role, "pod labelled with its role"),
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(%pod, error = %e, "could not label the pod with its role (the Service routes to the leader by it)");
                }
                Err(_) => {}
            }
            if leader.changed().await.is_err() {
                return;
            }
        }
    });
}

/// After the first SIGTERM or Ctrl-C: a second one exits at once (130), whatever is still running.
pub(crate) fn exit_on_second_signal() {
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        #[allow(clippy::disallowed_methods)] // a person asked twice
        std::process::exit(130);
    });
}

/// SIGTERM or Ctrl-C.
pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
