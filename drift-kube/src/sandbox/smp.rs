//! Strategic merge patch, as the API server applies it for built-in kinds: maps merge, lists with a
//! merge key (containers and env by `name`, ports by port and protocol, volume mounts by
//! `mountPath`, ...) merge element by element, other lists are replaced, `null` deletes. The
//! directives kubectl sends are honoured: `$patch: delete|replace|merge`, `$setElementOrder/<list>`,
//! `$retainKeys` and `$deleteFromPrimitiveList/<list>`.

use serde_json::{Map, Value};

/// The merge key of a list field, as the built-in types declare it (`patchMergeKey` in
/// `k8s.io/api/*/types.go`), by the field's name and what its elements hold. `None` for atomic lists.
///
/// Strategic merge uses that one key even where the list's identity has two (`listMapKey`): container
/// ports merge by `containerPort` alone and Service ports by `port` alone, so a patch for 53/TCP lands
/// on a 53/UDP entry — the API server's long-standing behaviour (kubernetes#39188), reproduced here.
pub(crate) fn list_keys(field: &str, items: &[Value]) -> Option<&'static [&'static str]> {
    let has = |k: &str| items.iter().any(|i| i.get(k).is_some());
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "webhooks" => &["name"],
        "ports" if has("containerPort") => &["containerPort"],
        "ports" if has("port") => &["port"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "hostAliases" => &["ip"],
        "topologySpreadConstraints" => &["topologyKey"],
        "ownerReferences" => &["uid"],
        "conditions" => &["type"],
        _ => return None,
    })
}

/// The keys that identify a list's elements in field ownership (`+listMapKey` in the types; the
/// `k:{...}` entries of managedFields): container and Service ports by number and protocol, spread
/// constraints by topology key and `whenUnsatisfiable`, otherwise the merge key.
pub(crate) fn map_keys(field: &str, items: &[Value]) -> Option<&'static [&'static str]> {
    let has = |k: &str| items.iter().any(|i| i.get(k).is_some());
    Some(match field {
        "ports" if has("containerPort") => &["containerPort", "protocol"],
        "ports" if has("port") => &["port", "protocol"],
        "topologySpreadConstraints" => &["topologyKey", "whenUnsatisfiable"],
        _ => return list_keys(field, items),
    })
}

/// Lists of strings that merge as sets (`patchStrategy:"merge"` without a key): `finalizers`.
fn merges_as_set(field: &str) -> bool {
    field == "finalizers"
}

/// A key field's value, with the API's default for `protocol`.
fn key_value<'a>(el: &'a Value, k: &str) -> Option<std::borrow::Cow<'a, Value>> {
    match el.get(k) {
        Some(v) if !v.is_null() => Some(std::borrow::Cow::Borrowed(v)),
        _ if k == "protocol" => Some(std::borrow::Cow::Owned(Value::String("TCP".into()))),
        _ => None,
    }
}

fn same_key(a: &Value, b: &Value, keys: &[&str]) -> bool {
    keys.iter().all(|k| match (key_value(a, k), key_value(b, k)) {
        (Some(x), Some(y)) => x == y || x.as_f64().is_some_and(|n| y.as_f64() == Some(n)),
        (None, None) => true,
        _ => false,
    })
}

/// Removes directive keys (`$patch`, `$setElementOrder/...`, ...) from a value about to be stored.
pub(crate) fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|e| e.get("$patch").and_then(Value::as_str) != Some("delete"))
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Applies a strategic merge patch to `target`.
///
/// # Errors
/// A message when the patch is not an object where one is needed.
pub(crate) fn apply(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(pm) = patch else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    merge_map(target, pm)
}

fn merge_map(target: &mut Value, pm: &Map<String, Value>) -> Result<(), String> {
    match pm.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(&Value::Object(pm.clone()));
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(tm) = target else { return Ok(()) };
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, pv) in pm {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let Value::Array(order) = pv {
                orders.push((field.to_string(), order.clone()));
            }
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(remove)) = (tm.get_mut(field), pv) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            tm.remove(k);
            continue;
        }
        match (tm.get_mut(k), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(pvm)) => merge_map(tv, pvm)?,
            (Some(Value::Array(tl)), Value::Array(pl)) if merges_as_set(k) => {
                for v in pl {
                    if !tl.contains(v) {
                        tl.push(v.clone());
                    }
                }
            }
            (Some(Value::Array(tl)), Value::Array(pl)) => {
                let keys = list_keys(k, pl).or_else(|| list_keys(k, tl));
                match keys {
                    Some(keys) => merge_keyed_list(tl, pl, keys)?,
                    None => *tl = pl.iter().map(strip_directives).collect(),
                }
            }
            _ => {
                tm.insert(k.clone(), strip_directives(pv));
            }
        }
    }
    if let Some(Value::Array(retain)) = pm.get("$retainKeys") {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        tm.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (field, order) in orders {
        if let Some(Value::Array(list)) = tm.get_mut(&field) {
            let keys = list_keys(&field, &order).or_else(|| list_keys(&field, list));
            if let Some(keys) = keys {
                reorder(list, &order, keys);
            }
        }
    }
    Ok(())
}

fn merge_keyed_list(target: &mut Vec<Value>, patch: &[Value], keys: &[&str]) -> Result<(), String> {
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *target = patch
            .iter()
            .filter(|e| e.get("$patch").and_then(Value::as_str) != Some("replace"))
            .map(strip_directives)
            .collect();
        return Ok(());
    }
    for pe in patch {
        let directive = pe.get("$patch").and_then(Value::as_str);
        let pos = target.iter().position(|te| same_key(te, pe, keys));
        match (directive, pos) {
            (Some("delete"), Some(i)) => {
                target.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => match pe {
                Value::Object(pm) => merge_map(&mut target[i], pm)?,
                other => target[i] = strip_directives(other),
            },
            (_, None) => target.push(strip_directives(pe)),
        }
    }
    Ok(())
}

/// Orders `list` as `order` lists its elements; elements not in `order` keep their place after them.
fn reorder(list: &mut Vec<Value>, order: &[Value], keys: &[&str]) {
    let mut ordered = Vec::with_capacity(list.len());
    let mut rest: Vec<Value> = std::mem::take(list);
    for o in order {
        if let Some(i) = rest.iter().position(|e| same_key(e, o, keys)) {
            ordered.push(rest.remove(i));
        }
    }
    ordered.extend(rest);
    *list = ordered;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubectl_set_image() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "server", "image": "a:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "sidecar", "image": "s:1"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "server"}, {"name": "sidecar"}],
            "containers": [{"image": "a:9", "name": "server"}]}}}});
        apply(&mut d, &patch).unwrap();
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "a:9");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            80
        );
        assert_eq!(d["spec"]["template"]["spec"]["containers"][1]["image"], "s:1");
    }

    #[test]
    fn deletes_replaces_and_retains() {
        let mut d = json!({"a": {"x": 1, "y": 2}, "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "args": ["1", "2"], "m": {"k": 1}});
        let patch = json!({"a": {"x": null, "z": 3}, "env": [{"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}],
                           "args": ["3"], "m": {"$patch": "replace", "j": 2}});
        apply(&mut d, &patch).unwrap();
        assert_eq!(
            d,
            json!({"a": {"y": 2, "z": 3}, "env": [{"name": "B", "value": "2"}, {"name": "C", "value": "3"}], "args": ["3"], "m": {"j": 2}})
        );
        let mut s = json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}});
        apply(
            &mut s,
            &json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}),
        )
        .unwrap();
        assert_eq!(s, json!({"strategy": {"type": "Recreate"}}));
    }

    #[test]
    fn ports_merge_by_port_alone_as_the_api_server_does() {
        // kubernetes#39188: the patch for 53/TCP merges into the first element with port 53.
        let mut d = json!({"ports": [{"port": 53, "protocol": "UDP", "name": "dns-udp"}, {"port": 53, "name": "dns"}]});
        apply(
            &mut d,
            &json!({"ports": [{"port": 53, "protocol": "TCP", "targetPort": 5353}]}),
        )
        .unwrap();
        assert_eq!(d["ports"][0]["targetPort"], 5353);
        assert_eq!(d["ports"][0]["protocol"], "TCP");
        assert!(d["ports"][1].get("targetPort").is_none());
    }

    #[test]
    fn finalizers_union_and_owner_references_merge_by_uid() {
        let mut d = json!({"metadata": {"finalizers": ["a"], "ownerReferences": [{"uid": "u1", "name": "x"}]},
            "webhooks": [{"name": "w", "failurePolicy": "Fail", "timeoutSeconds": 10}]});
        apply(
            &mut d,
            &json!({"metadata": {"finalizers": ["b", "a"], "ownerReferences": [{"uid": "u1", "controller": true}]},
                "webhooks": [{"name": "w", "failurePolicy": "Ignore"}]}),
        )
        .unwrap();
        assert_eq!(d["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            d["metadata"]["ownerReferences"],
            json!([{"uid": "u1", "name": "x", "controller": true}])
        );
        assert_eq!(
            d["webhooks"],
            json!([{"name": "w", "failurePolicy": "Ignore", "timeoutSeconds": 10}])
        );
    }
}
