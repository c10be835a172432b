//! Criterion benchmarks of ARCHITECTURE §10 for the engine.
//!
//! Run: `cargo bench -p drift-benches --bench diff` (results and figures in benches/README.md).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use drift_benches::{
    bare_leaf_walk, frontend_desired, frontend_pair_one_drift, scan_fixture, with_server_state,
};
use drift_core::clock::ManualClock;
use drift_core::detector::{Detector, DetectorConfig};
use drift_core::fingerprint::fingerprint;
use drift_core::ports::{DesiredResource, LiveEvent, Provenance, RelistScope};
use drift_core::{DesiredObject, DiffEngine, LiveObject, Resource};
use serde_json::json;

// The allocator the shipped binary uses: the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn res(v: &serde_json::Value) -> Resource {
    Resource::from_value(v.clone()).expect("object")
}

/// The same pairs through our engine, a bare leaf walk, and json_patch::diff, in one group.
fn deployment_pair(c: &mut Criterion) {
    let engine = DiffEngine::default();
    let desired = frontend_desired();
    let live = with_server_state(&desired);
    let (d1, l1) = frontend_pair_one_drift();
    let (dobj, lobj) = (DesiredObject::new(res(&desired)), LiveObject::new(res(&live)));
    let (dobj1, lobj1) = (DesiredObject::new(res(&d1)), LiveObject::new(res(&l1)));
    assert!(engine.diff(&dobj, Some(&lobj)).drifts.is_empty());
    assert_eq!(engine.diff(&dobj1, Some(&lobj1)).drifts.len(), 1);
    assert!(bare_leaf_walk(&desired, &live));

    let mut g = c.benchmark_group("deployment_pair");
    g.bench_function("engine/no_drift", |b| {
        b.iter(|| black_box(engine.diff(black_box(&dobj), Some(black_box(&lobj)))))
    });
    g.bench_function("engine/one_drift", |b| {
        b.iter(|| black_box(engine.diff(black_box(&dobj1), Some(black_box(&lobj1)))))
    });
    g.bench_function("bare_leaf_walk/no_drift", |b| {
        b.iter(|| black_box(bare_leaf_walk(black_box(&desired), black_box(&live))))
    });
    g.bench_function("bare_leaf_walk/one_drift", |b| {
        b.iter(|| black_box(bare_leaf_walk(black_box(&d1), black_box(&l1))))
    });
    g.bench_function("json_patch_diff/no_drift", |b| {
        b.iter(|| black_box(json_patch::diff(black_box(&desired), black_box(&live))))
    });
    g.bench_function("json_patch_diff/one_drift", |b| {
        b.iter(|| black_box(json_patch::diff(black_box(&d1), black_box(&l1))))
    });
    // What a live event costs end to end: redaction wrapper, ownership-free diff.
    g.bench_function("engine_with_prepare/no_drift", |b| {
        b.iter_batched(
            || res(&live),
            |l| black_box(engine.diff(&dobj, Some(&LiveObject::new(l)))),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A status-only watch event: recognised by its fingerprint, no diff.
fn status_event(c: &mut Criterion) {
    let desired = frontend_desired();
    let live = with_server_state(&desired);
    let mut g = c.benchmark_group("status_event");
    g.bench_function("fingerprint", |b| {
        b.iter(|| black_box(fingerprint(black_box(&live), true)))
    });
    let clock = Arc::new(ManualClock::new(0));
    let mut det = Detector::new(DiffEngine::default(), DetectorConfig::default(), clock);
    det.set_desired(vec![DesiredResource {
        resource: res(&desired),
        provenance: Provenance::file("f"),
    }]);
    det.observe(LiveEvent::Restarted {
        scope: RelistScope::All,
        resources: vec![res(&live)],
    });
    det.observe(LiveEvent::Ready);
    while let Some(k) = det.next_key() {
        det.process(&k);
    }
    let mut status_only = live.clone();
    status_only["status"]["readyReplicas"] = json!(7);
    status_only["metadata"]["resourceVersion"] = json!("48213999");
    let status_only = res(&status_only);
    g.bench_function("detector_recognise_status_only", |b| {
        b.iter(|| assert!(det.is_unchanged(black_box(&status_only))))
    });
    let mut n = 0u64;
    g.bench_function("detector_observe_skip_and_drop", |b| {
        b.iter_batched(
            || {
                n += 1;
                let mut l = live.clone();
                l["status"]["readyReplicas"] = json!(n);
                l["metadata"]["resourceVersion"] = json!(n.to_string());
                res(&l)
            },
            |r| {
                let o = det.observe(LiveEvent::Applied(r));
                assert_eq!(o.skipped, 1);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Redaction's look at an object with nothing to redact (what every listed object and every watch
/// event gets): its env names and its last-applied annotation searched for sensitive name fragments.
fn redaction_check(c: &mut Criterion) {
    let redactor = drift_core::redact::Redactor::with_key([7; 32]);
    let desired = frontend_desired();
    let mut live = with_server_state(&desired);
    let before = live.clone();
    redactor.redact(&mut live);
    assert_eq!(live, before, "nothing to redact in the frontend Deployment");
    let mut g = c.benchmark_group("redaction");
    g.bench_function("check_frontend_live", |b| {
        b.iter(|| redactor.redact(black_box(&mut live)))
    });
    let names: Vec<&str> = desired["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names.len(), 10);
    g.bench_function("ten_env_names", |b| {
        b.iter(|| {
            names
                .iter()
                .filter(|n| redactor.is_sensitive_name(black_box(n)))
                .count()
        })
    });
    g.finish();
}

/// Full initial scan of 10,000 tracked objects: desired set, one re-list, every key diffed.
fn scan_10k(c: &mut Criterion) {
    let (desired, live) = scan_fixture(10_000);
    // The same live objects as the daemon's detector receives them: projected by drift-kube's live
    // source (no status, server bookkeeping or managedFields' apiVersion/fieldsType; the
    // last-applied annotation shrunk to which fields were applied).
    let projection = drift_kube::Projection::default();
    let projected: Vec<Resource> = live.iter().cloned().map(|r| projection.resource(r)).collect();
    let mut g = c.benchmark_group("scan");
    g.sample_size(10);
    // To the last report; then with the compaction of the live cache that follows (housekeeping the
    // daemon does off the hot path); then from projected objects.
    for (name, compact, live) in [
        ("detector_initial_scan_10k", false, &live),
        ("detector_initial_scan_10k_then_compact", true, &live),
        ("detector_initial_scan_10k_projected", false, &projected),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || (drift_benches::as_desired(desired.iter().cloned()), live.clone()),
                |(d, l)| {
                    let mut det = Detector::new(
                        DiffEngine::default(),
                        DetectorConfig::default(),
                        Arc::new(ManualClock::new(0)),
                    );
                    det.set_desired(d);
                    det.observe(LiveEvent::Restarted {
                        scope: RelistScope::All,
                        resources: l,
                    });
                    det.observe(LiveEvent::Ready);
                    let opened = drift_benches::drain(&mut det);
                    assert_eq!(opened, 34);
                    if compact {
                        det.compact(usize::MAX);
                    }
                    det
                },
                BatchSize::LargeInput,
            )
        });
    }
    // Every key judged again with the live cache compacted (what a new desired revision, or a
    // CRD's change for its kind, asks of a running detector): no event, the same 34 open drifts.
    {
        let mut det = Detector::new(
            DiffEngine::default(),
            DetectorConfig::default(),
            Arc::new(ManualClock::new(0)),
        );
        det.set_desired(drift_benches::as_desired(desired.iter().cloned()));
        det.observe(LiveEvent::Restarted {
            scope: RelistScope::All,
            resources: live.clone(),
        });
        det.observe(LiveEvent::Ready);
        assert_eq!(drift_benches::drain(&mut det), 34);
        det.compact(usize::MAX);
        g.bench_function("detector_rejudge_10k_compacted", |b| {
            b.iter(|| {
                assert_eq!(det.queue_all(), 10_000);
                assert_eq!(drift_benches::drain(&mut det), 0);
                assert_eq!(det.open_drifts().len(), 34);
            })
        });
    }
    // The diffs alone, on prepared objects.
    let engine = DiffEngine::default();
    let pairs: Vec<(DesiredObject, LiveObject)> = desired
        .iter()
        .zip(&live)
        .map(|(d, l)| (DesiredObject::new(d.clone()), LiveObject::new(l.clone())))
        .collect();
    g.bench_function("engine_diff_10k_prepared", |b| {
        b.iter(|| {
            let mut drifts = 0;
            for (d, l) in &pairs {
                drifts += engine.diff(d, Some(l)).drifts.len();
            }
            assert_eq!(drifts, 34);
        })
    });
    g.finish();
}

criterion_group!(benches, deployment_pair, status_event, redaction_check, scan_10k);
criterion_main!(benches);
