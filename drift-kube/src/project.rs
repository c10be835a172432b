//! The projection of a live object to what the engine compares: no `status`, no `managedFields`
//! except the entries of field managers the engine asks about, no server bookkeeping, and Secret
//! values replaced by their redaction tokens before anything else sees them. The
//! `last-applied-configuration` annotation keeps only which fields were applied
//! ([`drift_core::shrink_last_applied`]).

use drift_core::Resource;
use drift_core::redact::Redactor;
use serde_json::Value;

/// What to keep of `metadata.managedFields`.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    /// Field managers whose `managedFields` entries are kept (the appliers and ignored managers the
    /// diff options name). Others are dropped.
    pub keep_managers: Vec<String>,
}

const DROPPED_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "selfLink",
    "ownerReferences",
    "finalizers",
];

impl Projection {
    /// Projects an object in place.
    pub fn apply(&self, obj: &mut Value) {
        Redactor::global().redact(obj);
        drift_core::shrink_last_applied(obj);
        let Some(map) = obj.as_object_mut() else { return };
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in DROPPED_METADATA {
                meta.remove(*k);
            }
            let keep = &self.keep_managers;
            let kept: Option<Vec<Value>> =
                meta.get("managedFields")
                    .and_then(Value::as_array)
                    .map(|entries| {
                        entries
                            .iter()
                            .filter(|e| {
                                e.get("manager")
                                    .and_then(Value::as_str)
                                    .is_some_and(|m| keep.iter().any(|k| k == m))
                            })
                            .map(|e| {
                                let mut e = e.clone();
                                if let Some(o) = e.as_object_mut() {
                                    o.remove("time");
                                }
                                e
                            })
                            .collect()
                    });
            match kept {
                Some(k) if !k.is_empty() => {
                    meta.insert("managedFields".into(), Value::Array(k));
                }
                _ => {
                    meta.remove("managedFields");
                }
            }
        }
        if let Some(m) = map
            .get_mut("spec")
            .and_then(|s| s.get_mut("template"))
            .and_then(|t| t.get_mut("metadata"))
            .and_then(Value::as_object_mut)
        {
            m.remove("creationTimestamp");
        }
    }

    /// Projects a resource.
    pub fn resource(&self, mut r: Resource) -> Resource {
        self.apply(&mut r.object);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_is_compared() {
        let mut o = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "uid": "u", "resourceVersion": "9",
            "generation": 2, "labels": {"a": "b"},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {}, "time": "t"}, {"manager": "confighub", "fieldsV1": {"f:data": {}}}]},
            "data": {"password": "aHVudGVyMg=="}, "status": {"x": 1}});
        Projection {
            keep_managers: vec!["confighub".into()],
        }
        .apply(&mut o);
        assert!(o.get("status").is_none());
        assert_eq!(o["metadata"]["generation"], 2);
        assert!(o["metadata"].get("uid").is_none());
        assert_eq!(o["metadata"]["managedFields"].as_array().map(Vec::len), Some(1));
        assert!(Redactor::is_token(o["data"]["password"].as_str().unwrap()));
    }
}
