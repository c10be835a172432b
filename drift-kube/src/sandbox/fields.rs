//! `metadata.managedFields`: which field manager set which fields, recorded as FieldsV1 the way the
//! API server does it, simplified: an Update gives its manager the fields it changed (others lose
//! them), an Apply gives its manager exactly the fields it applied, a create gives the creator all.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::smp::list_keys;

/// A FieldsV1 path: keys such as `f:spec`, `k:{"name":"web"}`, `.`.
pub(crate) type FieldPath = Vec<String>;

const METADATA_OWNED: &[&str] = &["labels", "annotations", "ownerReferences", "finalizers"];

/// Leaf paths of an object with their values (`None` for the `.` marker of a map or list element).
pub(crate) fn flatten(object: &Value) -> BTreeMap<FieldPath, Option<Value>> {
    let mut out = BTreeMap::new();
    if let Value::Object(root) = object {
        for (k, v) in root {
            match k.as_str() {
                "apiVersion" | "kind" | "status" => {}
                "metadata" => {
                    if let Value::Object(meta) = v {
                        for f in METADATA_OWNED {
                            if let Some(child) = meta.get(*f) {
                                let mut p = vec!["f:metadata".to_string(), format!("f:{f}")];
                                walk(f, child, &mut p, &mut out);
                            }
                        }
                    }
                }
                _ => {
                    let mut p = vec![format!("f:{k}")];
                    walk(k, v, &mut p, &mut out);
                }
            }
        }
    }
    out
}

fn walk(field: &str, v: &Value, path: &mut FieldPath, out: &mut BTreeMap<FieldPath, Option<Value>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            path.push(".".into());
            out.insert(path.clone(), None);
            path.pop();
            for (k, c) in m {
                path.push(format!("f:{k}"));
                walk(k, c, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_keys(field, items) {
            Some(keys) => {
                for item in items {
                    let mut key = Map::new();
                    for k in keys {
                        match item.get(*k) {
                            Some(v) => {
                                key.insert((*k).to_string(), v.clone());
                            }
                            None if *k == "protocol" => {
                                key.insert("protocol".into(), Value::String("TCP".into()));
                            }
                            None => {}
                        }
                    }
                    path.push(format!("k:{}", Value::Object(key)));
                    match item {
                        Value::Object(m) => {
                            path.push(".".into());
                            out.insert(path.clone(), None);
                            path.pop();
                            for (k, c) in m {
                                path.push(format!("f:{k}"));
                                walk(k, c, path, out);
                                path.pop();
                            }
                        }
                        other => {
                            out.insert(path.clone(), Some(other.clone()));
                        }
                    }
                    path.pop();
                }
            }
            None => {
                out.insert(path.clone(), Some(v.clone()));
            }
        },
        other => {
            out.insert(path.clone(), Some(other.clone()));
        }
    }
}

/// Converts a set of paths to the FieldsV1 JSON tree.
pub(crate) fn to_fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut node = &mut root;
        for seg in p {
            let entry = node
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            node = match entry {
                Value::Object(m) => m,
                _ => break,
            };
        }
    }
    Value::Object(root)
}

/// Converts FieldsV1 JSON back to paths.
pub(crate) fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    fn rec(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, c) in m {
                    path.push(k.clone());
                    rec(c, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    rec(v, &mut Vec::new(), &mut out);
    out
}

/// How a write changes ownership.
pub(crate) enum Operation<'a> {
    /// A create: the manager owns everything.
    Create,
    /// An update (PUT, or a merge/JSON/strategic patch): the manager takes the fields it changed.
    Update,
    /// A server-side apply: the manager owns exactly these paths.
    Apply(&'a BTreeSet<FieldPath>),
}

/// Records a write in `new`'s `metadata.managedFields`. `old` is the object before the write.
pub(crate) fn record(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    op: Operation<'_>,
    api_version: &str,
    subresource: Option<&str>,
    time: &str,
) {
    let new_flat = flatten(new);
    let new_paths: BTreeSet<FieldPath> = new_flat.keys().cloned().collect();
    let mut entries: Vec<Value> = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (op_name, owned_now): (&str, BTreeSet<FieldPath>) = match op {
        Operation::Create => ("Update", new_paths.clone()),
        Operation::Update => {
            let old_flat = old.map(flatten).unwrap_or_default();
            let changed: BTreeSet<FieldPath> = new_flat
                .iter()
                .filter(|(p, v)| old_flat.get(*p) != Some(*v))
                .map(|(p, _)| p.clone())
                .collect();
            ("Update", changed)
        }
        Operation::Apply(applied) => (
            "Apply",
            applied
                .iter()
                .filter(|p| new_paths.contains(*p))
                .cloned()
                .collect(),
        ),
    };
    let mut mine: BTreeSet<FieldPath> = BTreeSet::new();
    let mut kept = Vec::with_capacity(entries.len() + 1);
    for e in entries.drain(..) {
        let is_mine = e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some(op_name)
            && e.get("subresource").and_then(Value::as_str) == subresource;
        let set = e.get("fieldsV1").map(from_fields_v1).unwrap_or_default();
        if is_mine {
            if !matches!(op, Operation::Apply(_)) {
                mine = set;
            }
            continue;
        }
        // Others lose what this write took over, and whatever no longer exists.
        let remaining: BTreeSet<FieldPath> = set
            .into_iter()
            .filter(|p| !owned_now.contains(p) && new_paths.contains(p))
            .collect();
        if !remaining.is_empty() {
            let mut e = e;
            e["fieldsV1"] = to_fields_v1(&remaining);
            kept.push(e);
        }
    }
    mine.retain(|p| new_paths.contains(p));
    mine.extend(owned_now);
    if !mine.is_empty() {
        let mut entry = json!({
            "manager": manager,
            "operation": op_name,
            "apiVersion": api_version,
            "time": time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&mine),
        });
        if let Some(s) = subresource {
            entry["subresource"] = Value::String(s.to_string());
        }
        kept.push(entry);
    }
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), Value::Array(kept));
    }
}

/// Which other manager owns a path, when an Apply would change its value (a conflict).
pub(crate) fn conflicts(current: &Value, applied: &Value, manager: &str) -> Vec<(String, FieldPath)> {
    let cur = flatten(current);
    let app = flatten(applied);
    let mut out = Vec::new();
    let Some(entries) = current
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return out;
    };
    for e in entries {
        let Some(m) = e.get("manager").and_then(Value::as_str) else {
            continue;
        };
        if m == manager {
            continue;
        }
        let set = e.get("fieldsV1").map(from_fields_v1).unwrap_or_default();
        for (p, v) in &app {
            if v.is_some() && set.contains(p) && cur.get(p) != Some(v) {
                out.push((m.to_string(), p.clone()));
            }
        }
    }
    out
}

/// `.spec.replicas` style rendering of a FieldsV1 path, for conflict messages.
pub(crate) fn render(path: &FieldPath) -> String {
    path.iter()
        .filter(|s| s.as_str() != ".")
        .map(|s| match s.strip_prefix("f:") {
            Some(f) => format!(".{f}"),
            None => format!("[{}]", s.trim_start_matches("k:")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_update_moves_ownership() {
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "1"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        record(
            None,
            &mut obj,
            "kubectl-client-side-apply",
            Operation::Create,
            "apps/v1",
            None,
            "t",
        );
        let fields = &obj["metadata"]["managedFields"][0]["fieldsV1"];
        assert!(
            fields
                .pointer("/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"c\"}/f:image")
                .is_some(),
            "{fields}"
        );
        assert!(fields.pointer("/f:metadata/f:labels/f:a").is_some());
        let old = obj.clone();
        obj["spec"]["replicas"] = json!(3);
        record(
            Some(&old),
            &mut obj,
            "kubectl",
            Operation::Update,
            "apps/v1",
            Some("scale"),
            "t2",
        );
        let entries = obj["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert!(
            entries[0]["fieldsV1"].pointer("/f:spec/f:replicas").is_none(),
            "the creator lost replicas"
        );
        assert!(entries[1]["fieldsV1"].pointer("/f:spec/f:replicas").is_some());
        assert_eq!(entries[1]["subresource"], "scale");
    }

    #[test]
    fn round_trip() {
        let v =
            json!({"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}});
        assert_eq!(to_fields_v1(&from_fields_v1(&v)), v);
        assert_eq!(
            render(&vec!["f:spec".into(), "f:replicas".into()]),
            ".spec.replicas"
        );
    }
}
