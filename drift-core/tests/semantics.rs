//! The diff semantics of ARCHITECTURE §3, one behaviour per test: equivalences, never-compared fields,
//! server defaults (from k8s-defaults.md), ownership, closed collections, keyed lists, autoscalers.

mod common;

use drift_core::{
    Autoscalers, Change, DesiredObject, DiffContext, DiffEngine, DiffOptions, DriftReport, LiveObject,
    Resource, parse_documents,
};
use serde_json::{Value, json};

fn res(v: Value) -> Resource {
    Resource::from_value(v).expect("object")
}

fn yaml(text: &str) -> Resource {
    let l = parse_documents("test.yaml", text);
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    l.resources.into_iter().next().expect("one object")
}

/// The report, checked against the walk of the desired object's compiled form (the detector's).
fn diff_with(engine: &DiffEngine, desired: Resource, live: Resource) -> DriftReport {
    let (d, l) = (DesiredObject::new(desired), LiveObject::new(live));
    let report = engine.diff(&d, Some(&l));
    let compiled = common::diff_compiled(engine, &d, &l);
    assert_eq!(report, compiled, "the compiled form compares differently");
    let (compiled_live, _) = common::diff_compiled_live(engine, &d, &l);
    assert_eq!(
        report, compiled_live,
        "the compiled live form compares differently"
    );
    report
}

fn diff(desired: Resource, live: Resource) -> DriftReport {
    diff_with(&DiffEngine::default(), desired, live)
}

/// `field change` for each drift.
fn drifts(r: &DriftReport) -> Vec<String> {
    r.drifts
        .iter()
        .map(|d| format!("{} {}", d.path.readable(), d.change))
        .collect()
}

fn deploy(spec: Value) -> Resource {
    res(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x"}, "spec": spec}),
    )
}

fn pod_template(containers: Value) -> Value {
    json!({"template": {"spec": {"containers": containers}}})
}

// ------------------------------------------------------------------------------------------------
// equivalences (§3.4)

#[test]
fn quantities_compare_by_value() {
    let d = deploy(pod_template(
        json!([{"name": "a", "resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}, "limits": {"cpu": 1}}}]),
    ));
    let l = deploy(pod_template(
        json!([{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1024Mi"}, "limits": {"cpu": "1"}}}]),
    ));
    assert!(diff(d, l).drifts.is_empty());
    let d = deploy(pod_template(
        json!([{"name": "a", "resources": {"requests": {"memory": "524288000"}}}]),
    ));
    let l = deploy(pod_template(
        json!([{"name": "a", "resources": {"requests": {"memory": "500Mi"}}}]),
    ));
    assert!(
        diff(d, l).drifts.is_empty(),
        "bytes as integers equal the binary form"
    );
    let d = deploy(pod_template(
        json!([{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]),
    ));
    let l = deploy(pod_template(
        json!([{"name": "a", "resources": {"requests": {"cpu": "200m"}}}]),
    ));
    assert_eq!(
        drifts(&diff(d, l)),
        ["spec.template.spec.containers[name=a].resources.requests.cpu changed"]
    );
}

#[test]
fn numbers_compare_by_value() {
    assert!(
        diff(deploy(json!({"replicas": 3})), deploy(json!({"replicas": 3.0})))
            .drifts
            .is_empty()
    );
    assert_eq!(
        drifts(&diff(
            deploy(json!({"replicas": 3})),
            deploy(json!({"replicas": "3"}))
        )),
        ["spec.replicas changed"]
    );
}

#[test]
fn images_compare_by_normalized_reference() {
    let d = deploy(pod_template(json!([{"name": "a", "image": "nginx:1.25"}])));
    let l = deploy(pod_template(
        json!([{"name": "a", "image": "docker.io/library/nginx:1.25"}]),
    ));
    assert!(diff(d, l).drifts.is_empty());
    let d = deploy(pod_template(json!([{"name": "a", "image": "nginx"}])));
    let l = deploy(pod_template(
        json!([{"name": "a", "image": "index.docker.io/library/nginx:latest"}]),
    ));
    assert!(diff(d, l).drifts.is_empty());
    let d = deploy(pod_template(json!([{"name": "a", "image": "nginx:1.25"}])));
    let l = deploy(pod_template(json!([{"name": "a", "image": "nginx:1.26"}])));
    let r = diff(d, l);
    assert_eq!(r.drifts[0].rule, "images");
}

#[test]
fn empty_null_and_absent_are_alike() {
    let d = deploy(
        json!({"template": {"metadata": {"annotations": null, "labels": {}}, "spec": {"containers": [{"name": "a", "args": [], "resources": {}}], "tolerations": []}}}),
    );
    let l = deploy(json!({"template": {"spec": {"containers": [{"name": "a"}]}}}));
    assert!(diff(d, l).drifts.is_empty());
    // an omitted zero: `initialDelaySeconds: 0` is not returned by the API (argo-cd#8833)
    let d = deploy(pod_template(
        json!([{"name": "a", "readinessProbe": {"initialDelaySeconds": 0, "httpGet": {"port": 80}}}]),
    ));
    let l = deploy(pod_template(
        json!([{"name": "a", "readinessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}}]),
    ));
    assert!(diff(d, l).drifts.is_empty());
    // ... but an emptyDir is a volume source, not an empty value
    let d = deploy(json!({"template": {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}}));
    let l = deploy(
        json!({"template": {"spec": {"volumes": [{"name": "v", "configMap": {"name": "c", "defaultMode": 420}}]}}}),
    );
    assert_eq!(
        drifts(&diff(d, l)),
        [
            "spec.template.spec.volumes[name=v].configMap extra",
            "spec.template.spec.volumes[name=v].emptyDir missing"
        ]
    );
}

#[test]
fn zero_means_the_default_for_probe_fields() {
    let d = deploy(pod_template(
        json!([{"name": "a", "livenessProbe": {"timeoutSeconds": 0, "tcpSocket": {"port": 8080}}}]),
    ));
    let l = deploy(pod_template(
        json!([{"name": "a", "livenessProbe": {"timeoutSeconds": 1, "tcpSocket": {"port": 8080}, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}}]),
    ));
    assert!(diff(d, l).drifts.is_empty());
}

#[test]
fn int_or_string_keeps_percent_and_number_apart() {
    let d = deploy(json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}));
    let l = deploy(
        json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 25, "maxUnavailable": "25%"}}}),
    );
    assert_eq!(
        drifts(&diff(d, l)),
        ["spec.strategy.rollingUpdate.maxSurge changed"]
    );
}

#[test]
fn secret_string_data_equals_base64_data_and_is_redacted() {
    let d = yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: x}\nstringData: {password: hunter2}\n",
    );
    let l = res(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "x"}, "type": "Opaque", "data": {"password": "aHVudGVyMg=="}}),
    );
    assert!(diff(d, l).drifts.is_empty());

    let d = yaml(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: x}\nstringData: {password: hunter2}\n",
    );
    let l = res(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "x"},
        "data": {"password": "c3dvcmRmaXNo", "extra": "c2VjcmV0LXRva2Vu"}}),
    );
    let r = diff(d, l);
    assert_eq!(drifts(&r), ["data.extra extra", "data.password changed"]);
    let text = serde_json::to_string(&r).expect("json");
    for secret in [
        "hunter2",
        "aHVudGVyMg==",
        "swordfish",
        "c3dvcmRmaXNo",
        "secret-token",
        "c2VjcmV0LXRva2Vu",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
    assert!(
        r.drifts
            .iter()
            .all(|d| d.rule == "security" && d.severity == drift_core::rules::Severity::Critical)
    );
    let actual = r.drifts[1]
        .actual
        .as_ref()
        .and_then(Value::as_str)
        .expect("token");
    assert!(drift_core::redact::Redactor::is_token(actual), "{actual}");
}

#[test]
fn empty_rules_equal_null_rules() {
    let d = res(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}, "rules": []}),
    );
    let l = res(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}, "rules": null}),
    );
    assert!(diff(d, l).drifts.is_empty());
}

// ------------------------------------------------------------------------------------------------
// never compared (§3.5)

#[test]
fn never_compared_fields() {
    let d = res(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x",
        "uid": "a", "resourceVersion": "1", "generation": 1, "creationTimestamp": null, "selfLink": "/a", "deletionTimestamp": "t",
        "managedFields": [], "ownerReferences": [{"kind": "A", "name": "a", "uid": "1", "apiVersion": "v1"}],
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": 1}, "status": {"replicas": 1}}),
    );
    let l = res(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x",
        "uid": "b", "resourceVersion": "2", "generation": 9, "creationTimestamp": "2026-01-01T00:00:00Z", "selfLink": "/b",
        "managedFields": [{"manager": "m", "fieldsV1": {}}], "ownerReferences": [{"kind": "B", "name": "b", "uid": "2", "apiVersion": "v1", "controller": true}],
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"a\":1}", "deployment.kubernetes.io/revision": "7"}},
        "spec": {"replicas": 1}, "status": {"replicas": 4}}),
    );
    let r = diff(d, l);
    assert!(r.drifts.is_empty(), "{:?}", r.drifts);
    assert!(r.unmanaged.is_empty(), "{:?}", r.unmanaged);
}

#[test]
fn api_version_is_not_compared_but_selects_defaults() {
    // An apps/v1beta1 object has no defaults in the table: live-only fields are unmanaged, not drift.
    let d = res(
        json!({"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x"}, "spec": {"replicas": 1}}),
    );
    let l = res(
        json!({"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x"},
        "spec": {"replicas": 1, "revisionHistoryLimit": 2}}),
    );
    let r = diff(d, l);
    assert!(r.drifts.is_empty());
    assert_eq!(r.unmanaged.len(), 1);
    // In apps/v1 a revisionHistoryLimit of 2 edits the default of 10.
    let r = diff(
        deploy(json!({"replicas": 1})),
        deploy(json!({"replicas": 1, "revisionHistoryLimit": 2})),
    );
    assert_eq!(drifts(&r), ["spec.revisionHistoryLimit changed"]);
    assert_eq!(r.drifts[0].expected, Some(json!(10)));
}

// ------------------------------------------------------------------------------------------------
// server defaults (§3.2a)

#[test]
fn a_defaulted_field_edited_live_is_drift() {
    let svc = |spec: Value| {
        res(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "x"}, "spec": spec}),
        )
    };
    let d = svc(json!({"ports": [{"port": 80}]}));
    let l = svc(
        json!({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 31000}], "type": "NodePort",
        "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "externalTrafficPolicy": "Cluster", "sessionAffinity": "None",
        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"}),
    );
    let r = diff(d, l);
    assert_eq!(drifts(&r), ["spec.type changed"]);
    assert_eq!(
        r.drifts[0].expected,
        Some(json!("ClusterIP")),
        "expected is the server default"
    );
    assert_eq!(r.drifts[0].actual, Some(json!("NodePort")));
    assert_eq!(r.drifts[0].rule, "ports");
    assert_eq!(r.drifts[0].set, drift_core::rules::DriftSet::Critical);
}

#[test]
fn an_edited_default_is_reverted_to_the_default() {
    let desired = DesiredObject::new(deploy(json!({"replicas": 2})));
    let live = LiveObject::new(deploy(
        json!({"replicas": 2, "revisionHistoryLimit": 3, "strategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "25%"}}}),
    ));
    let r = DiffEngine::default().diff(&desired, Some(&live));
    assert_eq!(
        drifts(&r),
        [
            "spec.revisionHistoryLimit changed",
            "spec.strategy.rollingUpdate.maxSurge changed"
        ]
    );
    let patch = drift_core::revert_patch(&desired, &live, &r.drifts).expect("patch");
    let fixed = drift_core::patch::apply_patch(live.object(), &patch).expect("applies");
    assert_eq!(fixed.pointer("/spec/revisionHistoryLimit"), Some(&json!(10)));
    assert_eq!(
        fixed.pointer("/spec/strategy/rollingUpdate/maxSurge"),
        Some(&json!("25%"))
    );
}

#[test]
fn service_target_port_defaults_to_port() {
    let svc = |ports: Value| {
        res(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "x"}, "spec": {"ports": ports}}),
        )
    };
    assert!(
        diff(
            svc(json!([{"port": 8080}])),
            svc(json!([{"port": 8080, "protocol": "TCP", "targetPort": 8080}]))
        )
        .drifts
        .is_empty()
    );
    assert!(
        diff(
            svc(json!([{"port": 8080, "targetPort": 0}])),
            svc(json!([{"port": 8080, "protocol": "TCP", "targetPort": 8080}]))
        )
        .drifts
        .is_empty()
    );
    assert_eq!(
        drifts(&diff(
            svc(json!([{"port": 8080}])),
            svc(json!([{"port": 8080, "protocol": "TCP", "targetPort": 9090}]))
        )),
        ["spec.ports[port=8080,protocol=TCP].targetPort changed"]
    );
    assert_eq!(
        drifts(&diff(
            svc(json!([{"port": 80, "targetPort": "http"}])),
            svc(json!([{"port": 80, "protocol": "TCP", "targetPort": 80}]))
        )),
        ["spec.ports[port=80,protocol=TCP].targetPort changed"]
    );
}

#[test]
fn statefulset_claim_templates_with_server_fields() {
    let d = yaml(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: x}\nspec:\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
    );
    let l = yaml(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: x}\nspec:\n  podManagementPolicy: OrderedReady\n  replicas: 1\n  revisionHistoryLimit: 10\n  persistentVolumeClaimRetentionPolicy: {whenDeleted: Retain, whenScaled: Retain}\n  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 0}}\n  volumeClaimTemplates:\n  - apiVersion: v1\n    kind: PersistentVolumeClaim\n    metadata: {name: data, creationTimestamp: null}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1024Mi}}, volumeMode: Filesystem}\n    status: {phase: Pending}\n",
    );
    let r = diff(d, l);
    assert!(r.drifts.is_empty(), "{:?}", r.drifts);
    assert!(r.unmanaged.is_empty(), "{:?}", r.unmanaged);
}

#[test]
fn image_pull_policy_default_depends_on_the_tag() {
    let l = |image: &str, policy: &str| {
        deploy(pod_template(
            json!([{"name": "a", "image": image, "imagePullPolicy": policy}]),
        ))
    };
    let d = |image: &str| deploy(pod_template(json!([{"name": "a", "image": image}])));
    assert!(
        diff(d("nginx:1.25"), l("nginx:1.25", "IfNotPresent"))
            .drifts
            .is_empty()
    );
    assert!(diff(d("nginx"), l("nginx", "Always")).drifts.is_empty());
    assert!(
        diff(d("nginx:latest"), l("nginx:latest", "Always"))
            .drifts
            .is_empty()
    );
    // The server sets the policy once, at creation (`SetDefaults_Container`), from the image of that
    // day: an object created as `:latest` and updated to `:1.25` keeps `Always`. Not drift.
    assert!(diff(d("nginx:1.25"), l("nginx:1.25", "Always")).drifts.is_empty());
    let r = diff(d("nginx:1.25"), l("nginx:1.25", "Never"));
    assert_eq!(
        drifts(&r),
        ["spec.template.spec.containers[name=a].imagePullPolicy changed"]
    );
    assert_eq!(r.drifts[0].expected, Some(json!("IfNotPresent")));
}

#[test]
fn hpa_defaults_and_autoscaled_replicas() {
    let hpa_d = yaml(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web, namespace: x}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 10\n",
    );
    let hpa_l = yaml(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web, namespace: x}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 10\n  minReplicas: 1\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}\n",
    );
    let r = diff(hpa_d, hpa_l.clone());
    assert!(r.drifts.is_empty() && r.unmanaged.is_empty(), "{r:?}");

    // The HPA owns replicas of its target: not drift. Without the HPA in the live set it is.
    let engine = DiffEngine::default();
    let autoscalers = Autoscalers::from_live([&hpa_l]);
    let d = DesiredObject::new(deploy(json!({"replicas": 3})));
    let l = LiveObject::new(deploy(json!({"replicas": 7})));
    assert!(
        engine
            .diff_with(
                &d,
                Some(&l),
                &DiffContext {
                    autoscalers: Some(&autoscalers),
                    ..Default::default()
                }
            )
            .drifts
            .is_empty()
    );
    assert_eq!(drifts(&engine.diff(&d, Some(&l))), ["spec.replicas changed"]);
    // KEDA ScaledObjects too
    let keda = res(
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "so", "namespace": "x"}, "spec": {"scaleTargetRef": {"name": "web"}}}),
    );
    let autoscalers = Autoscalers::from_live([&keda]);
    assert!(
        engine
            .diff_with(
                &d,
                Some(&l),
                &DiffContext {
                    autoscalers: Some(&autoscalers),
                    ..Default::default()
                }
            )
            .drifts
            .is_empty()
    );
}

#[test]
fn namespace_label_and_finalizer_defaults() {
    let d = yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a}}\n");
    let l = yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a, kubernetes.io/metadata.name: shop}}\nspec: {finalizers: [kubernetes]}\nstatus: {phase: Active}\n",
    );
    let r = diff(d, l);
    assert!(r.drifts.is_empty() && r.unmanaged.is_empty(), "{r:?}");
}

// ------------------------------------------------------------------------------------------------
// keyed lists (§3.3)

#[test]
fn reordering_keyed_lists_is_not_drift() {
    let d = deploy(pod_template(
        json!([{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}, {"name": "b"}]),
    ));
    let l = deploy(pod_template(
        json!([{"name": "b"}, {"name": "a", "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]}]),
    ));
    assert!(diff(d, l).drifts.is_empty());
    let d = deploy(pod_template(
        json!([{"name": "a", "env": [{"name": "X", "value": "1"}]}]),
    ));
    let l = deploy(pod_template(
        json!([{"name": "a", "env": [{"name": "X", "value": "2"}]}]),
    ));
    let r = diff(d, l);
    assert_eq!(
        drifts(&r),
        ["spec.template.spec.containers[name=a].env[name=X].value changed"]
    );
    assert_eq!(
        r.drifts[0].path.pointer(),
        "/spec/template/spec/containers/0/env/0/value"
    );
}

#[test]
fn composite_port_keys_and_mount_paths() {
    let d = deploy(pod_template(
        json!([{"name": "a", "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53}],
        "volumeMounts": [{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/b", "readOnly": true}]}]),
    ));
    let l = deploy(pod_template(
        json!([{"name": "a", "ports": [{"containerPort": 53, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}],
        "volumeMounts": [{"name": "v", "mountPath": "/b", "readOnly": false}, {"name": "v", "mountPath": "/a"}]}]),
    ));
    assert_eq!(
        drifts(&diff(d, l)),
        ["spec.template.spec.containers[name=a].volumeMounts[mountPath=/b].readOnly changed"]
    );
}

#[test]
fn positional_lists_differ_by_length() {
    let d = deploy(pod_template(json!([{"name": "a", "args": ["--a", "--b"]}])));
    let l = deploy(pod_template(
        json!([{"name": "a", "args": ["--a", "--b", "--c"]}]),
    ));
    assert_eq!(
        drifts(&diff(d, l)),
        ["spec.template.spec.containers[name=a].args[2] extra"]
    );
    let d = deploy(pod_template(json!([{"name": "a", "command": ["sh", "-c"]}])));
    let l = deploy(pod_template(json!([{"name": "a", "command": ["-c", "sh"]}])));
    assert_eq!(drifts(&diff(d, l)).len(), 2, "order matters in command");
}

#[test]
fn rbac_rules_are_closed_and_verbs_are_sets() {
    let role = |rules: Value| {
        res(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r", "namespace": "x"}, "rules": rules}),
        )
    };
    assert!(
        diff(
            role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}])),
            role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["watch", "get", "list"]}]))
        )
        .drifts
        .is_empty()
    );
    let r = diff(
        role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])),
        role(
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        ),
    );
    assert_eq!(drifts(&r), ["rules[1] extra"]);
    assert_eq!(r.drifts[0].rule, "security");
    let r = diff(
        role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])),
        role(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}])),
    );
    assert_eq!(drifts(&r), ["rules[0].verbs changed"]);
}

#[test]
fn binding_subjects_are_closed() {
    let rb = |subjects: Value| {
        res(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "x"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}, "subjects": subjects}),
        )
    };
    let d = rb(
        json!([{"kind": "ServiceAccount", "name": "app", "namespace": "x"}, {"kind": "User", "name": "alice"}]),
    );
    let l = rb(
        json!([{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}, {"kind": "ServiceAccount", "name": "app", "namespace": "x"},
        {"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}]),
    );
    let r = diff(d, l);
    assert_eq!(
        drifts(&r),
        ["subjects[kind=User,namespace=null,name=mallory] extra"]
    );
    assert_eq!(r.drifts[0].severity, drift_core::rules::Severity::Critical);
}

#[test]
fn configmap_data_is_closed() {
    let cm = |data: Value| {
        res(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x"}, "data": data}),
        )
    };
    let r = diff(cm(json!({"a": "1"})), cm(json!({"a": "1", "b": "2"})));
    assert_eq!(drifts(&r), ["data.b extra"]);
    assert_eq!(r.drifts[0].rule, "configmap-data");
    let r = diff(cm(json!({"a": "1", "b": "2"})), cm(json!({"a": "1"})));
    assert_eq!(drifts(&r), ["data.b missing"]);
}

// ------------------------------------------------------------------------------------------------
// ownership (§3.2b, §3.6)

fn with_last_applied(mut live: Value, applied: &Value) -> Value {
    live["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": applied.to_string()});
    live
}

#[test]
fn a_field_we_applied_then_dropped_is_drift() {
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x", "labels": {"a": "1", "b": "2"}}});
    let live = with_last_applied(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x", "labels": {"a": "1", "b": "2", "c": "3"}}}),
        &applied,
    );
    let desired = res(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x", "labels": {"a": "1"}}}),
    );
    let r = diff(desired, res(live));
    assert_eq!(drifts(&r), ["metadata.labels.b extra"]);
    assert_eq!(r.unmanaged.len(), 1, "label c is someone else's");
}

#[test]
fn managed_fields_of_the_applier_manager() {
    let live = res(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x", "labels": {"a": "1", "b": "2"},
        "managedFields": [{"manager": "confighub", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}, "f:b": {}}}}}]}}),
    );
    let desired = res(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x", "labels": {"a": "1"}}}),
    );
    assert!(diff(desired.clone(), live.clone()).drifts.is_empty());
    let engine = DiffEngine::new(DiffOptions::default().applier("confighub"), Default::default());
    assert_eq!(
        drifts(&diff_with(&engine, desired, live)),
        ["metadata.labels.b extra"]
    );
}

#[test]
fn changes_by_an_ignored_manager_are_not_drift() {
    let live = res(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x",
        "managedFields": [{"manager": "vpa-updater", "operation": "Update", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {"f:resources": {"f:requests": {"f:cpu": {}}}}}}}}}}]},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:2", "resources": {"requests": {"cpu": "300m"}}}]}}}}),
    );
    let desired = deploy(pod_template(
        json!([{"name": "a", "image": "x:1", "resources": {"requests": {"cpu": "100m"}}}]),
    ));
    let engine = DiffEngine::new(
        DiffOptions::default().ignore_manager("vpa-updater"),
        Default::default(),
    );
    assert_eq!(
        drifts(&diff_with(&engine, desired, live)),
        ["spec.template.spec.containers[name=a].image changed"]
    );
}

// ------------------------------------------------------------------------------------------------
// robustness

#[test]
fn missing_live_object() {
    let r = DiffEngine::default().diff(&DesiredObject::new(deploy(json!({}))), None);
    assert_eq!(r.status, drift_core::DriftStatus::MissingLive);
    assert!(r.is_drifted());
}

#[test]
fn deep_values_do_not_overflow_the_stack() {
    let mut deep = json!("leaf");
    for _ in 0..300 {
        deep = json!({"a": deep});
    }
    let mut other = json!("other");
    for _ in 0..300 {
        other = json!({"a": other});
    }
    let mk = |v: Value| {
        res(json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": v}))
    };
    let r = diff(mk(deep), mk(other));
    assert_eq!(r.drifts.len(), 1);
    assert_eq!(r.drifts[0].change, Change::Changed);
}

#[test]
fn cluster_scoped_objects_ignore_manifest_namespace() {
    let d = yaml(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, namespace: oops}\nrules: []\n",
    );
    assert_eq!(d.key.namespace, None);
}

#[test]
fn security_edits_where_the_manifest_is_silent_are_drift() {
    let d = deploy(pod_template(
        json!([{"name": "a", "securityContext": {"runAsNonRoot": true}}]),
    ));
    let l = deploy(
        json!({"template": {"spec": {"containers": [{"name": "a", "securityContext": {"runAsNonRoot": true, "privileged": true}}],
        "securityContext": {"runAsUser": 0}, "hostNetwork": true, "hostPID": false, "serviceAccountName": "cluster-admin-sa",
        "serviceAccount": "cluster-admin-sa"}}}),
    );
    let r = diff(d, l);
    assert_eq!(
        drifts(&r),
        [
            "spec.template.spec.containers[name=a].securityContext.privileged extra",
            "spec.template.spec.hostNetwork changed",
            "spec.template.spec.securityContext changed",
            "spec.template.spec.serviceAccountName changed",
        ]
    );
    assert!(r.drifts.iter().all(|d| d.rule == "security"), "{:?}", r.drifts);
    // A volume whose source was swapped for a hostPath.
    let d = deploy(json!({"template": {"spec": {"volumes": [{"name": "data", "emptyDir": {}}]}}}));
    let l = deploy(
        json!({"template": {"spec": {"volumes": [{"name": "data", "emptyDir": {}, "hostPath": {"path": "/", "type": ""}}]}}}),
    );
    assert_eq!(
        drifts(&diff(d, l)),
        ["spec.template.spec.volumes[name=data].hostPath extra"]
    );
}

#[test]
fn computed_defaults_follow_the_desired_siblings() {
    // `kubectl set image` to a tagged image keeps imagePullPolicy: Always, which is what the desired
    // untagged image implies: only the image drifted.
    let d = deploy(pod_template(json!([{"name": "a", "image": "nginx"}])));
    let l = deploy(pod_template(
        json!([{"name": "a", "image": "nginx:1.27", "imagePullPolicy": "Always"}]),
    ));
    assert_eq!(
        drifts(&diff(d, l)),
        ["spec.template.spec.containers[name=a].image changed"]
    );
}

/// `fill_server_defaults` writes what a real API server wrote into the gitops-engine fixture.
#[test]
fn filled_defaults_match_a_real_api_server() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cases/gitops-engine");
    let text = std::fs::read_to_string(shared.join("deployment-config.json")).expect("testdata");
    let mut filled: Value = serde_json::from_str(&text).expect("json");
    drift_core::fill_server_defaults(&mut filled);
    let live: Value =
        serde_json::from_str(&std::fs::read_to_string(shared.join("deployment-live.json")).expect("live"))
            .expect("json");
    for ptr in [
        "/spec/progressDeadlineSeconds",
        "/spec/strategy/rollingUpdate/maxSurge",
        "/spec/strategy/rollingUpdate/maxUnavailable",
        "/spec/template/spec/dnsPolicy",
        "/spec/template/spec/restartPolicy",
        "/spec/template/spec/schedulerName",
        "/spec/template/spec/securityContext",
        "/spec/template/spec/terminationGracePeriodSeconds",
        "/spec/template/spec/containers/0/imagePullPolicy",
        "/spec/template/spec/containers/0/terminationMessagePath",
        "/spec/template/spec/containers/0/terminationMessagePolicy",
        "/spec/template/spec/containers/0/resources",
        "/spec/template/spec/containers/0/ports/0/protocol",
    ] {
        assert_eq!(filled.pointer(ptr), live.pointer(ptr), "{ptr}");
    }
    // No effective-only defaults are written.
    assert!(filled.pointer("/spec/template/spec/hostNetwork").is_none());
    assert!(filled.pointer("/spec/template/spec/serviceAccountName").is_none());
}

fn job(spec: Value) -> Resource {
    let mut s = spec;
    s["template"] =
        json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "j", "image": "busybox:1.36"}]}});
    res(
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "x"}, "spec": s}),
    )
}

/// SetDefaults_Job (`pkg/apis/batch/v1/defaults.go`), each conditional default from both sides.
#[test]
fn job_defaults_follow_their_conditions() {
    // completions: 1 only when neither completions nor parallelism was given.
    assert!(
        drifts(&diff(
            job(json!({})),
            job(json!({"completions": 1, "parallelism": 1}))
        ))
        .is_empty()
    );
    assert_eq!(
        drifts(&diff(
            job(json!({})),
            job(json!({"completions": 3, "parallelism": 1}))
        )),
        ["spec.completions changed"],
        "an edited default is drift"
    );
    assert!(
        drifts(&diff(
            job(json!({"parallelism": 2})),
            job(json!({"parallelism": 2}))
        ))
        .is_empty()
    );
    // backoffLimit: 6, or 2147483647 with backoffLimitPerIndex.
    assert!(drifts(&diff(job(json!({})), job(json!({"backoffLimit": 6})))).is_empty());
    assert!(
        drifts(&diff(
            job(json!({"completionMode": "Indexed", "completions": 2, "backoffLimitPerIndex": 1})),
            job(json!({"completionMode": "Indexed", "completions": 2, "backoffLimitPerIndex": 1, "backoffLimit": 2147483647}))
        ))
        .is_empty()
    );
    assert_eq!(
        drifts(&diff(job(json!({})), job(json!({"backoffLimit": 2147483647})))),
        ["spec.backoffLimit changed"]
    );
    // podReplacementPolicy: Failed with a podFailurePolicy, else TerminatingOrFailed; manualSelector false.
    assert!(
        drifts(&diff(
            job(json!({})),
            job(json!({"podReplacementPolicy": "TerminatingOrFailed", "manualSelector": false}))
        ))
        .is_empty()
    );
    let pfp = json!({"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]});
    let pfp_live = json!({"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]});
    assert!(
        drifts(&diff(
            job(json!({"podFailurePolicy": pfp})),
            job(json!({"podFailurePolicy": pfp_live, "podReplacementPolicy": "Failed"}))
        ))
        .is_empty()
    );
    assert_eq!(
        drifts(&diff(
            job(json!({})),
            job(json!({"podReplacementPolicy": "Failed"}))
        )),
        ["spec.podReplacementPolicy changed"]
    );
}

fn pod_spec_deploy(pod: Value) -> Resource {
    res(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod}}}),
    )
}

/// `SetDefaults_PodSpec` copies the deprecated `serviceAccount` into `serviceAccountName`; absent both,
/// admission sets `default`. An identity changed by hand is still a critical drift.
#[test]
fn service_account_defaults_follow_the_deprecated_field() {
    let c = json!([{"name": "app", "image": "app:1"}]);
    let desired = pod_spec_deploy(json!({"serviceAccount": "robot", "containers": c}));
    let live =
        |sa: &str| pod_spec_deploy(json!({"serviceAccount": sa, "serviceAccountName": sa, "containers": c}));
    assert!(drifts(&diff(desired.clone(), live("robot"))).is_empty());
    assert!(
        !drifts(&diff(desired, live("intruder"))).is_empty(),
        "a switched identity is drift"
    );
    let plain = pod_spec_deploy(json!({"containers": c}));
    assert!(drifts(&diff(plain.clone(), live("default"))).is_empty());
    assert_eq!(
        drifts(&diff(plain, live("robot"))),
        ["spec.template.spec.serviceAccountName changed"]
    );
}

/// `imagePullPolicy` is set once, at creation, from that day's image: either value the server sets is a
/// default whatever today's image is; `Never` set by hand is drift.
#[test]
fn image_pull_policy_is_not_recomputed_from_todays_image() {
    let desired = pod_spec_deploy(json!({"containers": [{"name": "app", "image": "nginx:1.27"}]}));
    let live = |p: &str| {
        pod_spec_deploy(json!({"containers": [{"name": "app", "image": "nginx:1.27", "imagePullPolicy": p}]}))
    };
    assert!(
        drifts(&diff(desired.clone(), live("Always"))).is_empty(),
        "created as :latest, updated since"
    );
    assert!(drifts(&diff(desired.clone(), live("IfNotPresent"))).is_empty());
    assert_eq!(
        drifts(&diff(desired, live("Never"))),
        ["spec.template.spec.containers[name=app].imagePullPolicy changed"]
    );
}

/// Container resources are stored rounded up to milli units (`SetDefaults_ResourceList`).
#[test]
fn resource_quantities_round_up_to_milli() {
    let dep = |cpu: &str| {
        pod_spec_deploy(
            json!({"containers": [{"name": "app", "image": "a:1", "resources": {"requests": {"cpu": cpu}}}]}),
        )
    };
    assert!(drifts(&diff(dep("0.0001"), dep("1m"))).is_empty());
    assert!(drifts(&diff(dep("100.5m"), dep("101m"))).is_empty());
    assert_eq!(
        drifts(&diff(dep("0.0001"), dep("2m"))),
        ["spec.template.spec.containers[name=app].resources.requests.cpu changed"]
    );
}

/// Service: `clusterIP: ""` asks for an allocation; `sessionAffinityConfig` is dropped unless
/// `sessionAffinity` is `ClientIP`.
#[test]
fn service_empty_cluster_ip_and_dropped_session_affinity_config() {
    let svc = |spec: Value| {
        res(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "x"}, "spec": spec}),
        )
    };
    let ports = json!([{"port": 80, "protocol": "TCP", "targetPort": 80}]);
    assert!(
        drifts(&diff(
            svc(json!({"clusterIP": "", "ports": ports})),
            svc(json!({"clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"], "ports": ports}))
        ))
        .is_empty()
    );
    assert_eq!(
        drifts(&diff(
            svc(json!({"clusterIP": "10.96.0.5", "ports": ports})),
            svc(json!({"clusterIP": "10.96.0.12", "ports": ports}))
        )),
        ["spec.clusterIP changed"]
    );
    let cfg = json!({"clientIP": {"timeoutSeconds": 300}});
    assert!(
        drifts(&diff(
            svc(json!({"sessionAffinity": "None", "sessionAffinityConfig": cfg, "ports": ports})),
            svc(json!({"sessionAffinity": "None", "ports": ports}))
        ))
        .is_empty()
    );
    assert_eq!(
        drifts(&diff(
            svc(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": cfg, "ports": ports})),
            svc(json!({"sessionAffinity": "ClientIP", "ports": ports}))
        )),
        ["spec.sessionAffinityConfig missing"]
    );
}

/// A Secret value `""` in the manifest reads back as `null` (a public Argo CD fixture); any other value
/// is drift.
#[test]
fn secret_empty_value_reads_back_as_null() {
    let secret = |v: Value| {
        res(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "x"}, "type": "Opaque", "data": {"k": v}}),
        )
    };
    assert!(drifts(&diff(secret(json!("")), secret(Value::Null))).is_empty());
    assert_eq!(
        drifts(&diff(secret(json!("")), secret(json!("eA==")))),
        ["data.k changed"]
    );
}

/// Defaults of the security-relevant kinds: flipping one is drift, leaving it is not.
#[test]
fn network_policy_types_default_from_the_rules() {
    let np = |spec: Value| {
        res(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np", "namespace": "x"}, "spec": spec}),
        )
    };
    let egress = json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]);
    let desired = np(json!({"podSelector": {}, "egress": egress}));
    assert!(
        drifts(&diff(
            desired.clone(),
            np(json!({"podSelector": {}, "egress": egress, "policyTypes": ["Ingress", "Egress"]}))
        ))
        .is_empty()
    );
    // Egress enforcement silently dropped.
    assert_eq!(
        drifts(&diff(
            desired,
            np(json!({"podSelector": {}, "egress": egress, "policyTypes": ["Ingress"]}))
        )),
        ["spec.policyTypes changed"]
    );
    let ingress_only = np(json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}));
    assert!(drifts(&diff(
        ingress_only.clone(),
        np(json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}], "policyTypes": ["Ingress"]}))
    ))
    .is_empty());
    assert_eq!(
        drifts(&diff(
            ingress_only,
            np(
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}], "policyTypes": ["Egress"]})
            )
        )),
        ["spec.policyTypes changed"]
    );
}

#[test]
fn webhook_failure_policy_flipped_to_ignore_is_drift() {
    let hook = |extra: Value| {
        let mut w = json!({"name": "policy.example.com", "clientConfig": {"service": {"name": "p", "namespace": "x"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"]});
        if let (Some(m), Some(e)) = (w.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        res(
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "policy"}, "webhooks": [w]}),
        )
    };
    let server = json!({"failurePolicy": "Fail", "matchPolicy": "Equivalent", "namespaceSelector": {}, "objectSelector": {},
        "timeoutSeconds": 10, "clientConfig": {"service": {"name": "p", "namespace": "x", "port": 443}},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "*"}]});
    assert!(drifts(&diff(hook(json!({})), hook(server.clone()))).is_empty());
    let mut failing_open = server;
    failing_open["failurePolicy"] = json!("Ignore");
    assert_eq!(
        drifts(&diff(hook(json!({})), hook(failing_open))),
        ["webhooks[name=policy.example.com].failurePolicy changed"]
    );
}

#[test]
fn storage_priority_and_binding_defaults() {
    let sc = |extra: Value| {
        let mut v = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"}, "provisioner": "csi.example.com"});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        res(v)
    };
    assert!(
        drifts(&diff(
            sc(json!({})),
            sc(json!({"reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}))
        ))
        .is_empty()
    );
    assert_eq!(
        drifts(&diff(
            sc(json!({})),
            sc(json!({"reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"}))
        )),
        ["reclaimPolicy changed"]
    );
    let pc = |extra: Value| {
        let mut v = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        res(v)
    };
    assert!(
        drifts(&diff(
            pc(json!({})),
            pc(json!({"preemptionPolicy": "PreemptLowerPriority"}))
        ))
        .is_empty()
    );
    assert_eq!(
        drifts(&diff(pc(json!({})), pc(json!({"preemptionPolicy": "Never"})))),
        ["preemptionPolicy changed"]
    );
    let rb = |group: &str| {
        res(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "x"},
            "roleRef": {"apiGroup": group, "kind": "Role", "name": "r"}}),
        )
    };
    let desired = res(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "x"},
        "roleRef": {"kind": "Role", "name": "r"}}),
    );
    assert!(drifts(&diff(desired.clone(), rb("rbac.authorization.k8s.io"))).is_empty());
    assert_eq!(
        drifts(&diff(desired, rb("example.com"))),
        ["roleRef.apiGroup changed"]
    );
}

// ------------------------------------------------------------------------------------------------
// who changed it (managedFields): actors and "added by hand"

/// A live Deployment as `kubectl get -o yaml --show-managed-fields` shows it after `kubectl apply`,
/// then `kubectl set env` (manager kubectl-set) and `kubectl scale` (no field manager sent: the server
/// records `kubectl` from the User-Agent, subresource scale); the ReplicaSet controller's revision
/// annotation and a mutating webhook's sidecar label beside them.
fn hand_edited_live() -> Resource {
    yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: x
  annotations:
    deployment.kubernetes.io/revision: "2"
  labels:
    app: web
    sidecar.istio.io/injected: "true"
  managedFields:
  - manager: kubectl-client-side-apply
    operation: Update
    apiVersion: apps/v1
    time: "2026-12-01T09:00:00Z"
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata: {f:labels: {.: {}, f:app: {}}}
      f:spec:
        f:template:
          f:spec:
            f:containers:
              k:{"name":"app"}: {.: {}, f:image: {}, f:name: {}}
  - manager: kube-controller-manager
    operation: Update
    apiVersion: apps/v1
    time: "2026-12-02T10:15:02Z"
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata: {f:annotations: {.: {}, f:deployment.kubernetes.io/revision: {}}}
  - manager: istio-webhook
    operation: Update
    apiVersion: apps/v1
    time: "2026-12-01T09:00:01Z"
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata: {f:labels: {f:sidecar.istio.io/injected: {}}}
  - manager: kubectl-set
    operation: Update
    apiVersion: apps/v1
    time: "2026-12-02T10:15:00Z"
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:template:
          f:spec:
            f:containers:
              k:{"name":"app"}:
                f:env:
                  .: {}
                  k:{"name":"DEBUG"}: {.: {}, f:name: {}, f:value: {}}
  - manager: kubectl
    operation: Update
    apiVersion: apps/v1
    subresource: scale
    time: "2026-12-02T10:16:00Z"
    fieldsType: FieldsV1
    fieldsV1:
      f:spec: {f:replicas: {}}
spec:
  replicas: 5
  template:
    spec:
      containers:
      - name: app
        image: registry.example/web:1.4
        env:
        - {name: DEBUG, value: "true"}
"#,
    )
}

fn hand_edit_desired() -> Resource {
    yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: x, labels: {app: web}}
spec:
  replicas: 2
  template:
    spec:
      containers:
      - {name: app, image: registry.example/web:1.4}
"#,
    )
}

#[test]
fn drifts_carry_who_made_them_and_hand_additions_are_drift() {
    let r = diff(hand_edit_desired(), hand_edited_live());
    let seen: Vec<(String, Option<String>)> = r
        .drifts
        .iter()
        .map(|d| {
            (
                format!("{} {}", d.path.readable(), d.change),
                d.actor.as_ref().map(ToString::to_string),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "spec.replicas changed".to_string(),
                Some("kubectl (scale) at 2026-12-02T10:16:00Z".to_string())
            ),
            (
                "spec.template.spec.containers[name=app].env extra".to_string(),
                Some("kubectl-set at 2026-12-02T10:15:00Z".to_string())
            ),
        ]
    );
    // What controllers added stays unmanaged, not drift.
    let unmanaged: Vec<&str> = r.unmanaged.iter().map(|u| u.field.as_str()).collect();
    assert!(
        unmanaged.iter().any(|f| f.contains("sidecar.istio.io/injected")),
        "{unmanaged:?}"
    );
    // The JSON a drift is stored and served as carries the actor.
    let json = serde_json::to_value(&r.drifts[0]).expect("json");
    assert_eq!(json["actor"]["manager"], "kubectl");
    assert_eq!(json["actor"]["operation"], "Update");
    assert_eq!(json["actor"]["subresource"], "scale");
    let back: drift_core::Drift = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, r.drifts[0]);
}

#[test]
fn an_empty_hand_manager_list_turns_added_by_hand_off() {
    let engine = DiffEngine::new(
        DiffOptions::default().hand_managers(Vec::<String>::new()),
        Default::default(),
    );
    let r = diff_with(&engine, hand_edit_desired(), hand_edited_live());
    assert_eq!(drifts(&r), ["spec.replicas changed"]);
    assert!(r.unmanaged.iter().any(|u| u.field.ends_with("].env")));
    // A team that counts its own tool as hand editing.
    let engine = DiffEngine::new(
        DiffOptions::default().hand_managers(["istio-webhook"]),
        Default::default(),
    );
    let r = diff_with(&engine, hand_edit_desired(), hand_edited_live());
    assert!(
        drifts(&r).contains(&"metadata.labels[\"sidecar.istio.io/injected\"] extra".to_string()),
        "{:?}",
        drifts(&r)
    );
}

#[test]
fn a_removed_field_has_no_actor_to_guess() {
    let mut live = hand_edited_live();
    live.object["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .expect("container")
        .remove("image");
    let r = diff(hand_edit_desired(), live);
    let missing = r
        .drifts
        .iter()
        .find(|d| d.change == Change::Missing)
        .expect("missing image");
    assert!(missing.actor.is_none(), "{:?}", missing.actor);
}

#[test]
fn rollout_restart_annotation_is_ignored_by_the_default_preset() {
    let live = yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: x
  labels: {app: web}
  managedFields:
  - manager: kubectl-rollout
    operation: Update
    time: "2026-12-02T10:00:00Z"
    fieldsV1:
      f:spec: {f:template: {f:metadata: {f:annotations: {.: {}, f:kubectl.kubernetes.io/restartedAt: {}}}}}
spec:
  replicas: 2
  template:
    metadata:
      annotations: {kubectl.kubernetes.io/restartedAt: "2026-12-02T10:00:00Z"}
    spec:
      containers:
      - {name: app, image: registry.example/web:1.4}
"#,
    );
    // Even a team that counts kubectl-rollout as hand editing sees no drift: a restart is not a
    // configuration change.
    let options = DiffOptions::default().hand_managers(["kubectl-rollout"]);
    let engine = DiffEngine::new(options.clone(), Default::default());
    let r = diff_with(&engine, hand_edit_desired(), live.clone());
    assert!(r.drifts.is_empty(), "{:?}", drifts(&r));
    // Without the preset it would be.
    let no_presets = drift_core::ignore::IgnoreSet {
        presets: Vec::new(),
        ..Default::default()
    };
    let engine = DiffEngine::new(options.ignore(no_presets), Default::default());
    assert_eq!(
        drifts(&diff_with(&engine, hand_edit_desired(), live)),
        ["spec.template.metadata.annotations[\"kubectl.kubernetes.io/restartedAt\"] extra"]
    );
}

/// `kubectl apply` (client-side) creates with a POST: the server records every field of the stored
/// object under `kubectl-client-side-apply`, defaults and admission additions included
/// (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager: an Update owns what it
/// changed, and a create changes everything). The last-applied annotation says what was sent.
#[test]
fn a_creators_ownership_of_server_additions_is_not_applied_then_dropped() {
    let live = |with_annotation: bool| {
        let mut v = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "x", "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-12-01T09:00:00Z",
                 "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {},
                                                               "f:policy.example.com/scanned": {}}},
                              "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                                  "k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}}}],
                "annotations": {"policy.example.com/scanned": "true"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}}}});
        if with_annotation {
            v["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!(
                r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"x"},"spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"app","image":"web:1"}]}}}}"#
            );
        }
        res(v)
    };
    let desired = deploy(
        json!({"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}}}),
    );
    let engine = DiffEngine::new(
        DiffOptions::default().applier("kubectl-client-side-apply"),
        Default::default(),
    );
    // The webhook's annotation was never applied: the annotation says so.
    let r = diff_with(&engine, desired.clone(), live(true));
    assert!(r.drifts.is_empty(), "{:?}", drifts(&r));
    // Without an annotation, ownership is all there is to go by.
    let r = diff_with(&engine, desired, live(false));
    assert_eq!(
        drifts(&r),
        ["metadata.annotations[\"policy.example.com/scanned\"] extra"]
    );
}

// ------------------------------------------------------------------------------------------------
// custom resources: the CRD's schema defaults are server defaults

/// A namespaced CRD serving `v1` of `group`/`kind` whose `spec` has these schema properties.
fn crd(group: &str, kind: &str, plural: &str, spec_properties: Value) -> Resource {
    res(
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "names": {"kind": kind, "plural": plural}, "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": spec_properties}}}}}]}}),
    )
}

/// A desired custom resource against a live one, with the CRD's schema known (`Some`) or not.
fn diff_custom(crd: Option<&Resource>, desired: &Resource, live: Resource) -> DriftReport {
    let schemas = drift_core::custom::CustomSchemas::from_live(crd);
    let ctx = DiffContext {
        autoscalers: None,
        custom: Some(&schemas),
    };
    DiffEngine::default().diff_with(
        &DesiredObject::new(desired.clone()),
        Some(&LiveObject::new(live)),
        &ctx,
    )
}

#[test]
fn custom_resource_defaults_come_from_the_live_crd() {
    let crd = crd(
        "ops.example.com",
        "Backup",
        "backups",
        json!({
            "schedule": {"type": "string"},
            "retainDays": {"type": "integer", "default": 7},
            "target": {"type": "object", "default": {}, "properties": {
                "bucket": {"type": "string"},
                "region": {"type": "string", "default": "eu-west-1"}}}}),
    );
    let desired = yaml(
        r#"
apiVersion: ops.example.com/v1
kind: Backup
metadata: {name: nightly, namespace: default}
spec:
  schedule: "0 3 * * *"
  target: {bucket: backups-prod}
"#,
    );
    let live = |retain: i64, region: &str| {
        res(json!({"apiVersion": "ops.example.com/v1", "kind": "Backup",
            "metadata": {"name": "nightly", "namespace": "default", "generation": 1, "uid": "u"},
            "spec": {"schedule": "0 3 * * *", "retainDays": retain, "target": {"bucket": "backups-prod", "region": region}}}))
    };
    // The server's defaults, left alone: in sync, and not even unmanaged.
    let r = diff_custom(Some(&crd), &desired, live(7, "eu-west-1"));
    assert!(r.drifts.is_empty(), "{:?}", drifts(&r));
    assert!(r.unmanaged.is_empty(), "{:?}", r.unmanaged);
    // Edited: drift against the default, at each depth.
    let r = diff_custom(Some(&crd), &desired, live(1, "us-east-1"));
    assert_eq!(
        drifts(&r),
        ["spec.retainDays changed", "spec.target.region changed"]
    );
    assert_eq!(r.drifts[0].expected, Some(json!(7)));
    // Without the CRD's schema the edit is invisible (only unmanaged): what the schema adds.
    let r = diff_custom(None, &desired, live(1, "us-east-1"));
    assert!(r.drifts.is_empty());
    assert_eq!(r.unmanaged.len(), 2);
}

/// A custom resource's list declared `x-kubernetes-list-type: map` is matched by its
/// `x-kubernetes-list-map-keys`, as the API server and server-side apply treat it: elements in
/// another order are not drift, a changed element is reported at its key; `set` lists compare as sets.
#[test]
fn custom_resource_lists_follow_their_declared_list_type() {
    let crd = crd(
        "net.example.com",
        "Gateway",
        "gateways",
        json!({
            "listeners": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name", "protocol"],
                "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "protocol": {"type": "string"}, "port": {"type": "integer"}}}},
            "hosts": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}),
    );
    let gateway = |listeners: Value, hosts: Value| {
        res(json!({"apiVersion": "net.example.com/v1", "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "default"},
            "spec": {"listeners": listeners, "hosts": hosts}}))
    };
    let http = json!({"name": "web", "protocol": "HTTP", "port": 80});
    let https = json!({"name": "web", "protocol": "HTTPS", "port": 443});
    let desired = gateway(
        json!([http.clone(), https.clone()]),
        json!(["a.example.com", "b.example.com"]),
    );
    let with_crd = |l: Resource| diff_custom(Some(&crd), &desired, l);
    // The server returned both lists in another order: in sync.
    let reordered = gateway(
        json!([https.clone(), http.clone()]),
        json!(["b.example.com", "a.example.com"]),
    );
    let r = with_crd(reordered.clone());
    assert!(r.drifts.is_empty(), "{:?}", drifts(&r));
    // Without the CRD's declarations, the same object compares by position: what the schema adds.
    assert!(!diff_custom(None, &desired, reordered).drifts.is_empty());
    // One element changed, in another place: reported at its keys.
    let mut moved = https.clone();
    moved["port"] = json!(8443);
    let r = with_crd(gateway(
        json!([moved, http.clone()]),
        json!(["a.example.com", "b.example.com"]),
    ));
    assert_eq!(
        drifts(&r),
        ["spec.listeners[name=web,protocol=HTTPS].port changed"]
    );
    // A host swapped for another: the set differs.
    let r = with_crd(gateway(
        json!([http, https]),
        json!(["a.example.com", "c.example.com"]),
    ));
    assert_eq!(drifts(&r), ["spec.hosts changed"]);
}
