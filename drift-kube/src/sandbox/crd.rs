//! Custom resources: once a CustomResourceDefinition is stored, the sandbox serves its resources as
//! the API server's apiextensions handler does — discovery, CRUD, watch, the `status` and `scale`
//! subresources when declared, `metadata.generation` on spec changes, and the `default:` values of
//! the version's `openAPIV3Schema` filled in on every write (structural defaulting,
//! `staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use drift_core::kinds::KindInfo;
use serde_json::{Value, json};

use super::store::ObjKey;

/// The custom kinds the stored CRDs define, and their schemas.
#[derive(Default)]
pub(crate) struct Custom {
    /// One entry per served version.
    pub kinds: Vec<&'static KindInfo>,
    /// `openAPIV3Schema` by (group, version, kind).
    schemas: HashMap<(String, String, String), Value>,
    /// Every kind ever defined (leaked once, reused when a CRD is applied again unchanged).
    leaked: Vec<&'static KindInfo>,
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

impl Custom {
    /// Rebuilds the custom kinds from the stored CRDs.
    pub(crate) fn sync(&mut self, objects: &BTreeMap<ObjKey, Arc<Value>>) {
        self.kinds.clear();
        self.schemas.clear();
        for (k, crd) in objects {
            if k.group != "apiextensions.k8s.io" || k.plural != "customresourcedefinitions" {
                continue;
            }
            let spec = &crd["spec"];
            let (Some(group), Some(kind), Some(plural)) = (
                spec["group"].as_str(),
                spec["names"]["kind"].as_str(),
                spec["names"]["plural"].as_str(),
            ) else {
                continue;
            };
            let singular = spec["names"]["singular"]
                .as_str()
                .map_or_else(|| kind.to_lowercase(), str::to_string);
            let short: Vec<String> = spec["names"]["shortNames"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            let namespaced = spec["scope"].as_str() != Some("Cluster");
            for v in spec["versions"].as_array().into_iter().flatten() {
                if v["served"].as_bool() != Some(true) {
                    continue;
                }
                let Some(version) = v["name"].as_str() else {
                    continue;
                };
                let candidate = KindInfo {
                    group: "",
                    version: "",
                    kind: "",
                    plural: "",
                    singular: "",
                    namespaced,
                    short_names: &[],
                    has_generation: true,
                    has_status: v.pointer("/subresources/status").is_some(),
                    has_scale: v.pointer("/subresources/scale").is_some(),
                };
                let same = |l: &&&'static KindInfo| {
                    l.group == group
                        && l.version == version
                        && l.kind == kind
                        && l.plural == plural
                        && l.singular == singular
                        && l.short_names.iter().copied().eq(short.iter().map(String::as_str))
                        && l.namespaced == candidate.namespaced
                        && l.has_status == candidate.has_status
                        && l.has_scale == candidate.has_scale
                };
                let info = match self.leaked.iter().find(same) {
                    Some(l) => *l,
                    None => {
                        let short_names: &'static [&'static str] = Box::leak(
                            short
                                .iter()
                                .map(|s| leak(s))
                                .collect::<Vec<_>>()
                                .into_boxed_slice(),
                        );
                        let l: &'static KindInfo = Box::leak(Box::new(KindInfo {
                            group: leak(group),
                            version: leak(version),
                            kind: leak(kind),
                            plural: leak(plural),
                            singular: leak(&singular),
                            short_names,
                            ..candidate
                        }));
                        self.leaked.push(l);
                        l
                    }
                };
                self.kinds.push(info);
                if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
                    self.schemas.insert(
                        (group.to_string(), version.to_string(), kind.to_string()),
                        schema.clone(),
                    );
                }
            }
        }
    }

    /// The schema of a custom kind's version.
    pub(crate) fn schema(&self, group: &str, version: &str, kind: &str) -> Option<&Value> {
        self.schemas
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
    }
}

/// Fills in the schema's `default:` values where the object lacks the field, at every depth
/// (objects' `properties`, `additionalProperties`, array `items`), defaults inside defaults too.
pub(crate) fn apply_defaults(schema: &Value, obj: &mut Value) {
    match obj {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    if !map.contains_key(name)
                        && let Some(d) = prop.get("default")
                    {
                        map.insert(name.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        apply_defaults(prop, child);
                    }
                }
            }
            if let Some(extra) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                let known = schema.get("properties").and_then(Value::as_object);
                for (k, v) in map.iter_mut() {
                    if known.is_none_or(|p| !p.contains_key(k)) {
                        apply_defaults(extra, v);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for v in items {
                    apply_defaults(item, v);
                }
            }
        }
        _ => {}
    }
}

/// The status the apiextensions controllers give a CRD: names accepted, established, the storage
/// version recorded.
pub(crate) fn crd_status(obj: &mut Value, now: &str) {
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let stored: Vec<Value> = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    obj["status"] = json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now}
        ],
        "storedVersions": stored,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_every_depth() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "retainDays": {"type": "integer", "default": 7},
            "target": {"type": "object", "default": {}, "properties": {"port": {"type": "integer", "default": 443}}},
            "jobs": {"type": "array", "items": {"type": "object", "properties": {"paused": {"type": "boolean", "default": false}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"weight": {"type": "integer", "default": 1}}}}
        }}}});
        let mut obj = json!({"spec": {"retainDays": 30, "jobs": [{"name": "a"}, {"name": "b", "paused": true}],
            "labels": {"x": {}}}});
        apply_defaults(&schema, &mut obj);
        assert_eq!(
            obj,
            json!({"spec": {"retainDays": 30, "target": {"port": 443},
                "jobs": [{"name": "a", "paused": false}, {"name": "b", "paused": true}],
                "labels": {"x": {"weight": 1}}}})
        );
    }
}
