//! Older API versions served beside the stored one, converted on the way in and out as the API
//! server's conversion functions do: `autoscaling/v1` HorizontalPodAutoscalers over the `v2` objects
//! (`pkg/apis/autoscaling/v1/conversion.go`). v1 can say only "CPU utilization": what v2 holds beyond
//! it (other metrics, `behavior`) is kept from the stored object when a v1 client writes, as the real
//! server keeps it (there in annotations).

use drift_core::kinds::KindInfo;
use serde_json::{Map, Value};

/// `autoscaling/v1` HorizontalPodAutoscaler.
pub(crate) static HPA_V1: KindInfo = KindInfo {
    group: "autoscaling",
    version: "v1",
    kind: "HorizontalPodAutoscaler",
    plural: "horizontalpodautoscalers",
    singular: "horizontalpodautoscaler",
    namespaced: true,
    short_names: &["hpa"],
    has_generation: true,
    has_status: true,
    has_scale: false,
};

/// Whether a request in this version is converted.
pub(crate) fn converted(info: &KindInfo) -> bool {
    std::ptr::eq(info, &HPA_V1)
}

/// The stored kind a converted one maps to.
pub(crate) fn storage(info: &'static KindInfo) -> &'static KindInfo {
    if converted(info) {
        drift_core::kinds::lookup(info.group, info.kind).unwrap_or(info)
    } else {
        info
    }
}

fn is_cpu_utilization(m: &Value) -> bool {
    m["type"] == "Resource"
        && m["resource"]["name"] == "cpu"
        && m["resource"]["target"]["type"] == "Utilization"
}

/// A v1 object (as a client wrote it) into the stored v2 form; `current` is the stored object on an
/// update, whose v2-only content v1 cannot express is kept.
pub(crate) fn to_storage(mut v1: Value, current: Option<&Value>) -> Value {
    drift_core::hpa_v1_to_v2(&mut v1);
    let Some(spec) = v1.get_mut("spec").and_then(Value::as_object_mut) else {
        return v1;
    };
    // What v1 cannot say stays as stored: the other metrics and the behavior.
    let others = current
        .and_then(|c| c.pointer("/spec/metrics"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| !is_cpu_utilization(m))
        .cloned();
    let mut metrics: Vec<Value> = spec
        .remove("metrics")
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    metrics.extend(others);
    if !metrics.is_empty() {
        spec.insert("metrics".into(), Value::Array(metrics));
    }
    if let Some(b) = current.and_then(|c| c.pointer("/spec/behavior")) {
        spec.insert("behavior".into(), b.clone());
    }
    v1
}

/// A stored v2 object as a v1 client sees it.
pub(crate) fn to_version(v2: &Value) -> Value {
    let mut out = v2.clone();
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    obj.insert("apiVersion".into(), Value::String("autoscaling/v1".into()));
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let cpu = spec
            .get("metrics")
            .and_then(Value::as_array)
            .and_then(|m| m.iter().find(|x| is_cpu_utilization(x)))
            .and_then(|m| m.pointer("/resource/target/averageUtilization").cloned());
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(c) = cpu {
            spec.insert("targetCPUUtilizationPercentage".into(), c);
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let mut v1 = Map::new();
        for k in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            if let Some(v) = status.get(k) {
                v1.insert(k.into(), v.clone());
            }
        }
        let cpu = status
            .get("currentMetrics")
            .and_then(Value::as_array)
            .and_then(|m| {
                m.iter()
                    .find(|x| x["type"] == "Resource" && x["resource"]["name"] == "cpu")
            })
            .and_then(|m| m.pointer("/resource/current/averageUtilization").cloned());
        if let Some(c) = cpu {
            v1.insert("currentCPUUtilizationPercentage".into(), c);
        }
        *status = v1;
    }
    out
}

/// A response body (an object, a list, a watch event or a Status) as a v1 client sees it.
pub(crate) fn response_to_version(v: &Value) -> Value {
    match v.get("kind").and_then(Value::as_str) {
        Some("HorizontalPodAutoscaler") => to_version(v),
        Some("HorizontalPodAutoscalerList") => {
            let mut out = v.clone();
            out["apiVersion"] = Value::String("autoscaling/v1".into());
            if let Some(items) = out.get_mut("items").and_then(Value::as_array_mut) {
                for i in items.iter_mut() {
                    *i = to_version(i);
                }
            }
            out
        }
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_round_trips_and_keeps_what_it_cannot_say() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80}});
        let stored = to_storage(v1.clone(), None);
        assert_eq!(stored["apiVersion"], "autoscaling/v2");
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(to_version(&stored), v1);
        // A v1 update keeps the v2 behavior and the other metrics.
        let mut current = stored.clone();
        current["spec"]["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 60}});
        current["spec"]["metrics"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 70}}}));
        let mut edit = v1;
        edit["spec"]["targetCPUUtilizationPercentage"] = json!(60);
        let next = to_storage(edit, Some(&current));
        assert_eq!(next["spec"]["behavior"], current["spec"]["behavior"]);
        assert_eq!(next["spec"]["metrics"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            next["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            60
        );
    }
}
