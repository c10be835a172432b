//! drift-core's ports over ConfigHub, against the fake hub over loopback HTTP: setup, desired state,
//! drift records (with injected faults), promotion and remediation.
#![allow(clippy::print_stdout)] // the fault test reports its counts

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drift_confighub::environments::{self, Chain};
use drift_confighub::fake::{FakeHub, FakeHubConfig, Faults};
use drift_confighub::setup::{self, UnitSpec};
use drift_confighub::{
    AUDIT_ANNOTATION, ConfigHubClient, ConfigHubDesiredStore, ConfigHubDriftLog, ConfigHubRemediator,
    DesiredStoreConfig, RemediatorConfig, RetryPolicy, UnitQuery, UpdateOptions,
};
use drift_core::clock::ManualClock;
use drift_core::detector::{Detector, DetectorConfig};
use drift_core::policy::NamedFilter;
use drift_core::ports::{
    DesiredChange, DesiredStore, DriftEvent, DriftEventKind, DriftLog, DriftState, HistoryQuery, LiveEvent,
    RelistScope, RemediationAction, RemediationMode, RemediationStatus, Remediator,
};
use drift_core::{DesiredObject, DiffEngine, LiveObject, Resource};
use futures::StreamExt;
use serde_json::json;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn base_units() -> Vec<UnitSpec> {
    ["namespace", "rbac", "deployment", "service"]
        .iter()
        .map(|n| {
            let data =
                std::fs::read_to_string(repo().join(format!("examples/drift-detector/deploy/{n}.yaml")))
                    .expect("manifest");
            UnitSpec::new(
                format!("drift-detector-{n}"),
                data,
                &[
                    ("app", "drift-detector"),
                    ("type", "devops-app"),
                    ("tier", "critical"),
                ],
            )
        })
        .collect()
}

fn workloads() -> String {
    std::fs::read_to_string(repo().join("examples/drift-detector/demo/test-workloads.yaml"))
        .expect("workloads")
}

async fn hub() -> (FakeHub, ConfigHubClient) {
    let hub = FakeHub::start(FakeHubConfig::default().operation_delay(Duration::from_millis(5)))
        .await
        .expect("hub");
    let c = ConfigHubClient::new(
        hub.client_config()
            .retry(RetryPolicy::default().base_delay(Duration::from_millis(5))),
    )
    .expect("client");
    (hub, c)
}

/// The workloads as units of `space`, with a target, applied.
async fn deployed(hub: &FakeHub, c: &ConfigHubClient, space: &str) {
    setup::deploy_test_workloads(c, "dd", space, &workloads())
        .await
        .expect("deploy");
    hub.add_target(space, "k8s-sandbox").expect("target");
    setup::set_target(c, space, "k8s-sandbox")
        .await
        .expect("set target");
    let applied = setup::apply_space(c, space, false, false, Duration::from_secs(5))
        .await
        .expect("apply");
    assert!(applied.iter().all(|a| a.ok), "{applied:?}");
}

#[tokio::test]
async fn the_full_setup_twice_changes_nothing_the_second_time() {
    let (hub, c) = hub().await;
    let chain = Chain::standard("dd");
    let mut first = setup::install_base(&c, "dd", &base_units())
        .await
        .expect("install base");
    first.extend(
        setup::create_environments(&c, &chain)
            .await
            .expect("environments"),
    );
    first.extend(
        setup::deploy_test_workloads(&c, "dd", "dd-test", &workloads())
            .await
            .expect("workloads"),
    );
    hub.add_target("dd-test", "k8s-sandbox").expect("target");
    first.extend(
        setup::set_target(&c, "dd-test", "k8s-sandbox")
            .await
            .expect("set target"),
    );
    let applied = setup::apply_space(&c, "dd-test", false, false, Duration::from_secs(5))
        .await
        .expect("apply");
    assert_eq!(applied.len(), 4);
    assert!(
        applied.iter().all(|a| a.ok && a.message == "ApplyCompleted"),
        "{applied:?}"
    );
    // base + records + dev/staging/prod + test spaces; 4 detector units in each environment; 8 filters.
    assert_eq!(hub.spaces().len(), 6);
    for env in ["base", "dev", "staging", "prod"] {
        assert_eq!(hub.units(&format!("dd-{env}")).len(), 4, "{env}");
    }
    assert_eq!(
        hub.units("dd-test")
            .iter()
            .map(|u| u.slug.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        4
    );
    assert!(
        hub.units("dd-prod").iter().all(
            |u| u.labels.get("environment").map(String::as_str) == Some("prod")
                && u.upstream_unit_id.is_some()
        )
    );
    assert!(first.changed().len() >= 6 + 16 + 8 + 4, "{first}");

    let mut second = setup::install_base(&c, "dd", &base_units())
        .await
        .expect("install base again");
    second.extend(setup::create_environments(&c, &chain).await.expect("again"));
    second.extend(
        setup::deploy_test_workloads(&c, "dd", "dd-test", &workloads())
            .await
            .expect("again"),
    );
    second.extend(
        setup::set_target(&c, "dd-test", "k8s-sandbox")
            .await
            .expect("again"),
    );
    assert!(second.is_unchanged(), "the second run changed: {second}");
    assert!(
        setup::apply_space(&c, "dd-test", false, false, Duration::from_secs(5))
            .await
            .expect("apply")
            .is_empty(),
        "nothing left to apply"
    );
    assert_eq!(hub.spaces().len(), 6);
    assert_eq!(
        hub.units("dd-base").iter().map(|u| u.head_revision_num).max(),
        Some(1),
        "no new revisions"
    );
}

#[tokio::test]
async fn desired_state_loads_around_a_broken_unit_and_follows_changes() {
    let (hub, c) = hub().await;
    deployed(&hub, &c, "dd-test").await;
    let space = c.require_space("dd-test").await.expect("space");
    let broken = UnitSpec::new("broken", "placeholder: 1\n", &[]);
    let (mut b, _) = setup::ensure_unit(&c, &space, &broken).await.expect("unit");
    b.set_data(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n  data: [unclosed\n");
    let b = c
        .update_unit(&b, &UpdateOptions::default())
        .await
        .expect("break it");

    let store = ConfigHubDesiredStore::new(
        c.clone(),
        DesiredStoreConfig::spaces(["dd-test"]).poll_interval(Duration::from_millis(40)),
    );
    let set = store.load().await.expect("load");
    assert_eq!(set.errors.len(), 1, "{:?}", set.errors);
    assert_eq!(set.errors[0].source, "confighub:dd-test/broken");
    let reason = &set.errors[0].reason;
    assert!(
        reason.starts_with("document 0 (line 4)") && reason.contains("flow mapping"),
        "{reason}"
    );
    // Namespace, 2 Deployments, 2 Services, the Secret, the StatefulSet.
    assert_eq!(set.resources.len(), 7);
    let api = set
        .resources
        .iter()
        .find(|r| r.resource.key.name == "backend-api" && r.resource.key.kind == "Deployment")
        .expect("backend-api");
    let p = &api.provenance;
    assert_eq!(
        (p.space.as_deref(), p.unit.as_deref(), p.revision),
        (Some("dd-test"), Some("backend-api"), Some(1))
    );
    assert!(p.unit_id.is_some() && p.space_id.is_some());
    assert_eq!(p.labels.get("monitor").map(String::as_str), Some("true"));

    let mut changes = store.changes();
    let requests_before = hub.requests().len();
    // Edit one unit: only it is downloaded again.
    let mut web = c
        .unit_by_slug(&space.space_id, "backend-api")
        .await
        .expect("get")
        .expect("unit");
    web.set_data(
        web.data_text()
            .expect("text")
            .replace("replicas: 3", "replicas: 4")
            .as_bytes(),
    );
    c.update_unit(&web, &UpdateOptions::default())
        .await
        .expect("edit");
    match next(&mut changes).await {
        DesiredChange::Replaced { source, resources } => {
            assert_eq!(source, "confighub:dd-test/backend-api");
            let d = resources
                .iter()
                .find(|r| r.resource.key.kind == "Deployment")
                .expect("deployment");
            assert_eq!(d.resource.object["spec"]["replicas"], 4);
            assert_eq!(d.provenance.revision, Some(2));
        }
        other => panic!("expected backend-api replaced, got {other:?}"),
    }
    let single_gets: Vec<String> = hub.requests()[requests_before..]
        .iter()
        .filter(|r| r.starts_with("GET /api/space/") && r.split('/').count() == 6 && !r.contains('?'))
        .cloned()
        .collect();
    assert_eq!(
        single_gets.len(),
        1,
        "only the changed unit's data is fetched: {single_gets:?}"
    );

    // Fix the broken unit; break another; delete a third.
    let mut fixed = c.get_unit(&space.space_id, &b.unit_id).await.expect("get").unit;
    fixed.set_data(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fixed, namespace: drift-test}\n");
    c.update_unit(&fixed, &UpdateOptions::default())
        .await
        .expect("fix");
    let mut fe = c
        .unit_by_slug(&space.space_id, "frontend-web")
        .await
        .expect("get")
        .expect("unit");
    fe.set_data(b"kind: Deployment\n  bad: [\n");
    c.update_unit(&fe, &UpdateOptions::default())
        .await
        .expect("break");
    let db = c
        .unit_by_slug(&space.space_id, "database-postgres")
        .await
        .expect("get")
        .expect("unit");
    c.delete_unit(&space.space_id, &db.unit_id).await.expect("delete");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(next(&mut changes).await);
    }
    assert!(seen.iter().any(|c| matches!(c, DesiredChange::Replaced { source, resources } if source.ends_with("/broken") && resources.len() == 1)), "{seen:?}");
    assert!(
        seen.iter()
            .any(|c| matches!(c, DesiredChange::Failed(e) if e.source.ends_with("/frontend-web"))),
        "{seen:?}"
    );
    assert!(seen.iter().any(|c| matches!(c, DesiredChange::Replaced { source, resources } if source.ends_with("/database-postgres") && resources.is_empty())), "{seen:?}");
}

async fn next(
    s: &mut futures::stream::BoxStream<'static, Result<DesiredChange, drift_core::ports::PortError>>,
) -> DesiredChange {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("a change within 5 s")
        .expect("stream")
        .expect("no error")
}

fn deployment(name: &str, replicas: i64, image: &str) -> Resource {
    Resource::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "drift-test"},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}))
    .expect("deployment")
}

/// A real drift from the engine: desired vs live.
fn drift(name: &str, live_replicas: i64, live_image: &str) -> drift_core::Drift {
    let engine = DiffEngine::default();
    let report = engine.diff(
        &DesiredObject::new(deployment(name, 3, "app:1")),
        Some(&LiveObject::new(deployment(name, live_replicas, live_image))),
    );
    report.drifts.into_iter().next().expect("a drift")
}

fn event(kind: DriftEventKind, at: u64, d: &drift_core::Drift) -> DriftEvent {
    let mut p = drift_core::ports::Provenance::file("confighub:dd-test/x");
    p.environment = Some("prod".into());
    DriftEvent::new(
        kind,
        at,
        d.clone(),
        "drift-detector@test",
        format!("{} at {at}", kind.as_str()),
    )
    .with_provenance(Some(p))
}

#[tokio::test]
async fn drift_records_open_update_resolve_and_survive_a_restart() {
    let (hub, c) = hub().await;
    let log = ConfigHubDriftLog::connect(c.clone(), "dd-drift-records")
        .await
        .expect("connect");
    let replica = drift("web", 5, "app:1");
    let image = drift("api", 3, "app:2");
    assert_eq!(replica.set, drift_core::rules::DriftSet::Replica);
    assert_eq!(image.set, drift_core::rules::DriftSet::Critical);
    let mut later = replica.clone();
    later.actual = Some(json!(6));
    for e in [
        event(DriftEventKind::Opened, 1_000, &replica),
        event(DriftEventKind::Opened, 1_000, &replica), // a replay: stored once
        event(DriftEventKind::Updated, 2_000, &later),
        event(DriftEventKind::Remediated, 3_000, &later),
        event(DriftEventKind::Corrected, 4_000, &later),
        event(DriftEventKind::Opened, 5_000, &image),
    ] {
        log.append(&e).await.expect("append");
    }

    // A new process: a new client, the same space.
    drop(log);
    let c2 = ConfigHubClient::new(hub.client_config()).expect("client");
    let log2 = ConfigHubDriftLog::connect(c2, "dd-drift-records")
        .await
        .expect("reconnect");
    let all = log2.records(&HistoryQuery::default()).await.expect("records");
    assert_eq!(all.len(), 2);
    let r = all
        .iter()
        .find(|r| r.drift.id == replica.id)
        .expect("replica record");
    assert_eq!(r.state, DriftState::Corrected);
    assert_eq!(
        r.timeline.iter().map(|t| t.kind).collect::<Vec<_>>(),
        [
            DriftEventKind::Opened,
            DriftEventKind::Updated,
            DriftEventKind::Remediated,
            DriftEventKind::Corrected
        ]
    );
    assert_eq!(r.drift.actual, Some(json!(6)));
    assert_eq!(r.environment.as_deref(), Some("prod"));

    // Queryable in ConfigHub: the named filters and label queries.
    assert_eq!(
        log2.records_in(NamedFilter::CriticalDrifts, true)
            .await
            .expect("critical")
            .len(),
        1
    );
    assert_eq!(
        log2.records_in(NamedFilter::CorrectedDrifts, false)
            .await
            .expect("corrected")
            .len(),
        1
    );
    assert_eq!(
        log2.records_in(NamedFilter::ProductionDrift, false)
            .await
            .expect("prod")
            .len(),
        2
    );
    assert_eq!(
        log2.records_in(NamedFilter::ManualReview, true)
            .await
            .expect("manual")
            .len(),
        1,
        "the image drift needs a person"
    );
    let open = log2
        .records(&HistoryQuery {
            open_only: true,
            ..HistoryQuery::default()
        })
        .await
        .expect("open");
    assert_eq!(
        open.iter().map(|r| r.drift.id.as_str()).collect::<Vec<_>>(),
        [image.id.as_str()]
    );
    let space = c.require_space("dd-drift-records").await.expect("space");
    let filters = c.list_filters(&space.space_id).await.expect("filters");
    assert_eq!(filters.len(), 8, "connecting twice did not duplicate filters");
    let via_filter = c
        .list_units(
            &space.space_id,
            &UnitQuery::default().filter(
                filters
                    .iter()
                    .find(|f| f.slug == "replica-drifts")
                    .expect("filter")
                    .filter_id
                    .clone(),
            ),
        )
        .await
        .expect("list by filter");
    assert_eq!(via_filter.len(), 1);
    let unit = &via_filter[0].unit;
    assert_eq!(unit.toolchain_type, "AppConfig/YAML");
    assert_eq!(
        unit.labels.get("drift-state").map(String::as_str),
        Some("corrected")
    );
    assert!(
        unit.last_change_description.contains("corrected")
            && unit.last_change_description.contains("drift-detector@test"),
        "{}",
        unit.last_change_description
    );
}

#[tokio::test]
async fn no_record_is_lost_or_duplicated_under_injected_failures() {
    let hub = FakeHub::start(FakeHubConfig::default()).await.expect("hub");
    let cfg = hub.client_config().timeout(Duration::from_millis(250)).retry(
        RetryPolicy::default()
            .base_delay(Duration::from_millis(5))
            .attempts(6),
    );
    let c = ConfigHubClient::new(cfg).expect("client");
    let log = ConfigHubDriftLog::connect(c, "faulty-records")
        .await
        .expect("connect");
    hub.set_faults(
        Faults::none()
            .error_500(0.2)
            .drop_after_commit(0.1)
            .slow_after_commit(0.1, Duration::from_millis(500))
            .writes_only(true)
            .seed(42),
    );
    let drifts: Vec<_> = (0..30)
        .map(|i| drift(&format!("web-{i}"), 4 + i, "app:1"))
        .collect();
    let mut events = Vec::new();
    for (i, d) in drifts.iter().enumerate() {
        let t = 10_000 * (i as u64 + 1);
        events.extend([
            event(DriftEventKind::Opened, t, d),
            event(DriftEventKind::Updated, t + 1, d),
            event(DriftEventKind::Resolved, t + 2, d),
        ]);
    }
    // As the daemon does: an append that reports failure stays queued and is tried again.
    let mut reported = 0;
    for e in &events {
        let mut tries = 0;
        while let Err(err) = log.append(e).await {
            reported += 1;
            tries += 1;
            assert!(tries < 20, "event {} never got through: {err}", e.event_id);
        }
    }
    let counts = hub.fault_counts();
    hub.set_faults(Faults::none());
    let records = log.records(&HistoryQuery::default()).await.expect("records");
    println!(
        "{} events, {} write requests faulted: {} × 500, {} dropped after commit, {} held past the timeout; {} appends reported failure and were retried",
        events.len(),
        counts.injected_500 + counts.dropped_after_commit + counts.slow_after_commit,
        counts.injected_500,
        counts.dropped_after_commit,
        counts.slow_after_commit,
        reported
    );
    assert!(
        counts.injected_500 > 5 && counts.dropped_after_commit > 2 && counts.slow_after_commit > 2,
        "{counts:?}"
    );
    assert_eq!(records.len(), 30, "one record per drift");
    for r in &records {
        let ids: Vec<&str> = r.timeline.iter().map(|t| t.event_id.as_str()).collect();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(ids.len(), 3, "{}: {ids:?}", r.drift.id);
        assert_eq!(unique.len(), 3);
        assert_eq!(r.state, DriftState::Resolved);
    }
}

#[tokio::test]
async fn promotion_updates_exactly_the_stale_downstream_units() {
    let (hub, c) = hub().await;
    let chain = Chain::standard("pp");
    setup::install_base(&c, "pp", &base_units()).await.expect("base");
    setup::create_environments(&c, &chain).await.expect("envs");
    // Two base units change.
    let base = c.require_space("pp-base").await.expect("base");
    for slug in ["drift-detector-deployment", "drift-detector-service"] {
        let mut u = c
            .unit_by_slug(&base.space_id, slug)
            .await
            .expect("get")
            .expect("unit");
        u.set_data(format!("{}\n# v2\n", u.data_text().expect("text")).as_bytes());
        c.update_unit(&u, &UpdateOptions::default()).await.expect("edit");
    }
    let dev = c.require_space("pp-dev").await.expect("dev");
    let staging = c.require_space("pp-staging").await.expect("staging");
    let stale: Vec<String> = environments::needs_upgrade(&c, &dev)
        .await
        .expect("stale")
        .into_iter()
        .map(|u| u.slug)
        .collect();
    assert_eq!(stale.len(), 2, "{stale:?}");
    assert!(
        environments::needs_upgrade(&c, &staging)
            .await
            .expect("stale")
            .is_empty(),
        "staging is not stale until dev moves"
    );

    let r = environments::promote(&c, &chain, "base", "dev", false)
        .await
        .expect("promote");
    assert_eq!(r.items.len(), 2);
    assert!(
        environments::needs_upgrade(&c, &dev)
            .await
            .expect("stale")
            .is_empty()
    );
    let revs = |space: &str| -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = hub
            .units(space)
            .into_iter()
            .map(|u| (u.slug, u.head_revision_num))
            .collect();
        v.sort();
        v
    };
    let staging_before = revs("pp-staging");
    let dry = environments::promote(&c, &chain, "dev", "staging", true)
        .await
        .expect("dry run");
    assert_eq!(dry.items.len(), 2);
    assert_eq!(revs("pp-staging"), staging_before, "a dry run changes nothing");
    let r = environments::promote(&c, &chain, "dev", "staging", false)
        .await
        .expect("promote");
    let upgraded: Vec<String> = r
        .items
        .iter()
        .filter_map(|i| i.unit.as_ref().map(|u| u.slug.clone()))
        .collect();
    let mut want = stale.clone();
    want.sort();
    let mut got = upgraded.clone();
    got.sort();
    assert_eq!(got, want, "exactly the stale units");
    let after = revs("pp-staging");
    for ((slug, before), (_, now)) in staging_before.iter().zip(&after) {
        let expect = if stale.contains(slug) { before + 1 } else { *before };
        assert_eq!(*now, expect, "{slug}");
    }
    assert_eq!(
        environments::needs_upgrade(&c, &c.require_space("pp-prod").await.expect("prod"))
            .await
            .expect("prod")
            .len(),
        2
    );
    let e = environments::promote(&c, &chain, "base", "staging", false)
        .await
        .expect_err("not adjacent");
    assert!(e.to_string().contains("not the environment after"), "{e}");
}

#[tokio::test]
async fn remediation_through_confighub_with_an_audit_trail() {
    let (hub, c) = hub().await;
    let applied: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = applied.clone();
    hub.on_apply(Arc::new(move |req| {
        seen.lock().expect("lock").push(req.unit.slug.clone());
        Box::pin(async { Ok(()) })
    }));
    deployed(&hub, &c, "dd-test").await;
    applied.lock().expect("lock").clear();

    // The detector over ConfigHub's desired state and a drifted live set.
    let store = ConfigHubDesiredStore::new(c.clone(), DesiredStoreConfig::spaces(["dd-test"]));
    let desired = store.load().await.expect("load");
    let mut det = Detector::new(
        DiffEngine::default(),
        DetectorConfig::default(),
        Arc::new(ManualClock::new(1_000)),
    );
    det.set_desired(desired.resources.clone());
    let live: Vec<Resource> = desired
        .resources
        .iter()
        .map(|d| {
            let mut r = d.resource.clone();
            if r.key.name == "backend-api" && r.key.kind == "Deployment" {
                r.object["spec"]["replicas"] = json!(5);
            }
            r
        })
        .collect();
    det.observe(LiveEvent::Restarted {
        scope: RelistScope::All,
        resources: live.clone(),
    });
    det.observe(LiveEvent::Ready);
    while let Some(k) = det.next_key() {
        det.process(&k);
    }
    let open = det.open_drifts();
    assert_eq!(
        open.len(),
        1,
        "{:?}",
        open.iter().map(|o| o.drift.describe()).collect::<Vec<_>>()
    );
    let (_, plan) = det.approve(&open[0].drift.id, "alice").expect("plan");
    assert!(matches!(plan.action, RemediationAction::Revert { .. }));

    let rem = ConfigHubRemediator::new(c.clone(), RemediatorConfig::default());
    let dry = rem.remediate(&plan, RemediationMode::DryRun).await;
    assert_eq!(dry.status, RemediationStatus::DryRunOk, "{}", dry.message);
    assert!(
        applied.lock().expect("lock").is_empty(),
        "a dry run applies nothing"
    );
    let done = rem.remediate(&plan, RemediationMode::Apply).await;
    assert_eq!(done.status, RemediationStatus::Applied, "{}", done.message);
    assert_eq!(*applied.lock().expect("lock"), ["backend-api"]);
    let space = c.require_space("dd-test").await.expect("space");
    let unit = c
        .unit_by_slug(&space.space_id, "backend-api")
        .await
        .expect("get")
        .expect("unit");
    let audit = unit.annotations.get(AUDIT_ANNOTATION).expect("audit annotation");
    assert!(
        audit.contains(open[0].drift.id.as_str())
            && audit.contains("alice")
            && audit.contains("approved by alice"),
        "{audit}"
    );

    // The unit moves on after the plan: the plan is refused, nothing is applied.
    let mut edited = unit.clone();
    edited.set_data(
        edited
            .data_text()
            .expect("text")
            .replace("nginx:1.27-alpine", "nginx:1.28-alpine")
            .as_bytes(),
    );
    c.update_unit(&edited, &UpdateOptions::default())
        .await
        .expect("edit");
    let stale = rem.remediate(&plan, RemediationMode::Apply).await;
    assert_eq!(stale.status, RemediationStatus::Conflict, "{}", stale.message);
    assert_eq!(applied.lock().expect("lock").len(), 1);

    // "Cluster wins", targeted: the live replica count is written into the unit with the audit line.
    let fresh = store.load().await.expect("reload");
    let api = fresh
        .resources
        .iter()
        .find(|r| r.resource.key.name == "backend-api" && r.resource.key.kind == "Deployment")
        .expect("api");
    let live_api = live.iter().find(|r| r.key == api.resource.key).expect("live");
    let d = DiffEngine::default().diff(
        &DesiredObject::new(api.resource.clone()),
        Some(&LiveObject::new(live_api.clone())),
    );
    let values =
        drift_core::patch::adopt_values(&LiveObject::new(live_api.clone()), &d.drifts).expect("adopt values");
    let adopt = drift_core::ports::RemediationPlan {
        action: RemediationAction::Adopt { values },
        provenance: Some(api.provenance.clone()),
        drifts: d.drifts.clone(),
        reason: "keep the scale-up".into(),
        ..plan.clone()
    };
    let r = rem.remediate(&adopt, RemediationMode::Apply).await;
    assert_eq!(r.status, RemediationStatus::Applied, "{}", r.message);
    let unit = c
        .unit_by_slug(&space.space_id, "backend-api")
        .await
        .expect("get")
        .expect("unit");
    assert!(unit.data_text().expect("text").contains("replicas: 5"));
    assert!(
        unit.last_change_description.contains("adopt")
            && unit.last_change_description.contains("keep the scale-up"),
        "{}",
        unit.last_change_description
    );

    // Roll back: the revision live before the last apply is restored and applied.
    let before = unit.head_revision_num;
    let rolled = rem
        .rollback(&space.space_id, &unit.unit_id, "undo the fix")
        .await
        .expect("rollback");
    assert_eq!(rolled.head_revision_num, before + 1);
    assert!(
        rolled.last_change_description.contains("Restored revision"),
        "{}",
        rolled.last_change_description
    );
    assert_eq!(applied.lock().expect("lock").len(), 2);

    // Bulk "ConfigHub wins": two units in one call, a result each.
    let plans: Vec<_> = fresh
        .resources
        .iter()
        .filter(|r| r.resource.key.kind == "Deployment")
        .map(|r| drift_core::ports::RemediationPlan {
            provenance: Some(r.provenance.clone()),
            key: r.resource.key.clone(),
            ..plan.clone()
        })
        .collect();
    let outcomes = rem
        .bulk_apply(&plans, RemediationMode::Apply)
        .await
        .expect("bulk");
    assert_eq!(outcomes.len(), 2);
    assert!(
        outcomes.iter().all(|o| o.status == RemediationStatus::Applied),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn bulk_revert_of_what_a_named_filter_selects() {
    let (hub, c) = hub().await;
    let applied: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = applied.clone();
    hub.on_apply(Arc::new(move |req| {
        seen.lock().expect("lock").push(req.unit.slug.clone());
        Box::pin(async { Ok(()) })
    }));
    deployed(&hub, &c, "dd-test").await;
    applied.lock().expect("lock").clear();
    let store = ConfigHubDesiredStore::new(c.clone(), DesiredStoreConfig::spaces(["dd-test"]));
    let desired = store.load().await.expect("load");
    let log = ConfigHubDriftLog::connect(c.clone(), "dd-drift-records")
        .await
        .expect("log");
    // Two replica drifts and one image drift, recorded with the units they came from.
    for (name, live_replicas, image) in [
        ("backend-api", 5, "app:1"),
        ("frontend-web", 1, "app:1"),
        ("database-postgres", 3, "app:2"),
    ] {
        let d = drift(name, live_replicas, image);
        let prov = desired
            .resources
            .iter()
            .find(|r| r.resource.key.name == name)
            .expect("unit")
            .provenance
            .clone();
        let e = DriftEvent::new(
            DriftEventKind::Opened,
            1_000,
            d,
            "drift-detector@test",
            "live differs",
        )
        .with_provenance(Some(prov));
        log.append(&e).await.expect("append");
    }
    let rem = ConfigHubRemediator::new(c.clone(), RemediatorConfig::default());
    let dry = rem
        .revert_filter(&log, NamedFilter::ReplicaDrifts, RemediationMode::DryRun, "ops")
        .await
        .expect("dry run");
    assert_eq!(dry.len(), 2);
    assert!(
        dry.iter().all(|o| o.status == RemediationStatus::DryRunOk),
        "{dry:?}"
    );
    assert!(applied.lock().expect("lock").is_empty());
    let out = rem
        .revert_filter(&log, NamedFilter::ReplicaDrifts, RemediationMode::Apply, "ops")
        .await
        .expect("revert");
    let mut units: Vec<&str> = out.iter().map(|o| o.unit.as_str()).collect();
    units.sort_unstable();
    assert_eq!(
        units,
        ["backend-api", "frontend-web"],
        "one result per unit, the image drift untouched"
    );
    assert!(
        out.iter().all(|o| o.status == RemediationStatus::Applied),
        "{out:?}"
    );
    let mut hooked = applied.lock().expect("lock").clone();
    hooked.sort();
    assert_eq!(hooked, ["backend-api", "frontend-web"]);
}
