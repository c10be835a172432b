//! The projection of a live object to what the engine compares: no `status`, `managedFields` without
//! their status parts (they say who changed what: drift actors, "added by hand"), no server
//! bookkeeping, and Secret
//! values replaced by their redaction tokens before anything else sees them. The
//! `last-applied-configuration` annotation keeps only which fields were applied
//! ([`drift_core::shrink_last_applied`]).

use drift_core::Resource;
use drift_core::redact::Redactor;
use serde_json::Value;

/// What to keep of `metadata.managedFields`.
#[derive(Debug, Clone)]
pub struct Projection {
    /// Keep every manager's entry (without `f:status`, the status subresource's entries, `apiVersion`
    /// and `fieldsType`), so drifts carry their actor and hand edits are recognised. The default.
    pub actors: bool,
    /// With `actors` off, the only managers whose entries are kept (the appliers and ignored
    /// managers the diff options name), without their times.
    pub keep_managers: Vec<String>,
}

impl Default for Projection {
    fn default() -> Self {
        Projection {
            actors: true,
            keep_managers: Vec::new(),
        }
    }
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
        // status, status-only ownership and the last-applied content: never compared.
        drift_core::compact_object(obj);
        let Some(map) = obj.as_object_mut() else { return };
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in DROPPED_METADATA {
                meta.remove(*k);
            }
            if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
                // In place: this runs for every watch event.
                entries.retain_mut(|e| {
                    let kept = self.actors
                        || e.get("manager")
                            .and_then(Value::as_str)
                            .is_some_and(|m| self.keep_managers.iter().any(|k| k == m));
                    if let (true, Some(o)) = (kept, e.as_object_mut()) {
                        o.remove("apiVersion");
                        o.remove("fieldsType");
                        if !self.actors {
                            o.remove("time");
                        }
                    }
                    kept
                });
                if entries.is_empty() {
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
            actors: false,
            keep_managers: vec!["confighub".into()],
        }
        .apply(&mut o);
        assert!(o.get("status").is_none());
        assert_eq!(o["metadata"]["generation"], 2);
        assert!(o["metadata"].get("uid").is_none());
        assert_eq!(o["metadata"]["managedFields"].as_array().map(Vec::len), Some(1));
        assert!(Redactor::is_token(o["data"]["password"].as_str().unwrap()));
    }

    #[test]
    fn keeps_who_changed_what_without_status() {
        let mut o = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
        "managedFields": [
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "apps/v1",
             "time": "2026-12-01T09:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
             "time": "2026-12-01T09:00:05Z", "fieldsV1": {"f:status": {"f:replicas": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update",
             "time": "2026-12-01T09:00:05Z",
             "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}},
                          "f:status": {"f:conditions": {}}}},
            {"manager": "old-controller", "operation": "Update", "fieldsV1": {"f:status": {}}}
        ]}});
        Projection::default().apply(&mut o);
        let entries = o["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert_eq!(entries[0]["time"], "2026-12-01T09:00:00Z");
        assert!(entries[0].get("apiVersion").is_none());
        assert!(entries[1]["fieldsV1"].get("f:status").is_none());
        assert!(entries[1]["fieldsV1"].get("f:metadata").is_some());
    }
}
