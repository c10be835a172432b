//! `shrink_last_applied` keeps every verdict: the engine reads from the annotation only which fields
//! were applied.

mod common;

use drift_core::{
    DesiredObject, DiffEngine, DriftReport, LiveObject, Resource, load_path, shrink_last_applied,
};
use serde_json::{Value, json};

fn report(engine: &DiffEngine, desired: &Resource, live: &Resource) -> DriftReport {
    engine.diff(
        &DesiredObject::new(desired.clone()),
        Some(&LiveObject::new(live.clone())),
    )
}

fn annotation(r: &Resource) -> Option<&str> {
    r.object["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str()
}

#[test]
fn every_acceptance_case_gives_the_same_report_after_shrinking() {
    let cases = common::testdata_yaml("cases/expected.yaml");
    let dir = common::testdata_dir().join("cases");
    let engine = DiffEngine::default();
    let mut shrunk = 0;
    for case in cases.as_array().expect("a list of cases") {
        let desired = load_path(&dir.join(case["desired"].as_str().expect("desired")));
        let live = load_path(&dir.join(case["live"].as_str().expect("live")));
        for l in &live.resources {
            let Some(d) = desired
                .resources
                .iter()
                .find(|d| d.key.name == l.key.name && d.key.kind == l.key.kind)
            else {
                continue;
            };
            let before = report(&engine, d, l);
            let mut small = l.clone();
            shrink_last_applied(&mut small.object);
            if annotation(l).is_some() && annotation(l) != annotation(&small) {
                shrunk += 1;
                assert!(annotation(&small).map_or(0, str::len) < annotation(l).map_or(0, str::len));
            }
            let after = report(&engine, d, &small);
            assert_eq!(before.drifts, after.drifts, "{}: {}", case["name"], l.key);
            assert_eq!(before.unmanaged, after.unmanaged, "{}: {}", case["name"], l.key);
        }
    }
    assert!(shrunk >= 3, "the cases exercise the annotation ({shrunk} shrunk)");
}

fn with_last_applied(mut live: Value, applied: &Value) -> Resource {
    live["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": applied.to_string()});
    Resource::from_value(live).expect("live")
}

#[test]
fn applied_then_dropped_is_still_drift_and_values_are_gone() {
    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "app:1",
            "env": [{"name": "TOKEN_URL", "value": "https://example.test/very/long/value"}, {"name": "KEEP", "value": "1"}],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}});
    // Desired dropped TOKEN_URL and the port; live still has both, as last applied.
    let desired = Resource::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "app:1", "env": [{"name": "KEEP", "value": "1"}]}]}}}}))
    .expect("desired");
    let live = with_last_applied(applied.clone(), &applied);
    let engine = DiffEngine::default();
    let before = report(&engine, &desired, &live);
    assert_eq!(before.drifts.len(), 2, "{:?}", before.drifts);

    let mut small = live.clone();
    shrink_last_applied(&mut small.object);
    let after = report(&engine, &desired, &small);
    assert_eq!(before.drifts, after.drifts);
    let shape: Value = serde_json::from_str(annotation(&small).expect("annotation")).expect("json");
    // Key fields keep their values (they identify list elements); other values do not.
    assert_eq!(shape["spec"]["template"]["spec"]["containers"][0]["name"], "app");
    assert_eq!(
        shape["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"],
        "TOKEN_URL"
    );
    assert_eq!(
        shape["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );
    assert!(!annotation(&small).expect("annotation").contains("example.test"));
}

#[test]
fn a_broken_annotation_is_left_alone() {
    let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{not json"}}});
    let before = v.clone();
    shrink_last_applied(&mut v);
    assert_eq!(v, before);
    let mut none = json!({"kind": 3});
    shrink_last_applied(&mut none);
    assert_eq!(none, json!({"kind": 3}));
}
