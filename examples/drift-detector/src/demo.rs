//! `drift-detector demo`: the whole story on this machine, offline, every step verified.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use drift_confighub::environments::Chain;
use drift_confighub::fake::{FakeHub, FakeHubConfig};
use drift_confighub::setup::{self, UnitSpec};
use drift_confighub::{
    ConfigHubClient, ConfigHubDesiredStore, ConfigHubDriftLog, ConfigHubRemediator, DesiredStoreConfig,
    UnitQuery,
};
use drift_core::detector::DetectorConfig;
use drift_core::policy::NamedFilter;
use drift_core::ports::{DriftEventKind, DriftLog, HistoryQuery};
use drift_kube::sandbox::{Sandbox, SandboxConfig};
use drift_kube::{KubeLiveSource, LiveSourceConfig};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;

use crate::engine::{self, Handle, Parts, UiEvent};

const PROJECT: &str = "drift-demo";
const NAMESPACE: &str = "drift-test";
/// The walkthrough's steps.
const STEPS: usize = 6;

/// Runs the demo: an in-process sandbox cluster and ConfigHub, a drift made through the Kubernetes
/// API, found, analysed, fixed through ConfigHub and verified.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// After the walkthrough, keep serving the dashboard and the sandbox (until Ctrl-C).
    #[arg(long)]
    pub keep_running: bool,
    /// Dashboard address with --keep-running.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Output: the walkthrough for people, or the verified steps as JSON.
    #[arg(short, long, value_enum, default_value_t = DemoOutput::Text)]
    pub output: DemoOutput,
    /// Fix unattended (AUTO_FIX) instead of approving each fix as an operator would.
    #[arg(long)]
    pub auto_fix: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DemoOutput {
    Text,
    Json,
}

/// One verified fact.
#[derive(Debug, Clone, Serialize)]
struct Check {
    what: String,
    ok: bool,
    detail: String,
}

/// One step of the walkthrough.
#[derive(Debug, Clone, Serialize)]
struct Step {
    number: usize,
    title: String,
    lines: Vec<String>,
    checks: Vec<Check>,
}

#[derive(Debug, Default, Serialize)]
struct Walkthrough {
    steps: Vec<Step>,
    passed: bool,
    #[serde(skip)]
    text: bool,
}

impl Walkthrough {
    fn step(&mut self, title: &str) {
        let number = self.steps.len() + 1;
        if self.text {
            crate::out(&format!("\n[{number}/{STEPS}] {title}\n"));
        }
        self.steps.push(Step {
            number,
            title: title.into(),
            lines: Vec::new(),
            checks: Vec::new(),
        });
    }
    fn say(&mut self, line: impl Into<String>) {
        let line = line.into();
        if self.text {
            crate::out(&format!("      {line}\n"));
        }
        if let Some(s) = self.steps.last_mut() {
            s.lines.push(line);
        }
    }
    fn check(&mut self, what: impl Into<String>, ok: bool, detail: impl Into<String>) -> bool {
        let (what, detail) = (what.into(), detail.into());
        if self.text {
            let mark = if ok { "✓" } else { "✗" };
            let tail = if detail.is_empty() {
                String::new()
            } else {
                format!(" — {detail}")
            };
            crate::out(&format!("      {mark} {what}{tail}\n"));
        }
        if let Some(s) = self.steps.last_mut() {
            s.checks.push(Check { what, ok, detail });
        }
        ok
    }
    fn failed(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.checks)
            .filter(|c| !c.ok)
            .count()
    }
    fn total(&self) -> usize {
        self.steps.iter().map(|s| s.checks.len()).sum()
    }
}

fn deploy_api(client: &kube::Client, kind: &str) -> Api<DynamicObject> {
    let plural = if kind == "StatefulSet" {
        "statefulsets"
    } else {
        "deployments"
    };
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", kind), plural);
    Api::namespaced_with(client.clone(), NAMESPACE, &ar)
}

async fn replicas(client: &kube::Client, kind: &str, name: &str) -> Option<i64> {
    deploy_api(client, kind)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|o| o.data["spec"]["replicas"].as_i64())
}

/// A replica count for people: `3`, or `none` when the object is not there.
fn count(n: Option<i64>) -> String {
    n.map_or_else(|| "none".to_string(), |n| n.to_string())
}

/// Waits until `kind/name` has `want` replicas in the cluster (the GitOps agent syncs a moment later).
async fn wait_replicas(
    client: &kube::Client,
    kind: &str,
    name: &str,
    want: i64,
    timeout: Duration,
) -> Option<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let n = replicas(client, kind, name).await;
        if n == Some(want) || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for UI events until `done` says so, or times out.
async fn wait_for(
    rx: &mut broadcast::Receiver<UiEvent>,
    timeout: Duration,
    mut done: impl FnMut(&UiEvent) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) => {
                if done(&ev) {
                    return true;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

async fn wait_ready(handle: &Handle, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(s) = handle.snapshot().await
            && s.ready
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let mut w = Walkthrough {
        text: args.output == DemoOutput::Text,
        ..Walkthrough::default()
    };
    if w.text {
        crate::out(
            "drift-detector demo\n\
             Runs against an in-process sandbox Kubernetes API server and an in-process ConfigHub simulator,\n\
             both on 127.0.0.1: no cluster, no account, no network needed. Every step is checked.\n",
        );
    }
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .context("starting the sandbox API server")?;
    let kube = sandbox.client().context("a client for the sandbox")?;
    let hub = FakeHub::start(FakeHubConfig::default().sync_delay(Duration::from_millis(10)))
        .await
        .context("starting the ConfigHub simulator")?;
    hub.on_release(crate::bridge::gitops_hook(kube.clone()));
    let c = ConfigHubClient::new(hub.client_config())?;
    let info = c.check_server().await?;
    let chain = Chain::standard(PROJECT);
    let prod = chain.space_slug("prod");
    let records_space = setup::records_space(PROJECT);

    // 1 ------------------------------------------------------------------------------------------
    w.step("Initialize ConfigHub resources");
    w.say(format!(
        "ConfigHub {} (the simulator of API v0.8: releases, data endpoints)",
        info.version
    ));
    let base_units: Vec<UnitSpec> = crate::common::BASE_UNITS
        .iter()
        .map(|(slug, data)| UnitSpec::new(*slug, *data, &[("app", "drift-detector"), ("type", "devops-app")]))
        .collect();
    let mut report = setup::install_base(&c, PROJECT, &base_units).await?;
    report.extend(
        setup::deploy_test_workloads(&c, PROJECT, &chain.space_slug("base"), crate::common::WORKLOADS)
            .await?,
    );
    report.extend(setup::create_environments(&c, &chain).await?);
    let prod_space = c.require_space(&prod).await?;
    let (critical, _) = c
        .ensure_filter(
            &prod_space.space_id,
            "critical-services",
            "Unit",
            "Labels.tier = 'critical'",
        )
        .await?;
    let spaces: Vec<String> = hub.spaces().into_iter().map(|s| s.slug).collect();
    w.say(format!("spaces: {}", spaces.join(", ")));
    w.say(format!(
        "{} entities created: base units, test workloads, clones down base → dev → staging → prod, filters",
        report.changed().len()
    ));
    let want_spaces: BTreeSet<String> = ["base", "dev", "staging", "prod", "drift-records"]
        .iter()
        .map(|e| format!("{PROJECT}-{e}"))
        .collect();
    w.check(
        "five spaces exist (base, dev, staging, prod, drift-records)",
        want_spaces.iter().all(|s| spaces.contains(s)),
        "",
    );
    let prod_units = hub.units(&prod);
    w.check(
        "prod holds the detector's 4 units and the 4 workload units, cloned from staging",
        prod_units.len() == 8 && prod_units.iter().all(|u| u.upstream_unit_id.is_some()),
        format!("{} units", prod_units.len()),
    );
    let records = c.require_space(&records_space).await?;
    let filters: BTreeSet<String> = c
        .list_filters(&records.space_id)
        .await?
        .into_iter()
        .map(|f| f.slug)
        .collect();
    w.check(
        "the named drift filters exist",
        NamedFilter::ALL.iter().all(|f| filters.contains(f.slug())),
        filters.iter().cloned().collect::<Vec<_>>().join(", "),
    );

    // 2 ------------------------------------------------------------------------------------------
    w.step("Discover critical services through a filter, release them, start watching");
    let found: Vec<String> = c
        .list_units(
            &prod_space.space_id,
            &UnitQuery::default().filter(critical.filter_id.clone()),
        )
        .await?
        .into_iter()
        .map(|u| u.unit.slug)
        .collect();
    w.say(format!(
        "filter critical-services ({}) selects: {}",
        critical.r#where,
        found.join(", ")
    ));
    let want: BTreeSet<&str> = ["backend-api", "frontend-web", "database-postgres"].into();
    w.check(
        "the filter finds backend-api, frontend-web and database-postgres",
        found.iter().map(String::as_str).collect::<BTreeSet<_>>() == want,
        "",
    );
    setup::connect_target(&c, &prod, "k8s-sandbox").await?;
    let published = setup::publish_space(&c, &prod, "drift-demo: first release of prod").await?;
    let synced = hub
        .wait_delivered(&published.release.release_id, Duration::from_secs(20))
        .await;
    w.say(format!(
        "published release {} of {prod} ({} units); the GitOps agent synced it into the sandbox cluster",
        published.release.release_num, published.release.unit_count
    ));
    w.check(
        "the release of prod reached the cluster",
        synced.is_ok(),
        synced.err().unwrap_or_default(),
    );
    let live_counts = [
        replicas(&kube, "Deployment", "backend-api").await,
        replicas(&kube, "Deployment", "frontend-web").await,
        replicas(&kube, "StatefulSet", "database-postgres").await,
    ];
    w.check(
        "live: backend-api 3 replicas, frontend-web 2, database-postgres 1",
        live_counts == [Some(3), Some(2), Some(1)],
        format!(
            "backend-api {}, frontend-web {}, database-postgres {}",
            count(live_counts[0]),
            count(live_counts[1]),
            count(live_counts[2])
        ),
    );

    let desired = ConfigHubDesiredStore::new(
        c.clone(),
        DesiredStoreConfig::spaces([prod.clone()])
            .with_where("Labels.tier = 'critical'")
            .poll_interval(Duration::from_millis(200)),
    );
    let desired_probe = desired.clone();
    let log = Arc::new(
        ConfigHubDriftLog::connect(c.clone(), &records_space)
            .await?
            .with_cluster("sandbox"),
    );
    // "ConfigHub wins": the engine's guarded patch goes to the cluster; the audit line to ConfigHub.
    let remediator = Arc::new(
        ConfigHubRemediator::new(c.clone(), drift_confighub::RemediatorConfig::default())
            .with_cluster(Arc::new(drift_kube::KubeRemediator::new(kube.clone()))),
    );
    let mut detector = DetectorConfig::default();
    detector.policy.auto_fix = args.auto_fix;
    detector.actor = "drift-detector/demo".into();
    let parts = Parts {
        live: Arc::new(KubeLiveSource::new(
            kube.clone(),
            LiveSourceConfig::default().namespaces([NAMESPACE]),
        )?),
        desired: Arc::new(desired),
        log: log.clone(),
        spool: Some(Arc::new(crate::store::Store::in_memory()?)),
        remediator: Some(remediator),
        analyzer: Arc::new(drift_core::analysis::DeterministicAnalyzer),
        alerts: crate::alerts::AlertSink::log_only(),
        leader: tokio::sync::watch::channel(true).1,
        detector,
        engine: drift_core::DiffEngine::default(),
        confighub_stats: Some(c.stats()),
        kube_events: Some(drift_kube::KubeEventRecorder::new(kube.clone(), "demo")),
        shard: None,
    };
    let handle = Arc::new(engine::start(parts, Arc::new(crate::metrics::Metrics::new())));
    let ready = wait_ready(&handle, Duration::from_secs(20)).await;
    let snap = handle.snapshot().await.context("the pipeline stopped")?;
    w.say(format!(
        "watching namespace {NAMESPACE} through Kubernetes watches; {} desired objects from ConfigHub",
        snap.tracked
    ));
    w.check(
        "the detector is ready and everything is in sync",
        ready && snap.open.is_empty(),
        format!("{} open drifts", snap.open.len()),
    );

    // 3 ------------------------------------------------------------------------------------------
    w.step("Detect drift made behind ConfigHub's back");
    let mut rx = handle.ui.subscribe();
    w.say("kubectl scale deployment/backend-api --replicas=5; kubectl scale deployment/frontend-web --replicas=1");
    let t0 = Instant::now();
    for (name, n) in [("backend-api", 5), ("frontend-web", 1)] {
        // What `kubectl scale` sends: a merge patch of the scale subresource; it names no field
        // manager, so the server records `kubectl`, from kubectl's User-Agent.
        let r = deploy_api(&kube, "Deployment")
            .patch_scale(
                name,
                &PatchParams {
                    field_manager: Some("kubectl".into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(json!({"spec": {"replicas": n}})),
            )
            .await;
        if let Err(e) = r {
            w.check(format!("scale {name}"), false, e.to_string());
        }
    }
    let mut opened: Vec<(String, String, Duration)> = Vec::new();
    wait_for(&mut rx, Duration::from_secs(20), |ev| {
        if let UiEvent::Drift { event } = ev
            && event.kind == DriftEventKind::Opened
        {
            opened.push((event.drift.key.name.clone(), event.drift.describe(), t0.elapsed()));
        }
        opened.len() >= 2
    })
    .await;
    for (name, what, at) in &opened {
        w.say(format!(
            "{name}: {what}  (reported {:.1} ms after the write, by the watch)",
            at.as_secs_f64() * 1000.0
        ));
    }
    let described: BTreeSet<String> = opened.iter().map(|(n, d, _)| format!("{n} {d}")).collect();
    w.check(
        "backend-api spec.replicas expected=3, actual=5",
        described.contains("backend-api spec.replicas expected=3, actual=5"),
        "",
    );
    w.check(
        "frontend-web spec.replicas expected=2, actual=1",
        described.contains("frontend-web spec.replicas expected=2, actual=1"),
        "",
    );
    // As a controller does: an Event on the object, which `kubectl describe` shows.
    let events_api: Api<DynamicObject> = Api::namespaced_with(
        kube.clone(),
        NAMESPACE,
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Event"), "events"),
    );
    let selector = ListParams::default().fields("involvedObject.name=backend-api,reason=DriftDetected");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut event_message = None;
    while Instant::now() < deadline && event_message.is_none() {
        event_message = events_api
            .list(&selector)
            .await
            .ok()
            .and_then(|l| l.items.into_iter().next())
            .and_then(|e| e.data["message"].as_str().map(str::to_string));
        if event_message.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    w.check(
        "a DriftDetected Kubernetes Event on backend-api",
        event_message
            .as_deref()
            .is_some_and(|m| m.starts_with("spec.replicas expected=3, actual=5")),
        event_message.unwrap_or_else(|| "none within 5 s".into()),
    );
    let snap = handle.snapshot().await.context("the pipeline stopped")?;
    w.check(
        "exactly two open drifts, in the replica set",
        snap.open.len() == 2 && snap.open.iter().all(|o| o.drift.set.to_string() == "replica"),
        format!("{}", snap.open.len()),
    );

    // 4 ------------------------------------------------------------------------------------------
    w.step("Analysis: risk and cost impact");
    // Analysis runs off the hot path (batched): wait for it to cover both drifts.
    let mut analysed = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        analysed = handle
            .snapshot()
            .await
            .and_then(|s| s.analysis)
            .filter(|a| a.risks.len() >= 2);
        if analysed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match &analysed {
        Some(a) => {
            w.say(format!("by the {} analyzer: {}", a.analyzer, a.summary));
            for r in &a.risks {
                let o = snap.open.iter().find(|o| o.drift.id == r.drift_id);
                let name = o.map_or_else(|| r.drift_id.to_string(), |o| o.drift.key.name.clone());
                w.say(
                    format!(
                        "{name}: availability {}, security {}, cost {} — {}",
                        r.availability, r.security, r.cost, r.note
                    )
                    .to_lowercase(),
                );
            }
            w.say(format!(
                "monthly cost impact: {}",
                drift_core::cost::format_monthly(a.monthly_cost_delta)
            ));
            let front = a.risks.iter().find(|r| {
                snap.open
                    .iter()
                    .any(|o| o.drift.id == r.drift_id && o.drift.key.name == "frontend-web")
            });
            w.check(
                "frontend-web at 1 of 2 replicas is a high availability risk",
                front.is_some_and(|r| r.availability == drift_core::ports::RiskLevel::High),
                "",
            );
            w.check(
                "the cost model prices the extra backend-api replicas",
                a.monthly_cost_delta > 0.0,
                drift_core::cost::format_monthly(a.monthly_cost_delta),
            );
        }
        None => {
            w.check("an analysis arrived", false, "none within 10 s");
        }
    }

    // 5 ------------------------------------------------------------------------------------------
    w.step("Fix through ConfigHub: a guarded patch of the drifted field, the audit line in ConfigHub");
    if args.auto_fix {
        w.say("AUTO_FIX is on: replica drifts are auto-correctable, so the daemon fixes them unattended");
    } else {
        w.say("approving both fixes, as an operator would on the dashboard (with AUTO_FIX=true the daemon does this unattended)");
        for o in &snap.open {
            match handle.approve(o.drift.id.as_str(), "operator@demo").await {
                Ok(m) => w.say(format!("approve {}: {m}", o.drift.key.name)),
                Err(e) => {
                    w.check(format!("approve {}", o.drift.key.name), false, e);
                }
            }
        }
    }
    let mut fixes: Vec<String> = Vec::new();
    let mut corrected = 0;
    let done = wait_for(&mut rx, Duration::from_secs(30), |ev| {
        match ev {
            UiEvent::Fix {
                resource,
                status,
                message,
                ..
            } => fixes.push(format!(
                "{resource}: {}: {message}",
                crate::hub_cmd::status_word(*status)
            )),
            UiEvent::Drift { event } if event.kind == DriftEventKind::Corrected => corrected += 1,
            _ => {}
        }
        corrected >= 2 && fixes.len() >= 2
    })
    .await;
    for f in &fixes {
        w.say(format!("fix {f}"));
    }
    let _ = done;
    w.check(
        "both drifts corrected (the watch saw live match ConfigHub again)",
        corrected >= 2,
        format!("{corrected} corrected"),
    );
    let live_counts = [
        replicas(&kube, "Deployment", "backend-api").await,
        replicas(&kube, "Deployment", "frontend-web").await,
    ];
    w.check(
        "live: backend-api back to 3, frontend-web back to 2",
        live_counts == [Some(3), Some(2)],
        format!(
            "backend-api {}, frontend-web {}",
            count(live_counts[0]),
            count(live_counts[1])
        ),
    );
    let snap = handle.snapshot().await.context("the pipeline stopped")?;
    w.check(
        "no open drift left",
        snap.open.is_empty(),
        format!("{}", snap.open.len()),
    );
    // The history in ConfigHub: records moved to corrected, with the whole timeline.
    let mut corrected_records = Vec::new();
    for _ in 0..50 {
        corrected_records = log
            .records_in(NamedFilter::CorrectedDrifts, false)
            .await
            .unwrap_or_default();
        if corrected_records.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.say(format!(
        "ConfigHub space {records_space}, filter corrected-drifts: {} records",
        corrected_records.len()
    ));
    for r in &corrected_records {
        let kinds: Vec<&str> = r.timeline.iter().map(|t| t.kind.as_str()).collect();
        w.say(format!(
            "{} {}: {}",
            r.drift.key.name,
            r.drift.path.readable(),
            kinds.join(" → ")
        ));
    }
    w.check(
        "both drift records are in corrected-drifts, with opened → remediated → corrected",
        corrected_records.len() == 2
            && corrected_records.iter().all(|r| {
                let k: Vec<DriftEventKind> = r.timeline.iter().map(|t| t.kind).collect();
                k.first() == Some(&DriftEventKind::Opened)
                    && k.contains(&DriftEventKind::Remediated)
                    && k.last() == Some(&DriftEventKind::Corrected)
            }),
        "",
    );
    let audited = c
        .list_units(
            &prod_space.space_id,
            &UnitQuery::with_where("Slug IN ('backend-api', 'frontend-web')"),
        )
        .await?
        .into_iter()
        .filter(|u| u.unit.annotations.contains_key(drift_confighub::AUDIT_ANNOTATION))
        .count();
    w.check(
        "each fixed unit carries the audit line (who, what, when, why)",
        audited == 2,
        format!("{audited} of 2"),
    );
    let all = log
        .records(&HistoryQuery::default())
        .await
        .map(|r| r.len())
        .unwrap_or_default();
    w.check("no drift was recorded twice", all == 2, format!("{all} records"));

    // 6 ------------------------------------------------------------------------------------------
    w.step("Change the desired state the ConfigHub way: unreleased until a Release carries it");
    let api_unit = c
        .unit_by_slug(&prod_space.space_id, "backend-api")
        .await?
        .context("the backend-api unit")?;
    let (data, hash) = c.read_unit_data(&prod_space.space_id, &api_unit.unit_id).await?;
    let edited = String::from_utf8_lossy(&data).replacen("replicas: 3", "replicas: 4", 1);
    c.put_unit_data(
        &prod_space.space_id,
        &api_unit.unit_id,
        edited.as_bytes(),
        &drift_confighub::DataWrite::if_match(hash).description("scale backend-api to 4 for the sale"),
    )
    .await?;
    w.say("backend-api edited in ConfigHub (replicas 4), not released yet");
    // Two polls of the desired state: the edit is seen, and is not drift.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let unreleased: Vec<String> = desired_probe.unreleased().into_iter().map(|u| u.source).collect();
    let snap = handle.snapshot().await.context("the pipeline stopped")?;
    w.check(
        "the edit shows as unreleased changes, not as drift",
        unreleased.iter().any(|s| s.ends_with("/backend-api")) && snap.open.is_empty(),
        format!(
            "unreleased: {}; open drifts: {}",
            unreleased.join(", "),
            snap.open.len()
        ),
    );
    let second = setup::publish_space(&c, &prod, "drift-demo: release the scale-up").await?;
    let live = wait_replicas(&kube, "Deployment", "backend-api", 4, Duration::from_secs(20)).await;
    w.say(format!(
        "published release {}: the GitOps agent synced it; backend-api runs {} replicas",
        second.release.release_num,
        count(live)
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snap = handle.snapshot().await.context("the pipeline stopped")?;
    let unreleased = desired_probe.unreleased();
    w.check(
        "released, it is the desired state: live 4 = desired 4, no drift, nothing unreleased",
        live == Some(4) && snap.open.is_empty() && unreleased.is_empty(),
        format!(
            "live {}, open drifts {}, unreleased {}",
            count(live),
            snap.open.len(),
            unreleased.len()
        ),
    );

    let failed = w.failed();
    w.passed = failed == 0;
    match args.output {
        DemoOutput::Json => crate::out(&format!("{}\n", serde_json::to_string_pretty(&w)?)),
        DemoOutput::Text => {
            if failed == 0 {
                crate::out(&format!("\nAll {} checks passed.\n", w.total()));
            } else {
                crate::out(&format!("\n{failed} of {} checks FAILED.\n", w.total()));
            }
        }
    }

    if args.keep_running {
        let dir = std::env::temp_dir().join(format!("drift-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("sandbox.kubeconfig");
        sandbox.write_kubeconfig(&kubeconfig)?;
        let token = crate::http::random_token();
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let app = Arc::new(
            crate::http::App::new(
                handle.clone(),
                log.clone(),
                token.clone(),
                "demo: sandbox cluster + in-process ConfigHub simulator".into(),
            )
            .bound_to(addr),
        );
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(crate::http::serve(listener, app, async move {
            let _ = stop_rx.changed().await;
        }));
        crate::out(&format!(
            "\nStill running (Ctrl-C to stop):\n  dashboard   http://{addr}/#token={token}\n  token       {token}\n  kubeconfig  {}\n  ConfigHub   {} (token {})\n\nTry: kubectl --kubeconfig {} -n {NAMESPACE} scale deployment/backend-api --replicas=7\n",
            kubeconfig.display(),
            hub.url(),
            hub.token(),
            kubeconfig.display()
        ));
        crate::watch_cmd::wait_for_signal().await;
        crate::watch_cmd::exit_on_second_signal();
        let _ = stop_tx.send(true);
        let _ = server.await;
    }
    if let Ok(h) = Arc::try_unwrap(handle) {
        h.shutdown().await;
    }
    drop(hub);
    drop(sandbox);
    Ok(if failed == 0 { 0 } else { 1 })
}
