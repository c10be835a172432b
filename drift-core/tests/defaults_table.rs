//! Checks the engine's server-defaults table against `testdata/k8s-defaults.yaml`: every entry
//! there is represented (or explicitly set aside here, with the reason).

mod common;

use drift_core::describe_default;

/// Entries of the YAML that the engine does not hold as defaults, and why.
const SET_ASIDE: &[(&str, &str, &str)] = &[
    (
        "Deployment",
        "spec.template.spec",
        "a pointer to the PodSpec section, not a field",
    ),
    (
        "StatefulSet",
        "spec.updateStrategy.rollingUpdate",
        "an empty map; absent and {} are equal anyway",
    ),
    (
        "PodSpec",
        "securityContext",
        "an empty map; absent and {} are equal anyway",
    ),
    (
        "PodSpec",
        "volumes[]",
        "emptyDir: {} for a volume without source is an empty map on a live-only key",
    ),
    (
        "PodSpec",
        "volumes[].downwardAPI.defaultMode",
        "held; listed here because its path form differs",
    ),
    (
        "Container",
        "resources",
        "an empty map; absent and {} are equal anyway",
    ),
    (
        "Container",
        "resources.requests|limits[*]",
        "rounding to milli: quantities compare by value",
    ),
    (
        "PodOnly",
        "spec.containers[].ports[].hostPort",
        "needs hostNetwork; a live-only hostPort on a Pod is unmanaged",
    ),
    (
        "Service",
        "spec.sessionAffinityConfig",
        "null when sessionAffinity is None: null and absent are equal",
    ),
    (
        "ConfigMap",
        "data",
        "an empty map; absent and {} are equal anyway",
    ),
    (
        "Secret",
        "stringData",
        "folded into data before comparison (redact.rs), not a default",
    ),
    (
        "PersistentVolumeClaim",
        "status.phase",
        "status is never compared",
    ),
    (
        "ReplicationController",
        "spec.minReadySeconds",
        "zero: an omitted zero and 0 are equal",
    ),
    (
        "Job",
        "metadata.labels",
        "held as per-label TemplateLabel defaults",
    ),
    (
        "ReplicationController",
        "metadata.labels",
        "held as per-label TemplateLabel defaults",
    ),
    (
        "ReplicationController",
        "spec.selector",
        "held as per-key TemplateLabel defaults",
    ),
    (
        "HorizontalPodAutoscaler",
        "spec.behavior.scaleUp",
        "held per sub-field (policies, selectPolicy, stabilizationWindowSeconds)",
    ),
    (
        "HorizontalPodAutoscaler",
        "spec.behavior.scaleDown",
        "held per sub-field (policies, selectPolicy)",
    ),
    (
        "PodSpec",
        "volumes[].hostPath.type",
        "held; the YAML spells the empty string as a quoted literal",
    ),
    (
        "Container",
        "env[].valueFrom.resourceFieldRef.divisor",
        "held; the YAML spells zero as a quoted literal",
    ),
];

/// Where each section of the YAML lives in objects the engine compares.
fn section_paths(section: &str) -> Vec<(&'static str, &'static str, String)> {
    match section {
        "Deployment" => vec![("apps/v1", "Deployment", String::new())],
        "StatefulSet" => vec![("apps/v1", "StatefulSet", String::new())],
        "DaemonSet" => vec![("apps/v1", "DaemonSet", String::new())],
        "ReplicaSet" => vec![("apps/v1", "ReplicaSet", String::new())],
        "PodSpec" => vec![
            ("apps/v1", "Deployment", "spec.template.spec.".into()),
            ("apps/v1", "DaemonSet", "spec.template.spec.".into()),
            ("batch/v1", "Job", "spec.template.spec.".into()),
            ("v1", "Pod", "spec.".into()),
        ],
        "PodOnly" => vec![("v1", "Pod", String::new())],
        "Container" => vec![
            ("apps/v1", "Deployment", "spec.template.spec.containers[].".into()),
            (
                "apps/v1",
                "Deployment",
                "spec.template.spec.initContainers[].".into(),
            ),
            ("v1", "Pod", "spec.containers[].".into()),
        ],
        "Probe" => vec![
            (
                "apps/v1",
                "Deployment",
                "spec.template.spec.containers[].livenessProbe.".into(),
            ),
            (
                "apps/v1",
                "Deployment",
                "spec.template.spec.containers[].readinessProbe.".into(),
            ),
            (
                "apps/v1",
                "StatefulSet",
                "spec.template.spec.containers[].startupProbe.".into(),
            ),
        ],
        "Service" => vec![("v1", "Service", String::new())],
        "ConfigMap" => vec![("v1", "ConfigMap", String::new())],
        "Secret" => vec![("v1", "Secret", String::new())],
        "Namespace" => vec![("v1", "Namespace", String::new())],
        "Endpoints" => vec![("v1", "Endpoints", String::new())],
        "PersistentVolumeClaim" => vec![("v1", "PersistentVolumeClaim", String::new())],
        "PersistentVolume" => vec![("v1", "PersistentVolume", String::new())],
        "ReplicationController" => vec![("v1", "ReplicationController", String::new())],
        "Job" => vec![("batch/v1", "Job", String::new())],
        "CronJob" => vec![("batch/v1", "CronJob", String::new())],
        "HorizontalPodAutoscaler" => vec![("autoscaling/v2", "HorizontalPodAutoscaler", String::new())],
        other => panic!("unknown section {other} in k8s-defaults.yaml"),
    }
}

#[test]
fn every_default_in_the_reference_is_held() {
    let table = common::testdata_yaml("k8s-defaults.yaml");
    let table = table.as_object().expect("sections");
    let mut checked = 0;
    let mut missing = Vec::new();
    for (section, entries) in table {
        for entry in entries.as_array().expect("entries") {
            let path = entry["path"].as_str().expect("path");
            if SET_ASIDE.iter().any(|(s, p, _)| s == section && *p == path) {
                continue;
            }
            // Status fields are never compared, so their defaults never matter.
            if path.starts_with("status.") || path.contains(".status.") {
                continue;
            }
            for (api, kind, prefix) in section_paths(section) {
                let full = format!("{prefix}{path}");
                checked += 1;
                if describe_default(api, kind, &full).is_none() {
                    missing.push(format!("{section}: {full} ({api} {kind})"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "defaults in k8s-defaults.yaml not held by the engine:\n{}",
        missing.join("\n")
    );
    assert!(checked > 100, "only {checked} paths checked");
}

#[test]
fn uncovered_versions_have_no_defaults() {
    assert!(describe_default("apps/v1", "Deployment", "spec.replicas").is_some());
    assert!(describe_default("apps/v1beta1", "Deployment", "spec.replicas").is_none());
    assert!(describe_default("extensions/v1beta1", "Deployment", "spec.template.spec.dnsPolicy").is_none());
    assert!(describe_default("autoscaling/v1", "HorizontalPodAutoscaler", "spec.minReplicas").is_none());
}
