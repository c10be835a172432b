//! Protobuf request bodies, as kubectl sends them for built-in types (`kubectl create deployment`,
//! `create configmap`, `autoscale`...): `application/vnd.kubernetes.protobuf`, the 4-byte magic
//! `k8s\0`, then a `runtime.Unknown` envelope whose `raw` is the object (apimachinery
//! `pkg/runtime/serializer/protobuf`). Decoded with Kubernetes' own `.proto` definitions (compiled
//! into a descriptor set at build time) into the JSON the API server would store; answers stay JSON.
//!
//! Go writes every non-pointer scalar, zero or not; the API server decodes those into plain fields
//! that its JSON then omits (`omitempty`). So empty strings, zeros and `false` are dropped here, except
//! for the pointer fields where zero means something and kubectl sets them (`replicas`).

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, ReflectMessage, Value as PValue};
use serde_json::{Map, Value, json};

const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/k8s-descriptors.bin"));
const MAGIC: &[u8] = b"k8s\0";

/// Pointer fields for which an explicit zero is kept.
const ZERO_MEANS_SOMETHING: &[&str] = &["replicas", "minReplicas", "parallelism", "backoffLimit"];

fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// Whether a content type is Kubernetes protobuf.
pub(crate) fn is_protobuf(content_type: &str) -> bool {
    content_type.starts_with("application/vnd.kubernetes.protobuf")
}

/// Decodes a protobuf request body into the object's JSON.
pub(crate) fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("the protobuf body does not start with the k8s magic")?;
    let pool = pool()?;
    let envelope = pool
        .get_message_by_name("k8s.io.apimachinery.pkg.runtime.Unknown")
        .ok_or("no runtime.Unknown in the descriptors")?;
    let unknown = DynamicMessage::decode(envelope, rest).map_err(|e| format!("the envelope: {e}"))?;
    let text = |m: &DynamicMessage, f: &str| -> String {
        m.get_field_by_name(f)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let type_meta = unknown
        .get_field_by_name("typeMeta")
        .and_then(|v| v.as_message().cloned())
        .ok_or("the envelope has no typeMeta")?;
    let api_version = text(&type_meta, "apiVersion");
    let kind = text(&type_meta, "kind");
    let raw = unknown
        .get_field_by_name("raw")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let name = message_name(&api_version, &kind);
    let desc = pool
        .get_message_by_name(&name)
        .ok_or_else(|| format!("{kind} in {api_version} is not a type this server reads as protobuf"))?;
    let msg = DynamicMessage::decode(desc, raw.as_ref()).map_err(|e| format!("{kind}: {e}"))?;
    let mut v = message_json(&msg);
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(api_version));
        m.insert("kind".into(), Value::String(kind));
    }
    Ok(v)
}

/// `k8s.io.api.<first label of the group, or core>.<version>.<Kind>`.
fn message_name(api_version: &str, kind: &str) -> String {
    let (group, version) = drift_core::split_api_version(api_version);
    let short = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    format!("k8s.io.api.{short}.{version}.{kind}")
}

/// The JSON name of a field: Kubernetes' proto names are the JSON names, except where the generator
/// lower-cased only the first letter of an initialism (`aPIGroup` for `apiGroup`).
fn json_name(proto: &str) -> String {
    let chars: Vec<char> = proto.chars().collect();
    if chars.len() > 2 && chars[0].is_ascii_lowercase() && chars[1].is_ascii_uppercase() {
        let mut end = 1;
        while end < chars.len() && chars[end].is_ascii_uppercase() {
            end += 1;
        }
        // The last capital of the run starts the next word when a lower-case letter follows it.
        let cut = if end < chars.len() && end - 1 > 1 {
            end - 1
        } else {
            end
        };
        let mut out: String = chars[..cut].iter().collect::<String>().to_ascii_lowercase();
        out.extend(&chars[cut..]);
        return out;
    }
    proto.to_string()
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        _ => false,
    }
}

fn message_json(m: &DynamicMessage) -> Value {
    let name = m.descriptor().full_name().to_string();
    let field = |f: &str| m.get_field_by_name(f);
    match name.as_str() {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time" | "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let secs = field("seconds").and_then(|v| v.as_i64()).unwrap_or(0);
            if secs == 0 {
                return Value::Null;
            }
            Value::String(drift_core::clock::rfc3339_seconds(
                u64::try_from(secs).unwrap_or(0) * 1000,
            ))
        }
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => Value::String(
            field("string")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        ),
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            if field("type").and_then(|v| v.as_i64()) == Some(1) {
                Value::String(
                    field("strVal")
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                )
            } else {
                json!(field("intVal").and_then(|v| v.as_i32()).unwrap_or(0))
            }
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension" | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            let raw = field("raw")
                .or_else(|| field("Raw"))
                .and_then(|v| v.as_bytes().cloned())
                .unwrap_or_default();
            serde_json::from_slice(&raw).unwrap_or(Value::Null)
        }
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => {
            let ns = field("duration").and_then(|v| v.as_i64()).unwrap_or(0);
            Value::String(format!("{}s", ns / 1_000_000_000))
        }
        _ => {
            let mut out = Map::new();
            for (fd, v) in m.fields() {
                let key = json_name(fd.name());
                let jv = value_json(v);
                if is_zero(&jv) && !ZERO_MEANS_SOMETHING.contains(&key.as_str()) {
                    continue;
                }
                if matches!(&jv, Value::Array(a) if a.is_empty())
                    || matches!(&jv, Value::Object(o) if o.is_empty() && fd.is_map())
                {
                    continue;
                }
                out.insert(key, jv);
            }
            Value::Object(out)
        }
    }
}

fn value_json(v: &PValue) -> Value {
    use base64::Engine as _;
    match v {
        PValue::Bool(b) => Value::Bool(*b),
        PValue::I32(n) => json!(n),
        PValue::I64(n) => json!(n),
        PValue::U32(n) => json!(n),
        PValue::U64(n) => json!(n),
        PValue::F32(n) => json!(n),
        PValue::F64(n) => json!(n),
        PValue::String(s) => Value::String(s.clone()),
        PValue::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        PValue::EnumNumber(n) => json!(n),
        PValue::Message(m) => message_json(m),
        PValue::List(items) => Value::Array(items.iter().map(value_json).collect()),
        PValue::Map(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                // Map values keep their zero values: an empty ConfigMap value is a value.
                out.insert(key, value_json(v));
            }
            Value::Object(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialisms_get_their_json_names() {
        assert_eq!(json_name("aPIGroup"), "apiGroup");
        assert_eq!(json_name("apiVersion"), "apiVersion");
        assert_eq!(json_name("name"), "name");
        assert_eq!(
            message_name("apps/v1", "Deployment"),
            "k8s.io.api.apps.v1.Deployment"
        );
        assert_eq!(message_name("v1", "ConfigMap"), "k8s.io.api.core.v1.ConfigMap");
        assert_eq!(
            message_name("rbac.authorization.k8s.io/v1", "RoleBinding"),
            "k8s.io.api.rbac.v1.RoleBinding"
        );
        assert!(pool().is_ok());
    }

    #[test]
    fn a_body_without_the_magic_is_refused() {
        assert!(decode(b"{\"kind\":\"ConfigMap\"}").unwrap_err().contains("magic"));
    }
}
