//! What the engine knows about custom resources, read from the live CustomResourceDefinitions: the
//! `default:` values of each version's `openAPIV3Schema`, which the API server fills in on every
//! write (structural defaulting), so a custom resource gets the same treatment as a built-in kind:
//! a defaulted field left alone is not drift, an edited one is (ARCHITECTURE §3.2a).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::model::{Resource, ResourceKey};

/// A kind's schemas: (version, `openAPIV3Schema`) per version.
type VersionSchemas = Vec<(String, Arc<Value>)>;

/// Schemas of custom kinds, by group and kind, one per served version.
#[derive(Debug, Clone, Default)]
pub struct CustomSchemas {
    /// Group → kind → schemas (looked up by `&str` on every comparison: nothing is copied to ask).
    by_kind: HashMap<String, HashMap<String, VersionSchemas>>,
    /// CRD name → (group, kind), to forget a deleted CRD.
    names: HashMap<String, (String, String)>,
}

/// Whether a live object is a CustomResourceDefinition.
pub fn is_crd(key: &ResourceKey) -> bool {
    key.group == "apiextensions.k8s.io" && key.kind == "CustomResourceDefinition"
}

impl CustomSchemas {
    /// Builds the index from live objects (CRDs; others are ignored).
    pub fn from_live<'a>(live: impl IntoIterator<Item = &'a Resource>) -> Self {
        let mut s = CustomSchemas::default();
        for r in live {
            s.observe(r);
        }
        s
    }

    /// Records (or replaces) a CRD's schemas; objects of other kinds are ignored.
    pub fn observe(&mut self, r: &Resource) {
        if !is_crd(&r.key) {
            return;
        }
        self.forget(&r.key);
        let spec = &r.object["spec"];
        let (Some(group), Some(kind)) = (spec["group"].as_str(), spec["names"]["kind"].as_str()) else {
            return;
        };
        let versions: VersionSchemas = spec["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                let name = v["name"].as_str()?;
                let schema = v.pointer("/schema/openAPIV3Schema")?;
                Some((name.to_string(), Arc::new(schema.clone())))
            })
            .collect();
        let gk = (group.to_string(), kind.to_string());
        self.names.insert(r.key.name.clone(), gk.clone());
        self.by_kind.entry(gk.0).or_default().insert(gk.1, versions);
    }

    /// Forgets a deleted CRD.
    pub fn forget(&mut self, crd: &ResourceKey) {
        if let Some((group, kind)) = self.names.remove(&crd.name)
            && let Some(kinds) = self.by_kind.get_mut(&group)
        {
            kinds.remove(&kind);
            if kinds.is_empty() {
                self.by_kind.remove(&group);
            }
        }
    }

    /// The schema of a custom kind's version, if its CRD is known.
    pub fn schema(&self, group: &str, version: &str, kind: &str) -> Option<&Value> {
        self.by_kind
            .get(group)?
            .get(kind)?
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, s)| s.as_ref())
    }

    /// How many custom kinds are known.
    pub fn len(&self) -> usize {
        self.by_kind.values().map(HashMap::len).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }
}

/// The list semantics a structural schema declares for an array, as the API server applies them
/// (and server-side apply merges by): `x-kubernetes-list-type: map` with
/// `x-kubernetes-list-map-keys` (elements matched by those keys, not by position), or `set`
/// (elements compared as a set). `None` for `atomic` or undeclared lists (by position).
///
/// Specs are interned for the life of the process: one per distinct declaration.
pub(crate) fn list_spec(schema: &Value) -> Option<&'static crate::schema::ListSpec> {
    type Interned = HashMap<(bool, Vec<String>), &'static crate::schema::ListSpec>;
    static SPECS: std::sync::OnceLock<std::sync::Mutex<Interned>> = std::sync::OnceLock::new();
    let (set, keys) = match schema.get("x-kubernetes-list-type").and_then(Value::as_str)? {
        "map" => {
            let keys: Vec<String> = schema
                .get("x-kubernetes-list-map-keys")?
                .as_array()?
                .iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect();
            if keys.is_empty() {
                return None;
            }
            (false, keys)
        }
        "set" => (true, Vec::new()),
        _ => return None,
    };
    let mut specs = SPECS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let spec = specs.entry((set, keys.clone())).or_insert_with(|| {
        let keys: Vec<crate::schema::KeySpec> = keys
            .into_iter()
            .map(|k| crate::schema::KeySpec {
                name: Box::leak(k.into_boxed_str()),
                default: None,
            })
            .collect();
        Box::leak(Box::new(crate::schema::ListSpec {
            keys: Box::leak(keys.into_boxed_slice()),
            set,
            item: &crate::schema::GENERIC,
        }))
    });
    Some(*spec)
}

/// One step down a structural schema: a property, an `additionalProperties` value, or an array item.
pub(crate) fn child<'s>(schema: &'s Value, field: Option<&str>) -> Option<&'s Value> {
    match field {
        Some(f) => schema
            .get("properties")
            .and_then(|p| p.get(f))
            .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object())),
        None => schema.get("items"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_come_and_go_with_their_crd() {
        let crd = Resource::from_value(json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "backups.ops.example.com"},
            "spec": {"group": "ops.example.com", "names": {"kind": "Backup", "plural": "backups"}, "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object",
                        "properties": {"retainDays": {"type": "integer", "default": 7}}}}}}}]}}))
        .unwrap();
        let mut s = CustomSchemas::from_live([&crd]);
        let schema = s.schema("ops.example.com", "v1", "Backup").unwrap();
        let spec = child(schema, Some("spec")).unwrap();
        assert_eq!(child(spec, Some("retainDays")).unwrap()["default"], 7);
        assert!(s.schema("ops.example.com", "v2", "Backup").is_none());
        s.forget(&crd.key);
        assert!(s.is_empty());
    }
}
