//! The detector's pipeline logic (ARCHITECTURE §6) without I/O: fingerprints, coalescing, transitions,
//! policy, safety gates, restarts. Time is a [`ManualClock`]; the "cluster" is the in-memory one.

use std::sync::Arc;

use drift_core::clock::ManualClock;
use drift_core::detector::{Detector, DetectorConfig, Outcome};
use drift_core::memory::{MemoryCluster, MemoryDriftLog};
use drift_core::policy::{Action, Policy};
use drift_core::ports::{
    DesiredResource, DriftEventKind, DriftLog, DriftState, HistoryQuery, LiveEvent, LiveSource, Provenance,
    RelistScope, RemediationAction, RemediationMode, RemediationStatus, Remediator,
};
use drift_core::rules::DriftSet;
use drift_core::safety::{FlapGuardConfig, RateLimitConfig};
use drift_core::{DiffEngine, Resource, ResourceKey};
use futures::StreamExt;
use futures::executor::block_on;
use serde_json::{Value, json};

fn deploy(name: &str, replicas: i64, image: &str, generation: i64) -> Resource {
    Resource::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "drift-test", "generation": generation},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": image,
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}))
    .expect("deployment")
}

/// Auto-fix on, and requested for every drift (critical ones still need approval).
fn auto_fix_everything() -> DetectorConfig {
    DetectorConfig {
        policy: Policy {
            auto_fix: true,
            rules: vec![drift_core::policy::PolicyRule {
                when: Default::default(),
                action: Action::AutoFix,
            }],
        },
        ..DetectorConfig::default()
    }
}

fn desired(r: Resource) -> DesiredResource {
    DesiredResource {
        provenance: Provenance {
            environment: Some("dev".into()),
            ..Provenance::file("workloads.yaml")
        },
        resource: r,
    }
}

struct Harness {
    clock: Arc<ManualClock>,
    detector: Detector,
    cluster: MemoryCluster,
    log: MemoryDriftLog,
    events: futures::stream::BoxStream<'static, Result<LiveEvent, drift_core::ports::PortError>>,
}

impl Harness {
    fn new(config: DetectorConfig, objects: Vec<Resource>) -> Self {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let cluster = MemoryCluster::new();
        for o in &objects {
            cluster.apply(o.clone());
        }
        let mut detector = Detector::new(DiffEngine::default(), config, clock.clone());
        detector.set_desired(objects.into_iter().map(desired).collect());
        let events = cluster.watch();
        let mut h = Harness {
            clock,
            detector,
            cluster,
            log: MemoryDriftLog::new(),
            events,
        };
        let initial = h.pump();
        assert!(
            initial.iter().all(|o| o.events.is_empty()),
            "in sync at start: {initial:?}"
        );
        h
    }

    /// Feeds every pending watch event to the detector and processes the queue.
    fn pump(&mut self) -> Vec<Outcome> {
        while let Some(Some(Ok(ev))) = futures::FutureExt::now_or_never(self.events.next()) {
            self.detector.observe(ev);
        }
        let mut outs = Vec::new();
        while let Some(k) = self.detector.next_key() {
            let out = self.detector.process(&k);
            for e in &out.events {
                block_on(self.log.append(e)).expect("append");
            }
            outs.push(out);
        }
        outs
    }

    /// Runs a plan as the daemon does: dry run, then apply; records the result.
    fn fix(&mut self, plan: &drift_core::ports::RemediationPlan) -> RemediationStatus {
        let dry = block_on(self.cluster.remediate(plan, RemediationMode::DryRun));
        if dry.status != RemediationStatus::DryRunOk {
            return dry.status;
        }
        let real = block_on(self.cluster.remediate(plan, RemediationMode::Apply));
        let out = self.detector.record_fix(plan, &real);
        for e in &out.events {
            block_on(self.log.append(e)).expect("append");
        }
        real.status
    }

    fn kinds(outs: &[Outcome]) -> Vec<DriftEventKind> {
        outs.iter()
            .flat_map(|o| o.events.iter().map(|e| e.kind))
            .collect()
    }
}

fn key(name: &str) -> ResourceKey {
    ResourceKey::new("apps/v1", "Deployment", Some("drift-test"), name)
}

fn auto_fix() -> DetectorConfig {
    DetectorConfig {
        policy: Policy {
            auto_fix: true,
            ..Policy::default()
        },
        ..DetectorConfig::default()
    }
}

#[test]
fn opened_updated_resolved() {
    let mut h = Harness::new(
        DetectorConfig::default(),
        vec![deploy("backend-api", 3, "nginx:1", 1)],
    );
    h.cluster.apply(deploy("backend-api", 5, "nginx:1", 2));
    let outs = h.pump();
    assert_eq!(Harness::kinds(&outs), [DriftEventKind::Opened]);
    let opened = &outs[0].events[0];
    assert_eq!(opened.drift.describe(), "spec.replicas expected=3, actual=5");
    assert_eq!(opened.environment.as_deref(), Some("dev"));
    // auto-fix is off: an alert, no fix
    assert!(outs[0].fixes.is_empty());
    assert_eq!(
        outs[0].alerts[0].reason,
        "auto-fix is off: fixing it needs approval"
    );

    h.cluster.apply(deploy("backend-api", 6, "nginx:1", 3));
    assert_eq!(Harness::kinds(&h.pump()), [DriftEventKind::Updated]);
    h.cluster.apply(deploy("backend-api", 3, "nginx:1", 4));
    assert_eq!(Harness::kinds(&h.pump()), [DriftEventKind::Resolved]);
    assert!(h.detector.open_drifts().is_empty());
}

#[test]
fn status_only_updates_are_recognised_without_a_diff() {
    let mut h = Harness::new(
        DetectorConfig::default(),
        vec![deploy("backend-api", 3, "nginx:1", 1)],
    );
    let diffs_before = h.detector.stats().diffs;
    for i in 0..50 {
        let mut r = deploy("backend-api", 3, "nginx:1", 1);
        r.object["status"] = json!({"readyReplicas": i});
        r.object["metadata"]["resourceVersion"] = json!(i.to_string());
        h.cluster.apply(r);
    }
    assert!(h.pump().is_empty());
    assert_eq!(h.detector.stats().diffs, diffs_before);
    assert_eq!(h.detector.stats().objects_skipped, 50);
}

#[test]
fn a_storm_of_updates_to_one_object_is_one_diff() {
    let mut h = Harness::new(
        DetectorConfig::default(),
        vec![deploy("backend-api", 3, "nginx:1", 1)],
    );
    let diffs_before = h.detector.stats().diffs;
    for g in 2..102 {
        h.detector
            .observe(LiveEvent::Applied(deploy("backend-api", g, "nginx:1", g)));
    }
    assert_eq!(h.detector.queue_len(), 1);
    let outs = h.pump();
    assert_eq!(h.detector.stats().diffs - diffs_before, 1);
    // the latest object wins
    assert_eq!(outs[0].events[0].drift.actual, Some(json!(101)));
}

#[test]
fn auto_fix_then_corrected_after_live_confirms() {
    let mut h = Harness::new(auto_fix(), vec![deploy("backend-api", 3, "nginx:1", 1)]);
    h.cluster.apply(deploy("backend-api", 5, "nginx:1", 2));
    let outs = h.pump();
    assert_eq!(outs[0].fixes.len(), 1);
    let plan = outs[0].fixes[0].clone();
    assert!(matches!(plan.action, RemediationAction::Revert { .. }));
    assert!(
        plan.audit()
            .contains("drift-detector revert of apps/Deployment drift-test/backend-api"),
        "{}",
        plan.audit()
    );
    assert_eq!(h.fix(&plan), RemediationStatus::Applied);
    // remediated, not yet corrected
    let o = h.detector.open_drifts();
    assert_eq!(o[0].state, DriftState::Remediating);
    // the watch shows the fix: corrected
    let outs = h.pump();
    assert_eq!(Harness::kinds(&outs), [DriftEventKind::Corrected]);
    assert_eq!(outs[0].events[0].drift.set, DriftSet::Corrected);
    assert_eq!(
        h.cluster
            .get(&key("backend-api"))
            .and_then(|r| r.object.pointer("/spec/replicas").cloned()),
        Some(json!(3))
    );
    let records = block_on(h.log.records(&HistoryQuery::default())).expect("records");
    let timeline: Vec<DriftEventKind> = records[0].timeline.iter().map(|t| t.kind).collect();
    assert_eq!(
        timeline,
        [
            DriftEventKind::Opened,
            DriftEventKind::Remediated,
            DriftEventKind::Corrected
        ]
    );
    assert_eq!(records[0].state, DriftState::Corrected);
}

#[test]
fn critical_drifts_wait_for_approval() {
    let mut h = Harness::new(auto_fix(), vec![deploy("backend-api", 3, "nginx:1", 1)]);
    h.cluster.apply(deploy("backend-api", 3, "evil/miner:latest", 2));
    let outs = h.pump();
    assert!(outs[0].fixes.is_empty(), "never unattended for critical drifts");
    assert_eq!(
        outs[0].alerts[0].reason,
        "critical drift: fixing it needs approval"
    );
    let id = outs[0].events[0].drift.id.clone();
    assert!(h.detector.open_drift(&id).expect("open").needs_approval);
    let (events, plan) = h.detector.approve(&id, "alice").expect("approve");
    assert_eq!(events[0].kind, DriftEventKind::Approved);
    assert_eq!(events[0].actor, "alice");
    assert_eq!(plan.actor, "alice");
    assert_eq!(h.fix(&plan), RemediationStatus::Applied);
    assert_eq!(Harness::kinds(&h.pump()), [DriftEventKind::Corrected]);
}

#[test]
fn rate_limit_holds_fixes_back() {
    let config = DetectorConfig {
        rate_limit: RateLimitConfig {
            per_resource: 2,
            per_resource_window_ms: 60_000,
            ..RateLimitConfig::default()
        },
        flap_guard: FlapGuardConfig {
            threshold: 100,
            window_ms: 1,
        },
        ..auto_fix()
    };
    let mut h = Harness::new(config, vec![deploy("backend-api", 3, "nginx:1", 1)]);
    let mut g = 2;
    for round in 0..2 {
        h.cluster.apply(deploy("backend-api", 5, "nginx:1", g));
        g += 1;
        let outs = h.pump();
        assert_eq!(outs[0].fixes.len(), 1, "round {round}");
        let plan = outs[0].fixes[0].clone();
        h.fix(&plan);
        h.pump();
        h.clock.advance(1000);
    }
    h.cluster.apply(deploy("backend-api", 5, "nginx:1", g));
    let outs = h.pump();
    assert!(outs[0].fixes.is_empty());
    assert!(
        outs[0].alerts[0].reason.contains("rate limit"),
        "{}",
        outs[0].alerts[0].reason
    );
    assert_eq!(h.detector.stats().fixes_rate_limited, 1);
    // after the window, an approval goes through again
    h.clock.advance(60_000);
    let id = outs[0].events[0].drift.id.clone();
    assert!(h.detector.approve(&id, "bob").is_ok());
}

#[test]
fn flap_guard_stops_fighting_another_controller() {
    // An HPA-like actor keeps scaling to 5 right after every fix.
    let config = DetectorConfig {
        flap_guard: FlapGuardConfig {
            threshold: 3,
            window_ms: 600_000,
        },
        ..auto_fix()
    };
    let mut h = Harness::new(config, vec![deploy("backend-api", 3, "nginx:1", 1)]);
    let mut fixes = 0;
    let mut escalated = false;
    for g in 0..10 {
        h.cluster.apply(deploy("backend-api", 5, "nginx:1", 100 + 2 * g));
        let outs = h.pump();
        if Harness::kinds(&outs).contains(&DriftEventKind::Escalated) {
            escalated = true;
            assert!(outs[0].fixes.is_empty());
            assert!(
                outs[0]
                    .alerts
                    .iter()
                    .any(|a| a.escalation && a.reason.contains("another controller")),
                "{:?}",
                outs[0].alerts
            );
            break;
        }
        let plan = outs[0].fixes[0].clone();
        h.fix(&plan);
        fixes += 1;
        assert_eq!(Harness::kinds(&h.pump()), [DriftEventKind::Corrected]);
        h.clock.advance(5_000);
    }
    assert!(escalated);
    assert_eq!(fixes, 3, "fixed three times, then stopped");
    // further re-openings do not fix either
    h.cluster.apply(deploy("backend-api", 3, "nginx:1", 500));
    h.pump();
    h.cluster.apply(deploy("backend-api", 5, "nginx:1", 501));
    let outs = h.pump();
    assert!(outs[0].fixes.is_empty());
    assert_eq!(h.detector.open_drifts()[0].state, DriftState::Escalated);
}

#[test]
fn a_guard_failure_re_plans_instead_of_forcing() {
    let mut h = Harness::new(auto_fix(), vec![deploy("backend-api", 3, "nginx:1", 1)]);
    h.cluster.apply(deploy("backend-api", 5, "nginx:1", 2));
    let plan = h.pump()[0].fixes[0].clone();
    // live moves on between plan and patch
    h.cluster
        .edit(&key("backend-api"), |o| o["spec"]["replicas"] = json!(7));
    let dry = block_on(h.cluster.remediate(&plan, RemediationMode::DryRun));
    assert_eq!(dry.status, RemediationStatus::Conflict);
    let out = h.detector.record_fix(&plan, &dry);
    assert!(out.events.is_empty());
    assert_eq!(
        h.cluster
            .get(&key("backend-api"))
            .and_then(|r| r.object.pointer("/spec/replicas").cloned()),
        Some(json!(7))
    );
    // the key is re-diffed; a new plan carries the new live value in its guard
    let outs = h.pump();
    assert_eq!(Harness::kinds(&outs), [DriftEventKind::Updated]);
    let again = outs
        .iter()
        .find_map(|o| o.fixes.first())
        .expect("re-planned")
        .clone();
    assert_eq!(h.fix(&again), RemediationStatus::Applied);
}

#[test]
fn desired_changes_re_diff_only_affected_keys() {
    let mut h = Harness::new(
        DetectorConfig::default(),
        vec![deploy("a", 1, "nginx:1", 1), deploy("b", 1, "nginx:1", 1)],
    );
    let before = h.detector.stats().diffs;
    let queued = h.detector.replace_source(
        "workloads.yaml",
        vec![
            desired(deploy("a", 2, "nginx:1", 1)),
            desired(deploy("b", 1, "nginx:1", 1)),
        ],
    );
    assert_eq!(queued, 1);
    let outs = h.pump();
    assert_eq!(h.detector.stats().diffs - before, 1);
    assert_eq!(
        outs[0].events[0].drift.describe(),
        "spec.replicas expected=2, actual=1"
    );
    // dropping b from the source resolves nothing (it had no drift) and re-diffs only b
    let before = h.detector.stats().diffs;
    h.detector
        .replace_source("workloads.yaml", vec![desired(deploy("a", 2, "nginx:1", 1))]);
    h.pump();
    assert_eq!(
        h.detector.stats().diffs - before,
        0,
        "b is no longer desired: nothing to diff"
    );
    assert_eq!(h.detector.sizes().0, 1);
}

#[test]
fn deleted_objects_are_missing_and_reapplied_on_approval() {
    let mut h = Harness::new(auto_fix(), vec![deploy("backend-api", 3, "nginx:1", 1)]);
    h.cluster.delete(&key("backend-api"));
    let outs = h.pump();
    assert_eq!(outs[0].events[0].drift.rule, "missing-live");
    assert!(outs[0].fixes.is_empty(), "a missing object is critical");
    let id = outs[0].events[0].drift.id.clone();
    let (_, plan) = h.detector.approve(&id, "alice").expect("approve");
    assert!(matches!(plan.action, RemediationAction::Reapply));
    assert_eq!(h.fix(&plan), RemediationStatus::Applied);
    assert_eq!(Harness::kinds(&h.pump()), [DriftEventKind::Corrected]);
}

#[test]
fn a_watch_gap_misses_nothing_and_opens_nothing_twice() {
    let mut h = Harness::new(
        DetectorConfig::default(),
        vec![deploy("a", 1, "nginx:1", 1), deploy("b", 1, "nginx:1", 1)],
    );
    h.cluster.apply(deploy("a", 4, "nginx:1", 2));
    assert_eq!(Harness::kinds(&h.pump()), [DriftEventKind::Opened]);
    // during a gap, b changes and a changes again; the re-list carries both
    h.detector.observe(LiveEvent::Restarted {
        scope: RelistScope::Kind {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: None,
        },
        resources: vec![deploy("a", 4, "nginx:1", 2), deploy("b", 9, "nginx:1", 5)],
    });
    let kinds = Harness::kinds(&h.pump());
    assert_eq!(
        kinds,
        [DriftEventKind::Opened],
        "b opened, a unchanged and not re-opened"
    );
    assert_eq!(h.detector.open_drifts().len(), 2);
}

#[test]
fn an_autoscaler_takes_over_replicas() {
    let mut h = Harness::new(DetectorConfig::default(), vec![deploy("web", 3, "nginx:1", 1)]);
    h.cluster.apply(deploy("web", 6, "nginx:1", 2));
    assert_eq!(Harness::kinds(&h.pump()), [DriftEventKind::Opened]);
    let hpa = Resource::from_value(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "drift-test", "generation": 1},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 10}}))
    .expect("hpa");
    h.cluster.apply(hpa);
    assert_eq!(Harness::kinds(&h.pump()), [DriftEventKind::Resolved]);
}

/// The keys queued, taken out, sorted.
fn queued(d: &mut Detector) -> Vec<String> {
    let mut keys: Vec<String> = std::iter::from_fn(|| d.next_key())
        .map(|k| k.to_string())
        .collect();
    keys.sort();
    keys
}

/// An autoscaler's arrival queues exactly the desired workloads it names (kind, namespace, name; any
/// group and version), however the desired set came to hold them.
#[test]
fn an_autoscaler_queues_exactly_its_targets() {
    let obj = |api: &str, kind: &str, ns: &str, name: &str| {
        Resource::from_value(json!({"apiVersion": api, "kind": kind,
            "metadata": {"name": name, "namespace": ns}, "spec": {"replicas": 1}}))
        .expect("object")
    };
    let hpa = |name: &str, target: Value| {
        Resource::from_value(
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": "shop"}, "spec": {"scaleTargetRef": target}}),
        )
        .expect("hpa")
    };
    let mut d = Detector::new(
        DiffEngine::default(),
        DetectorConfig::default(),
        Arc::new(ManualClock::new(0)),
    );
    let set = vec![
        obj("apps/v1", "Deployment", "shop", "web"),
        obj("apps/v1", "Deployment", "other", "web"),
        obj("apps/v1", "StatefulSet", "shop", "web"),
        obj("apps/v1", "Deployment", "shop", "api"),
    ];
    d.set_desired(set.iter().cloned().map(desired).collect());
    d.observe(LiveEvent::Restarted {
        scope: RelistScope::All,
        resources: set,
    });
    d.observe(LiveEvent::Ready);
    while let Some(k) = d.next_key() {
        d.process(&k);
    }
    d.observe(LiveEvent::Applied(hpa(
        "h1",
        json!({"kind": "Deployment", "name": "web"}),
    )));
    assert_eq!(queued(&mut d), ["apps/Deployment shop/web"]);
    // A custom workload of the same name, added by a source: found under its own group.
    d.replace_source(
        "rollouts.yaml",
        vec![DesiredResource {
            provenance: Provenance::file("rollouts.yaml"),
            resource: obj("argoproj.io/v1alpha1", "Rollout", "shop", "web"),
        }],
    );
    while let Some(k) = d.next_key() {
        d.process(&k);
    }
    d.observe(LiveEvent::Applied(hpa(
        "h2",
        json!({"kind": "Rollout", "name": "web"}),
    )));
    assert_eq!(queued(&mut d), ["argoproj.io/Rollout shop/web"]);
    // Gone from the desired set: no longer queued.
    d.replace_source("rollouts.yaml", Vec::new());
    while let Some(k) = d.next_key() {
        d.process(&k);
    }
    d.observe(LiveEvent::Applied(hpa(
        "h2",
        json!({"kind": "Rollout", "name": "web", "x": 1}),
    )));
    assert!(queued(&mut d).is_empty());
    // Retargeted: the old and the new target are judged again.
    d.observe(LiveEvent::Applied(hpa(
        "h1",
        json!({"kind": "Deployment", "name": "api"}),
    )));
    assert_eq!(
        queued(&mut d),
        ["apps/Deployment shop/api", "apps/Deployment shop/web"]
    );
}

#[test]
fn restart_restores_open_drifts_from_the_log() {
    let mut h = Harness::new(
        DetectorConfig::default(),
        vec![deploy("a", 1, "nginx:1", 1), deploy("b", 1, "nginx:1", 1)],
    );
    h.cluster.apply(deploy("a", 4, "nginx:1", 2));
    h.cluster.apply(deploy("b", 4, "nginx:1", 2));
    h.pump();
    let records = block_on(h.log.records(&HistoryQuery {
        open_only: true,
        ..HistoryQuery::default()
    }))
    .expect("records");
    assert_eq!(records.len(), 2);
    // While the detector is down, b is fixed by someone.
    h.cluster.apply(deploy("b", 1, "nginx:1", 3));
    // A new detector process: restore, then watch.
    let mut fresh = Detector::new(DiffEngine::default(), DetectorConfig::default(), h.clock.clone());
    fresh.set_desired(vec![
        desired(deploy("a", 1, "nginx:1", 1)),
        desired(deploy("b", 1, "nginx:1", 1)),
    ]);
    fresh.restore(records);
    let mut events = h.cluster.watch();
    while let Some(Some(Ok(ev))) = futures::FutureExt::now_or_never(events.next()) {
        fresh.observe(ev);
    }
    let mut kinds = Vec::new();
    while let Some(k) = fresh.next_key() {
        kinds.extend(
            fresh
                .process(&k)
                .events
                .into_iter()
                .map(|e| (e.drift.key.name.clone(), e.kind)),
        );
    }
    assert_eq!(
        kinds,
        [("b".to_string(), DriftEventKind::Resolved)],
        "a stays open without a second Opened"
    );
    assert_eq!(fresh.open_drifts().len(), 1);
}

#[test]
fn secret_drifts_are_fixed_by_reapply_not_patch() {
    let secret = |v: &str| {
        Resource::from_value(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "drift-test"},
            "stringData": {"password": v}}))
        .expect("secret")
    };
    let mut h = Harness::new(auto_fix_everything(), vec![secret("s3cret")]);
    h.cluster.apply(secret("changed"));
    let outs = h.pump();
    let id = outs[0].events[0].drift.id.clone();
    let text = format!("{outs:?}");
    assert!(
        !text.contains("s3cret") && !text.contains("changed\""),
        "no secret in outcomes"
    );
    let (_, plan) = h.detector.approve(&id, "alice").expect("approve");
    assert!(matches!(plan.action, RemediationAction::Reapply));
    let dry = block_on(h.cluster.remediate(&plan, RemediationMode::DryRun));
    assert_eq!(
        dry.status,
        RemediationStatus::Skipped,
        "the in-memory cluster cannot re-apply Secret data"
    );
}

#[test]
fn analysis_items_carry_cost_and_allowed_actions() {
    let mut h = Harness::new(
        DetectorConfig::default(),
        vec![deploy("backend-api", 3, "nginx:1", 1)],
    );
    h.cluster.apply(deploy("backend-api", 5, "nginx:1", 2));
    h.pump();
    let items = h.detector.analysis_items(&[]);
    assert_eq!(items.len(), 1);
    let cost = items[0].monthly_cost_delta.expect("priced");
    assert!(
        (cost - 2.0 * (0.1 * 0.021811 + 0.0625 * 0.002923) * 730.0).abs() < 1e-9,
        "{cost}"
    );
    let analysis = drift_core::analysis::DeterministicAnalyzer
        .analyze_now(&drift_core::ports::AnalysisRequest { items });
    assert!(analysis.summary.contains("+$3.45/month"), "{}", analysis.summary);
    let _: Value = serde_json::to_value(&analysis).expect("serializable");
}

#[test]
fn a_fix_that_lands_before_its_outcome_is_reported_counts_as_corrected() {
    let mut h = Harness::new(
        DetectorConfig::default(),
        vec![deploy("backend-api", 3, "nginx:1", 1)],
    );
    h.cluster.apply(deploy("backend-api", 5, "nginx:1", 2));
    h.pump();
    let id = h.detector.open_drifts()[0].drift.id.clone();
    let (_, plan) = h.detector.approve(&id, "alice").expect("plan");
    // The fix goes through (e.g. ConfigHub applied the unit) and the watch reports it before the
    // remediator has answered.
    let applied = block_on(h.cluster.remediate(&plan, RemediationMode::Apply));
    assert_eq!(applied.status, RemediationStatus::Applied);
    let outs = h.pump();
    assert_eq!(
        Harness::kinds(&outs),
        [DriftEventKind::Remediated, DriftEventKind::Corrected]
    );
    // The late answer changes nothing.
    let late = h.detector.record_fix(&plan, &applied);
    assert!(late.events.is_empty(), "{:?}", late.events);
    assert!(h.detector.open_drifts().is_empty());
    assert_eq!(h.detector.stats().corrected, 1);
}

#[test]
fn compaction_is_deferred_and_changes_no_verdict() {
    let mut h = Harness::new(
        DetectorConfig::default(),
        vec![
            deploy("backend-api", 3, "nginx:1", 1),
            deploy("frontend-web", 2, "nginx:1", 1),
        ],
    );
    assert_eq!(
        h.detector.live_cache_bytes(),
        0,
        "processed objects wait for compaction"
    );
    assert_eq!(h.detector.uncompacted(), 2);
    assert_eq!(h.detector.compact(usize::MAX), 2);
    assert!(h.detector.live_cache_bytes() > 0);
    assert_eq!(h.detector.uncompacted(), 0);
    // Compact entries still diff: a change after compaction is found, its revert still works.
    h.cluster.apply(deploy("frontend-web", 1, "nginx:1", 2));
    assert_eq!(Harness::kinds(&h.pump()), [DriftEventKind::Opened]);
    let id = h.detector.open_drifts()[0].drift.id.clone();
    h.detector.compact(usize::MAX);
    let (_, plan) = h
        .detector
        .approve(&id, "alice")
        .expect("plan from a compact entry");
    assert_eq!(h.fix(&plan), RemediationStatus::Applied);
    assert_eq!(Harness::kinds(&h.pump()), [DriftEventKind::Corrected]);
}

/// A desired object outside every watched scope (a cluster-scoped Namespace while only namespace
/// `drift-test` is watched, a namespace not watched, a kind not served) is "not watched", with the
/// reason — never a critical "missing" drift.
#[test]
fn objects_outside_the_watched_scopes_are_not_watched_not_missing() {
    let clock = Arc::new(ManualClock::new(1_000));
    let mut d = Detector::new(DiffEngine::default(), DetectorConfig::default(), clock);
    let ns = Resource::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "drift-test"}}),
    )
    .expect("ns");
    let other = Resource::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "x", "namespace": "elsewhere"}, "spec": {"replicas": 1}}))
    .expect("deploy");
    let pdb = Resource::from_value(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "p", "namespace": "drift-test"}, "spec": {"minAvailable": 1}}))
    .expect("pdb");
    let web = deploy("web", 2, "app:1", 1);
    d.set_desired(vec![
        desired(ns.clone()),
        desired(other.clone()),
        desired(pdb.clone()),
        desired(web.clone()),
    ]);
    // The live source watches Deployments in drift-test only (a namespace-scoped install).
    d.observe(LiveEvent::Restarted {
        scope: RelistScope::Kind {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: Some("drift-test".into()),
        },
        resources: vec![web],
    });
    d.observe(LiveEvent::Ready);
    let mut events = Vec::new();
    while let Some(k) = d.next_key() {
        events.extend(d.process(&k).events);
    }
    assert!(events.is_empty(), "no drift, no missing-live: {events:?}");
    let nw = d.not_watched();
    let reason = |k: &ResourceKey| nw.iter().find(|(x, _)| x == k).map(|(_, r)| r.clone());
    assert!(
        reason(&ns.key).is_some_and(|r| r.contains("kind Namespace is not watched")),
        "{nw:?}"
    );
    assert!(
        reason(&other.key).is_some_and(|r| r.contains("namespace elsewhere is not watched")),
        "{nw:?}"
    );
    assert!(
        reason(&pdb.key).is_some_and(|r| r.contains("not served")),
        "{nw:?}"
    );
    assert_eq!(nw.len(), 3);
}

/// An approval is for the value the person saw: when the drifted field moves on before the fix, the new
/// value is not fixed unattended on the strength of the old approval.
#[test]
fn an_approval_does_not_carry_over_to_a_later_value() {
    let mut h = Harness::new(auto_fix(), vec![deploy("backend-api", 3, "nginx:1", 1)]);
    h.cluster
        .apply(deploy("backend-api", 3, "vendor/patched:1.0.1", 2));
    let outs = h.pump();
    let id = outs[0].events[0].drift.id.clone();
    // Approved (e.g. a hot-fix image accepted for now), but the fix is not carried out yet.
    let (_, plan) = h.detector.approve(&id, "alice").expect("approve");
    h.detector.record_fix(
        &plan,
        &drift_core::ports::RemediationOutcome {
            key: plan.key.clone(),
            status: RemediationStatus::Failed,
            message: "the API server was away".into(),
            mode: RemediationMode::Apply,
        },
    );
    // The image moves on to something nobody approved.
    h.cluster.apply(deploy("backend-api", 3, "evil/miner:latest", 3));
    let outs = h.pump();
    assert!(
        outs.iter().all(|o| o.fixes.is_empty()),
        "the approval was for vendor/patched:1.0.1, not this: {outs:?}"
    );
    assert!(h.detector.open_drift(&id).expect("open").needs_approval);
}

fn deploy_in(ns: &str, name: &str, replicas: i64) -> Resource {
    Resource::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "generation": 1},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}}}))
    .expect("deployment")
}

fn listed(ns: &str, resources: Vec<Resource>) -> LiveEvent {
    LiveEvent::Restarted {
        scope: RelistScope::Kind {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: Some(ns.into()),
        },
        resources,
    }
}

fn drain(d: &mut Detector) -> Vec<drift_core::ports::DriftEvent> {
    let mut events = Vec::new();
    while let Some(k) = d.next_key() {
        events.extend(d.process(&k).events);
    }
    events
}

/// A sharded detector judges its namespaces only; a namespace it acquires is judged once listed (never
/// "missing" before), one it gives away is forgotten without an event, and its open drifts come back
/// if the namespace does.
#[test]
fn a_shard_judges_its_namespaces_and_hands_over_silently() {
    use drift_core::shard::Shard;
    let clock = Arc::new(ManualClock::new(1_000));
    let mut d = Detector::new(DiffEngine::default(), DetectorConfig::default(), clock);
    let shard = |ns: &[&str]| {
        Some(Shard {
            namespaces: ns.iter().map(|s| (*s).to_string()).collect(),
            cluster_scoped: false,
        })
    };
    d.set_shard(shard(&["a"]));
    d.set_desired(vec![
        desired(deploy_in("a", "web", 2)),
        desired(deploy_in("b", "web", 2)),
    ]);
    d.observe(listed("a", vec![deploy_in("a", "web", 5)]));
    d.observe(LiveEvent::Ready);
    let events = drain(&mut d);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].drift.key.namespace.as_deref(), Some("a"));
    // Namespace b's objects are not ours: neither drift nor "missing", nor "not watched".
    d.observe(LiveEvent::Applied(deploy_in("b", "web", 9)));
    assert!(drain(&mut d).is_empty());
    assert!(d.not_watched().is_empty(), "{:?}", d.not_watched());

    // Take b as well: nothing is said about b until its Deployments have listed, and the detector
    // is not ready until every watch there has (the live source says so).
    assert!(d.is_ready());
    d.set_shard(shard(&["a", "b"]));
    assert!(!d.is_ready(), "b's lists are not in");
    assert!(drain(&mut d).is_empty(), "b judged before it was listed");
    d.observe(listed("b", vec![deploy_in("b", "web", 7)]));
    let events = drain(&mut d);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].drift.key.namespace.as_deref(), Some("b"));
    assert_eq!(d.open_drifts().len(), 2);
    d.observe(LiveEvent::NamespaceListed("b".into()));
    assert!(d.is_ready());
    assert!(drain(&mut d).is_empty(), "nothing new once b is complete");

    // Give a away: forgotten without an event (its new owner reports), its live object dropped.
    d.set_shard(shard(&["b"]));
    assert!(drain(&mut d).is_empty());
    assert_eq!(d.open_drifts().len(), 1);
    assert!(d.live_object(&deploy_in("a", "web", 1).key).is_none());
    // A late event of the stopped watch in a is ignored.
    d.observe(LiveEvent::Applied(deploy_in("a", "web", 2)));
    d.observe(listed("a", vec![deploy_in("a", "web", 2)]));
    assert!(drain(&mut d).is_empty());

    // a comes back, still drifted: the kept drift is still open — not opened a second time.
    d.set_shard(shard(&["a", "b"]));
    d.observe(listed("a", vec![deploy_in("a", "web", 5)]));
    let events = drain(&mut d);
    assert!(events.is_empty(), "reported twice: {events:?}");
    assert_eq!(d.open_drifts().len(), 2);
}

/// A list delivered in parts: objects of the parts and of the closing `Restarted` are all current,
/// anything else in the scope is gone; a new list's first part forgets an unfinished one's.
#[test]
fn a_list_in_parts_is_one_list() {
    let clock = Arc::new(ManualClock::new(1_000));
    let mut d = Detector::new(DiffEngine::default(), DetectorConfig::default(), clock);
    let scope = RelistScope::Kind {
        group: "apps".into(),
        kind: "Deployment".into(),
        namespace: Some("a".into()),
    };
    let part = |names: &[&str], first: bool| LiveEvent::Listing {
        scope: scope.clone(),
        resources: names.iter().map(|n| deploy_in("a", n, 2)).collect(),
        first,
    };
    let done = |names: &[&str]| LiveEvent::Restarted {
        scope: scope.clone(),
        resources: names.iter().map(|n| deploy_in("a", n, 2)).collect(),
    };
    d.set_desired(vec![
        desired(deploy_in("a", "x", 2)),
        desired(deploy_in("a", "y", 2)),
        desired(deploy_in("a", "z", 2)),
    ]);
    d.observe(part(&["x"], true));
    d.observe(part(&["y"], false));
    d.observe(done(&["z"]));
    d.observe(LiveEvent::Ready);
    assert!(drain(&mut d).is_empty(), "all three listed, in sync");
    // A re-list cut short after a part naming y, then a new one whose parts name x and z only.
    d.observe(part(&["y"], true));
    d.observe(part(&["x"], true));
    d.observe(done(&["z"]));
    let events = drain(&mut d);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].drift.key.name, "y", "y is gone: missing");
    assert_eq!(events[0].kind, DriftEventKind::Opened);
}

/// A desired set loaded in parts is in force only when complete: removed objects are resolved then.
#[test]
fn a_desired_set_in_parts_replaces_the_set_at_its_end() {
    let mut h = Harness::new(DetectorConfig::default(), vec![deploy("web", 2, "app:1", 1)]);
    h.cluster.apply(deploy("web", 5, "app:1", 2));
    let outs = h.pump();
    assert_eq!(Harness::kinds(&outs), vec![DriftEventKind::Opened]);
    h.detector.begin_desired();
    h.detector
        .desired_part(vec![desired(deploy("api", 1, "app:1", 1))]);
    assert!(
        h.detector.desired_object(&key("web")).is_some(),
        "the old set stays in force"
    );
    h.detector
        .desired_part(vec![desired(deploy("db", 1, "app:1", 1))]);
    h.detector.end_desired();
    assert!(h.detector.desired_object(&key("web")).is_none());
    assert!(h.detector.desired_object(&key("api")).is_some());
    let outs = h.pump();
    let kinds = Harness::kinds(&outs);
    assert!(
        kinds.contains(&DriftEventKind::Resolved),
        "web's drift resolved: {kinds:?}"
    );
}

/// Entries of one source share one provenance in the index; each object keeps the provenance it was
/// given, whatever the runs of equal ones and however the set is split across the cores (sources
/// interleaved, in runs, differing only in a label, a revision or the environment).
#[test]
fn each_desired_object_keeps_its_own_provenance() {
    let provenance = |i: usize| {
        let mut p = Provenance::file(if i % 7 < 3 { "a.yaml" } else { "b.yaml" });
        if i.is_multiple_of(11) {
            p.labels.insert("team".into(), format!("t{}", i % 3));
        }
        if i.is_multiple_of(13) {
            p.revision = Some(i as i64);
        }
        if i.is_multiple_of(17) {
            p.environment = Some("prod".into());
        }
        p
    };
    let name = |i: usize| format!("app-{i}");
    let set = |n: usize| {
        (0..n)
            .map(|i| DesiredResource {
                resource: deploy(&name(i), 1, "app:1", 1),
                provenance: provenance(i),
            })
            .collect::<Vec<_>>()
    };
    let mut d = Detector::new(
        DiffEngine::default(),
        DetectorConfig::default(),
        Arc::new(ManualClock::new(0)),
    );
    // Below and above the size the detector spreads over the cores at.
    for n in [5, 3_000] {
        d.set_desired(set(n));
        for i in 0..n {
            let (_, held) = d.desired_object(&key(&name(i))).expect("desired");
            assert_eq!(*held, provenance(i), "{i} of {n}");
        }
    }
    // One source replaced alone.
    let b: Vec<DesiredResource> = set(3_000)
        .into_iter()
        .filter(|r| r.provenance.source == "b.yaml")
        .map(|mut r| {
            r.provenance.unit = Some("u".into());
            r
        })
        .collect();
    d.replace_source("b.yaml", b);
    for i in 0..3_000 {
        let (_, held) = d.desired_object(&key(&name(i))).expect("desired");
        let mut expected = provenance(i);
        if expected.source == "b.yaml" {
            expected.unit = Some("u".into());
        }
        assert_eq!(*held, expected, "{i}");
    }
}

/// The detector stores each desired object exactly as `DesiredObject::new` prepares it, whether
/// preparing changes it (a Secret, a sensitive env value, a sensitive ConfigMap key, a sensitive
/// value in the last-applied annotation, a pod spec's `serviceAccount`, an `autoscaling/v1`
/// HorizontalPodAutoscaler) or leaves it as it is; keyed as given, through `set_desired` and
/// `replace_source` alike.
#[test]
fn desired_objects_are_stored_as_prepared() {
    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "la", "namespace": "drift-test"},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "DB_PASSWORD", "value": "hunter2"}]}]}}}});
    let objects = [
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "plain", "namespace": "drift-test"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "app:1",
                "env": [{"name": "PORT", "value": "8080"}]}]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "env", "namespace": "drift-test"},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "STRIPE_API_KEY", "value": "sk_live"}]}]}}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "drift-test"},
            "data": {"auth_token": "abc", "LOG_LEVEL": "info"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "drift-test"},
            "stringData": {"password": "hunter2"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "la", "namespace": "drift-test",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied.to_string()}},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sa", "namespace": "drift-test"},
            "spec": {"template": {"spec": {"serviceAccount": "robot", "containers": [{"name": "app"}]}}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod", "namespace": "drift-test"},
            "spec": {"serviceAccount": "robot", "serviceAccountName": "other", "containers": [{"name": "app"}]}}),
        json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "hpa", "namespace": "drift-test"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "plain"},
                "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}}),
    ];
    let resources: Vec<Resource> = objects
        .iter()
        .map(|o| Resource::from_value(o.clone()).expect("resource"))
        .collect();
    let check = |d: &Detector| {
        for r in &resources {
            let prepared = drift_core::DesiredObject::new(r.clone());
            let (held, _) = d.desired_object(&r.key).expect("desired");
            assert_eq!(held.object(), prepared.object(), "{}", r.key);
            let keys = d.desired_keys();
            let key = keys.iter().find(|k| **k == r.key).expect("listed");
            assert_eq!(key.version, r.key.version, "keyed as given: {}", r.key);
        }
        assert!(
            !format!(
                "{:?}",
                d.desired_keys()
                    .iter()
                    .map(|k| d.desired_object(k))
                    .collect::<Vec<_>>()
            )
            .contains("hunter2")
        );
    };
    let mut d = Detector::new(
        DiffEngine::default(),
        DetectorConfig::default(),
        Arc::new(ManualClock::new(0)),
    );
    d.set_desired(resources.iter().cloned().map(desired).collect());
    check(&d);
    let mut d = Detector::new(
        DiffEngine::default(),
        DetectorConfig::default(),
        Arc::new(ManualClock::new(0)),
    );
    d.replace_source("workloads.yaml", resources.iter().cloned().map(desired).collect());
    check(&d);
}

/// A live object is compared under the version it was listed in (server defaults are known for the
/// version their tables describe), not the one the desired object was written in, whichever key the
/// detector keeps it under: an edited default is drift when listed as `apps/v1`, not when listed as
/// `apps/v1beta1`; the same after the live cache is compacted.
#[test]
fn a_live_object_is_judged_under_the_version_it_was_listed_in() {
    let desired_deploy = deploy("web", 2, "app:1", 1);
    for (version, drifts) in [("apps/v1", 1), ("apps/v1beta1", 0)] {
        let mut live = desired_deploy.object.clone();
        live["apiVersion"] = json!(version);
        live["spec"]["progressDeadlineSeconds"] = json!(300);
        let live = Resource::from_value(live).expect("live");
        assert_eq!(live.key, desired_deploy.key, "one identity whatever the version");
        let mut d = Detector::new(
            DiffEngine::default(),
            DetectorConfig::default(),
            Arc::new(ManualClock::new(0)),
        );
        d.set_desired(vec![desired(desired_deploy.clone())]);
        d.observe(listed("drift-test", vec![live]));
        d.observe(LiveEvent::Ready);
        let opened = drain(&mut d);
        assert_eq!(opened.len(), drifts, "{version}: {opened:?}");
        d.compact(usize::MAX);
        d.queue_all();
        drain(&mut d);
        assert_eq!(d.open_drifts().len(), drifts, "{version}, compacted");
    }
}

/// Processing a batch on every core gives the outcomes of processing its keys one by one: the same
/// events in the same order, the same fixes and alerts, the same open drifts.
#[test]
fn a_batch_processed_on_every_core_is_the_keys_processed_one_by_one() {
    let config = auto_fix_everything;
    // 300 Deployments (over the batch size that goes parallel): replicas, images, resources
    // changed, some gone from the cluster; an autoscaler over some; one desired object of a kind
    // nobody lists; live objects nobody desires.
    let mut desired_set = Vec::new();
    let mut live = Vec::new();
    for i in 0..300 {
        let name = format!("app-{i}");
        desired_set.push(deploy(&name, 2, "shop:1.0", 1));
        match i % 6 {
            0 => live.push(deploy(&name, 5, "shop:1.0", 2)),
            1 => live.push(deploy(&name, 2, "shop:1.1", 2)),
            2 => {} // missing from the cluster
            3 => {
                let mut d = deploy(&name, 2, "shop:1.0", 2);
                d.object["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
                    json!("900m");
                live.push(d);
            }
            _ => live.push(deploy(&name, 2, "shop:1.0", 1)),
        }
    }
    for i in 0..20 {
        live.push(deploy(&format!("extra-{i}"), 1, "x:1", 1));
        live.push(
            Resource::from_value(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": format!("hpa-{i}"), "namespace": "drift-test"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("app-{}", i * 6)},
                    "minReplicas": 1, "maxReplicas": 9}}))
            .expect("hpa"),
        );
    }
    desired_set.push(
        Resource::from_value(json!({"apiVersion": "example.io/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "drift-test"}, "spec": {"size": 1}}))
        .expect("widget"),
    );
    // Two detectors with the same state; both take the keys in one order (a detector's own queue
    // order follows its hash maps).
    let detector = || {
        let mut d = Detector::new(DiffEngine::default(), config(), Arc::new(ManualClock::new(5_000)));
        d.set_desired(desired_set.iter().cloned().map(desired).collect());
        for (group, kind, deployments) in [
            ("apps", "Deployment", true),
            ("autoscaling", "HorizontalPodAutoscaler", false),
        ] {
            d.observe(LiveEvent::Restarted {
                scope: RelistScope::Kind {
                    group: group.into(),
                    kind: kind.into(),
                    namespace: None,
                },
                resources: live
                    .iter()
                    .filter(|r| (r.key.kind == "Deployment") == deployments)
                    .cloned()
                    .collect(),
            });
        }
        d.observe(LiveEvent::Ready);
        let keys: Vec<_> = std::iter::from_fn(|| d.next_key()).collect();
        (d, keys)
    };
    let (_, order) = detector();
    let run = |batched: bool| {
        let (mut d, _) = detector();
        let mut outs = Vec::new();
        if batched {
            for keys in order.chunks(128) {
                outs.extend(d.process_all(keys));
            }
        } else {
            for k in &order {
                outs.push(d.process(k));
            }
        }
        let text = |o: &Outcome| {
            let events: Vec<String> = o
                .events
                .iter()
                .map(|e| format!("{} {} {}", e.kind.as_str(), e.drift.id, e.drift.describe()))
                .collect();
            let fixes: Vec<String> = o.fixes.iter().map(|p| format!("{:?}", p.drifts)).collect();
            let alerts: Vec<String> = o
                .alerts
                .iter()
                .map(|a| format!("{} {}", a.drift.id, a.reason))
                .collect();
            format!("{events:?} {fixes:?} {alerts:?} {}", o.report.is_some())
        };
        let outcomes: Vec<String> = outs.iter().map(text).collect();
        let open: Vec<String> = d
            .open_drifts()
            .iter()
            .map(|o| format!("{} {:?} {:?}", o.drift.id, o.state, o.action))
            .collect();
        (outcomes, open, d.not_watched(), d.stats().diffs)
    };
    let one_by_one = run(false);
    let batched = run(true);
    assert_eq!(one_by_one.0.len(), 301);
    assert!(one_by_one.1.len() > 150, "drifts opened: {}", one_by_one.1.len());
    assert_eq!(one_by_one.2.len(), 1, "the Widget is not watched");
    for (i, (b, o)) in batched.0.iter().zip(&one_by_one.0).enumerate() {
        assert_eq!(b, o, "outcome {i} ({})", order[i]);
    }
    assert_eq!(batched, one_by_one);
}

/// Keys taken from the queue before their list arrived are queued again by the first listing, and
/// by `Ready` (the detector skips looking for unqueued keys only while every desired key is queued).
#[test]
fn keys_processed_before_their_list_are_judged_when_it_arrives() {
    let clock = Arc::new(ManualClock::new(1_000));
    let mut d = Detector::new(DiffEngine::default(), DetectorConfig::default(), clock);
    d.set_desired(vec![
        desired(deploy_in("a", "x", 2)),
        desired(deploy_in("a", "y", 2)),
        desired(deploy_in("b", "z", 2)),
    ]);
    // Processed before any list: nothing can be judged yet, and the queue is empty after.
    assert!(drain(&mut d).is_empty());
    assert_eq!(d.queue_len(), 0);
    // The list of namespace a: x drifted (3 replicas), y is gone.
    let queued = d.observe(listed("a", vec![deploy_in("a", "x", 3)])).queued;
    assert_eq!(queued, 2, "x and y queued again by their first listing");
    let events = drain(&mut d);
    let mut opened: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == DriftEventKind::Opened)
        .map(|e| e.drift.key.name.as_str())
        .collect();
    opened.sort();
    assert_eq!(opened, ["x", "y"]);
    // Namespace b is never listed: Ready queues every key again (z included), and z is "not
    // watched", never "missing".
    assert_eq!(d.observe(LiveEvent::Ready).queued, 3);
    assert!(drain(&mut d).is_empty());
    let not_watched: Vec<String> = d.not_watched().into_iter().map(|(k, _)| k.name).collect();
    assert_eq!(not_watched, ["z"]);
}

/// Keys are queued (and a scan judges them) in the order the desired set gave them, not in a hash
/// order: the same set gives the same order every time, and a later set queues what it changed in
/// its own order.
#[test]
fn keys_are_queued_in_the_order_the_desired_set_gives_them() {
    let names: Vec<String> = (0..64).map(|i| format!("app-{}", (i * 37) % 64)).collect();
    let mut d = Detector::new(
        DiffEngine::default(),
        DetectorConfig::default(),
        Arc::new(ManualClock::new(0)),
    );
    d.set_desired(names.iter().map(|n| desired(deploy_in("a", n, 1))).collect());
    let order: Vec<String> = std::iter::from_fn(|| d.next_key())
        .map(|k| k.name.clone())
        .collect();
    assert_eq!(order, names);
    // A later set: the changed and added keys in its order, then the removed one.
    let mut next: Vec<DesiredResource> = names.iter().map(|n| desired(deploy_in("a", n, 1))).collect();
    next.reverse();
    next[3] = desired(deploy_in("a", &names[60], 2));
    next[10] = desired(deploy_in("a", &names[53], 2));
    next.push(desired(deploy_in("a", "new", 1)));
    next.remove(20);
    d.set_desired(next);
    let order: Vec<String> = std::iter::from_fn(|| d.next_key())
        .map(|k| k.name.clone())
        .collect();
    assert_eq!(
        order,
        [names[60].as_str(), names[53].as_str(), "new", names[43].as_str()]
    );

    // A first set given in parts, one key twice: each key once, where it first came.
    let fresh = || {
        Detector::new(
            DiffEngine::default(),
            DetectorConfig::default(),
            Arc::new(ManualClock::new(0)),
        )
    };
    let mut d = fresh();
    d.begin_desired();
    d.desired_part(vec![
        desired(deploy_in("a", "x", 1)),
        desired(deploy_in("a", "y", 1)),
    ]);
    d.desired_part(vec![
        desired(deploy_in("a", "z", 1)),
        desired(deploy_in("a", "x", 2)),
    ]);
    d.desired_part(vec![
        desired(deploy_in("a", "y", 3)),
        desired(deploy_in("a", "y", 4)),
    ]);
    assert_eq!(d.end_desired(), 3);
    let order: Vec<String> = std::iter::from_fn(|| d.next_key())
        .map(|k| k.name.clone())
        .collect();
    assert_eq!(order, ["x", "y", "z"]);
    // The later object of a key given twice is the one desired (across parts and within one).
    let replicas = |name: &str| {
        let key = deploy_in("a", name, 1).key;
        d.desired_object(&key)
            .map(|(o, _)| o.object()["spec"]["replicas"].clone())
    };
    assert_eq!(replicas("x"), Some(serde_json::json!(2)));
    assert_eq!(replicas("y"), Some(serde_json::json!(4)));
    // A source replaced while a first set is staged: every key is still queued (w by its source,
    // and again as removed by the set).
    let mut d = fresh();
    d.begin_desired();
    d.desired_part(vec![desired(deploy_in("a", "x", 1))]);
    d.replace_source("workloads.yaml", vec![desired(deploy_in("a", "w", 1))]);
    d.desired_part(vec![desired(deploy_in("a", "y", 1))]);
    d.end_desired();
    let mut order: Vec<String> = std::iter::from_fn(|| d.next_key())
        .map(|k| k.name.clone())
        .collect();
    order.sort();
    assert_eq!(order, ["w", "x", "y"]);
}

#[test]
fn objects_listed_new_are_recognised_unchanged_later_before_and_after_compaction() {
    // A new key's object that redaction leaves as it came is stored without its fingerprint (taken
    // when first asked for); one redaction changes is fingerprinted as it came. Either way a later
    // status-only event is recognised without a diff, and a real change is not, whether the entry
    // is still held parsed or compacted.
    let plain = deploy_in("a", "plain", 2);
    let config = Resource::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "a"}, "data": {"LOG_LEVEL": "info"}}))
    .expect("config map");
    let secret_named = Resource::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "creds", "namespace": "a"}, "data": {"db_password": "hunter2"}}))
    .expect("config map");
    let mut with_env = deploy_in("a", "with-env", 1);
    with_env.object["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "DB_PASSWORD", "value": "hunter2"}]);
    with_env.object["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": with_env.object.to_string()});
    let objects = [plain, config, secret_named, with_env];

    for compact in [false, true] {
        let mut d = Detector::new(
            DiffEngine::default(),
            DetectorConfig::default(),
            Arc::new(ManualClock::new(0)),
        );
        d.set_desired(objects.iter().cloned().map(desired).collect());
        d.observe(LiveEvent::Restarted {
            scope: RelistScope::All,
            resources: objects.to_vec(),
        });
        d.observe(LiveEvent::Ready);
        while let Some(k) = d.next_key() {
            d.process(&k);
        }
        if compact {
            d.compact(usize::MAX);
        }
        for o in &objects {
            // Held redacted, whichever way it was stored.
            let held = d.live_object(&o.key).expect("held");
            assert!(!held.object().to_string().contains("hunter2"), "{}", o.key);
            let mut status_only = o.clone();
            status_only.object["status"] = json!({"observedGeneration": 1});
            status_only.object["metadata"]["resourceVersion"] = json!("99");
            assert!(d.is_unchanged(&status_only), "{} (compacted: {compact})", o.key);
            let seen = d.observe(LiveEvent::Applied(status_only));
            assert_eq!(seen.skipped, 1, "{} (compacted: {compact})", o.key);

            let mut changed = o.clone();
            changed.object["metadata"]["labels"] = json!({"edited": "yes"});
            if changed.key.kind == "ConfigMap" {
                changed.object["data"]["extra"] = json!("1");
            }
            assert!(!d.is_unchanged(&changed), "{} (compacted: {compact})", o.key);
        }
    }
}

/// Each drift is priced on its own (prices are taken where a key is judged, on any core, and kept
/// in the report's order): several drifts of one object, some priced and some not, over enough
/// objects for `process_all` to judge them on every core; the same prices as one key at a time.
#[test]
fn each_drift_keeps_its_own_price_when_judged_on_every_core() {
    let desired = |i: usize| {
        Resource::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("app-{i}"), "namespace": "drift-test", "generation": 1},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "app:1",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}))
        .expect("deployment")
    };
    // Every third object: replicas, the CPU request and the image drift (two priced, one not).
    let live = |i: usize| {
        let mut v = desired(i).object;
        if i.is_multiple_of(3) {
            v["spec"]["replicas"] = json!(2 + i % 5);
            v["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
                json!(format!("{}m", 200 + i));
            v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2");
        }
        Resource::from_value(v).expect("live")
    };
    let n = 300;
    let run = |all_at_once: bool| {
        let mut det = Detector::new(
            DiffEngine::default(),
            DetectorConfig::default(),
            Arc::new(ManualClock::new(0)),
        );
        det.set_desired(
            (0..n)
                .map(|i| DesiredResource {
                    resource: desired(i),
                    provenance: Provenance::file("f"),
                })
                .collect(),
        );
        det.observe(LiveEvent::Restarted {
            scope: RelistScope::All,
            resources: (0..n).map(live).collect(),
        });
        det.observe(LiveEvent::Ready);
        if all_at_once {
            let keys: Vec<_> = std::iter::from_fn(|| det.next_key()).collect();
            det.process_all(&keys);
        } else {
            while let Some(k) = det.next_key() {
                det.process(&k);
            }
        }
        det.open_drifts()
    };
    let prices = drift_core::cost::PriceTable::default();
    let engine = DiffEngine::default();
    let together = run(true);
    // Image and CPU, and replicas unless `2 + i % 5` is 2.
    let drifting: usize = (0..n)
        .filter(|i| i.is_multiple_of(3))
        .map(|i| 2 + usize::from(!i.is_multiple_of(5)))
        .sum();
    assert_eq!(together.len(), drifting);
    let mut priced = 0;
    for o in &together {
        let i: usize = o.drift.key.name["app-".len()..].parse().expect("index");
        // The price of this drift alone, from the objects the detector compared.
        let d = drift_core::DesiredObject::new(desired(i));
        let l = drift_core::LiveObject::new(live(i));
        let report = engine.diff(&d, Some(&l));
        let drift = report
            .drifts
            .iter()
            .find(|x| x.id == o.drift.id)
            .expect("the same drift");
        let expected = prices.drift_delta(&d, &l, drift);
        assert_eq!(o.monthly_cost_delta, expected, "{}", o.drift.id);
        priced += usize::from(expected.is_some());
    }
    assert!(priced > n / 3, "replicas and CPU drifts are priced: {priced}");
    let one_by_one = run(false);
    let costs = |v: &[drift_core::detector::OpenDrift]| -> Vec<(String, Option<f64>)> {
        v.iter()
            .map(|o| (o.drift.id.to_string(), o.monthly_cost_delta))
            .collect()
    };
    assert_eq!(costs(&together), costs(&one_by_one));
}

/// The per-kind counts of a large desired set (counted in parts on every core, then added up) are
/// whole: after a source's 2,100 Deployments go, the one left of that group and version is still
/// found as an autoscaler's target; a kind's version seen only past the first parts is found too.
#[test]
fn kinds_counted_in_parts_add_up() {
    let obj = |api: &str, name: &str| {
        Resource::from_value(json!({"apiVersion": api, "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop"}, "spec": {"replicas": 1}}))
        .expect("object")
    };
    let from = |source: &str, r: Resource| DesiredResource {
        resource: r,
        provenance: Provenance::file(source),
    };
    let mut d = Detector::new(
        DiffEngine::default(),
        DetectorConfig::default(),
        Arc::new(ManualClock::new(0)),
    );
    let mut set = vec![from("keep", obj("apps/v1", "target"))];
    set.extend((0..2_100).map(|i| from("bulk", obj("apps/v1", &format!("bulk-{i}")))));
    // Only in the last part: another group's Deployment of the same name.
    set.push(from("late", obj("example.io/v1", "target")));
    d.set_desired(set);
    while let Some(k) = d.next_key() {
        d.process(&k);
    }
    let hpa = Resource::from_value(
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "namespace": "shop"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "target"}}}),
    )
    .expect("hpa");
    d.observe(LiveEvent::Applied(hpa.clone()));
    assert_eq!(
        queued(&mut d),
        ["apps/Deployment shop/target", "example.io/Deployment shop/target"]
    );
    // 2,100 of the 2,101 apps/v1 Deployments go; the autoscaler changes and names its target again.
    d.replace_source("bulk", Vec::new());
    while let Some(k) = d.next_key() {
        d.process(&k);
    }
    let mut changed = hpa.object.clone();
    changed["spec"]["maxReplicas"] = json!(5);
    d.observe(LiveEvent::Applied(Resource::from_value(changed).expect("hpa")));
    assert_eq!(
        queued(&mut d),
        ["apps/Deployment shop/target", "example.io/Deployment shop/target"]
    );
}

/// A listed object is compared as it is stored (while in cache); that comparison is used only when
/// nothing else it read has changed by the time the key is processed: an autoscaler, a CRD or a new
/// desired set arriving in between is taken into account.
#[test]
fn a_comparison_made_while_storing_is_not_used_after_what_it_read_changed() {
    let fresh = |desired: Vec<Resource>| {
        let mut d = Detector::new(
            DiffEngine::default(),
            DetectorConfig::default(),
            Arc::new(ManualClock::new(0)),
        );
        d.set_desired(desired.into_iter().map(desired_of).collect());
        d
    };
    let drain = |d: &mut Detector| -> Vec<String> {
        let keys: Vec<_> = std::iter::from_fn(|| d.next_key()).collect();
        d.process_all(&keys);
        let mut open: Vec<String> = d
            .open_drifts()
            .iter()
            .map(|o| format!("{} {}", o.drift.key.name, o.drift.path.readable()))
            .collect();
        open.sort();
        open
    };
    let list = |d: &mut Detector, live: Vec<Resource>| {
        d.observe(LiveEvent::Restarted {
            scope: RelistScope::All,
            resources: live,
        });
    };

    // Control: nothing in between, the drift stands.
    let mut d = fresh(vec![deploy("web", 3, "nginx:1", 1)]);
    list(&mut d, vec![deploy("web", 6, "nginx:1", 1)]);
    d.observe(LiveEvent::Ready);
    assert_eq!(drain(&mut d), ["web spec.replicas"]);

    // An autoscaler for it arrives before the key is processed: it owns replicas now.
    let mut d = fresh(vec![deploy("web", 3, "nginx:1", 1)]);
    list(&mut d, vec![deploy("web", 6, "nginx:1", 1)]);
    d.observe(LiveEvent::Applied(
        Resource::from_value(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "drift-test"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 10}}))
        .expect("hpa"),
    ));
    d.observe(LiveEvent::Ready);
    assert_eq!(drain(&mut d), Vec::<String>::new());

    // A new desired set that the live object matches.
    let mut d = fresh(vec![deploy("web", 3, "nginx:1", 1)]);
    list(&mut d, vec![deploy("web", 6, "nginx:1", 1)]);
    d.set_desired(vec![desired_of(deploy("web", 6, "nginx:1", 1))]);
    d.observe(LiveEvent::Ready);
    assert_eq!(drain(&mut d), Vec::<String>::new());
    // ... or a source replaced with it.
    let mut d = fresh(vec![deploy("web", 3, "nginx:1", 1)]);
    list(&mut d, vec![deploy("web", 6, "nginx:1", 1)]);
    d.replace_source(
        "f",
        vec![DesiredResource {
            resource: deploy("web", 6, "nginx:1", 1),
            provenance: Provenance::file("f"),
        }],
    );
    d.observe(LiveEvent::Ready);
    assert_eq!(drain(&mut d), Vec::<String>::new());

    // A CRD whose schema defaults a field the live custom resource has edited: only with the
    // schema is that a drift.
    let backup = |retain: Option<i64>| {
        let mut v = json!({"apiVersion": "ops.example.com/v1", "kind": "Backup",
            "metadata": {"name": "nightly", "namespace": "drift-test", "generation": 1},
            "spec": {"schedule": "0 3 * * *"}});
        if let Some(r) = retain {
            v["spec"]["retainDays"] = json!(r);
        }
        Resource::from_value(v).expect("backup")
    };
    let crd = Resource::from_value(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "backups.ops.example.com"},
        "spec": {"group": "ops.example.com", "names": {"kind": "Backup", "plural": "backups"}, "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "schedule": {"type": "string"},
                        "retainDays": {"type": "integer", "default": 7}}}}}}}]}}))
    .expect("crd");
    let mut d = fresh(vec![backup(None)]);
    list(&mut d, vec![backup(Some(1))]);
    d.observe(LiveEvent::Applied(crd.clone()));
    d.observe(LiveEvent::Ready);
    assert_eq!(drain(&mut d), ["nightly spec.retainDays"]);

    // The other way round: compared while the autoscaler and the CRD were known, both gone before
    // the keys are processed.
    let kind = |group: &str, kind: &str| RelistScope::Kind {
        group: group.into(),
        kind: kind.into(),
        namespace: None,
    };
    let hpa = Resource::from_value(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "drift-test"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 10}}))
    .expect("hpa");
    let mut d = fresh(vec![deploy("web", 3, "nginx:1", 1)]);
    d.observe(LiveEvent::Applied(hpa.clone()));
    d.observe(LiveEvent::Restarted {
        scope: kind("apps", "Deployment"),
        resources: vec![deploy("web", 6, "nginx:1", 1)],
    });
    d.observe(LiveEvent::Deleted(hpa.key.clone()));
    d.observe(LiveEvent::Ready);
    assert_eq!(drain(&mut d), ["web spec.replicas"]);
    let mut d = fresh(vec![backup(None)]);
    d.observe(LiveEvent::Applied(crd.clone()));
    d.observe(LiveEvent::Restarted {
        scope: kind("ops.example.com", "Backup"),
        resources: vec![backup(Some(1))],
    });
    d.observe(LiveEvent::Deleted(crd.key.clone()));
    d.observe(LiveEvent::Ready);
    assert_eq!(drain(&mut d), Vec::<String>::new());
}

fn desired_of(resource: Resource) -> DesiredResource {
    DesiredResource {
        resource,
        provenance: Provenance::file("f"),
    }
}
