//! The engine's laws as properties (ARCHITECTURE §9):
//! - `diff(x, x)` is empty, and so is `diff(x, x + server defaults)`;
//! - normalization (Secret folding and redaction) is idempotent;
//! - for every built-in rule, applying the revert patch to live leaves no drift;
//! - quantities survive a round trip through their canonical form.

mod common;

use drift_core::patch::apply_patch;
use drift_core::{DesiredObject, DiffEngine, LiveObject, Quantity, Resource, revert_patch};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,5}"
}

fn quantity_cpu() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("100m")),
        Just(json!("0.25")),
        Just(json!("500m")),
        Just(json!(1)),
        Just(json!("2")),
        Just(json!("1500m"))
    ]
}

fn quantity_mem() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("64Mi")),
        Just(json!("128Mi")),
        Just(json!("1Gi")),
        Just(json!("1024Mi")),
        Just(json!("500M"))
    ]
}

fn image() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("nginx"),
            Just("docker.io/library/redis"),
            Just("ghcr.io/acme/api"),
            Just("busybox")
        ],
        prop_oneof![Just(""), Just(":1.25"), Just(":latest"), Just(":v2")],
    )
        .prop_map(|(i, t)| format!("{i}{t}"))
}

fn container() -> impl Strategy<Value = Value> {
    (
        name(),
        image(),
        proptest::option::of((quantity_cpu(), quantity_mem())),
        proptest::collection::btree_map(name(), "[a-z0-9]{0,4}", 0..4),
        proptest::collection::btree_set(1000u16..1010, 0..3),
    )
        .prop_map(|(n, img, res, env, ports)| {
            let mut c = json!({"name": n, "image": img});
            if let Some((cpu, mem)) = res {
                c["resources"] = json!({"requests": {"cpu": cpu, "memory": mem}});
            }
            if !env.is_empty() {
                c["env"] = Value::Array(
                    env.into_iter()
                        .map(|(k, v)| json!({"name": k.to_uppercase(), "value": v}))
                        .collect(),
                );
            }
            if !ports.is_empty() {
                c["ports"] = Value::Array(ports.into_iter().map(|p| json!({"containerPort": p})).collect());
            }
            c
        })
}

fn deployment() -> impl Strategy<Value = Value> {
    (name(), 0i64..6, proptest::collection::vec(container(), 1..3), proptest::collection::btree_map(name(), name(), 0..3))
        .prop_map(|(n, replicas, mut containers, labels)| {
            // container names must be unique
            for (i, c) in containers.iter_mut().enumerate() {
                c["name"] = json!(format!("{}{i}", c["name"].as_str().unwrap_or("c")));
            }
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": n, "namespace": "ns", "labels": labels},
                   "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "x"}},
                            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": containers}}}})
        })
}

fn service() -> impl Strategy<Value = Value> {
    (name(), proptest::collection::btree_set((1u16..500, prop_oneof![Just("TCP"), Just("UDP"), Just("")]), 1..4)).prop_map(|(n, ports)| {
        let mut seen = std::collections::BTreeSet::new();
        let ports: Vec<Value> = ports
            .into_iter()
            .filter(|(p, proto)| seen.insert((*p, if proto.is_empty() { "TCP" } else { proto })))
            .map(|(p, proto)| if proto.is_empty() { json!({"port": p}) } else { json!({"port": p, "protocol": proto}) })
            .collect();
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": n, "namespace": "ns"}, "spec": {"selector": {"app": "x"}, "ports": ports}})
    })
}

fn configmap() -> impl Strategy<Value = Value> {
    (name(), proptest::collection::btree_map(name(), "[a-z ]{0,8}", 0..4))
        .prop_map(|(n, data)| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "namespace": "ns"}, "data": data}))
}

fn object() -> impl Strategy<Value = Value> {
    prop_oneof![deployment(), service(), configmap()]
}

/// What an API server adds on create, written independently of the engine's table.
fn with_server_defaults(mut o: Value) -> Value {
    o["metadata"]["resourceVersion"] = json!("12");
    o["metadata"]["uid"] = json!("u-1");
    o["metadata"]["creationTimestamp"] = json!("2026-11-26T00:00:00Z");
    match o["kind"].as_str() {
        Some("Deployment") => {
            o["metadata"]["generation"] = json!(1);
            let spec = o["spec"].as_object_mut().expect("spec");
            spec.insert("revisionHistoryLimit".into(), json!(10));
            spec.insert("progressDeadlineSeconds".into(), json!(600));
            spec.insert("strategy".into(), json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}));
            let pod = o["spec"]["template"]["spec"].as_object_mut().expect("pod");
            pod.insert("dnsPolicy".into(), json!("ClusterFirst"));
            pod.insert("restartPolicy".into(), json!("Always"));
            pod.insert("schedulerName".into(), json!("default-scheduler"));
            pod.insert("securityContext".into(), json!({}));
            pod.insert("terminationGracePeriodSeconds".into(), json!(30));
            for c in pod["containers"].as_array_mut().expect("containers") {
                let image = c["image"].as_str().unwrap_or("").to_string();
                let latest =
                    image.ends_with(":latest") || !image.rsplit('/').next().unwrap_or("").contains(':');
                c["imagePullPolicy"] = json!(if latest { "Always" } else { "IfNotPresent" });
                c["terminationMessagePath"] = json!("/dev/termination-log");
                c["terminationMessagePolicy"] = json!("File");
                if c.get("resources").is_none() {
                    c["resources"] = json!({});
                }
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        p["protocol"] = json!("TCP");
                    }
                }
            }
            o["status"] = json!({"replicas": 1, "observedGeneration": 1});
        }
        Some("Service") => {
            let spec = o["spec"].as_object_mut().expect("spec");
            spec.insert("clusterIP".into(), json!("10.0.0.7"));
            spec.insert("clusterIPs".into(), json!(["10.0.0.7"]));
            spec.insert("type".into(), json!("ClusterIP"));
            spec.insert("sessionAffinity".into(), json!("None"));
            spec.insert("internalTrafficPolicy".into(), json!("Cluster"));
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
            spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
            for p in spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .expect("ports")
            {
                if p.get("protocol").is_none() {
                    p["protocol"] = json!("TCP");
                }
                let port = p["port"].clone();
                p["targetPort"] = port;
            }
            // the server may return ports in another order
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                ports.reverse();
            }
            o["status"] = json!({"loadBalancer": {}});
        }
        _ => {}
    }
    o
}

/// A change someone could make live, aimed at one rule.
#[derive(Debug, Clone)]
enum Mutation {
    Replicas(i64),
    Image(String),
    Cpu(Value),
    EnvValue(String),
    EnvReorder,
    AddLabel(String),
    ChangeLabelValue,
    RunAsRoot,
    HostNetwork,
    ServiceType,
    ExtraServicePort(u16),
    ConfigMapExtraKey(String),
    ConfigMapValue(String),
    ConfigMapRemoveKey,
    RemoveContainerPort,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0i64..9).prop_map(Mutation::Replicas),
        image().prop_map(Mutation::Image),
        quantity_cpu().prop_map(Mutation::Cpu),
        "[a-z]{1,4}".prop_map(Mutation::EnvValue),
        Just(Mutation::EnvReorder),
        name().prop_map(Mutation::AddLabel),
        Just(Mutation::ChangeLabelValue),
        Just(Mutation::RunAsRoot),
        Just(Mutation::HostNetwork),
        Just(Mutation::ServiceType),
        (600u16..700).prop_map(Mutation::ExtraServicePort),
        name().prop_map(Mutation::ConfigMapExtraKey),
        "[a-z]{1,5}".prop_map(Mutation::ConfigMapValue),
        Just(Mutation::ConfigMapRemoveKey),
        Just(Mutation::RemoveContainerPort),
    ]
}

fn first_container(o: &mut Value) -> Option<&mut Map<String, Value>> {
    o.pointer_mut("/spec/template/spec/containers/0")
        .and_then(Value::as_object_mut)
}

fn mutate(o: &mut Value, m: &Mutation) {
    let kind = o["kind"].as_str().unwrap_or("").to_string();
    match (kind.as_str(), m) {
        ("Deployment", Mutation::Replicas(n)) => o["spec"]["replicas"] = json!(n),
        ("Deployment", Mutation::Image(i)) => {
            if let Some(c) = first_container(o) {
                c.insert("image".into(), json!(i));
            }
        }
        ("Deployment", Mutation::Cpu(q)) => {
            if let Some(c) = first_container(o) {
                c.insert("resources".into(), json!({"requests": {"cpu": q}}));
            }
        }
        ("Deployment", Mutation::EnvValue(v)) => {
            if let Some(env) = first_container(o)
                .and_then(|c| c.get_mut("env"))
                .and_then(Value::as_array_mut)
                && let Some(e) = env.first_mut()
            {
                e["value"] = json!(v);
            }
        }
        ("Deployment", Mutation::EnvReorder) => {
            if let Some(env) = first_container(o)
                .and_then(|c| c.get_mut("env"))
                .and_then(Value::as_array_mut)
            {
                env.reverse();
            }
        }
        ("Deployment", Mutation::RunAsRoot) => {
            o["spec"]["template"]["spec"]["securityContext"] = json!({"runAsUser": 0})
        }
        ("Deployment", Mutation::HostNetwork) => o["spec"]["template"]["spec"]["hostNetwork"] = json!(true),
        ("Deployment", Mutation::RemoveContainerPort) => {
            if let Some(ports) = first_container(o)
                .and_then(|c| c.get_mut("ports"))
                .and_then(Value::as_array_mut)
            {
                ports.pop();
            }
        }
        (_, Mutation::AddLabel(l)) => {
            let labels = o["metadata"]
                .as_object_mut()
                .expect("metadata")
                .entry("labels")
                .or_insert_with(|| json!({}));
            labels[format!("added-{l}")] = json!("x");
        }
        (_, Mutation::ChangeLabelValue) => {
            if let Some(labels) = o.pointer_mut("/metadata/labels").and_then(Value::as_object_mut)
                && let Some((_, v)) = labels.iter_mut().next()
            {
                *v = json!("changed-value");
            }
        }
        ("Service", Mutation::ServiceType) => o["spec"]["type"] = json!("NodePort"),
        ("Service", Mutation::ExtraServicePort(p)) => {
            if let Some(ports) = o.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                ports.push(json!({"port": p, "protocol": "TCP", "targetPort": p}));
            }
        }
        ("ConfigMap", Mutation::ConfigMapExtraKey(k)) => o["data"][format!("extra-{k}")] = json!("v"),
        ("ConfigMap", Mutation::ConfigMapValue(v)) => {
            if let Some((_, x)) = o["data"].as_object_mut().and_then(|d| d.iter_mut().next()) {
                *x = json!(format!("{v}-changed"));
            }
        }
        ("ConfigMap", Mutation::ConfigMapRemoveKey) => {
            if let Some(d) = o["data"].as_object_mut() {
                let k = d.keys().next().cloned();
                if let Some(k) = k {
                    d.remove(&k);
                }
            }
        }
        _ => {}
    }
}

fn res(v: Value) -> Resource {
    Resource::from_value(v).expect("object")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn diff_with_itself_is_empty(o in object()) {
        let r = DiffEngine::default().diff(&DesiredObject::new(res(o.clone())), Some(&LiveObject::new(res(o))));
        prop_assert!(r.drifts.is_empty(), "{:?}", r.drifts);
        prop_assert!(r.unmanaged.is_empty(), "{:?}", r.unmanaged);
    }

    #[test]
    fn server_defaults_are_never_drift(o in object()) {
        let live = with_server_defaults(o.clone());
        let r = DiffEngine::default().diff(&DesiredObject::new(res(o)), Some(&LiveObject::new(res(live))));
        prop_assert!(r.drifts.is_empty(), "{:?}", r.drifts);
        prop_assert!(r.unmanaged.is_empty(), "{:?}", r.unmanaged);
    }

    #[test]
    fn filled_server_defaults_are_never_drift(o in object()) {
        let mut live = o.clone();
        drift_core::fill_server_defaults(&mut live);
        let r = DiffEngine::default().diff(&DesiredObject::new(res(o)), Some(&LiveObject::new(res(live))));
        prop_assert!(r.drifts.is_empty(), "{:?}", r.drifts);
        prop_assert!(r.unmanaged.is_empty(), "{:?}", r.unmanaged);
    }

    #[test]
    fn normalization_is_idempotent(o in object(), secret in proptest::collection::btree_map(name(), "[ -~]{0,12}", 0..4)) {
        let once = DesiredObject::new(res(o));
        let twice = DesiredObject::new(once.resource().clone());
        prop_assert_eq!(once, twice);
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}, "stringData": secret});
        let once = DesiredObject::new(res(s));
        let twice = DesiredObject::new(once.resource().clone());
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn revert_patch_clears_every_drift(o in object(), muts in proptest::collection::vec(mutation(), 1..4)) {
        let engine = DiffEngine::default();
        let desired = DesiredObject::new(res(o.clone()));
        let mut live = with_server_defaults(o);
        for m in &muts {
            mutate(&mut live, m);
        }
        let live = LiveObject::new(res(live));
        let report = engine.diff(&desired, Some(&live));
        let patch = revert_patch(&desired, &live, &report.drifts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let fixed = apply_patch(live.object(), &patch).map_err(|e| TestCaseError::fail(format!("{e}: {patch:?}")))?;
        let after = engine.diff(&desired, Some(&LiveObject::new(res(fixed))));
        prop_assert!(after.drifts.is_empty(), "left: {:?}\nmutations: {muts:?}\npatch: {patch:?}", after.drifts);
        if report.drifts.is_empty() {
            prop_assert!(patch.0.is_empty());
        }
    }

    #[test]
    fn the_compiled_form_compares_as_the_value_does(o in object(), muts in proptest::collection::vec(mutation(), 0..4), swap in any::<bool>()) {
        // Drifted pairs both ways round (a desired object that lacks what live has, and the reverse).
        let mut live = with_server_defaults(o.clone());
        for m in &muts {
            mutate(&mut live, m);
        }
        let (d, l) = if swap { (live, o) } else { (o, live) };
        let engine = DiffEngine::default();
        let desired = DesiredObject::new(res(d));
        let live = LiveObject::new(res(l));
        let report = engine.diff(&desired, Some(&live));
        let compiled = common::diff_compiled(&engine, &desired, &live);
        prop_assert_eq!(&report, &compiled);
        let (compiled_live, _) = common::diff_compiled_live(&engine, &desired, &live);
        prop_assert_eq!(report, compiled_live);
    }

    #[test]
    fn quantities_round_trip(m in -1_000_000i64..1_000_000, e in -9i32..7, f in 0usize..3) {
        let format = [drift_core::quantity::QuantityFormat::DecimalSi, drift_core::quantity::QuantityFormat::BinarySi,
                      drift_core::quantity::QuantityFormat::DecimalExponent][f];
        let q = Quantity::from_parts(i128::from(m), e, format).expect("in range");
        let back: Quantity = q.to_string().parse().expect("canonical form parses");
        prop_assert_eq!(back, q);
        // The canonical form is a fixed point after one round (Kubernetes prints BinarySI 2000 as
        // `2000`, which parses back as DecimalSI and prints `2k`: equal values, different families).
        let again: Quantity = back.to_string().parse().expect("parses");
        prop_assert_eq!(again.to_string(), back.to_string());
    }
}

/// Every built-in rule is reached by the mutations above (so the revert property covers each).
#[test]
fn mutations_reach_every_builtin_rule() {
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "ns", "labels": {"a": "b"}},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1", "ports": [{"containerPort": 80}],
        "env": [{"name": "A", "value": "1"}], "resources": {"requests": {"cpu": "1"}}}]}}}});
    let s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns"}, "spec": {"ports": [{"port": 80}]}});
    let c = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {"k": "v"}});
    let cases: Vec<(Value, Mutation, &str)> = vec![
        (d.clone(), Mutation::Replicas(5), "replicas"),
        (d.clone(), Mutation::Image("nginx:2".into()), "images"),
        (d.clone(), Mutation::Cpu(json!("2")), "resources"),
        (d.clone(), Mutation::RunAsRoot, "security"),
        (d.clone(), Mutation::HostNetwork, "security"),
        (d.clone(), Mutation::RemoveContainerPort, "ports"),
        (d.clone(), Mutation::EnvValue("z".into()), "generic"),
        (d, Mutation::ChangeLabelValue, "generic"),
        (s.clone(), Mutation::ServiceType, "ports"),
        (s, Mutation::ExtraServicePort(443), "ports"),
        (
            c.clone(),
            Mutation::ConfigMapExtraKey("x".into()),
            "configmap-data",
        ),
        (c, Mutation::ConfigMapValue("y".into()), "configmap-data"),
    ];
    for (o, m, rule) in cases {
        let mut live = with_server_defaults(o.clone());
        mutate(&mut live, &m);
        let r = DiffEngine::default().diff(&DesiredObject::new(res(o)), Some(&LiveObject::new(res(live))));
        assert!(
            r.drifts.iter().any(|d| d.rule == rule),
            "{m:?} should reach {rule}: {:?}",
            r.drifts
        );
    }
}
