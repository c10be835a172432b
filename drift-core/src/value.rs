//! Small helpers over JSON values: numbers by value, equality without representation noise.

use serde_json::{Number, Value};

/// Numbers compared by value: `1 == 1.0`, and integers exactly.
#[inline]
pub(crate) fn number_eq(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Structural equality with numbers by value. Iterative, so it is safe on any input.
pub(crate) fn loose_eq(a: &Value, b: &Value) -> bool {
    let mut stack = vec![(a, b)];
    while let Some((a, b)) = stack.pop() {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                if !number_eq(x, y) {
                    return false;
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                stack.extend(x.iter().zip(y));
            }
            (Value::Object(x), Value::Object(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                for (k, v) in x {
                    match y.get(k) {
                        Some(w) => stack.push((v, w)),
                        None => return false,
                    }
                }
            }
            (x, y) => {
                if x != y {
                    return false;
                }
            }
        }
    }
    true
}

/// Quantities by value, falling back to [`loose_eq`] when either side is not a quantity.
pub(crate) fn quantity_eq(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (
        crate::quantity::Quantity::from_json(a),
        crate::quantity::Quantity::from_json(b),
    ) {
        (Some(x), Some(y)) => x == y,
        _ => loose_eq(a, b),
    }
}

/// Container resource quantities: the server stores the desired value rounded up to milli units
/// (`SetDefaults_ResourceList`: `0.0001` → `1m`), so that is what live is compared with.
pub(crate) fn resource_quantity_eq(desired: &Value, live: &Value) -> bool {
    if desired == live {
        return true;
    }
    match (
        crate::quantity::Quantity::from_json(desired),
        crate::quantity::Quantity::from_json(live),
    ) {
        (Some(d), Some(l)) => {
            const MILLI: i128 = 1_000_000;
            let rounded =
                d.nanos().div_euclid(MILLI) * MILLI + if d.nanos().rem_euclid(MILLI) > 0 { MILLI } else { 0 };
            rounded == l.nanos() || d.nanos() == l.nanos()
        }
        _ => loose_eq(desired, live),
    }
}

/// The value at a path of field names (what `pointer_mut` does, without parsing a pointer).
pub(crate) fn field_path_mut<'a>(obj: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(obj, |v, f| v.get_mut(*f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_by_value() {
        assert!(loose_eq(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!loose_eq(&json!({"a": 1}), &json!({"a": "1"})));
        assert!(!loose_eq(&json!([1]), &json!([1, 1])));
        assert!(loose_eq(&json!(u64::MAX), &json!(u64::MAX)));
    }

    #[test]
    fn emptiness() {
        use crate::tree::Tree;
        assert!(Tree::is_effectively_empty(
            &json!({"requests": {}, "limits": {"cpu": ""}})
        ));
        assert!(!Tree::is_effectively_empty(&json!({"requests": {"cpu": "1"}})));
        assert!(Tree::is_empty(&json!([])) && Tree::is_empty(&json!(null)) && !Tree::is_empty(&json!("")));
        assert!(
            Tree::is_empty(&json!({})) && !Tree::is_empty(&json!({"a": null})) && !Tree::is_empty(&json!(0))
        );
    }
}
