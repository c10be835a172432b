//! drift-core's ports over ConfigHub v0.8, against the simulator over loopback HTTP: setup, desired
//! state from released revisions, drift records (with injected faults), promotion by upgrade and Release,
//! and remediation in the release model.
#![allow(clippy::print_stdout)] // the fault test reports its counts

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drift_confighub::environments::{self, Chain};
use drift_confighub::fake::{FakeHub, FakeHubConfig, Faults};
use drift_confighub::setup::{self, UnitSpec};
use drift_confighub::{
    AUDIT_ANNOTATION, ConfigHubClient, ConfigHubDesiredStore, ConfigHubDriftLog, ConfigHubRemediator,
    DRIFTED_LABEL, DataWrite, DesiredStoreConfig, RemediatorConfig, RetryPolicy, UnitQuery,
};
use drift_core::clock::ManualClock;
use drift_core::detector::{Detector, DetectorConfig};
use drift_core::memory::MemoryCluster;
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
    ["namespace", "rbac", "statefulset", "service"]
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
    let hub = FakeHub::start(FakeHubConfig::default().sync_delay(Duration::from_millis(2)))
        .await
        .expect("hub");
    let c = ConfigHubClient::new(
        hub.client_config()
            .retry(RetryPolicy::default().base_delay(Duration::from_millis(5))),
    )
    .expect("client");
    (hub, c)
}

/// The simulated GitOps agent syncs every Release into `cluster`.
fn gitops_into(hub: &FakeHub, cluster: &MemoryCluster) {
    let cluster = cluster.clone();
    hub.on_release(Arc::new(move |d| {
        for u in &d.units {
            let loaded = drift_core::parse_documents(&u.slug, &String::from_utf8_lossy(&u.data));
            for mut r in loaded.resources {
                r.default_namespace("drift-test");
                cluster.apply(r);
            }
        }
        Box::pin(async { Ok(()) })
    }));
}

/// The workloads as units of `space`, connected to a cluster Target, released and synced.
async fn deployed(hub: &FakeHub, c: &ConfigHubClient, space: &str) {
    setup::deploy_test_workloads(c, "dd", space, &workloads())
        .await
        .expect("deploy");
    setup::connect_target(c, space, "k8s-sandbox")
        .await
        .expect("target");
    publish(hub, c, space).await;
}

async fn publish(hub: &FakeHub, c: &ConfigHubClient, space: &str) -> drift_confighub::model::Release {
    let r = setup::publish_space(c, space, "test").await.expect("publish");
    hub.wait_delivered(&r.release.release_id, Duration::from_secs(5))
        .await
        .expect("synced");
    r.release
}

async fn edit(c: &ConfigHubClient, space: &str, unit: &str, f: impl FnOnce(String) -> String) {
    let s = c.require_space(space).await.expect("space");
    let u = c
        .unit_by_slug(&s.space_id, unit)
        .await
        .expect("get")
        .expect("unit");
    let (data, hash) = c.read_unit_data(&s.space_id, &u.unit_id).await.expect("data");
    let next = f(String::from_utf8(data).expect("utf8"));
    c.put_unit_data(
        &s.space_id,
        &u.unit_id,
        next.as_bytes(),
        &DataWrite::if_match(hash),
    )
    .await
    .expect("edit");
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
    first.extend(
        setup::connect_target(&c, "dd-test", "k8s-sandbox")
            .await
            .expect("connect target"),
    );
    let r1 = setup::publish_space(&c, "dd-test", "first release")
        .await
        .expect("publish");
    assert_eq!((r1.release.release_num, r1.release.unit_count), (1, 4));
    // base + records + dev/staging/prod + test spaces; 4 detector units in each environment; 8 filters.
    assert_eq!(hub.spaces().len(), 6);
    for env in ["base", "dev", "staging", "prod"] {
        assert_eq!(hub.units(&format!("dd-{env}")).len(), 4, "{env}");
    }
    assert_eq!(hub.units("dd-test").len(), 4);
    assert!(hub.units("dd-test").iter().all(|u| !u.has_unreleased_changes()));
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
        setup::connect_target(&c, "dd-test", "k8s-sandbox")
            .await
            .expect("again"),
    );
    assert!(second.is_unchanged(), "the second run changed: {second}");
    let r2 = setup::publish_space(&c, "dd-test", "again")
        .await
        .expect("publish again");
    assert_eq!(
        r2.release.release_id, r1.release.release_id,
        "nothing new to release"
    );
    assert!(r2.message.contains("nothing changed"), "{}", r2.message);
    assert_eq!(hub.spaces().len(), 6);
    assert_eq!(
        hub.units("dd-base").iter().map(|u| u.head_revision_num).max(),
        Some(2),
        "created, then its data: no new revisions the second time"
    );
    assert!(
        hub.contract_violations().is_empty(),
        "{:?}",
        hub.contract_violations()
    );
}

#[tokio::test]
async fn desired_state_is_the_released_revision_and_follows_releases() {
    let (hub, c) = hub().await;
    deployed(&hub, &c, "dd-test").await;
    let space = c.require_space("dd-test").await.expect("space");
    let broken = UnitSpec::new(
        "broken",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n  data: [unclosed\n",
        &[],
    );
    // A unit whose data is not YAML cannot be created through setup; write the bytes raw.
    let b = c
        .create_unit_with_data(
            &space.space_id,
            &drift_confighub::model::Unit {
                slug: broken.slug.clone(),
                toolchain_type: drift_confighub::model::KUBERNETES_YAML.into(),
                ..Default::default()
            },
            broken.data.as_bytes(),
        )
        .await
        .expect("broken unit");
    setup::connect_target(&c, "dd-test", "k8s-sandbox")
        .await
        .expect("target");

    let store = ConfigHubDesiredStore::new(
        c.clone(),
        DesiredStoreConfig::spaces(["dd-test"]).poll_interval(Duration::from_millis(40)),
    );
    let set = store.load().await.expect("load");
    assert!(
        set.errors.is_empty(),
        "never released: not desired yet: {:?}",
        set.errors
    );
    assert_eq!(
        store
            .unreleased()
            .iter()
            .map(|u| u.source.as_str())
            .collect::<Vec<_>>(),
        ["confighub:dd-test/broken"]
    );
    publish(&hub, &c, "dd-test").await;
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
        (Some("dd-test"), Some("backend-api"), Some(2))
    );
    assert!(p.unit_id.is_some() && p.space_id.is_some());
    assert_eq!(p.labels.get("monitor").map(String::as_str), Some("true"));
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.starts_with("GET /api/unit_data?")),
        "data is read in bulk"
    );

    let mut changes = store.changes();
    // An edit in ConfigHub that is not released: unreleased changes, not drift, no desired change.
    edit(&c, "dd-test", "backend-api", |t| {
        t.replace("replicas: 3", "replicas: 4")
    })
    .await;
    let probe = ConfigHubDesiredStore::new(c.clone(), DesiredStoreConfig::spaces(["dd-test"]));
    let now = probe.load().await.expect("load");
    let still = now
        .resources
        .iter()
        .find(|r| r.resource.key.name == "backend-api" && r.resource.key.kind == "Deployment")
        .expect("backend-api");
    assert_eq!(
        still.resource.object["spec"]["replicas"], 3,
        "the released revision is still desired"
    );
    assert_eq!(
        probe
            .unreleased()
            .iter()
            .map(|u| u.source.as_str())
            .collect::<Vec<_>>(),
        ["confighub:dd-test/backend-api"]
    );
    let requests_before = hub.requests().len();
    // Released: it becomes the desired state; only its data is read.
    publish(&hub, &c, "dd-test").await;
    match next(&mut changes).await {
        DesiredChange::Replaced { source, resources } => {
            assert_eq!(source, "confighub:dd-test/backend-api");
            let d = resources
                .iter()
                .find(|r| r.resource.key.kind == "Deployment")
                .expect("deployment");
            assert_eq!(d.resource.object["spec"]["replicas"], 4);
            assert_eq!(d.provenance.revision, Some(3));
        }
        other => panic!("expected backend-api replaced, got {other:?}"),
    }
    assert!(store.unreleased().is_empty());
    let data_reads: Vec<String> = hub.requests()[requests_before..]
        .iter()
        .filter(|r| r.contains("/data") && r.starts_with("GET "))
        .cloned()
        .collect();
    assert_eq!(
        data_reads.len(),
        1,
        "only the changed unit's data is fetched: {data_reads:?}"
    );

    // Fix the broken unit; break another; delete a third; release.
    edit(&c, "dd-test", "broken", |_| {
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fixed, namespace: drift-test}\n".into()
    })
    .await;
    edit(&c, "dd-test", "frontend-web", |_| {
        "kind: Deployment\n  bad: [\n".into()
    })
    .await;
    let db = c
        .unit_by_slug(&space.space_id, "database-postgres")
        .await
        .expect("get")
        .expect("unit");
    c.delete_unit(&space.space_id, &db.unit_id).await.expect("delete");
    publish(&hub, &c, "dd-test").await;
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
    let _ = b;
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
async fn promotion_upgrades_exactly_the_stale_downstream_units_then_releases() {
    let (hub, c) = hub().await;
    let chain = Chain::standard("pp");
    setup::install_base(&c, "pp", &base_units()).await.expect("base");
    setup::create_environments(&c, &chain).await.expect("envs");
    setup::connect_target(&c, "pp-staging", "staging-cluster")
        .await
        .expect("target");
    // Two base units change.
    for slug in ["drift-detector-statefulset", "drift-detector-service"] {
        edit(&c, "pp-base", slug, |t| format!("{t}\n# v2\n")).await;
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

    // dev has no release Target: upgraded, not released, and the note says why.
    let r = environments::promote(&c, &chain, "base", "dev", false)
        .await
        .expect("promote");
    assert_eq!(r.upgraded.items.len(), 2);
    assert!(
        r.release.is_none() && r.note.contains("no release Target"),
        "{}",
        r.note
    );
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
    assert_eq!(dry.upgraded.items.len(), 2);
    assert!(dry.release.is_none());
    assert_eq!(revs("pp-staging"), staging_before, "a dry run changes nothing");
    assert!(hub.releases("pp-staging").is_empty());
    let r = environments::promote(&c, &chain, "dev", "staging", false)
        .await
        .expect("promote");
    let upgraded: Vec<String> = r
        .upgraded
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
    // Staging's Release carries the promotion: every unit released at its new head.
    let release = r.release.expect("a release of staging");
    assert_eq!(release.unit_count, 4);
    assert!(
        hub.units("pp-staging")
            .iter()
            .all(|u| !u.has_unreleased_changes())
    );
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.starts_with("PATCH /api/unit?") && r.contains("include=UpstreamUnitID")),
        "the upgrade's join is sent with its include"
    );
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

/// An edit made in the cluster, behind ConfigHub's back.
type Edit = fn(&mut serde_json::Value);

/// The detector over ConfigHub's released state and a cluster the GitOps agent filled, then drifted.
async fn drifted_detector(
    c: &ConfigHubClient,
    cluster: &MemoryCluster,
    edits: &[(&str, Edit)],
) -> (Detector, drift_core::ports::DesiredSet) {
    let store = ConfigHubDesiredStore::new(c.clone(), DesiredStoreConfig::spaces(["dd-test"]));
    let desired = store.load().await.expect("load");
    for (name, patch) in edits {
        let key = desired
            .resources
            .iter()
            .find(|r| r.resource.key.name == *name && r.resource.key.kind == "Deployment")
            .expect("object")
            .resource
            .key
            .clone();
        cluster.edit(&key, patch);
    }
    let mut det = Detector::new(
        DiffEngine::default(),
        DetectorConfig::default(),
        Arc::new(ManualClock::new(1_000)),
    );
    det.set_desired(desired.resources.clone());
    let live: Vec<Resource> = desired
        .resources
        .iter()
        .filter_map(|d| cluster.get(&d.resource.key))
        .collect();
    det.observe(LiveEvent::Restarted {
        scope: RelistScope::All,
        resources: live,
    });
    det.observe(LiveEvent::Ready);
    while let Some(k) = det.next_key() {
        det.process(&k);
    }
    (det, desired)
}

#[tokio::test]
async fn confighub_wins_is_the_guarded_patch_scoped_to_the_drift_with_an_audit_line() {
    let (hub, c) = hub().await;
    let cluster = MemoryCluster::new();
    gitops_into(&hub, &cluster);
    deployed(&hub, &c, "dd-test").await;
    // Someone scales backend-api and swaps its image: two drifts on one object, one of them critical.
    let (mut det, _) = drifted_detector(
        &c,
        &cluster,
        &[("backend-api", |o| {
            o["spec"]["replicas"] = json!(5);
            o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil.example/backdoor:latest");
        })],
    )
    .await;
    let open = det.open_drifts();
    assert_eq!(
        open.len(),
        2,
        "{:?}",
        open.iter().map(|o| o.drift.describe()).collect::<Vec<_>>()
    );
    let replica = open
        .iter()
        .find(|o| o.drift.rule == "replicas")
        .expect("replica drift");
    let (_, plan) = det.approve(&replica.drift.id, "alice").expect("plan");
    let RemediationAction::Revert { patch } = &plan.action else {
        panic!("a revert: {:?}", plan.action)
    };
    assert!(
        patch
            .0
            .iter()
            .all(|op| !serde_json::to_string(op).expect("json").contains("image")),
        "the fix touches only the approved field: {patch:?}"
    );

    // Without cluster access ConfigHub cannot apply anything: skipped, not a whole-unit apply.
    let no_cluster = ConfigHubRemediator::new(c.clone(), RemediatorConfig::default());
    let skipped = no_cluster.remediate(&plan, RemediationMode::Apply).await;
    assert_eq!(skipped.status, RemediationStatus::Skipped, "{}", skipped.message);

    let rem = ConfigHubRemediator::new(c.clone(), RemediatorConfig::default())
        .with_cluster(Arc::new(cluster.clone()));
    let dry = rem.remediate(&plan, RemediationMode::DryRun).await;
    assert_eq!(dry.status, RemediationStatus::DryRunOk, "{}", dry.message);
    let key = plan.key.clone();
    assert_eq!(
        cluster.get(&key).expect("live").object["spec"]["replicas"],
        5,
        "a dry run changes nothing"
    );
    let done = rem.remediate(&plan, RemediationMode::Apply).await;
    assert_eq!(done.status, RemediationStatus::Applied, "{}", done.message);
    let live = cluster.get(&key).expect("live").object;
    assert_eq!(live["spec"]["replicas"], 3, "the approved drift is fixed");
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"], "evil.example/backdoor:latest",
        "the critical drift nobody approved is untouched"
    );
    let space = c.require_space("dd-test").await.expect("space");
    let unit = c
        .unit_by_slug(&space.space_id, "backend-api")
        .await
        .expect("get")
        .expect("unit");
    let audit = unit.annotations.get(AUDIT_ANNOTATION).expect("audit annotation");
    assert!(
        audit.contains(replica.drift.id.as_str())
            && audit.contains("approved by alice")
            && audit.contains("applied"),
        "{audit}"
    );
    assert!(
        !unit.has_unreleased_changes(),
        "the audit line is metadata: no revision"
    );

    // The release moves on after the plan: the plan is refused, nothing is sent to the cluster.
    edit(&c, "dd-test", "backend-api", |t| {
        t.replace("nginx:1.27-alpine", "nginx:1.28-alpine")
    })
    .await;
    cluster.edit(&key, |o| o["spec"]["replicas"] = json!(5)); // drifted again
    let unreleased_only = rem.remediate(&plan, RemediationMode::DryRun).await;
    assert_eq!(
        unreleased_only.status,
        RemediationStatus::DryRunOk,
        "an unreleased edit does not change what the cluster should run: {}",
        unreleased_only.message
    );
    publish(&hub, &c, "dd-test").await;
    let stale = rem.remediate(&plan, RemediationMode::Apply).await;
    assert_eq!(stale.status, RemediationStatus::Conflict, "{}", stale.message);
    assert!(
        stale.message.contains("moved from revision") && stale.message.contains("re-plan"),
        "refused by the revision check, before anything is sent: {}",
        stale.message
    );
    assert!(
        hub.contract_violations().is_empty(),
        "{:?}",
        hub.contract_violations()
    );
}

#[tokio::test]
async fn cluster_wins_writes_the_live_value_releases_it_and_rollback_restores() {
    let (hub, c) = hub().await;
    let cluster = MemoryCluster::new();
    gitops_into(&hub, &cluster);
    deployed(&hub, &c, "dd-test").await;
    let (det, desired) = drifted_detector(
        &c,
        &cluster,
        &[("backend-api", |o| o["spec"]["replicas"] = json!(5))],
    )
    .await;
    let open = det.open_drifts();
    assert_eq!(open.len(), 1);
    let api = desired
        .resources
        .iter()
        .find(|r| r.resource.key.name == "backend-api" && r.resource.key.kind == "Deployment")
        .expect("api");
    let live_api = LiveObject::new(cluster.get(&api.resource.key).expect("live"));
    let d = DiffEngine::default().diff(&DesiredObject::new(api.resource.clone()), Some(&live_api));
    let values = drift_core::patch::adopt_values(&live_api, &d.drifts).expect("adopt values");
    let adopt = drift_core::ports::RemediationPlan {
        key: api.resource.key.clone(),
        action: RemediationAction::Adopt { values },
        provenance: Some(api.provenance.clone()),
        drifts: d.drifts.clone(),
        desired: None,
        actor: "bob".into(),
        reason: "keep the scale-up".into(),
    };
    let rem = ConfigHubRemediator::new(c.clone(), RemediatorConfig::default());
    let space = c.require_space("dd-test").await.expect("space");
    let unit = c
        .unit_by_slug(&space.space_id, "backend-api")
        .await
        .expect("get")
        .expect("unit");
    let dry = rem.remediate(&adopt, RemediationMode::DryRun).await;
    assert_eq!(dry.status, RemediationStatus::DryRunOk, "{}", dry.message);
    assert_eq!(
        c.get_unit(&space.space_id, &unit.unit_id)
            .await
            .expect("get")
            .unit
            .head_revision_num,
        unit.head_revision_num
    );
    let r = rem.remediate(&adopt, RemediationMode::Apply).await;
    assert_eq!(r.status, RemediationStatus::Applied, "{}", r.message);
    assert!(r.message.contains("release 2 published"), "{}", r.message);
    let after = c
        .get_unit(&space.space_id, &unit.unit_id)
        .await
        .expect("get")
        .unit;
    assert_eq!(after.head_revision_num, unit.head_revision_num + 1);
    assert_eq!(
        after.last_released_revision_num, after.head_revision_num,
        "the live value is released"
    );
    let revs = c
        .revisions(&space.space_id, &unit.unit_id, None)
        .await
        .expect("revisions");
    let last = revs.last().expect("revision");
    assert!(
        last.description.contains("adopt") && last.description.contains("keep the scale-up"),
        "the revision carries the audit line: {}",
        last.description
    );
    let (data, _) = c
        .read_unit_data(&space.space_id, &unit.unit_id)
        .await
        .expect("data");
    assert!(String::from_utf8(data).expect("utf8").contains("replicas: 5"));

    // Another unit with unreleased edits: the next adopt writes, but does not release someone else's work.
    edit(&c, "dd-test", "frontend-web", |t| format!("{t}# pending\n")).await;
    let after_rollback = rem
        .rollback(&space.space_id, &unit.unit_id, "undo the adopt", false)
        .await
        .expect("rollback");
    assert!(after_rollback.release.is_none(), "{}", after_rollback.note);
    assert!(
        after_rollback.note.contains("frontend-web"),
        "{}",
        after_rollback.note
    );
    let (data, _) = c
        .read_unit_data(&space.space_id, &unit.unit_id)
        .await
        .expect("data");
    assert!(
        String::from_utf8(data).expect("utf8").contains("replicas: 3"),
        "restored the revision before the release"
    );
    let rolled = c
        .get_unit(&space.space_id, &unit.unit_id)
        .await
        .expect("get")
        .unit;
    assert!(
        rolled.last_change_description.contains("undo the adopt"),
        "{}",
        rolled.last_change_description
    );
}

#[tokio::test]
async fn bulk_revert_of_what_a_named_filter_selects() {
    let (hub, c) = hub().await;
    deployed(&hub, &c, "dd-test").await;
    let store = ConfigHubDesiredStore::new(c.clone(), DesiredStoreConfig::spaces(["dd-test"]));
    let desired = store.load().await.expect("load");
    let log = ConfigHubDriftLog::connect(c.clone(), "dd-drift-records")
        .await
        .expect("log")
        .with_cluster("sandbox");
    let cluster = MemoryCluster::new();
    // Two replica drifts and one image drift, recorded with the units they came from.
    for (name, live_replicas, image) in [
        ("backend-api", 5, "app:1"),
        ("frontend-web", 1, "app:1"),
        ("database-postgres", 3, "app:2"),
    ] {
        cluster.apply(deployment(name, live_replicas, image));
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
    // The drifted units are marked where ConfigHub users look.
    let space = c.require_space("dd-test").await.expect("space");
    let marked = c
        .list_units(
            &space.space_id,
            &UnitQuery::with_where(format!("Labels.{DRIFTED_LABEL} = 'true'")),
        )
        .await
        .expect("marked");
    assert_eq!(marked.len(), 3);
    let records = c.require_space("dd-drift-records").await.expect("records");
    let fleet = c
        .list_units(
            &records.space_id,
            &UnitQuery::with_where("Labels.cluster = 'sandbox'"),
        )
        .await
        .expect("fleet");
    assert_eq!(fleet.len(), 3, "records carry the cluster's name");
    // No agent reports dd-test's Release: the detector does.
    let release = c
        .latest_release(&space.space_id)
        .await
        .expect("list")
        .expect("release");
    let ls = release.live_status.expect("live status");
    assert_eq!(
        (
            ls.sync.as_deref(),
            ls.reporter.as_deref(),
            ls.data_source.as_deref()
        ),
        (Some("OutOfSync"), Some("drift-detector"), Some("sandbox"))
    );
    assert!(
        ls.message
            .as_deref()
            .is_some_and(|m| m.starts_with("3 open drift(s) in dd-test")),
        "{ls:?}"
    );

    let rem = ConfigHubRemediator::new(c.clone(), RemediatorConfig::default())
        .with_cluster(Arc::new(cluster.clone()));
    let dry = rem
        .revert_filter(&log, NamedFilter::ReplicaDrifts, RemediationMode::DryRun, "ops")
        .await
        .expect("dry run");
    assert_eq!(dry.len(), 2);
    assert!(
        dry.iter().all(|o| o.status == RemediationStatus::DryRunOk),
        "{dry:?}"
    );
    let replicas = |name: &str| {
        cluster.get(&deployment(name, 0, "").key).expect("live").object["spec"]["replicas"].clone()
    };
    assert_eq!(replicas("backend-api"), 5, "a dry run changes nothing");
    let out = rem
        .revert_filter(&log, NamedFilter::ReplicaDrifts, RemediationMode::Apply, "ops")
        .await
        .expect("revert");
    let mut units: Vec<&str> = out.iter().map(|o| o.unit.as_str()).collect();
    units.sort_unstable();
    assert_eq!(
        units,
        ["backend-api", "frontend-web"],
        "one result per drift, the image drift untouched"
    );
    assert!(
        out.iter().all(|o| o.status == RemediationStatus::Applied),
        "{out:?}"
    );
    assert_eq!(
        (replicas("backend-api"), replicas("frontend-web")),
        (json!(3), json!(3))
    );
    assert_eq!(
        cluster
            .get(&deployment("database-postgres", 0, "").key)
            .expect("live")
            .object["spec"]["template"]["spec"]["containers"][0]["image"],
        "app:2"
    );
}

#[tokio::test]
async fn live_status_goes_back_to_synced_and_another_reporter_is_never_overwritten() {
    let (hub, c) = hub().await;
    deployed(&hub, &c, "dd-test").await;
    let store = ConfigHubDesiredStore::new(c.clone(), DesiredStoreConfig::spaces(["dd-test"]));
    let desired = store.load().await.expect("load");
    let prov = desired
        .resources
        .iter()
        .find(|r| r.resource.key.name == "backend-api")
        .expect("unit")
        .provenance
        .clone();
    let log = ConfigHubDriftLog::connect(c.clone(), "dd-drift-records")
        .await
        .expect("log");
    let d = drift("backend-api", 5, "app:1");
    let ev = |kind, at| {
        DriftEvent::new(kind, at, d.clone(), "drift-detector@test", "x").with_provenance(Some(prov.clone()))
    };
    let space = c.require_space("dd-test").await.expect("space");
    let sync = || async {
        let r = c
            .latest_release(&space.space_id)
            .await
            .expect("list")
            .expect("release");
        r.live_status.and_then(|l| l.sync)
    };
    log.append(&ev(DriftEventKind::Opened, 1_000))
        .await
        .expect("opened");
    assert_eq!(sync().await.as_deref(), Some("OutOfSync"));
    log.append(&ev(DriftEventKind::Resolved, 2_000))
        .await
        .expect("resolved");
    assert_eq!(sync().await.as_deref(), Some("Synced"));
    let unit = c
        .unit_by_slug(&space.space_id, "backend-api")
        .await
        .expect("get")
        .expect("unit");
    assert_eq!(unit.labels.get(DRIFTED_LABEL).map(String::as_str), Some("false"));

    // Another reporter (argobot) owns the status of the next Release: it is left alone.
    let hub2 = FakeHub::start(FakeHubConfig::default().agent_reporter("argobot"))
        .await
        .expect("hub");
    let c2 = ConfigHubClient::new(hub2.client_config()).expect("client");
    deployed(&hub2, &c2, "dd-test").await;
    let space2 = c2.require_space("dd-test").await.expect("space");
    let before = c2
        .latest_release(&space2.space_id)
        .await
        .expect("list")
        .expect("release");
    assert_eq!(
        before.live_status.as_ref().and_then(|l| l.reporter.as_deref()),
        Some("argobot")
    );
    let desired2 = ConfigHubDesiredStore::new(c2.clone(), DesiredStoreConfig::spaces(["dd-test"]))
        .load()
        .await
        .expect("load");
    let prov2 = desired2
        .resources
        .iter()
        .find(|r| r.resource.key.name == "backend-api")
        .expect("unit")
        .provenance
        .clone();
    let log2 = ConfigHubDriftLog::connect(c2.clone(), "dd-drift-records")
        .await
        .expect("log");
    log2.append(
        &DriftEvent::new(DriftEventKind::Opened, 1_000, d.clone(), "t", "x").with_provenance(Some(prov2)),
    )
    .await
    .expect("opened");
    let after = c2
        .latest_release(&space2.space_id)
        .await
        .expect("list")
        .expect("release");
    assert_eq!(
        after.live_status, before.live_status,
        "argobot's status is not overwritten"
    );
}

/// One records space as a fleet's view: the same drift in two clusters is two records, each labelled
/// with its cluster; each detector reads back its own cluster's only, and a `Labels.cluster` filter
/// selects one cluster.
#[tokio::test]
async fn one_records_space_serves_a_fleet_with_a_filter_per_cluster() {
    let (_hub, c) = hub().await;
    let log = |cluster: &'static str| {
        let c = c.clone();
        async move {
            ConfigHubDriftLog::connect(c, "fleet-drift-records")
                .await
                .expect("log")
                .with_cluster(cluster)
                .mark_units(false)
        }
    };
    let (eu, us) = (log("eu-west").await, log("us-east").await);
    let e = DriftEvent::new(
        DriftEventKind::Opened,
        1_000,
        drift("backend-api", 5, "app:1"),
        "drift-detector@test",
        "live differs",
    );
    eu.append(&e).await.expect("eu");
    us.append(&e).await.expect("us");
    let mut closed = e.clone();
    closed.kind = DriftEventKind::Resolved;
    closed.event_id = format!("{}-resolved", e.event_id);
    us.append(&closed).await.expect("us resolved");

    let mine = |l: &ConfigHubDriftLog| {
        let l = l.clone();
        async move {
            l.records(&HistoryQuery {
                open_only: true,
                ..HistoryQuery::default()
            })
            .await
            .expect("records")
        }
    };
    assert_eq!(mine(&eu).await.len(), 1, "eu's drift is open");
    assert!(
        mine(&us).await.is_empty(),
        "us resolved its own; eu's is not us's"
    );
    let one = eu
        .records(&HistoryQuery {
            drift_id: Some(e.drift.id.clone()),
            ..HistoryQuery::default()
        })
        .await
        .expect("by id");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].state, drift_core::ports::DriftState::Open);

    let space = c.require_space("fleet-drift-records").await.expect("space");
    let all = c
        .list_units(
            &space.space_id,
            &UnitQuery::with_where("Labels.drift-detector = 'record'"),
        )
        .await
        .expect("all");
    assert_eq!(all.len(), 2, "one record per cluster");
    let us_only = c
        .list_units(
            &space.space_id,
            &UnitQuery::with_where("Labels.cluster = 'us-east'"),
        )
        .await
        .expect("us");
    assert_eq!(us_only.len(), 1);
    assert_eq!(
        us_only[0].unit.slug,
        drift_confighub::cluster_record_slug(Some("us-east"), e.drift.id.as_str())
    );
}
