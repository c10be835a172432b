//! Deterministic cost model: the monthly cost delta of replica and resource drifts.
//!
//! A workload costs `replicas × (CPU requested × price per vCPU-hour + memory requested × price per
//! GiB-hour) × hours per month`, where a container's request falls back to its limit when it has none
//! and a pod requests the larger of its containers' sum and its biggest init container. The delta of a
//! drift is the cost of live minus the cost of live with that drift reverted, so it is positive when
//! the drift spends more.
//!
//! The default prices are Google Compute Engine E2 on-demand list prices in us-central1
//! ($0.021811 per vCPU-hour, $0.002923 per GiB-hour) over 730 hours a month; set your own in the
//! daemon's config file (`prices:`).
//!
//! ```
//! use drift_core::cost::PriceTable;
//! use serde_json::json;
//! let deploy = json!({"kind": "Deployment", "spec": {"replicas": 2, "template": {"spec": {"containers": [
//!     {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]}}}});
//! let p = PriceTable::default();
//! let monthly = p.monthly_cost(&deploy).unwrap();
//! assert!((monthly - 2.0 * (0.5 * 0.021811 + 1.0 * 0.002923) * 730.0).abs() < 1e-9);
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::drift::Drift;
use crate::object::{DesiredObject, LiveObject};
use crate::path::Segment;
use crate::quantity::Quantity;
use crate::rules::DriftSet;

/// Prices used by the cost model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PriceTable {
    /// USD per vCPU-hour (default 0.021811, GCE E2 on-demand, us-central1).
    pub vcpu_hour: f64,
    /// USD per GiB-hour of memory (default 0.002923, GCE E2 on-demand, us-central1).
    pub gib_hour: f64,
    /// Hours in a month (default 730).
    pub hours_per_month: f64,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable {
            vcpu_hour: 0.021811,
            gib_hour: 0.002923,
            hours_per_month: 730.0,
        }
    }
}

/// CPU (cores) and memory (GiB) requested by one pod.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PodRequests {
    /// vCPU.
    pub cpu: f64,
    /// GiB.
    pub memory_gib: f64,
}

fn container_requests(c: &Value) -> PodRequests {
    let res = c.get("resources");
    let get = |name: &str| {
        let pick = |section: &str| {
            res.and_then(|r| r.get(section))
                .and_then(|s| s.get(name))
                .and_then(Quantity::from_json)
        };
        pick("requests")
            .or_else(|| pick("limits"))
            .map(|q| q.as_f64())
            .unwrap_or(0.0)
    };
    PodRequests {
        cpu: get("cpu"),
        memory_gib: get("memory") / (1024.0 * 1024.0 * 1024.0),
    }
}

/// Requests of a pod spec.
pub fn pod_requests(pod_spec: &Value) -> PodRequests {
    let sum = pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .map_or(PodRequests::default(), |cs| {
            cs.iter()
                .map(container_requests)
                .fold(PodRequests::default(), |a, b| PodRequests {
                    cpu: a.cpu + b.cpu,
                    memory_gib: a.memory_gib + b.memory_gib,
                })
        });
    let init =
        pod_spec
            .get("initContainers")
            .and_then(Value::as_array)
            .map_or(PodRequests::default(), |cs| {
                cs.iter()
                    .map(container_requests)
                    .fold(PodRequests::default(), |a, b| PodRequests {
                        cpu: a.cpu.max(b.cpu),
                        memory_gib: a.memory_gib.max(b.memory_gib),
                    })
            });
    PodRequests {
        cpu: sum.cpu.max(init.cpu),
        memory_gib: sum.memory_gib.max(init.memory_gib),
    }
}

impl PriceTable {
    /// Monthly cost of one pod with these requests.
    pub fn pod_monthly(&self, r: PodRequests) -> f64 {
        (r.cpu * self.vcpu_hour + r.memory_gib * self.gib_hour) * self.hours_per_month
    }

    /// Monthly cost of a workload object (Deployment, StatefulSet, ReplicaSet, ReplicationController,
    /// Pod); `None` for kinds whose replica count the object does not say (DaemonSet) or that run no pods.
    pub fn monthly_cost(&self, obj: &Value) -> Option<f64> {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let (replicas, pod_spec) = match kind {
            "Deployment" | "StatefulSet" | "ReplicaSet" | "ReplicationController" => (
                obj.pointer("/spec/replicas")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0),
                obj.pointer("/spec/template/spec")?,
            ),
            "Pod" => (1.0, obj.get("spec")?),
            _ => return None,
        };
        Some(replicas * self.pod_monthly(pod_requests(pod_spec)))
    }

    /// The monthly cost delta of one drift (positive: the drift spends more). `None` for drifts that
    /// are not about replicas or resources, or kinds the model does not price.
    pub fn drift_delta(&self, desired: &DesiredObject, live: &LiveObject, drift: &Drift) -> Option<f64> {
        if !Self::prices(drift) {
            return None;
        }
        let now = self.monthly_cost(live.object())?;
        // A drift under `spec` is reverted in a copy of what the price reads (the kind and the
        // spec), not of the whole object: the same edit, the same price.
        let spec_only;
        let base = if matches!(drift.path.segments().first(), Some(Segment::Field(f)) if f == "spec") {
            let object: serde_json::Map<String, Value> = ["apiVersion", "kind", "spec"]
                .into_iter()
                .filter_map(|f| Some((f.to_string(), live.object().get(f)?.clone())))
                .collect();
            spec_only = LiveObject::left_by_redaction(crate::model::Resource {
                key: live.key().clone(),
                object: Value::Object(object),
            });
            &spec_only
        } else {
            live
        };
        let reverted = crate::patch::reverted(desired, base, std::slice::from_ref(drift)).ok()?;
        let then = self.monthly_cost(&reverted)?;
        Some(now - then)
    }

    /// Whether [`PriceTable::drift_delta`] prices a drift (else it gives `None` without looking).
    pub(crate) fn prices(drift: &Drift) -> bool {
        matches!(drift.set, DriftSet::Replica | DriftSet::Resource)
    }
}

/// Formats a monthly delta for people: `+$3.45/month`.
pub fn format_monthly(delta: f64) -> String {
    let sign = if delta < 0.0 { "-" } else { "+" };
    format!("{sign}${:.2}/month", delta.abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DiffEngine, Resource};
    use serde_json::json;

    fn deploy(replicas: i64, cpu: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "backend-api", "namespace": "drift-test"},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                   {"name": "api", "image": "nginx:alpine", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"},
                                                                          "limits": {"cpu": "200m", "memory": "128Mi"}}}]}}}})
    }

    #[test]
    fn replica_drift_costs_extra_pods() {
        let p = PriceTable::default();
        let desired = DesiredObject::new(Resource::from_value(deploy(3, "100m")).unwrap());
        let live = LiveObject::new(Resource::from_value(deploy(5, "100m")).unwrap());
        let report = DiffEngine::default().diff(&desired, Some(&live));
        let delta = p.drift_delta(&desired, &live, &report.drifts[0]).unwrap();
        let per_pod = (0.1 * 0.021811 + 0.0625 * 0.002923) * 730.0;
        assert!((delta - 2.0 * per_pod).abs() < 1e-9, "{delta}");
        assert_eq!(format_monthly(delta), "+$3.45/month");
    }

    #[test]
    fn resource_drift_costs_per_replica() {
        let p = PriceTable::default();
        let desired = DesiredObject::new(Resource::from_value(deploy(2, "100m")).unwrap());
        let live = LiveObject::new(Resource::from_value(deploy(2, "1")).unwrap());
        let report = DiffEngine::default().diff(&desired, Some(&live));
        let d = report.drifts.iter().find(|d| d.rule == "resources").unwrap();
        let delta = p.drift_delta(&desired, &live, d).unwrap();
        assert!((delta - 2.0 * 0.9 * 0.021811 * 730.0).abs() < 1e-9, "{delta}");
    }

    /// A drift under `spec` is priced on a copy of the kind and spec alone: the same price as the
    /// whole object reverted gives, for every drift of objects edited in replicas, requests,
    /// limits, a container renamed, resources removed, replicas taken out.
    #[test]
    fn a_price_read_from_the_spec_alone_is_the_whole_objects() {
        let p = PriceTable::default();
        let desired = DesiredObject::new(Resource::from_value(deploy(3, "100m")).unwrap());
        let mut edits: Vec<Value> = Vec::new();
        let base = || {
            let mut l = deploy(3, "100m");
            l["metadata"]["annotations"] = json!({"x": "y"});
            l["status"] = json!({"replicas": 3});
            l
        };
        let mut e = base();
        e["spec"]["replicas"] = json!(7);
        e["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("1Gi");
        edits.push(e);
        let mut e = base();
        e["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = json!({"cpu": "2"});
        edits.push(e);
        let mut e = base();
        e["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("resources");
        edits.push(e);
        let mut e = base();
        e["spec"]["template"]["spec"]["containers"][0]["name"] = json!("renamed");
        edits.push(e);
        let mut e = base();
        e["spec"]["replicas"] = Value::Null;
        edits.push(e);
        let mut priced = 0;
        for (i, live) in edits.into_iter().enumerate() {
            let live = LiveObject::new(Resource::from_value(live).unwrap());
            let report = DiffEngine::default().diff(&desired, Some(&live));
            assert!(!report.drifts.is_empty(), "edit {i}");
            for d in &report.drifts {
                let whole = PriceTable::prices(d).then(|| {
                    let reverted = crate::patch::reverted(&desired, &live, std::slice::from_ref(d)).ok()?;
                    Some(p.monthly_cost(live.object())? - p.monthly_cost(&reverted)?)
                });
                assert_eq!(p.drift_delta(&desired, &live, d), whole.flatten(), "{}", d.path);
                priced += usize::from(p.drift_delta(&desired, &live, d).is_some());
            }
        }
        assert!(priced >= 4, "{priced}");
    }

    #[test]
    fn limits_stand_in_for_missing_requests_and_init_containers_count() {
        let spec = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "2Gi"}}}],
                          "initContainers": [{"resources": {"requests": {"cpu": "3"}}}]});
        let r = pod_requests(&spec);
        assert_eq!(r.cpu, 3.0);
        assert_eq!(r.memory_gib, 2.0);
        assert_eq!(
            PriceTable::default().monthly_cost(&json!({"kind": "DaemonSet", "spec": {}})),
            None
        );
    }
}
