//! Multi-document YAML of unit data: split into JSON values, find one object, write back.

use drift_core::ResourceKey;
use serde_json::{Map, Value};

/// The documents of a unit's data (empty documents dropped).
pub(crate) fn documents(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("the data is not YAML: {e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Renders documents as multi-document YAML.
pub(crate) fn render(docs: &[Value]) -> Result<String, String> {
    serde_saphyr::to_string_multiple(docs).map_err(|e| format!("rendering YAML: {e}"))
}

/// Whether a document is the object `key` names (the namespace may be left to the applier).
pub(crate) fn is_object(doc: &Value, key: &ResourceKey) -> bool {
    let s = |p: &str| doc.pointer(p).and_then(Value::as_str);
    let (group, _) = drift_core::split_api_version(s("/apiVersion").unwrap_or_default());
    group == key.group
        && s("/kind") == Some(key.kind.as_str())
        && s("/metadata/name") == Some(key.name.as_str())
        && s("/metadata/namespace").is_none_or(|ns| Some(ns) == key.namespace.as_deref())
}

/// Sets (or with `null`, removes) the value at a JSON Pointer, creating maps on the way.
pub(crate) fn set_pointer(doc: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = tokens.split_last() else {
        return Err("cannot replace the whole object".into());
    };
    let mut cur = doc;
    for t in parents {
        cur = match cur {
            Value::Object(m) => m.entry(t.clone()).or_insert_with(|| Value::Object(Map::new())),
            Value::Array(a) => {
                let i: usize = t
                    .parse()
                    .map_err(|_| format!("{pointer}: {t} is not a list index"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("{pointer}: index {i} is past the end of the list"))?
            }
            _ => return Err(format!("{pointer}: {t} is below a scalar")),
        };
    }
    match cur {
        Value::Object(m) => {
            if value.is_null() {
                m.remove(last);
            } else {
                m.insert(last.clone(), value);
            }
            Ok(())
        }
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("{pointer}: {last} is not a list index"))?;
            if i >= a.len() {
                return Err(format!("{pointer}: index {i} is past the end of the list"));
            }
            if value.is_null() {
                a.remove(i);
            } else {
                a[i] = value;
            }
            Ok(())
        }
        _ => Err(format!("{pointer}: the parent is a scalar")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_documents_and_types() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {flag: \"true\", n: \"1\"}\n---\n---\nkind: X\n";
        let docs = documents(text).expect("yaml");
        assert_eq!(docs.len(), 2);
        let again = documents(&render(&docs).expect("render")).expect("re-parse");
        assert_eq!(docs, again);
        assert_eq!(again[0]["data"]["flag"], json!("true"), "strings stay strings");
    }

    #[test]
    fn pointers() {
        let mut d = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        set_pointer(&mut d, "/spec/replicas", json!(3)).expect("set");
        set_pointer(&mut d, "/spec/containers/0/image", json!("y")).expect("set");
        set_pointer(&mut d, "/metadata/labels/app.kubernetes.io~1name", json!("w")).expect("create maps");
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["spec"]["containers"][0]["image"], "y");
        assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/name"], "w");
        set_pointer(&mut d, "/spec/replicas", Value::Null).expect("remove");
        assert!(d["spec"].get("replicas").is_none());
        assert!(set_pointer(&mut d, "/spec/containers/5/image", json!(1)).is_err());
        assert!(set_pointer(&mut d, "", json!(1)).is_err());
    }

    #[test]
    fn finds_objects_by_key() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
        assert!(is_object(
            &d,
            &ResourceKey::new("apps/v1", "Deployment", Some("shop"), "web")
        ));
        assert!(!is_object(
            &d,
            &ResourceKey::new("apps/v1", "StatefulSet", Some("shop"), "web")
        ));
    }
}
