//! `metadata.managedFields`: which field manager set which fields, recorded as FieldsV1 the way the
//! API server does it, simplified: an Update gives its manager the fields it changed (others lose
//! them), an Apply gives its manager exactly the fields it applied, a create gives the creator all.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::smp::map_keys as list_keys;

/// A FieldsV1 path: keys such as `f:spec`, `k:{"name":"web"}`, `.`.
pub(crate) type FieldPath = Vec<String>;

const METADATA_OWNED: &[&str] = &["labels", "annotations", "ownerReferences", "finalizers"];

/// Leaf paths of an object with their values (`None` for the `.` marker of a map or list element).
pub(crate) fn flatten(object: &Value) -> BTreeMap<FieldPath, Option<&Value>> {
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

fn walk<'v>(
    field: &str,
    v: &'v Value,
    path: &mut FieldPath,
    out: &mut BTreeMap<FieldPath, Option<&'v Value>>,
) {
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
                    path.push(item_key(keys, item));
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
                            out.insert(path.clone(), Some(other));
                        }
                    }
                    path.pop();
                }
            }
            None => {
                out.insert(path.clone(), Some(v));
            }
        },
        other => {
            out.insert(path.clone(), Some(other));
        }
    }
}

/// The `k:{...}` path segment of a keyed list element.
fn item_key(keys: &[&str], item: &Value) -> String {
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
    format!("k:{}", Value::Object(key))
}

/// The leaf paths an update changed or added, and those it removed: a walk of both objects that
/// descends only where they differ (the same paths [`flatten`] would give, without flattening).
fn changes(old: &Value, new: &Value) -> (BTreeSet<FieldPath>, BTreeSet<FieldPath>) {
    let mut changed = BTreeSet::new();
    let mut removed = BTreeSet::new();
    let (Value::Object(o), Value::Object(n)) = (old, new) else {
        return (
            flatten(new).into_keys().collect(),
            flatten(old).into_keys().collect(),
        );
    };
    let empty = Map::new();
    let meta_o = match o.get("metadata") {
        Some(Value::Object(m)) => m,
        _ => &empty,
    };
    let meta_n = match n.get("metadata") {
        Some(Value::Object(m)) => m,
        _ => &empty,
    };
    let mut path = vec!["f:metadata".to_string()];
    diff_map(
        meta_o,
        meta_n,
        &|k| METADATA_OWNED.contains(&k),
        &mut path,
        &mut changed,
        &mut removed,
    );
    let top = |k: &str| !matches!(k, "apiVersion" | "kind" | "status" | "metadata");
    diff_map(o, n, &top, &mut Vec::new(), &mut changed, &mut removed);
    (changed, removed)
}

fn subtree(field: &str, v: &Value, path: &mut FieldPath, into: &mut BTreeSet<FieldPath>) {
    let mut flat = BTreeMap::new();
    walk(field, v, path, &mut flat);
    into.extend(flat.into_keys());
}

fn diff_map(
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    keep: &dyn Fn(&str) -> bool,
    path: &mut FieldPath,
    changed: &mut BTreeSet<FieldPath>,
    removed: &mut BTreeSet<FieldPath>,
) {
    for (k, nv) in n.iter().filter(|(k, _)| keep(k)) {
        path.push(format!("f:{k}"));
        match o.get(k) {
            Some(ov) => diff_value(k, ov, nv, path, changed, removed),
            None => subtree(k, nv, path, changed),
        }
        path.pop();
    }
    for (k, ov) in o.iter().filter(|(k, _)| keep(k)) {
        if !n.contains_key(k) {
            path.push(format!("f:{k}"));
            subtree(k, ov, path, removed);
            path.pop();
        }
    }
}

fn diff_value(
    field: &str,
    ov: &Value,
    nv: &Value,
    path: &mut FieldPath,
    changed: &mut BTreeSet<FieldPath>,
    removed: &mut BTreeSet<FieldPath>,
) {
    if ov == nv {
        return;
    }
    match (ov, nv) {
        (Value::Object(om), Value::Object(nm)) if !om.is_empty() && !nm.is_empty() => {
            diff_map(om, nm, &|_| true, path, changed, removed)
        }
        (Value::Array(oa), Value::Array(na)) if !oa.is_empty() && !na.is_empty() => {
            match (list_keys(field, oa), list_keys(field, na)) {
                (Some(ok), Some(nk)) if ok == nk => {
                    let olds: BTreeMap<String, &Value> = oa.iter().map(|i| (item_key(ok, i), i)).collect();
                    let news: BTreeMap<String, &Value> = na.iter().map(|i| (item_key(nk, i), i)).collect();
                    for (key, ni) in &news {
                        path.push(key.clone());
                        match (olds.get(key), ni) {
                            (Some(Value::Object(om)), Value::Object(nm)) => {
                                diff_map(om, nm, &|_| true, path, changed, removed)
                            }
                            (Some(oi), ni) if oi == ni => {}
                            (Some(oi), ni) => {
                                item_paths(oi, path, removed);
                                item_paths(ni, path, changed);
                            }
                            (None, ni) => item_paths(ni, path, changed),
                        }
                        path.pop();
                    }
                    for (key, oi) in &olds {
                        if !news.contains_key(key) {
                            path.push(key.clone());
                            item_paths(oi, path, removed);
                            path.pop();
                        }
                    }
                }
                _ => {
                    subtree(field, ov, path, removed);
                    subtree(field, nv, path, changed);
                }
            }
        }
        _ => {
            let mut old_paths = BTreeSet::new();
            subtree(field, ov, path, &mut old_paths);
            let mut new_paths = BTreeSet::new();
            subtree(field, nv, path, &mut new_paths);
            removed.extend(old_paths.difference(&new_paths).cloned());
            changed.extend(new_paths);
        }
    }
}

/// The paths of one keyed list element (its `.` marker and fields), below `path` (which ends with
/// the element's key).
fn item_paths(item: &Value, path: &mut FieldPath, into: &mut BTreeSet<FieldPath>) {
    match item {
        Value::Object(m) => {
            path.push(".".into());
            into.insert(path.clone());
            path.pop();
            for (k, c) in m {
                path.push(format!("f:{k}"));
                subtree(k, c, path, into);
                path.pop();
            }
        }
        _ => {
            into.insert(path.clone());
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
#[derive(Clone, Copy)]
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
    // What this write owns now, and which paths no longer exist (`None`: recompute from `new`).
    let (op_name, owned_now, removed): (&str, BTreeSet<FieldPath>, Option<BTreeSet<FieldPath>>) =
        match (op, old) {
            (Operation::Update, Some(old)) => {
                let (changed, removed) = changes(old, new);
                ("Update", changed, Some(removed))
            }
            (Operation::Create | Operation::Update, _) => {
                ("Update", flatten(new).into_keys().collect(), None)
            }
            (Operation::Apply(applied), _) => {
                let new_paths: BTreeSet<FieldPath> = flatten(new).into_keys().collect();
                (
                    "Apply",
                    applied
                        .iter()
                        .filter(|p| new_paths.contains(*p))
                        .cloned()
                        .collect(),
                    None,
                )
            }
        };
    let new_paths: Option<BTreeSet<FieldPath>> = match &removed {
        Some(_) => None,
        None => Some(flatten(new).into_keys().collect()),
    };
    let exists = |p: &FieldPath| match (&removed, &new_paths) {
        (Some(r), _) => !r.contains(p),
        (None, Some(n)) => n.contains(p),
        (None, None) => true,
    };
    // What other managers lose: an update takes what it changed; an apply takes only the fields whose
    // value it changed — an equal value becomes shared ownership, as server-side apply does.
    let taken: BTreeSet<FieldPath> = match (op, old) {
        (Operation::Apply(_), Some(old)) => {
            let before = flatten(old);
            let after = flatten(new);
            owned_now
                .iter()
                .filter(|p| before.get(*p) != after.get(*p))
                .cloned()
                .collect()
        }
        _ => owned_now.clone(),
    };
    let entries: Vec<Value> = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut mine: BTreeSet<FieldPath> = BTreeSet::new();
    let mut kept = Vec::with_capacity(entries.len() + 1);
    for e in entries {
        let is_mine = e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some(op_name)
            && e.get("subresource").and_then(Value::as_str) == subresource;
        if !is_mine
            && removed.as_ref().is_some_and(BTreeSet::is_empty)
            && !taken
                .iter()
                .any(|p| e.get("fieldsV1").is_some_and(|f| contains_path(f, p)))
        {
            kept.push(e); // untouched by this write
            continue;
        }
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
            .filter(|p| !taken.contains(p) && exists(p))
            .collect();
        if !remaining.is_empty() {
            let mut e = e;
            e["fieldsV1"] = to_fields_v1(&remaining);
            kept.push(e);
        }
    }
    mine.retain(|p| exists(p));
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

/// Whether a FieldsV1 tree holds exactly this path.
fn contains_path(fields: &Value, path: &FieldPath) -> bool {
    let mut node = fields;
    for seg in path {
        match node.get(seg) {
            Some(n) => node = n,
            None => return false,
        }
    }
    true
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
    fn changes_match_a_full_flatten() {
        let old = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "x",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}}, "status": {"replicas": 1}});
        let new = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "9"}},
            "spec": {"replicas": 1, "paused": true, "template": {"spec": {"containers": [{"name": "c", "image": "x",
                "env": [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]}]}}}, "status": {"replicas": 5}});
        let (changed, removed) = changes(&old, &new);
        let (of, nf) = (flatten(&old), flatten(&new));
        let want_changed: BTreeSet<FieldPath> = nf
            .iter()
            .filter(|(p, v)| of.get(*p) != Some(*v))
            .map(|(p, _)| p.clone())
            .collect();
        let want_removed: BTreeSet<FieldPath> = of.keys().filter(|p| !nf.contains_key(*p)).cloned().collect();
        assert_eq!(changed, want_changed);
        assert_eq!(removed, want_removed);
        assert!(
            removed.iter().any(|p| p.iter().any(|s| s.contains("\"B\""))),
            "{removed:?}"
        );
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
