//! Field ownership from `metadata.managedFields` (FieldsV1) and the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation.
//!
//! FieldsV1 is a trie whose keys are `f:<field>` (a map field), `k:<json>` (a list element by its key
//! fields), `v:<json>` (a set element by value), `i:<n>` (a list element by position) and `.` (the node
//! itself). A `{}` leaf owns its whole subtree.

use serde_json::{Map, Value};

use crate::tree::{Shape, Tree, TreeArr, TreeMap};

/// One step of a FieldsV1 path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Element {
    Field(String),
    Key(Map<String, Value>),
    Value(Value),
    Index(usize),
}

/// A parsed FieldsV1 set.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSet {
    children: Vec<(Element, FieldSet)>,
}

impl FieldSet {
    /// Reads a FieldsV1 JSON object, in any form. Unknown or malformed keys are skipped: ownership
    /// is advisory.
    pub(crate) fn read<'a, T: Tree<'a>>(v: T) -> FieldSet {
        let mut set = FieldSet::default();
        let Shape::Obj(map) = v.shape() else { return set };
        for (k, child) in map.entries() {
            let el = if let Some(f) = k.strip_prefix("f:") {
                Element::Field(f.to_string())
            } else if let Some(j) = k.strip_prefix("k:") {
                match serde_json::from_str::<Value>(j) {
                    Ok(Value::Object(m)) => Element::Key(m),
                    _ => continue,
                }
            } else if let Some(j) = k.strip_prefix("v:") {
                match serde_json::from_str::<Value>(j) {
                    Ok(v) => Element::Value(v),
                    Err(_) => continue,
                }
            } else if let Some(i) = k.strip_prefix("i:") {
                match i.parse() {
                    Ok(i) => Element::Index(i),
                    Err(_) => continue,
                }
            } else {
                continue; // "." marks the node itself; presence of the parent entry already says so
            };
            set.children.push((el, FieldSet::read(child)));
        }
        set
    }

    fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }

    fn child(&self, pred: impl Fn(&Element) -> bool) -> Option<&FieldSet> {
        self.children.iter().find(|(e, _)| pred(e)).map(|(_, s)| s)
    }
}

/// A step used to look ownership up, produced by the diff walker.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    Field(&'a str),
    Index(usize),
    /// A keyed list element: its key fields and values (defaults applied).
    Key(Vec<(&'a str, Value)>),
}

impl FieldSet {
    /// Whether the set owns the node at `path` (or an ancestor of it as a leaf).
    pub(crate) fn owns(&self, path: &[Step<'_>]) -> bool {
        let mut node = self;
        for (depth, step) in path.iter().enumerate() {
            if depth > 0 && node.is_leaf() {
                return true; // atomic ownership of the subtree
            }
            let next = match step {
                Step::Field(f) => node.child(|e| matches!(e, Element::Field(g) if g == f)),
                Step::Index(i) => node.child(|e| matches!(e, Element::Index(j) if j == i)),
                Step::Key(fields) => node.child(|e| match e {
                    Element::Key(m) => {
                        m.len() == fields.len()
                            && fields
                                .iter()
                                .all(|(k, v)| m.get(*k).is_some_and(|w| crate::value::loose_eq(v, w)))
                    }
                    _ => false,
                }),
            };
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
        true
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub(crate) struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub set: FieldSet,
}

/// Everything the engine needs to know about who set what in a live object.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ownership {
    /// The parsed last-applied configuration, if any.
    pub last_applied: Option<Value>,
    pub managed: Vec<ManagedEntry>,
}

impl Ownership {
    pub(crate) fn from_object(obj: &Value) -> Ownership {
        Ownership::from_metadata(obj.get("metadata"))
    }

    /// From an object's `metadata`, in any form (read in place, nothing else built).
    pub(crate) fn from_metadata<'a, T: Tree<'a>>(meta: Option<T>) -> Ownership {
        let last_applied = meta
            .and_then(|m| Tree::get(m, "annotations"))
            .and_then(|a| Tree::get(a, "kubectl.kubernetes.io/last-applied-configuration"))
            .and_then(Tree::as_str)
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .filter(Value::is_object);
        let managed = match meta.and_then(|m| Tree::get(m, "managedFields")).map(Tree::shape) {
            Some(Shape::Arr(entries)) => entries
                .items()
                .filter_map(|e| {
                    let manager = Tree::get(e, "manager").and_then(Tree::as_str)?;
                    let fields = Tree::get(e, "fieldsV1")?;
                    let text = |k: &str| Tree::get(e, k).and_then(Tree::as_str).map(str::to_string);
                    Some(ManagedEntry {
                        manager: manager.to_string(),
                        operation: text("operation").unwrap_or_default(),
                        time: text("time"),
                        subresource: text("subresource").filter(|s| !s.is_empty()),
                        set: FieldSet::read(fields),
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        Ownership {
            last_applied,
            managed,
        }
    }

    /// Whether `managers` applied `path`: an `Apply` entry owns exactly what was applied; an
    /// `Update` entry (client-side apply's create or patch, a PUT) also owns whatever the server
    /// filled in at that write (defaults, admission), so it counts only when there is no
    /// `last-applied-configuration` to say what was really sent.
    pub(crate) fn applied_by<S: AsRef<str>>(&self, managers: &[S], path: &[Step<'_>]) -> bool {
        !managers.is_empty()
            && self.managed.iter().any(|e| {
                managers.iter().any(|m| m.as_ref() == e.manager)
                    && (e.operation != "Update" || self.last_applied.is_none())
                    && e.set.owns(path)
            })
    }

    /// Whether any entry of a manager in `managers` owns `path`.
    pub(crate) fn owned_by<S: AsRef<str>>(&self, managers: &[S], path: &[Step<'_>]) -> bool {
        !managers.is_empty()
            && self
                .managed
                .iter()
                .any(|e| managers.iter().any(|m| m.as_ref() == e.manager) && e.set.owns(path))
    }

    /// Who owns the node at `path` now: of the entries that own it, the one written last (RFC 3339
    /// times in UTC compare as text; an entry without a time counts as oldest). Equal values can be
    /// owned by several managers at once; the latest writer is the one that made it what it is.
    pub(crate) fn actor(&self, path: &[Step<'_>]) -> Option<crate::drift::Actor> {
        self.managed
            .iter()
            .filter(|e| e.set.owns(path))
            .fold(None::<&ManagedEntry>, |best, e| match best {
                Some(b) if b.time >= e.time => Some(b),
                _ => Some(e),
            })
            .map(|e| crate::drift::Actor {
                manager: e.manager.clone(),
                operation: e.operation.clone(),
                time: e.time.clone(),
                subresource: e.subresource.clone(),
            })
    }

    /// Whether `path` is present in the last-applied configuration.
    pub(crate) fn in_last_applied(
        &self,
        path: &[Step<'_>],
        key_defaults: &dyn Fn(usize, &str) -> Option<Value>,
    ) -> bool {
        let Some(mut v) = self.last_applied.as_ref() else {
            return false;
        };
        for (depth, step) in path.iter().enumerate() {
            let next = match (step, v) {
                (Step::Field(f), Value::Object(m)) => m.get(*f),
                (Step::Index(i), Value::Array(a)) => a.get(*i),
                (Step::Key(fields), Value::Array(a)) => a.iter().find(|el| {
                    fields.iter().all(|(k, want)| match el.get(*k) {
                        Some(have) => crate::value::loose_eq(have, want),
                        None => key_defaults(depth, k).is_some_and(|d| crate::value::loose_eq(&d, want)),
                    })
                }),
                _ => None,
            };
            match next {
                Some(n) if !n.is_null() => v = n,
                _ => return false,
            }
        }
        true
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Reduces an object's `last-applied-configuration` annotation to what the engine reads from it:
/// which fields were applied. Key fields of keyed list elements (a container's `name`, a port's
/// `containerPort`), elements of sets and `null`s keep their values; every other scalar becomes `1`.
/// Diffs give the same verdicts before and after; a cache of live objects gets smaller (the annotation
/// is often half of a projected Deployment). A missing or unparsable annotation is left alone.
pub fn shrink_last_applied(object: &mut Value) {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (group, version) = crate::model::split_api_version(api_version);
    let (root, _) = crate::schema::root_for(
        group,
        version,
        object.get("kind").and_then(Value::as_str).unwrap_or_default(),
    );
    let Some(annotation) = object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(|a| a.get_mut(LAST_APPLIED))
    else {
        return;
    };
    let Some(applied) = annotation
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .filter(Value::is_object)
    else {
        return;
    };
    *annotation = Value::String(shape(&applied, root, &[]).to_string());
}

fn shape(v: &Value, node: &'static crate::schema::Node, keys: &[&str]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, c)| {
                    let kept = if keys.contains(&k.as_str()) && !c.is_object() && !c.is_array() {
                        c.clone()
                    } else {
                        shape(c, node.child(k), &[])
                    };
                    (k.clone(), kept)
                })
                .collect(),
        ),
        Value::Array(a) => {
            let (item, keys, set): (&'static crate::schema::Node, Vec<&str>, bool) = match node.list {
                Some(l) => (l.item, l.keys.iter().map(|k| k.name).collect(), l.set),
                None => (&crate::schema::GENERIC, Vec::new(), false),
            };
            Value::Array(
                a.iter()
                    .map(|e| if set { e.clone() } else { shape(e, item, &keys) })
                    .collect(),
            )
        }
        Value::Null => Value::Null,
        _ => Value::from(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fieldsv1_keys() {
        let set = FieldSet::read(&json!({
            "f:metadata": {"f:labels": {"f:app": {}, "f:delete-me": {}}},
            "f:spec": {"f:ports": {"k:{\"port\":7777,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}}},
                       "f:selector": {}}
        }));
        assert!(set.owns(&[
            Step::Field("metadata"),
            Step::Field("labels"),
            Step::Field("delete-me")
        ]));
        assert!(!set.owns(&[
            Step::Field("metadata"),
            Step::Field("labels"),
            Step::Field("other")
        ]));
        let port = Step::Key(vec![("port", json!(7777)), ("protocol", json!("TCP"))]);
        assert!(set.owns(&[Step::Field("spec"), Step::Field("ports"), port]));
        // a leaf owns its subtree
        assert!(set.owns(&[Step::Field("spec"), Step::Field("selector"), Step::Field("app")]));
    }

    #[test]
    fn last_applied_lookup_with_key_defaults() {
        let o = Ownership {
            last_applied: Some(json!({"spec": {"ports": [{"port": 443}]}})),
            managed: vec![],
        };
        let key = Step::Key(vec![("port", json!(443)), ("protocol", json!("TCP"))]);
        let defaults = |_: usize, k: &str| if k == "protocol" { Some(json!("TCP")) } else { None };
        assert!(o.in_last_applied(&[Step::Field("spec"), Step::Field("ports"), key], &defaults));
        let udp = Step::Key(vec![("port", json!(443)), ("protocol", json!("UDP"))]);
        assert!(!o.in_last_applied(&[Step::Field("spec"), Step::Field("ports"), udp], &defaults));
    }

    #[test]
    fn actor_is_the_latest_owner() {
        let o = Ownership::from_object(&json!({"metadata": {"managedFields": [
            {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-12-01T09:00:00Z",
             "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}},
            {"manager": "kubectl-scale", "operation": "Update", "subresource": "scale",
             "time": "2026-12-02T10:15:00Z", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "no-time", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        ]}}));
        let a = o.actor(&[Step::Field("spec"), Step::Field("replicas")]).unwrap();
        assert_eq!(a.manager, "kubectl-scale");
        assert_eq!(a.operation, "Update");
        assert_eq!(a.subresource.as_deref(), Some("scale"));
        assert_eq!(a.time.as_deref(), Some("2026-12-02T10:15:00Z"));
        // the applier's atomic `f:template` owns everything below it
        let t = o
            .actor(&[Step::Field("spec"), Step::Field("template"), Step::Field("x")])
            .unwrap();
        assert_eq!(t.manager, "kubectl-client-side-apply");
        assert!(o.actor(&[Step::Field("spec"), Step::Field("paused")]).is_none());
    }
}
