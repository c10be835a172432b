//! Revert patches honour ignore rules: the `testdata/cases/argo-cd-remediation/` expectations (from Argo
//! CD's `controller/sync_test.go`), checked on the object that results from applying our guarded
//! patch to live. Every case also checks that the patched object has no drift left.

mod common;

use drift_core::ignore::IgnoreSet;
use drift_core::patch::apply_patch;
use drift_core::{DesiredObject, DiffEngine, DiffOptions, LiveObject, Resource, load_path, revert_patch};
use serde_json::Value;

fn load(name: &str) -> Resource {
    let l = load_path(
        &common::testdata_dir()
            .join("cases/argo-cd-remediation")
            .join(name),
    );
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    l.resources.into_iter().next().expect("one object")
}

/// Diffs, builds the revert patch, applies it to live, checks no drift is left; returns the result.
fn remediate(live: Resource, target: Resource, ignore_yaml: &str, managers: &[&str]) -> Value {
    let ignore = IgnoreSet::from_yaml("ignore.yaml", ignore_yaml).expect("ignore rules");
    let options = managers
        .iter()
        .fold(DiffOptions::default().ignore(ignore), |o, m| o.ignore_manager(*m));
    let engine = DiffEngine::new(options, Default::default());
    let desired = DesiredObject::new(target);
    let live = LiveObject::new(live);
    let report = engine.diff(&desired, Some(&live));
    let patch = revert_patch(&desired, &live, &report.drifts).expect("patch");
    let result = apply_patch(live.object(), &patch).expect("the patch applies to live");
    let after = engine.diff(
        &desired,
        Some(&LiveObject::new(
            Resource::from_value(result.clone()).expect("object"),
        )),
    );
    assert!(
        after.drifts.is_empty(),
        "drift left after the revert: {:#?}",
        after.drifts
    );
    result
}

fn annotation(v: &Value, k: &str) -> Option<String> {
    v.pointer("/metadata/annotations")
        .and_then(|a| a.get(k))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[test]
fn janitor_owned_annotation_keeps_live_value() {
    let r = remediate(
        load("live-deployment.yaml"),
        load("target-deployment.yaml"),
        "{}",
        &["janitor"],
    );
    assert_eq!(annotation(&r, "iksm-version").as_deref(), Some("2.0"));
    assert_eq!(r.pointer("/spec/replicas"), Some(&Value::from(1)));
}

#[test]
fn without_ignore_rules_the_target_wins() {
    let r = remediate(
        load("live-deployment.yaml"),
        load("target-deployment.yaml"),
        "{}",
        &[],
    );
    assert_eq!(annotation(&r, "iksm-version").as_deref(), Some("1.0"));
}

#[test]
fn ignored_pointer_absent_live_stays_absent() {
    let mut live = load("live-deployment.yaml");
    live.object["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove("iksm-version");
    let r = remediate(
        live,
        load("target-deployment.yaml"),
        "ignore:\n- paths: [/metadata/annotations/iksm-version]\n  target: {group: apps, kind: Deployment}\n",
        &[],
    );
    assert_eq!(annotation(&r, "iksm-version"), None);
}

#[test]
fn pointer_and_manager_rules_together() {
    let r = remediate(
        load("live-deployment.yaml"),
        load("target-deployment.yaml"),
        "ignore:\n- paths: [/spec/replicas]\n  target: {group: apps, kind: Deployment}\n- managers: [janitor]\n",
        &[],
    );
    assert_eq!(annotation(&r, "iksm-version").as_deref(), Some("2.0"));
    assert_eq!(r.pointer("/spec/replicas"), Some(&Value::from(4)));
}

#[test]
fn new_container_kept_when_the_other_is_ignored() {
    let r = remediate(
        load("live-deployment.yaml"),
        load("target-deployment-new-entries.yaml"),
        "ignore:\n- paths: ['/spec/template/spec/containers/[name=guestbook-ui]']\n",
        &[],
    );
    let containers = r
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .expect("containers");
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0]["name"], "guestbook-ui");
    // the ignored container keeps its live env (one var), not the target's two
    assert_eq!(containers[0]["env"].as_array().map(Vec::len), Some(1));
    assert_eq!(containers[1]["name"], "new-container");
}

#[test]
fn env_vars_in_target_order_with_ignored_one_from_live() {
    let r = remediate(
        load("live-deployment-env-vars.yaml"),
        load("target-deployment-env-vars.yaml"),
        "ignore:\n- paths: ['/spec/template/spec/containers/*/env/[name=SOME_ENV_VAR]']\n",
        &[],
    );
    let containers = r
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .expect("containers");
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["ports"].as_array().map(Vec::len), Some(1));
    let env: Vec<(String, String)> = containers[0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("").into(),
                e["value"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        env,
        [
            ("SOME_OTHER_ENV_VAR".to_string(), "some_other_value".to_string()),
            ("YET_ANOTHER_ENV_VAR".to_string(), "yet_another_value".to_string()),
            ("SOME_ENV_VAR".to_string(), "some_value".to_string()),
        ]
    );
}

#[test]
fn replicas_and_images_from_live_labels_from_target() {
    let r = remediate(
        load("minimal-image-replicas-deployment.yaml"),
        load("additional-image-replicas-deployment.yaml"),
        "ignore:\n- paths: [/spec/replicas, '/spec/template/spec/containers/*/image']\n  target: {group: apps, kind: Deployment}\n",
        &[],
    );
    assert_eq!(r.pointer("/spec/replicas"), Some(&Value::from(1)));
    assert_eq!(
        r.pointer("/spec/template/spec/containers/0/image"),
        Some(&Value::from("alpine:3"))
    );
    assert_eq!(
        r.pointer("/metadata/labels/appProcess"),
        Some(&Value::from("web"))
    );
    assert_eq!(
        r.pointer("/spec/template/metadata/labels/appProcess"),
        Some(&Value::from("web"))
    );
    assert_eq!(
        r.pointer("/spec/template/spec/containers/0/resources/requests/cpu"),
        Some(&Value::from("400m"))
    );
    assert_eq!(
        r.pointer("/spec/template/spec/containers/0/env/0/name"),
        Some(&Value::from("EV"))
    );
}

#[test]
fn nested_lists_of_a_crd_not_clobbered() {
    let r = remediate(
        load("live-httpproxy.yaml"),
        load("target-httpproxy.yaml"),
        "ignore:\n- paths: ['/spec/routes/*']\n  target: {group: projectcontour.io, kind: HTTPProxy}\n",
        &[],
    );
    let descriptors = r
        .pointer("/spec/routes/0/rateLimitPolicy/global/descriptors")
        .and_then(Value::as_array)
        .expect("descriptors");
    assert_eq!(descriptors.len(), 1);
    let entry = descriptors[0]
        .pointer("/entries/0")
        .and_then(Value::as_object)
        .expect("entry");
    assert_eq!(entry.len(), 1);
    assert_eq!(entry["requestHeader"]["headerName"], "sample-header");
}

#[test]
fn other_pairs_revert_cleanly() {
    // The PDB and Rollout pairs of the same folder: no ignore rules, the revert must leave no drift.
    remediate(load("live-pdb.yaml"), load("target-pdb.yaml"), "{}", &[]);
    remediate(load("live-rollout.yaml"), load("target-rollout.yaml"), "{}", &[]);
}

#[test]
fn patches_are_guarded() {
    let desired = DesiredObject::new(load("target-deployment.yaml"));
    let live = LiveObject::new(load("live-deployment.yaml"));
    let report = DiffEngine::default().diff(&desired, Some(&live));
    let patch = revert_patch(&desired, &live, &report.drifts).expect("patch");
    let ops = serde_json::to_value(&patch).expect("json");
    for (i, op) in ops.as_array().expect("ops").iter().enumerate() {
        if matches!(op["op"].as_str(), Some("replace" | "remove")) {
            let prev = &ops[i - 1];
            assert_eq!(prev["op"], "test", "{op} is not guarded");
            assert_eq!(prev["path"], op["path"]);
        }
    }
    // live moved on after planning: the guard refuses
    let mut moved = live.object().clone();
    moved["spec"]["replicas"] = Value::from(7);
    assert!(apply_patch(&moved, &patch).is_err());
}

/// A changed env value named like a password is drift (tokens differ), but no patch writes the hash
/// back: the fix must come from the source of truth.
#[test]
fn a_hashed_env_value_is_never_written_by_a_patch() {
    let dep = |pw: &str| {
        Resource::from_value(serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:1",
                "env": [{"name": "DB_PASSWORD", "value": pw}]}]}}}}))
        .expect("resource")
    };
    let desired = DesiredObject::new(dep("old-pw"));
    let live = LiveObject::new(dep("new-pw"));
    let report = DiffEngine::default().diff(&desired, Some(&live));
    assert_eq!(report.drifts.len(), 1, "the change is seen");
    let text = serde_json::to_string(&report).expect("json");
    assert!(!text.contains("old-pw") && !text.contains("new-pw"), "{text}");
    let e = revert_patch(&desired, &live, &report.drifts).expect_err("no hashed value in a patch");
    assert!(e.to_string().to_lowercase().contains("secret"), "{e}");
}

/// An `add` is guarded like a `replace`: by a `test` that the field is still absent (`null`, which the
/// API server's JSON Patch passes only for an absent field). A value someone added meanwhile makes
/// the patch fail as a whole, instead of being overwritten.
#[test]
fn an_add_is_guarded_by_the_absence_it_planned_on() {
    use serde_json::json;
    let desired = DesiredObject::new(
        Resource::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "x", "annotations": {"owner": "team-a"}},
            "data": {"mode": "fast"}}))
        .expect("desired"),
    );
    let live = LiveObject::new(
        Resource::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "x", "annotations": {"note": "keep me"}},
            "data": {}}))
        .expect("live"),
    );
    let report = DiffEngine::default().diff(&desired, Some(&live));
    let patch = revert_patch(&desired, &live, &report.drifts).expect("patch");
    let ops = serde_json::to_value(&patch).expect("json");
    assert_eq!(
        ops,
        json!([
            {"op": "test", "path": "/data/mode", "value": null},
            {"op": "add", "path": "/data/mode", "value": "fast"},
            {"op": "test", "path": "/metadata/annotations/owner", "value": null},
            {"op": "add", "path": "/metadata/annotations/owner", "value": "team-a"},
        ])
    );
    // On the live it was planned for, it applies and keeps the other annotation.
    let fixed = apply_patch(live.object(), &patch).expect("applies");
    assert_eq!(
        fixed["metadata"]["annotations"],
        json!({"note": "keep me", "owner": "team-a"})
    );
    // Someone set the annotation meanwhile: the whole patch fails, their value stays.
    let mut moved = live.object().clone();
    moved["metadata"]["annotations"]["owner"] = json!("team-b");
    let err = apply_patch(&moved, &patch).expect_err("the guard fails");
    assert!(
        matches!(err.kind, json_patch::PatchErrorKind::TestFailed),
        "{err}"
    );
    assert_eq!(err.operation, 2);
}
