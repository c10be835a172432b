//! The 51 `resource.Quantity` vectors of `testdata/cases/quantity/`: canonical forms and equality.
//!
//! The file holds unquoted values such as `1e9` that a YAML parser reads as floats, so the records are
//! read as text (`key: value` lines, one record per `- kind:`).

mod common;

use std::collections::HashMap;

use drift_core::Quantity;
use drift_core::quantity::QuantityFormat;

fn records() -> Vec<HashMap<String, String>> {
    let path = common::testdata_dir().join("cases/quantity/quantity-canonical.yaml");
    let text = std::fs::read_to_string(&path).expect("quantity vectors");
    let mut out: Vec<HashMap<String, String>> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (starts, body) = match line.strip_prefix("- ") {
            Some(b) => (true, b),
            None => (false, line.trim_start()),
        };
        if starts {
            out.push(HashMap::new());
        }
        let (k, v) = body.split_once(':').expect("key: value");
        let v = v.trim().trim_matches('\'').to_string();
        out.last_mut().expect("a record").insert(k.trim().to_string(), v);
    }
    out
}

fn parse_value(v: &str) -> (i128, i32) {
    let (m, e) = v.split_once('e').expect("value is mantissa e scale");
    (m.parse().expect("mantissa"), e.parse().expect("scale"))
}

#[test]
fn quantity_vectors() {
    let vectors = records();
    assert_eq!(vectors.len(), 51);
    for v in &vectors {
        let canonical = &v["canonical"];
        match v["kind"].as_str() {
            "string" => {
                let (m, e) = parse_value(&v["value"]);
                let format = match v["format"].as_str() {
                    "BinarySI" => QuantityFormat::BinarySi,
                    "DecimalSI" => QuantityFormat::DecimalSi,
                    "DecimalExponent" => QuantityFormat::DecimalExponent,
                    other => panic!("unknown format {other}"),
                };
                let q = Quantity::from_parts(m, e, format).expect("in range");
                assert_eq!(&q.to_string(), canonical, "{v:?}");
                if let Some(alt) = v.get("alternate").filter(|a| *a != "null") {
                    let a: Quantity = alt.parse().unwrap_or_else(|e| panic!("{alt}: {e}"));
                    assert_eq!(&a.to_string(), canonical, "alternate of {v:?}");
                    assert_eq!(a, q, "alternate equals value: {v:?}");
                }
                let c: Quantity = canonical.parse().expect("canonical parses");
                assert_eq!(c, q, "canonical equals value: {v:?}");
            }
            "parse-emit" => {
                let input = &v["input"];
                let q: Quantity = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
                assert_eq!(&q.to_string(), canonical, "{v:?}");
            }
            other => panic!("unknown vector kind {other}"),
        }
    }
}

/// The engine compares quantities through the same type: `diff` treats every vector's spellings as
/// equal at a quantity path.
#[test]
fn engine_agrees_with_vectors() {
    use drift_core::{DesiredObject, DiffEngine, LiveObject, Resource};
    use serde_json::json;
    let engine = DiffEngine::default();
    for v in records()
        .iter()
        .filter(|v| v.get("alternate").is_some_and(|a| a != "null"))
    {
        let pod = |q: &str| {
            Resource::from_value(
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x"},
                "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": q}}}]}}),
            )
            .expect("pod")
        };
        let report = engine.diff(
            &DesiredObject::new(pod(&v["alternate"])),
            Some(&LiveObject::new(pod(&v["canonical"]))),
        );
        assert!(report.drifts.is_empty(), "{v:?}: {:?}", report.drifts);
    }
}
