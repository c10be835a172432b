//! Secret redaction: secret values are replaced by keyed hashes before the engine sees them, so no drift,
//! report, patch, log line or prompt can carry one.
//!
//! What is secret is decided by identity, not spelling: every object of kind `Secret` (any apiVersion
//! spelling: `v1`, `V1`, `"v1 "`, `/v1`, `v1beta1`; a wrong one is hashed, never shown), and, in any
//! object, values whose *names* look secret ([`DEFAULT_SENSITIVE_NAMES`], configurable): container `env`
//! values (`DB_PASSWORD`, `STRIPE_API_KEY`) and ConfigMap keys (`auth_token`), in the object and in
//! its `last-applied-configuration` annotation.
//!
//! A value becomes a token `sha256:<16 hex>`: the first 64 bits of HMAC-SHA-256 over the object and
//! field it sits in and the decoded bytes, keyed with the install's key (the daemon keeps one in its
//! state directory or takes `DRIFT_REDACTION_KEY`, so restarts and replicas agree; without one, a
//! per-process random key). Equal values in the same field give equal tokens, so drift is still
//! detected; equal values in different objects do not, and a token does not let anyone confirm a
//! guessed password offline, because the key never leaves the process.
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

use crate::tree::{Shape, Tree, TreeArr, TreeMap};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

const TOKEN_PREFIX: &str = "sha256:";

/// Name fragments that mark a value as secret (compared case-insensitively, ignoring `_`, `-` and
/// `.`): `DB_PASSWORD`, `stripe-api-key`, `auth_token`, `client.secret` all match.
pub const DEFAULT_SENSITIVE_NAMES: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "connectionstring",
];
const TOKEN_HEX: usize = 16;

/// Where a value named like a secret is looked for: a ConfigMap's maps, the containers' env of a pod
/// spec at any of these paths (a workload's template, a CronJob's, a Pod's own).
const CONFIG_MAP_FIELDS: [&str; 2] = ["data", "binaryData"];
const POD_SPECS: [&[&str]; 3] = [
    &["spec", "template", "spec"],
    &["spec", "jobTemplate", "spec", "template", "spec"],
    &["spec"],
];
const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Hashes secret values with the install's key.
#[derive(Clone)]
pub struct Redactor {
    key: [u8; 32],
    /// Normalized name fragments (lower case, alphanumeric only).
    sensitive: Vec<String>,
    /// The fragments as one automaton that reads a text as normalized, byte by byte.
    fragments: Fragments,
}

static GLOBAL: OnceLock<Redactor> = OnceLock::new();

/// Symbols of the automaton: 0 for a byte normalization drops, then `0-9` and `a-z`.
const SYMBOLS: usize = 37;

/// A byte's symbol: 0 when normalization drops it (not an ASCII letter or digit); upper case read
/// as lower case.
const fn symbol(b: u8) -> u8 {
    match b.to_ascii_lowercase() {
        c @ b'0'..=b'9' => c - b'0' + 1,
        c @ b'a'..=b'z' => c - b'a' + 11,
        _ => 0,
    }
}

/// The byte → symbol table.
const SYMBOL_OF: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = symbol(b as u8);
        b += 1;
    }
    t
};

/// Whether a text, normalized (letters and digits only, lower case), contains one of the
/// fragments: an Aho–Corasick automaton, made deterministic, over the symbols, in which a byte
/// normalization drops leaves the state as it is. One table step per byte, nothing allocated: the
/// text is never normalized into a copy (a last-applied annotation runs to kilobytes, and every
/// listed object's is read).
#[derive(Clone)]
struct Fragments {
    /// `next[row + byte]` is the row of the state a byte leads to, a row being a state's number
    /// times 256 (the byte's symbol folded into the table, so that a step is one addition and one
    /// load): state 0 is the start, [`FOUND`] the state of a match (absorbing: a match is all that
    /// is asked).
    next: Vec<u32>,
}

/// The state every match leads to.
const FOUND: u32 = 1;
/// A row's columns: one per byte.
const COLUMNS: usize = 256;
/// Its row.
const FOUND_ROW: u32 = FOUND * COLUMNS as u32;
/// Below this length a text is read as one chain of steps.
const CHAINED: usize = 64;

impl Fragments {
    /// The automaton of normalized, non-empty fragments (none: it never matches).
    fn new(fragments: &[String]) -> Self {
        // The trie: state 0 the root, state 1 the match; `goto` holds the trie's edges (0: none,
        // as no edge leads back to the root).
        let mut goto: Vec<[u32; SYMBOLS]> = vec![[0; SYMBOLS], [FOUND; SYMBOLS]];
        for f in fragments.iter().filter(|f| !f.is_empty()) {
            let mut s = 0usize;
            let bytes = f.as_bytes();
            for (i, &b) in bytes.iter().enumerate() {
                let c = usize::from(symbol(b));
                if s == FOUND as usize {
                    break; // a shorter fragment is a prefix: it matches first
                }
                let last = i + 1 == bytes.len();
                let t = goto[s][c];
                s = if last {
                    goto[s][c] = FOUND;
                    FOUND as usize
                } else if t != 0 {
                    t as usize
                } else {
                    goto.push([0; SYMBOLS]);
                    let n = u32::try_from(goto.len() - 1).unwrap_or(u32::MAX);
                    goto[s][c] = n;
                    n as usize
                };
            }
        }
        // Breadth first: a state's missing edges are its failure state's (complete by then, being
        // shallower); an edge to a state whose failure state is the match leads to the match.
        let mut next: Vec<[u32; SYMBOLS]> = goto.clone();
        let mut fail = vec![0u32; goto.len()];
        let mut queue: std::collections::VecDeque<usize> = goto[0]
            .iter()
            .filter(|&&t| t > FOUND)
            .map(|&t| t as usize)
            .collect();
        while let Some(s) = queue.pop_front() {
            let f = fail[s] as usize;
            for c in 1..SYMBOLS {
                let t = goto[s][c];
                let via = next[f][c];
                if t == 0 {
                    next[s][c] = via;
                } else if t != FOUND {
                    if via == FOUND {
                        next[s][c] = FOUND;
                    } else {
                        fail[t as usize] = via;
                        queue.push_back(t as usize);
                    }
                }
            }
        }
        // A dropped byte keeps the state.
        for (s, row) in next.iter_mut().enumerate() {
            row[0] = u32::try_from(s).unwrap_or(FOUND);
        }
        // Each state's row spelt out per byte.
        Fragments {
            next: next
                .iter()
                .flat_map(|row| SYMBOL_OF.iter().map(|&c| row[usize::from(c)]))
                .map(|s| s.saturating_mul(COLUMNS as u32))
                .collect(),
        }
    }

    /// The row a byte leads to from a row.
    #[inline]
    fn step(&self, row: u32, b: u8) -> u32 {
        self.next
            .get(row as usize + usize::from(b))
            .copied()
            .unwrap_or(FOUND_ROW)
    }

    /// Steps from a row through a text: whether a match is found; with `to_start`, only until
    /// the start state is reached.
    fn run(&self, mut row: u32, text: &[u8], to_start: bool) -> bool {
        for &b in text {
            row = self.step(row, b);
            if row == FOUND_ROW {
                return true;
            }
            if to_start && row == 0 {
                return false;
            }
        }
        false
    }

    /// Whether the text, normalized, contains a fragment.
    ///
    /// A step waits for the one before (a load), so a long text is read as four quarters at once,
    /// four independent chains the processor overlaps. A chain that ends its quarter inside a
    /// partial match goes on into the rest of the text until it is back at the start state (the
    /// automaton's state is the longest end of what was read that could still begin a fragment:
    /// at the start state, no match begins before), so a match across a boundary is found too.
    fn found_in(&self, text: &[u8]) -> bool {
        if text.len() < CHAINED {
            return self.run(0, text, false);
        }
        let q = text.len() / 4;
        let (a, rest) = text.split_at(q);
        let (b, rest) = rest.split_at(q);
        let (c, d) = rest.split_at(q);
        let mut rows = [0u32; 4];
        for (((&x0, &x1), &x2), &x3) in a.iter().zip(b).zip(c).zip(d) {
            rows = [
                self.step(rows[0], x0),
                self.step(rows[1], x1),
                self.step(rows[2], x2),
                self.step(rows[3], x3),
            ];
            if rows.contains(&FOUND_ROW) {
                return true;
            }
        }
        // The last quarter's remainder, then each chain on past its quarter.
        self.run(rows[3], d.get(q..).unwrap_or_default(), false)
            || rows[..3]
                .iter()
                .enumerate()
                .any(|(i, &row)| row != 0 && self.run(row, text.get((i + 1) * q..).unwrap_or_default(), true))
    }
}

fn normalize(name: &str) -> String {
    name.bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect()
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor { key: <hidden> }")
    }
}

impl Redactor {
    /// A redactor with a fixed key (share it between replicas that compare each other's tokens) and the
    /// default sensitive names.
    pub fn with_key(key: [u8; 32]) -> Self {
        let sensitive: Vec<String> = DEFAULT_SENSITIVE_NAMES.iter().map(|s| normalize(s)).collect();
        Redactor {
            key,
            fragments: Fragments::new(&sensitive),
            sensitive,
        }
    }

    /// Replaces the name fragments that mark values as secret.
    #[must_use]
    pub fn with_sensitive_names<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, names: I) -> Self {
        self.sensitive = names
            .into_iter()
            .map(|n| normalize(n.as_ref()))
            .filter(|n| !n.is_empty())
            .collect();
        self.fragments = Fragments::new(&self.sensitive);
        self
    }

    /// Makes this the process-wide redactor. Call it before anything is redacted (at start).
    ///
    /// # Errors
    /// The process-wide redactor was already in use: it is returned unchanged.
    pub fn install_global(self) -> Result<(), Redactor> {
        GLOBAL.set(self)
    }

    /// Whether a field name marks its value as secret.
    pub fn is_sensitive_name(&self, name: &str) -> bool {
        self.fragments.found_in(name.as_bytes())
    }

    /// The process-wide redactor: the one installed at start, else one with a random key drawn on
    /// first use.
    pub fn global() -> &'static Redactor {
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
            Redactor::with_key(key)
        })
    }

    /// The token for a secret value, with no context.
    pub fn token(&self, bytes: &[u8]) -> String {
        self.token_in("", bytes)
    }

    /// The token for a secret value in a context (`Secret/db/password`): the same value elsewhere
    /// gives another token.
    pub fn token_in(&self, context: &str, bytes: &[u8]) -> String {
        let mut msg = Vec::with_capacity(context.len() + 1 + bytes.len());
        msg.extend_from_slice(context.as_bytes());
        msg.push(0);
        msg.extend_from_slice(bytes);
        let mac = hmac_sha256(&self.key, &msg);
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
        self.token_for_data_in("", v)
    }

    /// [`Redactor::token_for_data`] in a context.
    pub fn token_for_data_in(&self, context: &str, v: &Value) -> Value {
        match v {
            Value::String(s) if Redactor::is_token(s) => v.clone(),
            Value::String(s) => {
                let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                match STANDARD.decode(compact.as_bytes()) {
                    Ok(bytes) => Value::String(self.token_in(context, &bytes)),
                    Err(_) => Value::String(self.token_in(context, s.as_bytes())),
                }
            }
            // The API server returns an empty value as `null` (a manifest's `""` reads back so).
            Value::Null => Value::String(self.token_in(context, b"")),
            other => Value::String(self.token_in(context, other.to_string().as_bytes())),
        }
    }

    /// A plain-text value as a token (`stringData`, env values, ConfigMap `data`).
    fn token_for_text_in(&self, context: &str, v: &Value) -> Value {
        match v {
            Value::String(s) if Redactor::is_token(s) => v.clone(),
            Value::String(s) => Value::String(self.token_in(context, s.as_bytes())),
            Value::Null => Value::Null,
            other => Value::String(self.token_in(context, other.to_string().as_bytes())),
        }
    }

    /// Redacts everything secret in an object, in place: a Secret's values ([`Redactor::redact_secret`]),
    /// and in any object the values whose names look secret — container `env` values and ConfigMap
    /// keys — there and in the `last-applied-configuration` annotation.
    pub fn redact(&self, obj: &mut Value) {
        if is_secret(obj) {
            self.redact_secret(obj);
            return;
        }
        // Most objects hold nothing to redact: one look, nothing copied or looked up twice.
        if !self.holds_named_value(&*obj) {
            return;
        }
        let name = obj
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let changed = self.redact_named_values(obj, &kind, &name);
        // The annotation holds the same values as applied: look inside when it may hold one.
        let Some(annotations) = obj
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        let Some(la) = annotations.get(LAST_APPLIED).and_then(Value::as_str) else {
            return;
        };
        if !changed && !self.may_hold_sensitive(la) {
            return;
        }
        match serde_json::from_str::<Value>(la) {
            Ok(mut applied) => {
                if self.redact_named_values(&mut applied, &kind, &name) {
                    annotations.insert(LAST_APPLIED.into(), Value::String(applied.to_string()));
                }
            }
            Err(_) => {
                annotations.remove(LAST_APPLIED);
            }
        }
    }

    /// Cheap pre-check of a text for a sensitive name.
    fn may_hold_sensitive(&self, text: &str) -> bool {
        self.fragments.found_in(text.as_bytes())
    }

    /// Whether a ConfigMap key or a container env variable of the object has a sensitive name: when
    /// not, [`Redactor::redact_named_values`] changes nothing (it looks in the same places).
    fn names_sensitive_value<'a, T: Tree<'a>>(&self, obj: T) -> bool {
        let config_map = Tree::get(obj, "kind").and_then(Tree::as_str) == Some("ConfigMap")
            && CONFIG_MAP_FIELDS
                .iter()
                .any(|f| match Tree::get(obj, f).map(Tree::shape) {
                    Some(Shape::Obj(m)) => m.entries().any(|(k, _)| self.is_sensitive_name(k)),
                    _ => false,
                });
        config_map
            || POD_SPECS
                .iter()
                .filter_map(|path| path.iter().try_fold(obj, |v, f| Tree::get(v, f)))
                .any(|pod| {
                    CONTAINER_LISTS
                        .iter()
                        .any(|list| match Tree::get(pod, list).map(Tree::shape) {
                            Some(Shape::Arr(cs)) => cs.items().any(|c| self.has_sensitive_env(c)),
                            _ => false,
                        })
                })
    }

    /// Whether an env entry's name is sensitive.
    fn is_sensitive_env<'a, T: Tree<'a>>(&self, entry: T) -> bool {
        Tree::get(entry, "name")
            .and_then(Tree::as_str)
            .is_some_and(|n| self.is_sensitive_name(n))
    }

    /// Whether a container has an env entry with a sensitive name.
    fn has_sensitive_env<'a, T: Tree<'a>>(&self, container: T) -> bool {
        match Tree::get(container, "env").map(Tree::shape) {
            Some(Shape::Arr(env)) => env.items().any(|e| self.is_sensitive_env(e)),
            _ => false,
        }
    }

    /// Whether a value under a sensitive name is in the object, or in its last-applied annotation
    /// (may be): when not, redacting an object that is no Secret changes nothing.
    fn holds_named_value<'a, T: Tree<'a>>(&self, obj: T) -> bool {
        self.names_sensitive_value(obj)
            || Tree::get(obj, "metadata")
                .and_then(|m| Tree::get(m, "annotations"))
                .and_then(|a| Tree::get(a, LAST_APPLIED))
                .and_then(Tree::as_str)
                .is_some_and(|la| self.may_hold_sensitive(la))
    }

    /// Whether [`Redactor::redact`] would change an object (in either form): a Secret, a value
    /// under a sensitive name, or a last-applied annotation that may hold one.
    pub(crate) fn would_change<'a, T: Tree<'a>>(&self, obj: T) -> bool {
        Tree::get(obj, "kind")
            .and_then(Tree::as_str)
            .is_some_and(is_secret_kind)
            || self.holds_named_value(obj)
    }

    /// ConfigMap keys and container env values with sensitive names; whether anything changed.
    fn redact_named_values(&self, obj: &mut Value, kind: &str, name: &str) -> bool {
        let mut changed = false;
        if kind == "ConfigMap" {
            for field in CONFIG_MAP_FIELDS {
                if let Some(m) = obj.get_mut(field).and_then(Value::as_object_mut) {
                    for (k, v) in m.iter_mut() {
                        if self.is_sensitive_name(k) && !v.as_str().is_some_and(Redactor::is_token) {
                            let ctx = format!("{kind}/{name}/{field}/{k}");
                            *v = if field == "binaryData" {
                                self.token_for_data_in(&ctx, v)
                            } else {
                                self.token_for_text_in(&ctx, v)
                            };
                            changed = true;
                        }
                    }
                }
            }
        }
        for spec in POD_SPECS {
            let Some(pod) = crate::value::field_path_mut(obj, spec).and_then(Value::as_object_mut) else {
                continue;
            };
            for list in CONTAINER_LISTS {
                let Some(cs) = pod.get_mut(list).and_then(Value::as_array_mut) else {
                    continue;
                };
                for c in cs.iter_mut() {
                    // Most containers have no sensitive env name: one look, nothing copied.
                    if !self.has_sensitive_env(&*c) {
                        continue;
                    }
                    let cname = c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) else {
                        continue;
                    };
                    for e in env.iter_mut() {
                        if !self.is_sensitive_env(&*e) {
                            continue;
                        }
                        let en = e
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        if let Some(v) = e.get_mut("value")
                            && !v.as_str().is_some_and(Redactor::is_token)
                        {
                            *v = self.token_for_text_in(&format!("{kind}/{name}/{cname}/env/{en}"), v);
                            changed = true;
                        }
                    }
                }
            }
        }
        changed
    }

    /// Redacts a Secret object in place: folds `stringData` into `data` (as the API server does, with
    /// `stringData` winning), replaces every `data` value by its token, and redacts the values inside
    /// the `last-applied-configuration` annotation. Objects of other kinds are left alone.
    pub fn redact_secret(&self, obj: &mut Value) {
        if !is_secret(obj) {
            return;
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(map) = obj.as_object_mut() else { return };
        self.redact_secret_map(map, &name);
        if let Some(annotations) = map
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
            .and_then(Value::as_object_mut)
            && let Some(la) = annotations.get(LAST_APPLIED).and_then(Value::as_str)
        {
            match serde_json::from_str::<Value>(la) {
                Ok(mut applied) => {
                    if let Some(m) = applied.as_object_mut() {
                        self.redact_secret_map(m, &name);
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

    fn redact_secret_map(&self, map: &mut Map<String, Value>, name: &str) {
        let string_data = map.remove("stringData");
        let mut data = match map.remove("data") {
            Some(Value::Object(d)) => d,
            // Not a map: whatever it is could hold a secret; it is dropped, never shown.
            _ => Map::new(),
        };
        for (k, v) in data.iter_mut() {
            *v = self.token_for_data_in(&format!("Secret/{name}/{k}"), v);
        }
        if let Some(Value::Object(sd)) = string_data {
            for (k, v) in sd {
                let bytes = match &v {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Null => Vec::new(),
                    other => other.to_string().into_bytes(),
                };
                let t = self.token_in(&format!("Secret/{name}/{k}"), &bytes);
                data.insert(k, Value::String(t));
            }
        }
        if !data.is_empty() {
            map.insert("data".into(), Value::Object(data));
        }
    }
}

/// Whether an object is a Secret, by its kind alone: any apiVersion spelling (`v1`, `V1`, `"v1 "`,
/// `/v1`, `v1beta1`, a wrong group) is treated as one, so a misspelt Secret is hashed, never shown.
pub fn is_secret(obj: &Value) -> bool {
    obj.get("kind")
        .and_then(Value::as_str)
        .is_some_and(is_secret_kind)
}

/// Whether a kind names a Secret (`Secret`, in any case, with surrounding white space).
pub fn is_secret_kind(kind: &str) -> bool {
    kind.trim().eq_ignore_ascii_case("secret")
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
    fn sensitive_names_in_any_spelling_and_length() {
        let r = Redactor::with_key([7; 32]);
        for name in [
            "DB_PASSWORD",
            "stripe-api-key",
            "auth_token",
            "client.secret",
            "Api.Key",
            "x-PassPhrase",
        ] {
            assert!(r.is_sensitive_name(name), "{name}");
        }
        for name in ["PORT", "LOG_LEVEL", "", "__", "TOKYO_REGION"] {
            assert!(!r.is_sensitive_name(name), "{name}");
        }
        // Long names too.
        let long = format!("{}_PASSWORD", "X".repeat(80));
        assert!(r.is_sensitive_name(&long));
        assert!(!r.is_sensitive_name(&"Y".repeat(100)));
        // Non-ASCII is ignored, as in normalize().
        assert!(r.is_sensitive_name("pässword_or_tokén_token"));
    }

    #[test]
    fn the_fragment_scan_agrees_with_a_plain_search() {
        // Overlapping custom fragments, fragments at the end, a fragment longer than the name, names
        // past the stack buffer, texts long enough for the search per fragment: the scan answers as
        // normalize-then-contains would.
        let r = Redactor::with_key([7; 32]).with_sensitive_names(["aab", "ab", "b-c", "xyz", "zz"]);
        let plain = |name: &str| {
            let n = normalize(name);
            !n.is_empty() && r.sensitive.iter().any(|f| n.contains(f.as_str()))
        };
        let alphabet = ["a", "b", "c", "x", "y", "z", "_", "A", "-", "é"];
        let mut names: Vec<String> = vec![
            String::new(),
            "Z".repeat(97),
            format!("{}AB", "q".repeat(120)),
            format!("{}A_B", "q".repeat(400)),
            format!("{}A_C", "q".repeat(400)),
        ];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    names.push(format!("{a}{b}{c}"));
                    names.push(format!("{}{a}{b}{c}", "a".repeat(95)));
                    names.push(format!("{a}{}{b}{c}", "c".repeat(300)));
                }
            }
        }
        for name in &names {
            assert_eq!(r.is_sensitive_name(name), plain(name), "{name:?}");
        }
        assert!(r.is_sensitive_name("A_B"));
        assert!(!r.is_sensitive_name("A_C"));
    }

    #[test]
    fn the_automaton_finds_what_a_search_of_the_normalized_text_finds() {
        // Fragments that overlap, nest, share prefixes and suffixes (a match seen only through a
        // failure link: "xab" holds "ab"), one of one letter, every text over a small alphabet with
        // spellings normalization drops: the automaton answers as normalize-then-contains.
        let sets: [&[&str]; 7] = [
            &["ab", "xaby"],
            &["aab", "ab"],
            &["abab", "bab", "aa"],
            &["b"],
            &["abc", "bcd", "cde"],
            &["ba", "aab", "abba"],
            &["x-A_b", "Y", "-"],
        ];
        let alphabet = ["a", "b", "c", "d", "x", "y", "-", "A", "é"];
        let mut texts = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = texts
                .iter()
                .filter(|t| t.chars().count() == texts.last().map_or(0, |l| l.chars().count()))
                .flat_map(|t| alphabet.iter().map(move |a| format!("{t}{a}")))
                .collect();
            texts.extend(longer);
        }
        for set in sets {
            let r = Redactor::with_key([7; 32]).with_sensitive_names(set.iter().copied());
            for text in &texts {
                let n = normalize(text);
                let plain = r.sensitive.iter().any(|f| n.contains(f.as_str()));
                assert_eq!(r.is_sensitive_name(text), plain, "{set:?} {text:?}");
                assert_eq!(r.may_hold_sensitive(text), plain, "{set:?} {text:?}");
            }
        }
        // Digits are symbols too (names such as `S3_KEY`, `K8S_TOKEN` given as fragments).
        let digits = Redactor::with_key([7; 32]).with_sensitive_names(["s3k", "K8s-2", "9"]);
        let alphabet = ["s", "3", "k", "8", "2", "9", "_", "S", "K"];
        let mut texts = vec![String::new()];
        for len in 1..=5 {
            let longer: Vec<String> = texts
                .iter()
                .filter(|t| t.len() == len - 1)
                .flat_map(|t| alphabet.iter().map(move |a| format!("{t}{a}")))
                .collect();
            texts.extend(longer);
        }
        for text in &texts {
            let n = normalize(text);
            let plain = digits.sensitive.iter().any(|f| n.contains(f.as_str()));
            assert_eq!(digits.is_sensitive_name(text), plain, "{text:?}");
        }
        assert!(digits.is_sensitive_name("MY_K8S_2"));
        assert!(!digits.is_sensitive_name("K8S_3"));

        // Long texts, read as four chains: a fragment at every offset (so across every quarter's
        // boundary), one spelt across a whole quarter of separators, and pseudo-random texts.
        let r = Redactor::with_key([7; 32]);
        let plain = |text: &str| {
            let n = normalize(text);
            r.sensitive.iter().any(|f| n.contains(f.as_str()))
        };
        let mut long: Vec<String> = Vec::new();
        for len in [64, 65, 67, 130, 401] {
            for at in 0..len {
                let mut t: Vec<u8> = b"{\"x\":\"pas-\"}".iter().copied().cycle().take(len).collect();
                for (i, &b) in b"Pass_Word".iter().enumerate() {
                    if let Some(slot) = t.get_mut(at + i) {
                        *slot = b;
                    }
                }
                long.push(String::from_utf8(t).unwrap_or_default());
            }
        }
        long.push(format!(
            "{}pass{}word{}",
            "x".repeat(40),
            "_".repeat(300),
            "-".repeat(50)
        ));
        long.push(format!("{}pass{}wor", "x".repeat(40), "_".repeat(300)));
        let mut seed = 7u64;
        for _ in 0..3000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let len = 64 + (seed >> 40) as usize % 300;
            let text: String = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    char::from(b"passwordtokenAB_-.ecrt\""[(seed >> 33) as usize % 23])
                })
                .collect();
            long.push(text);
        }
        let mut found = 0;
        for text in &long {
            assert_eq!(r.may_hold_sensitive(text), plain(text), "{text:?}");
            found += usize::from(plain(text));
        }
        assert!(
            found > 100 && found < long.len() - 100,
            "{found} of {}",
            long.len()
        );

        // No fragment (every name given normalizes to nothing): nothing is sensitive.
        let none = Redactor::with_key([7; 32]).with_sensitive_names(["--", "é"]);
        assert!(!none.is_sensitive_name("password"));
    }

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
        r.redact(&mut cm);
        assert_eq!(cm["data"]["a"], "b", "a plain key stays readable");
    }

    #[test]
    fn a_secret_is_a_secret_however_its_api_version_is_spelt() {
        let r = Redactor::with_key([4; 32]);
        for api in ["v1", "V1", "v1 ", "/v1", "v1beta1", "apps/v1", ""] {
            let mut s = json!({"apiVersion": api, "kind": "Secret", "metadata": {"name": "db"},
                "data": {"pw": "aHVudGVyMg=="}, "stringData": {"user": "admin-hunter2"}});
            r.redact(&mut s);
            let text = s.to_string();
            assert!(
                !text.contains("aHVudGVyMg") && !text.contains("hunter2"),
                "{api:?}: {text}"
            );
        }
        let mut odd = json!({"apiVersion": "v1", "kind": " secret", "metadata": {"name": "db"}, "data": "aHVudGVyMg=="});
        r.redact(&mut odd);
        assert!(
            !odd.to_string().contains("aHVudGVyMg"),
            "data that is not a map is dropped"
        );
    }

    #[test]
    fn values_named_like_secrets_are_hashed_everywhere() {
        let r = Redactor::with_key([5; 32]);
        let la = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "app",
            "env": [{"name": "DB_PASSWORD", "value": "hunter2"}]}]}}}});
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {LAST_APPLIED: la.to_string()}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "env": [
            {"name": "DB_PASSWORD", "value": "hunter2"},
            {"name": "STRIPE_API_KEY", "value": "sk_live_abc"},
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "DB_PASSWORD_FROM", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}
        ]}]}}}});
        r.redact(&mut d);
        let text = d.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("sk_live_abc"),
            "{text}"
        );
        assert!(text.contains("debug"), "other values stay readable");
        assert!(text.contains("secretKeyRef"), "references are not values");
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
            "data": {"auth_token": "t0k3n", "client.secret": "shh", "color": "blue"}});
        r.redact(&mut cm);
        let text = cm.to_string();
        assert!(
            !text.contains("t0k3n") && !text.contains("shh") && text.contains("blue"),
            "{text}"
        );
        // Idempotent: a redacted object redacts to itself.
        let again = {
            let mut c = cm.clone();
            r.redact(&mut c);
            c
        };
        assert_eq!(again, cm);
        // Configurable.
        let custom = Redactor::with_key([5; 32]).with_sensitive_names(["color"]);
        let mut cm2 = json!({"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"color": "blue", "auth_token": "x"}});
        custom.redact(&mut cm2);
        assert!(!cm2.to_string().contains("blue") && cm2.to_string().contains("\"x\""));
    }

    /// Each place a value named like a secret hides, alone in its object (the quick "nothing to
    /// redact" look must find every one of them).
    #[test]
    fn every_place_a_named_value_hides_is_redacted() {
        let r = Redactor::with_key([7; 32]);
        let env = json!([{"name": "API_TOKEN", "value": "s3cr3t"}]);
        let pod = |list: &str| json!({list: [{"name": "c", "env": env.clone()}]});
        let la = json!({"kind": "Deployment", "spec": {"template": {"spec": pod("containers")}}});
        let cases = [
            json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": pod("containers")}),
            json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": pod("initContainers")}),
            json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": pod("ephemeralContainers")}),
            json!({"kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": pod("initContainers")}}}),
            json!({"kind": "CronJob", "metadata": {"name": "c"},
                "spec": {"jobTemplate": {"spec": {"template": {"spec": pod("containers")}}}}}),
            json!({"kind": "ConfigMap", "metadata": {"name": "m"}, "binaryData": {"api-token": "czNjcjN0"}}),
            // Only the annotation still holds it (the live env was edited away).
            json!({"kind": "Deployment", "metadata": {"name": "d", "annotations": {LAST_APPLIED: la.to_string()}},
                "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}),
        ];
        for mut obj in cases {
            let before = obj.clone();
            r.redact(&mut obj);
            let text = obj.to_string();
            assert!(
                !text.contains("s3cr3t") && !text.contains("czNjcjN0"),
                "{before} -> {text}"
            );
        }
    }

    #[test]
    fn equal_values_in_different_objects_hash_differently_and_keys_persist() {
        let r = Redactor::with_key([6; 32]);
        let secret = |name: &str| {
            let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"pw": "same"}});
            r.redact(&mut s);
            s["data"]["pw"].clone()
        };
        assert_ne!(secret("a"), secret("b"), "the object is part of the hashed input");
        assert_eq!(secret("a"), secret("a"));
        // The same key (a restart, another replica) gives the same token.
        let again = Redactor::with_key([6; 32]);
        let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}, "stringData": {"pw": "same"}});
        again.redact(&mut s);
        assert_eq!(s["data"]["pw"], secret("a"));
    }
}
