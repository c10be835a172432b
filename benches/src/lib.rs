//! Fixtures shared by the benchmarks: a realistic Deployment pair (the microservices-demo `frontend`,
//! as desired and as the API server returns it), a 10,000-object scan, and the bare desired-leaf walk
//! that is the least work any correct checker does.

use drift_core::Resource;
use serde_json::{Map, Value, json};

/// The desired `frontend` Deployment of GoogleCloudPlatform/microservices-demo (release manifests),
/// with the namespace the demo uses.
pub fn frontend_desired() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "frontend", "namespace": "boutique", "labels": {"app": "frontend"}},
      "spec": {"selector": {"matchLabels": {"app": "frontend"}},
        "template": {"metadata": {"labels": {"app": "frontend"}, "annotations": {"sidecar.istio.io/rewriteAppHTTPProbers": "true"}},
          "spec": {"serviceAccountName": "frontend",
            "securityContext": {"fsGroup": 1000, "runAsGroup": 1000, "runAsNonRoot": true, "runAsUser": 1000},
            "containers": [{"name": "server",
              "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": false, "readOnlyRootFilesystem": true},
              "image": "us-central1-docker.pkg.dev/online-boutique-ci/microservices-demo/frontend:v0.10.6",
              "ports": [{"containerPort": 8080}],
              "readinessProbe": {"initialDelaySeconds": 10, "httpGet": {"path": "/_healthz", "port": 8080, "httpHeaders": [{"name": "Cookie", "value": "shop_session-id=x-readiness-probe"}]}},
              "livenessProbe": {"initialDelaySeconds": 10, "httpGet": {"path": "/_healthz", "port": 8080, "httpHeaders": [{"name": "Cookie", "value": "shop_session-id=x-liveness-probe"}]}},
              "env": [
                {"name": "PORT", "value": "8080"},
                {"name": "PRODUCT_CATALOG_SERVICE_ADDR", "value": "productcatalogservice:3550"},
                {"name": "CURRENCY_SERVICE_ADDR", "value": "currencyservice:7000"},
                {"name": "CART_SERVICE_ADDR", "value": "cartservice:7070"},
                {"name": "RECOMMENDATION_SERVICE_ADDR", "value": "recommendationservice:8080"},
                {"name": "SHIPPING_SERVICE_ADDR", "value": "shippingservice:50051"},
                {"name": "CHECKOUT_SERVICE_ADDR", "value": "checkoutservice:5050"},
                {"name": "AD_SERVICE_ADDR", "value": "adservice:9555"},
                {"name": "SHOPPING_ASSISTANT_SERVICE_ADDR", "value": "shoppingassistantservice:80"},
                {"name": "ENABLE_PROFILER", "value": "0"}],
              "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}}]}}}})
}

fn fields_v1(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, c) in m {
                let child = match (k.as_str(), c) {
                    ("containers" | "env", Value::Array(items)) => {
                        let mut l = Map::new();
                        l.insert(".".into(), json!({}));
                        for it in items {
                            let key =
                                json!({"name": it.get("name").cloned().unwrap_or(Value::Null)}).to_string();
                            l.insert(format!("k:{key}"), fields_v1(it));
                        }
                        Value::Object(l)
                    }
                    ("ports", Value::Array(items)) => {
                        let mut l = Map::new();
                        for it in items {
                            let key =
                                json!({"containerPort": it["containerPort"], "protocol": "TCP"}).to_string();
                            l.insert(format!("k:{key}"), fields_v1(it));
                        }
                        Value::Object(l)
                    }
                    (_, Value::Object(_)) => fields_v1(c),
                    _ => json!({}),
                };
                out.insert(format!("f:{k}"), child);
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

/// What the API server returns for the desired object after `kubectl apply`: server defaults, the
/// last-applied annotation, managedFields, generation and status.
pub fn with_server_state(desired: &Value) -> Value {
    let mut o = desired.clone();
    let applied = desired.to_string();
    let meta = o["metadata"].as_object_mut().expect("metadata");
    meta.insert("annotations".into(), json!({"deployment.kubernetes.io/revision": "3", "kubectl.kubernetes.io/last-applied-configuration": applied}));
    meta.insert("creationTimestamp".into(), json!("2026-11-20T08:15:02Z"));
    meta.insert("generation".into(), json!(3));
    meta.insert("resourceVersion".into(), json!("48213977"));
    meta.insert("uid".into(), json!("5f0e6c1a-9d21-4b7e-a0f3-2c6b8c0d1e42"));
    meta.insert(
        "managedFields".into(),
        json!([
            {"apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": fields_v1(desired), "manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-11-20T08:15:02Z"},
            {"apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}},
              "f:status": {"f:availableReplicas": {}, "f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {}, "k:{\"type\":\"Progressing\"}": {}},
                "f:observedGeneration": {}, "f:readyReplicas": {}, "f:replicas": {}, "f:updatedReplicas": {}}},
             "manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "time": "2026-11-20T08:16:40Z"}
        ]),
    );
    let spec = o["spec"].as_object_mut().expect("spec");
    spec.insert("replicas".into(), json!(1));
    spec.insert("revisionHistoryLimit".into(), json!(10));
    spec.insert("progressDeadlineSeconds".into(), json!(600));
    spec.insert(
        "strategy".into(),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
    );
    o["spec"]["template"]["metadata"]["creationTimestamp"] = Value::Null;
    let pod = o["spec"]["template"]["spec"].as_object_mut().expect("pod spec");
    pod.insert("dnsPolicy".into(), json!("ClusterFirst"));
    pod.insert("restartPolicy".into(), json!("Always"));
    pod.insert("schedulerName".into(), json!("default-scheduler"));
    pod.insert("terminationGracePeriodSeconds".into(), json!(30));
    pod.insert("serviceAccount".into(), pod["serviceAccountName"].clone());
    for c in pod
        .get_mut("containers")
        .and_then(Value::as_array_mut)
        .expect("containers")
    {
        c["imagePullPolicy"] = json!("IfNotPresent");
        c["terminationMessagePath"] = json!("/dev/termination-log");
        c["terminationMessagePolicy"] = json!("File");
        for p in c["ports"].as_array_mut().into_iter().flatten() {
            p["protocol"] = json!("TCP");
        }
        for probe in ["readinessProbe", "livenessProbe"] {
            let pr = c[probe].as_object_mut().expect("probe");
            pr.insert("timeoutSeconds".into(), json!(1));
            pr.insert("periodSeconds".into(), json!(10));
            pr.insert("successThreshold".into(), json!(1));
            pr.insert("failureThreshold".into(), json!(3));
            pr["httpGet"]["scheme"] = json!("HTTP");
        }
    }
    o["status"] = json!({"availableReplicas": 1, "observedGeneration": 3, "readyReplicas": 1, "replicas": 1, "updatedReplicas": 1,
        "conditions": [
          {"lastTransitionTime": "2026-11-20T08:16:40Z", "lastUpdateTime": "2026-11-20T08:16:40Z", "message": "Deployment has minimum availability.", "reason": "MinimumReplicasAvailable", "status": "True", "type": "Available"},
          {"lastTransitionTime": "2026-11-20T08:15:02Z", "lastUpdateTime": "2026-11-20T08:16:40Z", "message": "ReplicaSet \"frontend-6b8d7c9f5d\" has successfully progressed.", "reason": "NewReplicaSetAvailable", "status": "True", "type": "Progressing"}]});
    o
}

/// The pair with one drift: the image changed live.
pub fn frontend_pair_one_drift() -> (Value, Value) {
    let d = frontend_desired();
    let mut l = with_server_state(&d);
    l["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("us-central1-docker.pkg.dev/online-boutique-ci/microservices-demo/frontend:v0.10.7");
    (d, l)
}

/// The least work any correct checker does: look every desired leaf up in live and compare it.
/// (Lists by position, no normalization: it is a floor, not a correct engine.)
pub fn bare_leaf_walk(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| bare_leaf_walk(dv, lv))),
        (Value::Array(d), Value::Array(l)) => {
            d.len() <= l.len() && d.iter().zip(l).all(|(a, b)| bare_leaf_walk(a, b))
        }
        (d, l) => d == l,
    }
}

/// Resources as a desired set from one file (what the detector benches give it).
pub fn as_desired(resources: impl IntoIterator<Item = Resource>) -> Vec<drift_core::ports::DesiredResource> {
    resources
        .into_iter()
        .map(|resource| drift_core::ports::DesiredResource {
            resource,
            provenance: drift_core::ports::Provenance::file("f"),
        })
        .collect()
}

/// `n` desired objects and their live counterparts (Deployments, Services and ConfigMaps in equal
/// parts), live with server state. Every 100th Deployment has a replica drift.
pub fn scan_fixture(n: usize) -> (Vec<Resource>, Vec<Resource>) {
    let mut desired = Vec::with_capacity(n);
    let mut live = Vec::with_capacity(n);
    for i in 0..n {
        let ns = format!("team-{}", i % 50);
        let (d, l) = match i % 3 {
            0 => {
                let mut d = frontend_desired();
                d["metadata"]["name"] = json!(format!("app-{i}"));
                d["metadata"]["namespace"] = json!(ns);
                let mut l = with_server_state(&d);
                if i % 100 == 0 {
                    l["spec"]["replicas"] = json!(4);
                }
                (d, l)
            }
            1 => {
                let d = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}"), "namespace": ns, "labels": {"app": "x"}},
                    "spec": {"selector": {"app": "x"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 9000}]}});
                let mut l = d.clone();
                l["metadata"]["resourceVersion"] = json!("7");
                l["spec"] = json!({"selector": {"app": "x"}, "clusterIP": "10.0.3.4", "clusterIPs": ["10.0.3.4"], "type": "ClusterIP", "sessionAffinity": "None",
                    "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}, {"name": "grpc", "port": 9000, "protocol": "TCP", "targetPort": 9000}]});
                l["status"] = json!({"loadBalancer": {}});
                (d, l)
            }
            _ => {
                let d = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "namespace": ns},
                    "data": {"LOG_LEVEL": "info", "FEATURE_X": "on", "endpoint": "https://api.example.com/v1"}});
                let mut l = d.clone();
                l["metadata"]["resourceVersion"] = json!("9");
                (d, l)
            }
        };
        desired.push(Resource::from_value(d).expect("desired"));
        live.push(Resource::from_value(l).expect("live"));
    }
    (desired, live)
}

/// Processes a detector's whole queue as the daemon does (batches of 1,024 keys, compared on every
/// core); the number of drift events that came out.
pub fn drain(det: &mut drift_core::Detector) -> usize {
    let mut events = 0;
    loop {
        let keys: Vec<_> = std::iter::from_fn(|| det.next_key()).take(1024).collect();
        if keys.is_empty() {
            return events;
        }
        events += det
            .process_all(&keys)
            .iter()
            .map(|o| o.events.len())
            .sum::<usize>();
    }
}
