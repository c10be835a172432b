//! Revert patches (ARCHITECTURE §7): RFC 6902 JSON Patches that bring live back to desired, built from
//! the drift list so that ignored fields keep their live values.
//!
//! Every `replace` and `remove` is preceded by a `test` of the live value it overwrites, and every
//! `add` of a field by a `test` that it is still absent (`null`, which the API server's JSON Patch
//! passes only for an absent field, [`patch_in_place`]): if live moved on between planning and
//! patching, the API server rejects the whole patch, and the caller re-reads and re-plans instead of
//! clobbering a newer change. Values come from the desired and live objects,
//! never from drift records, and a Secret's data is never patched (its values are redacted in the
//! engine): those drifts are fixed by re-applying the source of truth.
//!
//! ```
//! use drift_core::{DiffEngine, DesiredObject, LiveObject, Resource, revert_patch};
//! use serde_json::json;
//!
//! let desired = DesiredObject::new(Resource::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
//!     "metadata": {"name": "web", "namespace": "x"}, "spec": {"replicas": 3}})).unwrap());
//! let live = LiveObject::new(Resource::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
//!     "metadata": {"name": "web", "namespace": "x"}, "spec": {"replicas": 5}})).unwrap());
//! let report = DiffEngine::default().diff(&desired, Some(&live));
//! let patch = revert_patch(&desired, &live, &report.drifts).unwrap();
//! assert_eq!(serde_json::to_value(&patch).unwrap(), json!([
//!     {"op": "test", "path": "/spec/replicas", "value": 5},
//!     {"op": "replace", "path": "/spec/replicas", "value": 3},
//! ]));
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::diff::keys_equal;
use crate::drift::{Change, Drift};
use crate::object::{DesiredObject, LiveObject};
use crate::path::{FieldPath, Segment, escape_pointer_token, pointer_tokens};
use crate::schema::{self, Node};

/// Why a revert patch cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The drift is in a Secret's data, whose values the engine only knows as redaction tokens.
    #[error(
        "{resource}: {field} is Secret data; it is fixed by re-applying the source of truth, never by a patch"
    )]
    SecretValue {
        /// The resource.
        resource: String,
        /// The readable field.
        field: String,
    },
    /// The drift does not line up with the objects it is applied to (stale drift list).
    #[error("{resource}: drift at {field} does not match the objects: {reason}")]
    Inconsistent {
        /// The resource.
        resource: String,
        /// The readable field.
        field: String,
        /// What did not line up.
        reason: String,
    },
}

struct ListEdit {
    segments: Vec<Segment>,
    desired_list: Option<String>,
    removals: BTreeSet<usize>,
    inserts: BTreeSet<usize>,
}

/// The live object with the given drifts reverted: what live looks like after the revert patch.
///
/// # Errors
/// [`PatchError`] for Secret data or drifts that do not match the objects.
pub fn reverted(desired: &DesiredObject, live: &LiveObject, drifts: &[Drift]) -> Result<Value, PatchError> {
    let key = live.key();
    let resource = key.to_string();
    let is_secret = crate::redact::is_secret_kind(&key.kind);
    let (root, _) = schema::root_for(&key.group, &key.version, &key.kind);
    let mut target = live.object().clone();
    let mut lists: BTreeMap<String, ListEdit> = BTreeMap::new();

    for d in drifts.iter().filter(|d| &d.key == key) {
        let segs = d.path.segments();
        let field = d.path.readable();
        let inconsistent = |reason: &str| PatchError::Inconsistent {
            resource: resource.clone(),
            field: field.clone(),
            reason: reason.to_string(),
        };
        if is_secret && matches!(segs.first(), Some(Segment::Field(f)) if f == "data" || f == "stringData") {
            return Err(PatchError::SecretValue { resource, field });
        }
        let Some((last, parent)) = segs.split_last() else {
            return Err(inconsistent("a drift of the whole object"));
        };
        let parent_node = schema::node_at(root, parent);
        let element_of_list = match last {
            Segment::Key { .. } => true,
            Segment::Index(_) => {
                parent_node.list.is_some() || {
                    let ptr = FieldPath::from_segments(parent.to_vec()).pointer();
                    target.pointer(&ptr).is_some_and(Value::is_array)
                }
            }
            Segment::Field(_) => false,
        };
        let structural = element_of_list && matches!(d.change, Change::Missing | Change::Extra);
        if structural {
            let list_ptr = FieldPath::from_segments(parent.to_vec()).pointer();
            let edit = lists.entry(list_ptr).or_insert_with(|| ListEdit {
                segments: parent.to_vec(),
                desired_list: None,
                removals: BTreeSet::new(),
                inserts: BTreeSet::new(),
            });
            match (d.change, last) {
                (Change::Extra, Segment::Key { index: Some(i), .. } | Segment::Index(i)) => {
                    edit.removals.insert(*i);
                }
                (Change::Missing, _) => {
                    let dp = d
                        .desired_pointer
                        .as_deref()
                        .ok_or_else(|| inconsistent("no desired position"))?;
                    let (list, idx) = dp
                        .rsplit_once('/')
                        .ok_or_else(|| inconsistent("bad desired position"))?;
                    let idx = idx
                        .parse::<usize>()
                        .map_err(|_| inconsistent("bad desired index"))?;
                    edit.desired_list = Some(list.to_string());
                    edit.inserts.insert(idx);
                }
                _ => return Err(inconsistent("an extra list element without a live position")),
            }
            continue;
        }
        let live_ptr = d.path.pointer();
        match d.change {
            Change::Extra => {
                let parent_ptr = FieldPath::from_segments(parent.to_vec()).pointer();
                let Segment::Field(name) = last else {
                    return Err(inconsistent("cannot remove a list position"));
                };
                let obj = target
                    .pointer_mut(&parent_ptr)
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| inconsistent("parent of an extra field is not an object"))?;
                obj.remove(name);
            }
            Change::Changed | Change::Missing => {
                let in_desired = d
                    .desired_pointer
                    .as_deref()
                    .and_then(|dp| desired.object().pointer(dp));
                let value = match in_desired {
                    Some(v) => v.clone(),
                    // An edited server default (the field is not in desired): put the default back,
                    // recomputed from the schema, never read from the drift record.
                    None => schema::default_at(
                        root,
                        &target,
                        desired.object(),
                        segs,
                        d.desired_pointer.as_deref(),
                    )
                    .ok_or_else(|| inconsistent("no default to restore"))?,
                };
                set_pointer(&mut target, &live_ptr, value).map_err(|r| inconsistent(&r))?;
            }
        }
    }

    // Deeper lists first: their pointers use live positions of the lists that contain them.
    let mut edits: Vec<(String, ListEdit)> = lists.into_iter().collect();
    edits.sort_by_key(|(_, e)| std::cmp::Reverse(e.segments.len()));
    for (ptr, edit) in edits {
        let field = FieldPath::from_segments(edit.segments.clone()).readable();
        let inconsistent = |reason: &str| PatchError::Inconsistent {
            resource: resource.clone(),
            field: field.clone(),
            reason: reason.to_string(),
        };
        let node = schema::node_at(root, &edit.segments);
        let desired_list = match &edit.desired_list {
            Some(p) => desired.object().pointer(p).and_then(Value::as_array).cloned(),
            None => None,
        };
        let current = target
            .pointer(&ptr)
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| inconsistent("not a list in live"))?;
        let keyed = node.list.filter(|l| !l.keys.is_empty());
        let mut result: Vec<(Option<usize>, Value)> = current
            .into_iter()
            .enumerate()
            .filter(|(j, _)| !edit.removals.contains(j))
            .map(|(j, v)| {
                let tag = match (keyed, &desired_list) {
                    (Some(spec), Some(dl)) => v.as_object().and_then(|lm| {
                        dl.iter()
                            .position(|d| d.as_object().is_some_and(|dm| keys_equal(dm, lm, spec)))
                    }),
                    _ => Some(j),
                };
                (tag, v)
            })
            .collect();
        for di in &edit.inserts {
            let el = desired_list
                .as_ref()
                .and_then(|dl| dl.get(*di))
                .cloned()
                .ok_or_else(|| inconsistent("desired element not found"))?;
            let pos = if keyed.is_some() {
                result
                    .iter()
                    .enumerate()
                    .filter(|(_, (tag, _))| tag.is_some_and(|t| t < *di))
                    .max_by_key(|(_, (tag, _))| *tag)
                    .map_or(0, |(p, _)| p + 1)
            } else {
                result.len()
            };
            result.insert(pos, (Some(*di), el));
        }
        let new_list = Value::Array(result.into_iter().map(|(_, v)| v).collect());
        set_pointer(&mut target, &ptr, new_list).map_err(|r| inconsistent(&r))?;
    }
    Ok(target)
}

fn set_pointer(target: &mut Value, ptr: &str, value: Value) -> Result<(), String> {
    if ptr.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = ptr.rsplit_once('/').ok_or("bad pointer")?;
    let last = pointer_tokens(&format!("/{last}")).pop().unwrap_or_default();
    match target.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("`{last}` is not a list position"))?;
            match i.cmp(&a.len()) {
                std::cmp::Ordering::Less => a[i] = value,
                std::cmp::Ordering::Equal => a.push(value),
                std::cmp::Ordering::Greater => return Err(format!("list position {i} is past the end")),
            }
            Ok(())
        }
        _ => Err(format!("no object at {parent}")),
    }
}

/// The guarded RFC 6902 patch that reverts `drifts` on `live`.
///
/// # Errors
/// [`PatchError`] for Secret data or drifts that do not match the objects.
pub fn revert_patch(
    desired: &DesiredObject,
    live: &LiveObject,
    drifts: &[Drift],
) -> Result<json_patch::Patch, PatchError> {
    let target = reverted(desired, live, drifts)?;
    let key = live.key();
    let (root, _) = schema::root_for(&key.group, &key.version, &key.kind);
    let mut ops = Vec::new();
    guarded_ops(live.object(), &target, &mut String::new(), root, &mut ops);
    // A hashed value (a Secret's, or an env value named like a password) must never be written back.
    if let Some(op) = ops
        .iter()
        .find(|op| op.get("op").and_then(Value::as_str) != Some("test") && holds_token(&op["value"]))
    {
        return Err(PatchError::SecretValue {
            resource: key.to_string(),
            field: op["path"].as_str().unwrap_or_default().to_string(),
        });
    }
    serde_json::from_value(Value::Array(ops)).map_err(|e| PatchError::Inconsistent {
        resource: key.to_string(),
        field: String::new(),
        reason: format!("internal: {e}"),
    })
}

/// Whether a value holds a redaction token anywhere.
fn holds_token(v: &Value) -> bool {
    match v {
        Value::String(s) => crate::redact::Redactor::is_token(s),
        Value::Array(a) => a.iter().any(holds_token),
        Value::Object(m) => m.values().any(holds_token),
        _ => false,
    }
}

/// Guarded ops turning `live` into `target`.
fn guarded_ops(live: &Value, target: &Value, ptr: &mut String, node: &'static Node, ops: &mut Vec<Value>) {
    if live == target {
        return;
    }
    match (live, target) {
        (Value::Object(lm), Value::Object(tm)) => {
            for (k, lv) in lm {
                if !tm.contains_key(k) {
                    let p = child_ptr(ptr, k);
                    ops.push(json!({"op": "test", "path": p, "value": lv}));
                    ops.push(json!({"op": "remove", "path": p}));
                }
            }
            for (k, tv) in tm {
                match lm.get(k) {
                    Some(lv) => {
                        let len = ptr.len();
                        ptr.push('/');
                        escape_pointer_token(k, ptr);
                        guarded_ops(lv, tv, ptr, node.child(k), ops);
                        ptr.truncate(len);
                    }
                    None => {
                        // Guarded too: the field must still be absent (a `test` of null passes only
                        // then, on the API server), so a value someone added meanwhile is never
                        // overwritten.
                        let p = child_ptr(ptr, k);
                        ops.push(json!({"op": "test", "path": p, "value": null}));
                        ops.push(json!({"op": "add", "path": p, "value": tv}));
                    }
                }
            }
        }
        (Value::Array(la), Value::Array(ta)) if la.len() == ta.len() && same_identities(la, ta, node) => {
            let item = node.list.map_or(&schema::GENERIC, |l| l.item);
            for (i, (lv, tv)) in la.iter().zip(ta).enumerate() {
                let len = ptr.len();
                ptr.push('/');
                ptr.push_str(&i.to_string());
                guarded_ops(lv, tv, ptr, item, ops);
                ptr.truncate(len);
            }
        }
        _ => {
            ops.push(json!({"op": "test", "path": ptr.as_str(), "value": live}));
            ops.push(json!({"op": "replace", "path": ptr.as_str(), "value": target}));
        }
    }
}

fn child_ptr(ptr: &str, k: &str) -> String {
    let mut p = String::with_capacity(ptr.len() + k.len() + 1);
    p.push_str(ptr);
    p.push('/');
    escape_pointer_token(k, &mut p);
    p
}

/// Whether two equally long lists hold the same elements position by position, so that they can be
/// patched element by element. Sets and element identity changes are replaced whole.
fn same_identities(la: &[Value], ta: &[Value], node: &Node) -> bool {
    match node.list {
        Some(l) if l.set => false,
        Some(l) if !l.keys.is_empty() => {
            la.iter()
                .zip(ta)
                .all(|(a, b)| match (a.as_object(), b.as_object()) {
                    (Some(x), Some(y)) => keys_equal(x, y, l),
                    _ => a == b,
                })
        }
        _ => true,
    }
}

/// Applies a patch to a copy of `object` (for checks and dry runs), with the API server's semantics.
///
/// # Errors
/// The patch error, e.g. a failed `test`.
pub fn apply_patch(object: &Value, patch: &json_patch::Patch) -> Result<Value, json_patch::PatchError> {
    let mut v = object.clone();
    patch_in_place(&mut v, patch)?;
    Ok(v)
}

/// Applies a patch as the Kubernetes API server does (evanphx/json-patch): like RFC 6902, except that
/// a `test` of `null` passes on a key that is absent from an existing object. That is the guard an
/// `add` carries: it succeeds only while nobody has created the field meanwhile. The patch is all or
/// nothing: on an error `target` is left as it was.
///
/// # Errors
/// The failing operation, e.g. a `test` whose value no longer matches.
pub fn patch_in_place(target: &mut Value, patch: &json_patch::Patch) -> Result<(), json_patch::PatchError> {
    let mut work = target.clone();
    for (i, op) in patch.0.iter().enumerate() {
        if let json_patch::PatchOperation::Test(t) = op
            && t.value.is_null()
        {
            let path = t.path.as_str();
            let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
            let absent_or_null = work.pointer(path).is_none_or(Value::is_null);
            if absent_or_null && work.pointer(parent).is_some() {
                continue;
            }
            // Otherwise RFC 6902's test decides: a value that is there now fails it.
        }
        json_patch::patch(&mut work, std::slice::from_ref(op)).map_err(|mut e| {
            e.operation = i;
            e
        })?;
    }
    *target = work;
    Ok(())
}

/// A map from a desired pointer to the live value to adopt into the desired state ("cluster wins").
pub fn adopt_values(live: &LiveObject, drifts: &[Drift]) -> Result<Map<String, Value>, PatchError> {
    let key = live.key();
    let mut out = Map::new();
    for d in drifts.iter().filter(|d| &d.key == key) {
        if key.group.is_empty() && key.kind == "Secret" {
            return Err(PatchError::SecretValue {
                resource: key.to_string(),
                field: d.path.readable(),
            });
        }
        let Some(dp) = &d.desired_pointer else { continue };
        let value = match d.change {
            Change::Missing => Value::Null,
            _ => live
                .object()
                .pointer(&d.path.pointer())
                .cloned()
                .unwrap_or(Value::Null),
        };
        out.insert(dp.clone(), value);
    }
    Ok(out)
}
