//! `drift-detector scan`: one pass against a cluster, for CI.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context as _;
use drift_core::DiffEngine;
use drift_core::deferred::Deferred;
use drift_core::ports::DesiredStore;
use drift_kube::{KubeLiveSource, LiveSourceConfig};
use futures::StreamExt as _;

use crate::common::{ClusterArgs, HubArgs};
use crate::report::{DiffOutput, OutputFormat};

/// Compares a cluster with the desired state once and prints the report.
///
/// Exit status: 0 in sync, 1 drift found, 2 error.
///
/// Examples:
///   drift-detector scan --desired ./manifests -n shop
///   drift-detector scan --kubeconfig prod.kubeconfig --desired k8s/ --output json | jq .summary
///   CUB_TOKEN=... drift-detector scan --cub-space shop-prod
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct ScanArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Namespace to compare; manifests without a namespace take it (as with kubectl).
    #[arg(short = 'n', long, env = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Manifests (files or directories) as the desired state.
    #[arg(long, value_name = "PATH")]
    pub desired: Vec<PathBuf>,
    #[command(flatten)]
    pub hub: HubArgs,
    /// ConfigHub spaces whose units are the desired state (instead of --desired).
    #[arg(long = "cub-space", env = "CUB_SPACE", value_delimiter = ',')]
    pub spaces: Vec<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Also list live objects no manifest describes.
    #[arg(long)]
    pub show_unmanaged: bool,
}

pub(crate) async fn run(args: ScanArgs) -> anyhow::Result<i32> {
    let mut errors = Vec::new();
    // Both sides are held as compact text, each object parsed when its pair is compared: a large
    // cluster's list is never held parsed all at once.
    let mut desired = Deferred::default();
    if !args.desired.is_empty() {
        let ns = args.namespace.clone().unwrap_or_else(|| "default".into());
        let store = crate::files::FileDesiredStore::new(args.desired.clone(), &ns);
        let (tx, mut rx) = futures::channel::mpsc::channel(1);
        let (loaded, ()) = tokio::join!(store.load_parts(tx), async {
            while let Some(part) = rx.next().await {
                for r in part {
                    desired.push(r.resource);
                }
            }
        });
        errors.extend(loaded?.iter().map(ToString::to_string));
    } else if !args.spaces.is_empty() {
        let hub = args.hub.client()?;
        args.hub.check_server(&hub).await?;
        let store = drift_confighub::ConfigHubDesiredStore::new(
            hub,
            drift_confighub::DesiredStoreConfig::spaces(args.spaces.clone())
                .revision(args.hub.desired_revision),
        );
        let set = store
            .load()
            .await
            .context("loading the desired state from ConfigHub")?;
        errors.extend(set.errors.iter().map(ToString::to_string));
        for r in set.resources {
            desired.push(r.resource);
        }
    } else {
        anyhow::bail!("no desired state: pass --desired PATH, or --cub-space (with CUB_TOKEN) for ConfigHub");
    }
    // List only what the desired state has (custom kinds found through discovery, with their CRDs
    // for the schema defaults), plus autoscalers, which own replicas.
    let mut kinds: BTreeSet<(String, String)> = desired
        .keys()
        .map(|k| (k.group.clone(), k.kind.clone()))
        .collect();
    if kinds
        .iter()
        .any(|(g, k)| drift_core::kinds::lookup(g, k).is_none())
    {
        kinds.insert(("apiextensions.k8s.io".into(), "CustomResourceDefinition".into()));
    }
    kinds.insert(("autoscaling".into(), "HorizontalPodAutoscaler".into()));
    let client = args.cluster.client().await?;
    let mut cfg = LiveSourceConfig::default().kinds(kinds);
    if let Some(ns) = &args.namespace {
        cfg = cfg.namespaces([ns.clone()]);
    }
    let source = KubeLiveSource::new(client, cfg)?;
    let mut live = Deferred::default();
    let skipped = source
        .list_served_each(&mut |r| live.push(r))
        .await
        .context("listing the cluster")?;
    // Objects of a kind the cluster does not serve (or RBAC hides) cannot be judged: an error that
    // names them, never "missing from live".
    for (g, k, reason) in &skipped {
        let n = desired
            .keys()
            .filter(|key| key.group == *g && key.kind == *k)
            .count();
        if n > 0 {
            let kind = if g.is_empty() {
                k.clone()
            } else {
                format!("{k}.{g}")
            };
            errors.push(format!(
                "{kind}: {reason}; {n} desired object{} not compared",
                if n == 1 { "" } else { "s" }
            ));
        }
        desired.retain(|key| !(key.group == *g && key.kind == *k));
    }
    let (reports, mut notes) = crate::diff_cmd::compare(
        &DiffEngine::default(),
        &mut desired,
        &[],
        &mut live,
        args.namespace.as_deref(),
        args.show_unmanaged,
        false,
    );
    errors.append(&mut notes.errors);
    let output = DiffOutput::new(reports, errors);
    let text = output.render(args.output, crate::report::stdout_color(), args.show_unmanaged)?;
    crate::print_stdout(&text)?;
    Ok(if !output.errors.is_empty() {
        2
    } else if output.drifted {
        1
    } else {
        0
    })
}
