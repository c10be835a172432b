//! Secret redaction: Secret values are replaced by keyed hashes before the engine sees them, so no drift,
//! report, patch, log line or prompt can carry one.
//!
//! A value becomes a token `sha256:<16 hex>`: the first 64 bits of HMAC-SHA-256 over the decoded bytes,
//! keyed with a per-process random key (set a shared key with [`Redactor::with_key`] when several
//! processes must agree). Equal values give equal tokens, so drift is still detected; a token does not
//! let anyone confirm a guessed password offline, because the key never leaves the process.
//!
//! ```
//! use drift_core::redact::Redactor;
//! use serde_json::json;
//! let r = Redactor::with_key([7; 32]);
//! let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
//!                         "stringData": {"password": "hunter2"}});
//! r.redact_secret(&mut secret);
//! let token = secret["data"]["password"].as_str().unwrap();
//! assert!(Redactor::is_token(token));
//! assert!(!secret.to_string().contains("hunter2"));
//! assert!(secret.get("stringData").is_none());
//! ```

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

const TOKEN_PREFIX: &str = "sha256:";
const TOKEN_HEX: usize = 16;
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Hashes Secret values with a process key.
#[derive(Clone)]
pub struct Redactor {
    key: [u8; 32],
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor { key: <hidden> }")
    }
}

impl Redactor {
    /// A redactor with a fixed key (share it between replicas that compare each other's tokens).
    pub fn with_key(key: [u8; 32]) -> Self {
        Redactor { key }
    }

    /// The process-wide redactor, with a random key drawn on first use.
    pub fn global() -> &'static Redactor {
        static GLOBAL: OnceLock<Redactor> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let mut key = [0u8; 32];
            if getrandom::fill(&mut key).is_err() {
                // No OS randomness: fall back to the standard library's per-process random hash seeds.
                use std::hash::{BuildHasher, Hasher};
                for chunk in key.chunks_mut(8) {
                    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                    h.write_usize(chunk.as_ptr() as usize);
                    chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
                }
            }
            Redactor { key }
        })
    }

    /// The token for a secret value.
    pub fn token(&self, bytes: &[u8]) -> String {
        let mac = hmac_sha256(&self.key, bytes);
        format!("{TOKEN_PREFIX}{}", hex(&mac[..TOKEN_HEX / 2]))
    }

    /// Whether `s` is a redaction token (base64 Secret data cannot contain `:`).
    pub fn is_token(s: &str) -> bool {
        s.strip_prefix(TOKEN_PREFIX)
            .is_some_and(|h| h.len() == TOKEN_HEX && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// Token for a base64 `data` value (hashing the decoded bytes, so encodings that differ only in
    /// line breaks agree). Tokens pass through unchanged.
    pub fn token_for_data(&self, v: &Value) -> Value {
        match v {
            Value::String(s) if Redactor::is_token(s) => v.clone(),
            Value::String(s) => {
                let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                match STANDARD.decode(compact.as_bytes()) {
                    Ok(bytes) => Value::String(self.token(&bytes)),
                    Err(_) => Value::String(self.token(s.as_bytes())),
                }
            }
            Value::Null => Value::Null,
            other => Value::String(self.token(other.to_string().as_bytes())),
        }
    }

    /// Redacts a Secret object in place: folds `stringData` into `data` (as the API server does, with
    /// `stringData` winning), replaces every `data` value by its token, and redacts the values inside
    /// the `last-applied-configuration` annotation. Objects of other kinds are left alone.
    pub fn redact_secret(&self, obj: &mut Value) {
        if !is_secret(obj) {
            return;
        }
        let Some(map) = obj.as_object_mut() else { return };
        self.redact_secret_map(map);
        if let Some(annotations) = map
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
            .and_then(Value::as_object_mut)
            && let Some(la) = annotations.get(LAST_APPLIED).and_then(Value::as_str)
        {
            match serde_json::from_str::<Value>(la) {
                Ok(mut applied) => {
                    if let Some(m) = applied.as_object_mut() {
                        self.redact_secret_map(m);
                    }
                    annotations.insert(LAST_APPLIED.into(), Value::String(applied.to_string()));
                }
                Err(_) => {
                    // Cannot be sure what it holds: drop it rather than risk a leak.
                    annotations.remove(LAST_APPLIED);
                }
            }
        }
    }

    fn redact_secret_map(&self, map: &mut Map<String, Value>) {
        let string_data = map.remove("stringData");
        let mut data = match map.remove("data") {
            Some(Value::Object(d)) => d,
            _ => Map::new(),
        };
        for v in data.values_mut() {
            *v = self.token_for_data(v);
        }
        if let Some(Value::Object(sd)) = string_data {
            for (k, v) in sd {
                let bytes = match &v {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Null => Vec::new(),
                    other => other.to_string().into_bytes(),
                };
                data.insert(k, Value::String(self.token(&bytes)));
            }
        }
        if !data.is_empty() {
            map.insert("data".into(), Value::Object(data));
        }
    }
}

/// Whether an object is a core/v1 Secret.
pub fn is_secret(obj: &Value) -> bool {
    obj.get("kind").and_then(Value::as_str) == Some("Secret")
        && obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|a| a == "v1")
}

fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new().chain_update(ipad).chain_update(msg).finalize();
    let outer = Sha256::new().chain_update(opad).chain_update(inner).finalize();
    outer.into()
}

/// Hex SHA-256 of some bytes (for stable ids; not for secrets).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hmac_matches_rfc4231_case_2_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; with the key zero-padded to 32 bytes HMAC is the same.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, b"what do ya want for nothing?");
        let hex = hex(&mac);
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn string_data_and_data_agree() {
        let r = Redactor::with_key([1; 32]);
        let mut a = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}});
        let mut b =
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}});
        r.redact_secret(&mut a);
        r.redact_secret(&mut b);
        assert_eq!(a["data"], b["data"]);
        // idempotent
        let before = b.clone();
        r.redact_secret(&mut b);
        assert_eq!(before, b);
    }

    #[test]
    fn last_applied_is_redacted() {
        let r = Redactor::with_key([2; 32]);
        let la = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "c2VjcmV0"}});
        let mut s = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "annotations": {LAST_APPLIED: la.to_string()}}, "data": {"pw": "c2VjcmV0"}});
        r.redact_secret(&mut s);
        let text = s.to_string();
        assert!(!text.contains("c2VjcmV0"), "{text}");
        let mut broken = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "annotations": {LAST_APPLIED: "{not json c2VjcmV0"}}});
        r.redact_secret(&mut broken);
        assert!(!broken.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn other_kinds_untouched() {
        let r = Redactor::with_key([3; 32]);
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}});
        r.redact_secret(&mut cm);
        assert_eq!(cm["data"]["a"], "b");
    }
}
