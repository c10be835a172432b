//! Cheap fingerprints that recognise watch events which cannot carry a compared change
//! (ARCHITECTURE §6.1): same `metadata.generation` and same labels and annotations for kinds that keep
//! a generation, same compared content for kinds that do not.

use serde_json::Value;

/// A fingerprint of what the engine compares in an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    generation: Option<i64>,
    meta: u64,
    content: u64,
}

/// A small, fast, non-cryptographic 64-bit hasher (word-at-a-time multiply-rotate).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    pub(crate) fn new() -> Self {
        FastHasher(0)
    }

    #[inline]
    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(Self::K);
    }

    #[inline]
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        self.word(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
    }

    #[inline]
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

fn hash_value(h: &mut FastHasher, v: &Value, depth: usize) {
    match v {
        Value::Null => h.word(1),
        Value::Bool(b) => h.word(2 + u64::from(*b)),
        // serde_json's variant and value (1 and 1.0 differ, as their text does), without printing.
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => {
                h.word(4);
                h.word(u);
            }
            (None, Some(i)) => {
                h.word(8);
                h.word(i as u64);
            }
            (None, None) => {
                h.word(9);
                h.word(n.as_f64().unwrap_or(f64::NAN).to_bits());
            }
        },
        Value::String(s) => {
            h.word(5);
            h.bytes(s.as_bytes());
        }
        Value::Array(a) => {
            h.word(6 ^ ((a.len() as u64) << 8));
            if depth < crate::load::MAX_DEPTH {
                for x in a {
                    hash_value(h, x, depth + 1);
                }
            }
        }
        Value::Object(m) => {
            h.word(7 ^ ((m.len() as u64) << 8));
            if depth < crate::load::MAX_DEPTH {
                for (k, x) in m {
                    h.bytes(k.as_bytes());
                    hash_value(h, x, depth + 1);
                }
            }
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn hash_meta(h: &mut FastHasher, meta: Option<&Value>) {
    let Some(meta) = meta else { return };
    if let Some(labels) = meta.get("labels") {
        hash_value(h, labels, 1);
    }
    if let Some(Value::Object(ann)) = meta.get("annotations") {
        for (k, v) in ann {
            h.bytes(k.as_bytes());
            match (k.as_str(), v) {
                // Its content changes only together with a compared field; its length is enough.
                (LAST_APPLIED, Value::String(s)) => h.word(s.len() as u64),
                _ => hash_value(h, v, 2),
            }
        }
    }
}

/// Fingerprints an object. For kinds with a generation, only the generation and the labels and
/// annotations are read (a status-only update keeps all three); for the others, everything compared.
pub fn fingerprint(obj: &Value, has_generation: bool) -> Fingerprint {
    let meta = obj.get("metadata");
    let generation = meta.and_then(|m| m.get("generation")).and_then(Value::as_i64);
    let mut h = FastHasher::new();
    hash_meta(&mut h, meta);
    let meta_hash = h.finish();
    let content = if has_generation && generation.is_some() {
        0
    } else {
        let mut h = FastHasher::new();
        if let Value::Object(m) = obj {
            for (k, v) in m {
                if k == "metadata" || k == "status" {
                    continue;
                }
                h.bytes(k.as_bytes());
                hash_value(&mut h, v, 1);
            }
        }
        h.finish()
    };
    Fingerprint {
        generation: if has_generation { generation } else { None },
        meta: meta_hash,
        content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_only_updates_keep_the_fingerprint() {
        let a = json!({"metadata": {"generation": 3, "resourceVersion": "1", "labels": {"a": "b"}}, "spec": {"replicas": 1}, "status": {"x": 1}});
        let mut b = a.clone();
        b["status"]["x"] = json!(2);
        b["metadata"]["resourceVersion"] = json!("2");
        assert_eq!(fingerprint(&a, true), fingerprint(&b, true));
        b["metadata"]["labels"]["a"] = json!("c");
        assert_ne!(fingerprint(&a, true), fingerprint(&b, true));
        let mut c = a.clone();
        c["metadata"]["generation"] = json!(4);
        assert_ne!(fingerprint(&a, true), fingerprint(&c, true));
    }

    #[test]
    fn kinds_without_generation_hash_content() {
        let a = json!({"metadata": {"resourceVersion": "1"}, "data": {"k": "v"}});
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = json!("2");
        assert_eq!(fingerprint(&a, false), fingerprint(&b, false));
        b["data"]["k"] = json!("w");
        assert_ne!(fingerprint(&a, false), fingerprint(&b, false));
    }

    #[test]
    fn numbers_differ_by_value_and_variant() {
        let of = |n: Value| fingerprint(&json!({"metadata": {}, "spec": {"port": n}}), false);
        let all = [
            json!(80),
            json!(81),
            json!(-80),
            json!(80.0),
            json!(80.5),
            json!(u64::MAX),
            json!(-1),
        ];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(of(a.clone()), of(a.clone()), "{a}");
            for b in &all[i + 1..] {
                assert_ne!(of(a.clone()), of(b.clone()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn hasher_distinguishes_lengths() {
        let mut a = FastHasher::new();
        a.bytes(b"ab");
        let mut b = FastHasher::new();
        b.bytes(b"ab\0");
        assert_ne!(a.finish(), b.finish());
    }
}
