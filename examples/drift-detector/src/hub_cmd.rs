//! `drift-detector hub ...`: the ConfigHub setup steps, idempotent, with progress output.

use std::path::PathBuf;

use anyhow::Context as _;
use drift_confighub::environments::{Chain, SetupReport};
use drift_confighub::setup::{self, UnitSpec};
use drift_confighub::{ConfigHubClient, UnitQuery};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use crate::common::HubArgs;

/// Sets ConfigHub up for drift-detector. Every step is idempotent: running it again changes nothing.
///
/// Examples:
///   export CUB_TOKEN=$(cub auth get-token)
///   drift-detector hub install-base && drift-detector hub install-envs
///   drift-detector hub deploy-test && drift-detector hub publish test --target my-cluster
///   drift-detector hub promote dev staging
///
/// ConfigHub (API v0.8) applies nothing itself: configuration reaches a cluster when a Release of a
/// space is published and the cluster's GitOps agent (Argo CD, Flux) pulls it.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct HubCmdArgs {
    #[command(flatten)]
    pub hub: HubArgs,
    /// Project prefix of the space slugs (`<project>-base`, `-dev`, ...).
    #[arg(long, env = "CUB_PROJECT", default_value = "drift-detector", global = true)]
    pub project: String,
    /// Use the ConfigHub simulator (and cluster) of a running `drift-detector sandbox --hub`.
    #[arg(long, global = true)]
    pub sandbox: bool,
    /// Where `drift-detector sandbox` recorded its addresses.
    #[arg(long, default_value = ".drift-detector", global = true)]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub step: HubStep,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum HubStep {
    /// The base space with the detector's own units (namespace, RBAC, Deployment, Service), and the
    /// drift-records space with the named drift filters.
    InstallBase,
    /// dev → staging → prod spaces, each unit cloned from the space before.
    InstallEnvs {
        /// Environments after base, in order.
        #[arg(long, value_delimiter = ',', default_value = "dev,staging,prod")]
        envs: Vec<String>,
    },
    /// Publishes a Release of an environment's space: every unit assigned to its release Target, at
    /// head. The cluster's GitOps agent then syncs it. (Was `apply-all`: ConfigHub no longer applies.)
    #[command(alias = "apply-all")]
    Publish {
        /// The environment (`base`, `dev`, `staging`, `prod`, or `test` for deploy-test's space).
        env: String,
        /// Connect the space to this Target first (created if missing; made the release Target and set
        /// on every unit). With --sandbox: k8s-sandbox.
        #[arg(long)]
        target: Option<String>,
    },
    /// Rolls a unit back to the revision before its last release and publishes (when nothing else in
    /// the space is unreleased).
    Rollback {
        /// The environment.
        env: String,
        /// The unit slug.
        unit: String,
        /// Why (recorded as the revision's description).
        #[arg(long, default_value = "rollback requested with drift-detector hub rollback")]
        reason: String,
        /// Validate only.
        #[arg(long)]
        dry_run: bool,
    },
    /// Upgrades the units of TO whose upstream in FROM has changed (a three-way merge), then publishes
    /// a Release of TO.
    Promote {
        from: String,
        to: String,
        /// Validate only.
        #[arg(long)]
        dry_run: bool,
    },
    /// Reverts every open drift a named filter selects (replica-drifts, critical-drifts, ...): one
    /// guarded patch per drift sent to the cluster, each dry-run first, with a result per drift.
    Revert {
        /// critical-drifts, resource-drifts, replica-drifts, security-drift, production-drift,
        /// auto-correctable or manual-review.
        filter: String,
        /// The drift-records space (default `<project>-drift-records`).
        #[arg(long)]
        records_space: Option<String>,
        /// The cluster the drifts are in (default: the sandbox's with --sandbox, else the usual places).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Validate only.
        #[arg(long)]
        dry_run: bool,
    },
    /// The test workloads (backend-api 3 replicas, frontend-web 2, database-postgres 1, namespace
    /// drift-test) as units of `<project>-test`.
    DeployTest {
        /// Then scale backend-api to 5 and frontend-web to 1 in the cluster, behind ConfigHub's back.
        #[arg(long)]
        with_drift: bool,
        /// Kubeconfig for --with-drift (default: the sandbox's with --sandbox, else the usual places).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
}

fn sandbox_state(args: &HubCmdArgs) -> anyhow::Result<serde_json::Value> {
    let file = crate::common::sandbox_state_file(&args.state_dir);
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "no running sandbox found ({}): start `drift-detector sandbox --hub` first",
            file.display()
        )
    })?;
    Ok(serde_json::from_str(&text)?)
}

fn client(args: &HubCmdArgs) -> anyhow::Result<ConfigHubClient> {
    if args.sandbox {
        let s = sandbox_state(args)?;
        let url = s["hubUrl"].as_str().context("the sandbox runs without --hub")?;
        let token = s["hubToken"].as_str().unwrap_or_default();
        return Ok(ConfigHubClient::new(
            drift_confighub::ClientConfig::default()
                .base_url(url)
                .token(token),
        )?);
    }
    args.hub.client()
}

fn print_report(r: &SetupReport) {
    crate::out(&r.to_string());
    let changed = r.changed().len();
    crate::out(&format!(
        "{changed} changed, {} unchanged\n",
        r.steps.len() - changed
    ));
}

pub(crate) async fn run(args: HubCmdArgs) -> anyhow::Result<i32> {
    let c = client(&args)?;
    let chain = Chain::standard(args.project.clone());
    let space_of = |env: &str| {
        if env == "test" {
            format!("{}-test", args.project)
        } else {
            chain.space_slug(env)
        }
    };
    match &args.step {
        HubStep::InstallBase => {
            crate::out(&format!(
                "installing {} and {} on {}\n",
                chain.space_slug("base"),
                setup::records_space(&args.project),
                c.base_url()
            ));
            let units: Vec<UnitSpec> = crate::common::BASE_UNITS
                .iter()
                .map(|(slug, data)| {
                    UnitSpec::new(
                        *slug,
                        *data,
                        &[
                            ("app", "drift-detector"),
                            ("type", "devops-app"),
                            ("tier", "critical"),
                        ],
                    )
                })
                .collect();
            print_report(&setup::install_base(&c, &args.project, &units).await?);
        }
        HubStep::InstallEnvs { envs } => {
            let chain = Chain::new(args.project.clone(), envs.iter().cloned());
            crate::out(&format!(
                "creating {}\n",
                chain
                    .environments
                    .iter()
                    .map(|e| chain.space_slug(e))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ));
            print_report(&setup::create_environments(&c, &chain).await?);
        }
        HubStep::Publish { env, target } => {
            let space = space_of(env);
            let target = target
                .clone()
                .or_else(|| args.sandbox.then(|| "k8s-sandbox".to_string()));
            if let Some(t) = target {
                print_report(&setup::connect_target(&c, &space, &t).await?);
            }
            crate::out(&format!("publishing a Release of {space}\n"));
            let r = setup::publish_space(&c, &space, "drift-detector hub publish").await?;
            if r.message.is_empty() {
                crate::out(&format!(
                    "release {} published: {} units (its GitOps agent syncs it into the cluster)\n",
                    r.release.release_num, r.release.unit_count
                ));
            } else {
                crate::out(&format!("release {}: {}\n", r.release.release_num, r.message));
            }
        }
        HubStep::Rollback {
            env,
            unit,
            reason,
            dry_run,
        } => {
            let space = c.require_space(&space_of(env)).await?;
            let u = c
                .unit_by_slug(&space.space_id, unit)
                .await?
                .with_context(|| format!("no unit {unit} in {}", space.slug))?;
            let rem = drift_confighub::ConfigHubRemediator::new(
                c.clone(),
                drift_confighub::RemediatorConfig::default(),
            );
            let r = rem
                .rollback(&space.space_id, &u.unit_id, reason, *dry_run)
                .await?;
            crate::out(&format!(
                "{unit}: revision {} restores the revision before the last release; {}\n",
                r.unit.head_revision_num, r.note
            ));
        }
        HubStep::Promote { from, to, dry_run } => {
            let r = drift_confighub::environments::promote(&c, &chain, from, to, *dry_run).await?;
            let mut failed = 0;
            for i in &r.upgraded.items {
                match (&i.unit, &i.error) {
                    (_, Some(e)) => {
                        failed += 1;
                        crate::out(&format!("   FAILED  {}\n", e.message));
                    }
                    (Some(u), None) => crate::out(&format!(
                        " upgraded  {} (revision {}{})\n",
                        u.slug,
                        u.head_revision_num,
                        if *dry_run { ", dry run" } else { "" }
                    )),
                    _ => {}
                }
            }
            crate::out(&format!("{}\n", r.note));
            if failed > 0 {
                return Ok(1);
            }
        }
        HubStep::Revert {
            filter,
            records_space,
            kubeconfig,
            dry_run,
        } => {
            let Some(f) = drift_core::policy::NamedFilter::from_slug(filter) else {
                let all: Vec<&str> = drift_core::policy::NamedFilter::ALL
                    .iter()
                    .map(|f| f.slug())
                    .collect();
                anyhow::bail!("no filter {filter}: use one of {}", all.join(", "));
            };
            let space = records_space
                .clone()
                .unwrap_or_else(|| setup::records_space(&args.project));
            let log = drift_confighub::ConfigHubDriftLog::connect(c.clone(), &space).await?;
            let path = match kubeconfig {
                Some(p) => Some(p.clone()),
                None if args.sandbox => sandbox_state(&args)?["kubeconfig"].as_str().map(PathBuf::from),
                None => None,
            };
            let kube = crate::common::kube_client(path.as_deref(), None).await?;
            let rem = drift_confighub::ConfigHubRemediator::new(
                c.clone(),
                drift_confighub::RemediatorConfig::default(),
            )
            .with_cluster(std::sync::Arc::new(drift_kube::KubeRemediator::new(kube)));
            let mode = if *dry_run {
                drift_core::ports::RemediationMode::DryRun
            } else {
                drift_core::ports::RemediationMode::Apply
            };
            let out = rem
                .revert_filter(&log, f, mode, "drift-detector hub revert")
                .await?;
            if out.is_empty() {
                crate::out(&format!("no open drift in {filter}\n"));
            }
            let mut failed = 0;
            for o in &out {
                crate::out(&format!(
                    "{:>10}  {} {}: {}\n",
                    status_word(o.status),
                    o.unit,
                    o.drift_ids.join(", "),
                    o.message
                ));
                failed += usize::from(matches!(
                    o.status,
                    drift_core::ports::RemediationStatus::Failed
                        | drift_core::ports::RemediationStatus::Conflict
                ));
            }
            if failed > 0 {
                return Ok(1);
            }
        }
        HubStep::DeployTest {
            with_drift,
            kubeconfig,
        } => {
            let space = space_of("test");
            crate::out(&format!("deploying the test workloads as units of {space}\n"));
            print_report(
                &setup::deploy_test_workloads(&c, &args.project, &space, crate::common::WORKLOADS).await?,
            );
            let units: Vec<String> = c
                .list_units(&c.require_space(&space).await?.space_id, &UnitQuery::default())
                .await?
                .into_iter()
                .map(|u| u.unit.slug)
                .collect();
            crate::out(&format!("units: {}\n", units.join(", ")));
            // Released when the space is connected to a cluster (with --sandbox it always is): the
            // GitOps agent then puts the workloads in the cluster.
            if c.require_space(&space).await?.release_target_id.is_some() {
                let r = setup::publish_space(&c, &space, "drift-detector hub deploy-test").await?;
                crate::out(&format!(
                    "release {} of {space}: {}\n",
                    r.release.release_num,
                    if r.message.is_empty() {
                        "published"
                    } else {
                        r.message.as_str()
                    }
                ));
            } else {
                crate::out("(release them with `drift-detector hub publish test --target <cluster>`)\n");
            }
            if *with_drift {
                let path = match kubeconfig {
                    Some(p) => Some(p.clone()),
                    None if args.sandbox => sandbox_state(&args)?["kubeconfig"].as_str().map(PathBuf::from),
                    None => None,
                };
                let kube = crate::common::kube_client(path.as_deref(), None).await?;
                let ar = ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk("apps", "v1", "Deployment"),
                    "deployments",
                );
                let api: Api<DynamicObject> = Api::namespaced_with(kube, "drift-test", &ar);
                // The GitOps agent syncs a moment after the release.
                for name in ["backend-api", "frontend-web"] {
                    for _ in 0..100 {
                        if api.get_opt(name).await?.is_some() {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
                for (name, n) in [("backend-api", 5), ("frontend-web", 1)] {
                    api.patch_scale(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"replicas": n}})),
                    )
                    .await
                    .with_context(|| format!("scaling {name} (publish the units first)"))?;
                    crate::out(&format!(
                        "scaled {name} to {n} in the cluster, behind ConfigHub's back\n"
                    ));
                }
            }
        }
    }
    Ok(0)
}

/// A remediation status for people.
pub(crate) fn status_word(s: drift_core::ports::RemediationStatus) -> &'static str {
    use drift_core::ports::RemediationStatus as S;
    match s {
        S::Applied => "applied",
        S::DryRunOk => "dry-run ok",
        S::Conflict => "conflict",
        S::Failed => "FAILED",
        S::Skipped => "skipped",
        _ => "done",
    }
}
