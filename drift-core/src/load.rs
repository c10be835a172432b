//! Loading resources from YAML and JSON: multi-document streams, `kind: List`, files, directories and
//! readers such as stdin.
//!
//! Loading never stops at the first broken document: every document that parses becomes a
//! [`Resource`], every one that does not becomes a [`LoadError`] naming the source, the document and
//! the reason.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::model::{ObjectError, Resource, json_type};

/// Deepest nesting accepted in a document. YAML input is already limited to 64 levels by the parser's
/// budget and JSON to 128 by serde_json; this bound keeps every recursive walk in the engine safe.
pub const MAX_DEPTH: usize = 128;

/// Why a document did not load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file, directory or stream could not be read.
    #[error("{source_name}: {error}")]
    Io {
        /// The file or stream name.
        source_name: String,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// A document is not valid YAML or JSON.
    #[error("{source_name}: document {index} (line {line}): {reason}")]
    Syntax {
        /// The file or stream name.
        source_name: String,
        /// Zero-based position of the document among the non-empty documents of the source.
        index: usize,
        /// One-based line in the source where the error was found (or where the document starts).
        line: u64,
        /// What the parser objected to.
        reason: String,
    },
    /// A document parsed but is not a Kubernetes object.
    #[error("{source_name}: document {index}{}: {error}", item.map(|i| format!(" item {i}")).unwrap_or_default())]
    NotAnObject {
        /// The file or stream name.
        source_name: String,
        /// Zero-based position of the document.
        index: usize,
        /// Zero-based position inside a `kind: List`, when the document is a list.
        item: Option<usize>,
        /// What is wrong with it.
        #[source]
        error: ObjectError,
    },
}

impl LoadError {
    /// The file or stream the error is about.
    pub fn source_name(&self) -> &str {
        match self {
            LoadError::Io { source_name, .. }
            | LoadError::Syntax { source_name, .. }
            | LoadError::NotAnObject { source_name, .. } => source_name,
        }
    }
}

/// The result of loading: the resources that loaded and the errors for those that did not.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Resources in input order.
    pub resources: Vec<Resource>,
    /// One error per document (or file) that did not load.
    pub errors: Vec<LoadError>,
}

impl Loaded {
    /// Appends another load result.
    pub fn extend(&mut self, other: Loaded) {
        self.resources.extend(other.resources);
        self.errors.extend(other.errors);
    }
}

/// The YAML budget for a document of `len` bytes: without aliases a document has fewer values than
/// bytes, so at most `len + 10,000` values are allowed — aliases may add a little, never multiply a
/// small input into megabytes of objects (a "billion laughs" document is an error naming the budget).
fn yaml_options(len: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = len.saturating_add(10_000);
    budget.max_aliases = 1_000;
    budget.max_recorded_anchor_events = 20_000;
    budget.max_recorded_anchor_bytes = 4 * 1024 * 1024;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// How documents are loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Drop what the engine never reads as each object is parsed ([`compact_object`]): lists of
    /// live objects then take a fraction of the memory, item by item for JSON lists. (Whether a
    /// JSON document is a list is known only at its end, and `kubectl -o json` writes `items` before
    /// `kind`: the elements of a top-level `items` array are compacted as they are read in any
    /// object — no built-in kind has such a field.)
    pub compact: bool,
}

impl LoadOptions {
    /// Loads compactly.
    pub fn compact() -> Self {
        LoadOptions { compact: true }
    }
}

/// Drops from an object what the diff engine never reads, without changing any verdict: `status`,
/// the `managedFields` entries of the status subresource and the `f:status` part of the others, and
/// the content of the last-applied annotation beyond which fields it names
/// ([`crate::shrink_last_applied`]).
pub fn compact_object(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else { return };
    map.remove("status");
    if let Some(Value::Array(entries)) = map.get_mut("metadata").and_then(|m| m.get_mut("managedFields")) {
        entries.retain_mut(|e| {
            if e.get("subresource").and_then(Value::as_str) == Some("status") {
                return false;
            }
            if let Some(f) = e.get_mut("fieldsV1").and_then(Value::as_object_mut) {
                f.remove("f:status");
                return !f.is_empty();
            }
            true
        });
    }
    crate::shrink_last_applied(obj);
}

/// The scalar `visit_*` methods of a visitor producing a [`Value`].
macro_rules! scalar_visits {
    () => {
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
    };
}

/// A top-level document parsed with its `items` (a list) compacted one by one as they are read, so
/// a large list never stands in memory at full size.
struct CompactValue(Value);

impl<'de> serde::Deserialize<'de> for CompactValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Top;
        impl<'de> serde::de::Visitor<'de> for Top {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Kubernetes object or list")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let v = if key == "items" {
                        map.next_value::<CompactItems>()?.0
                    } else {
                        map.next_value::<Value>()?
                    };
                    out.insert(key, v);
                }
                Ok(Value::Object(out))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Value>()? {
                    out.push(v);
                }
                Ok(Value::Array(out))
            }
            scalar_visits!();
        }
        d.deserialize_any(Top).map(CompactValue)
    }
}

/// The `items` of a list, each compacted right after it is parsed.
struct CompactItems(Value);

impl<'de> serde::Deserialize<'de> for CompactItems {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> serde::de::Visitor<'de> for Items {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list's items")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(mut v) = seq.next_element::<Value>()? {
                    compact_object(&mut v);
                    out.push(v);
                }
                Ok(Value::Array(out))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
                serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
            scalar_visits!();
        }
        d.deserialize_any(Items).map(CompactItems)
    }
}

/// Parses YAML or JSON text holding one or more documents.
///
/// ```
/// let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [\n---\n\
///             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n";
/// let loaded = drift_core::parse_documents("example.yaml", text);
/// assert_eq!(loaded.resources.len(), 2);
/// assert_eq!(loaded.errors.len(), 1);
/// assert!(loaded.errors[0].to_string().starts_with("example.yaml: document 1 (line 5)"));
/// ```
pub fn parse_documents(source_name: &str, text: &str) -> Loaded {
    parse_documents_with(source_name, text, LoadOptions::default())
}

/// [`parse_documents`] with options.
pub fn parse_documents_with(source_name: &str, text: &str, options: LoadOptions) -> Loaded {
    let mut out = Loaded::default();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if options.compact {
            parse_json_stream_compact(source_name, trimmed, &mut out);
        } else {
            parse_json_stream(source_name, trimmed, &mut out);
        }
        return out;
    }
    for (index, (line, doc)) in split_yaml_documents(text).into_iter().enumerate() {
        match serde_saphyr::from_str_with_options::<Value>(doc, yaml_options(doc.len())) {
            Ok(mut value) => {
                if options.compact {
                    compact_document(&mut value);
                }
                push_value(source_name, index, value, &mut out);
            }
            Err(e) => {
                let rel = e.location().map(|l| l.line()).filter(|l| *l > 0).unwrap_or(1);
                out.errors.push(LoadError::Syntax {
                    source_name: source_name.to_string(),
                    index,
                    line: line + rel - 1,
                    reason: yaml_reason(&e.to_string()),
                });
            }
        }
    }
    out
}

/// Compacts a document: the object, or each item of a list.
pub(crate) fn compact_document(value: &mut Value) {
    if is_list(value) {
        if let Some(Value::Array(items)) = value.get_mut("items") {
            items.iter_mut().for_each(compact_object);
        }
    } else {
        compact_object(value);
    }
}

fn parse_json_stream(source_name: &str, text: &str, out: &mut Loaded) {
    json_stream::<Value>(source_name, text, out, |v| v);
}

fn parse_json_stream_compact(source_name: &str, text: &str, out: &mut Loaded) {
    json_stream::<CompactValue>(source_name, text, out, |CompactValue(mut value)| {
        // List items were compacted as they were read; a single object is compacted now.
        if !is_list(&value) {
            compact_object(&mut value);
        }
        value
    });
}

/// Reads a stream of JSON documents, each turned into a value by `finish`.
fn json_stream<T: serde::de::DeserializeOwned>(
    source_name: &str,
    text: &str,
    out: &mut Loaded,
    finish: impl Fn(T) -> Value,
) {
    let stream = serde_json::Deserializer::from_str(text).into_iter::<T>();
    for (index, doc) in stream.enumerate() {
        match doc {
            Ok(doc) => push_value(source_name, index, finish(doc), out),
            Err(e) => {
                // A JSON stream cannot be resynchronised after a syntax error: report and stop.
                out.errors.push(LoadError::Syntax {
                    source_name: source_name.to_string(),
                    index,
                    line: e.line() as u64,
                    reason: e.to_string(),
                });
                break;
            }
        }
    }
}

/// Reduces a serde-saphyr error message (which carries a source snippet) to its first line, without
/// the `error: line N column M:` prefix whose line is relative to the document.
fn yaml_reason(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.split_once(": ") {
        Some((loc, rest)) if loc.starts_with("line ") => rest.to_string(),
        _ => first.to_string(),
    }
}

/// Splits a YAML stream into documents on `---` lines (as the Kubernetes YAML reader does), skipping
/// empty ones. Returns each document with the one-based line it starts on.
fn split_yaml_documents(text: &str) -> Vec<(u64, &str)> {
    fn push<'t>(text: &'t str, from: usize, to: usize, line: u64, docs: &mut Vec<(u64, &'t str)>) {
        let doc = &text[from..to];
        if doc.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "..."
        }) {
            docs.push((line, doc));
        }
    }
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1u64;
    let mut offset = 0usize;
    for (line_no, line) in (1u64..).zip(text.split_inclusive('\n')) {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_separator = bare == "---"
            || ((bare.starts_with("--- ") || bare.starts_with("---\t"))
                && bare[3..].trim_start().starts_with('#'));
        if is_separator || bare == "..." {
            push(text, start, offset, start_line, &mut docs);
            start = offset + line.len();
            start_line = line_no + 1;
        }
        offset += line.len();
    }
    push(text, start, text.len(), start_line, &mut docs);
    docs
}

pub(crate) fn push_value(source_name: &str, index: usize, value: Value, out: &mut Loaded) {
    if value.is_null() {
        return; // an empty document
    }
    if is_list(&value) {
        let Value::Object(mut map) = value else { return };
        let list_api = map.get("apiVersion").and_then(Value::as_str).map(str::to_string);
        let list_kind = map.get("kind").and_then(Value::as_str).map(str::to_string);
        // `kubectl get -o yaml` prints `kind: List` whose items carry their own apiVersion and kind;
        // a raw API list (`DeploymentList`) omits them from items.
        let item_kind = list_kind
            .as_deref()
            .and_then(|k| k.strip_suffix("List"))
            .filter(|k| !k.is_empty());
        let items = match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        for (i, mut item) in items.into_iter().enumerate() {
            if let Some(obj) = item.as_object_mut()
                && let (Some(api), Some(kind)) = (&list_api, item_kind)
            {
                obj.entry("apiVersion")
                    .or_insert_with(|| Value::String(api.clone()));
                obj.entry("kind")
                    .or_insert_with(|| Value::String(kind.to_string()));
            }
            match Resource::from_value(item) {
                Ok(r) => out.resources.push(r),
                Err(error) => out.errors.push(LoadError::NotAnObject {
                    source_name: source_name.to_string(),
                    index,
                    item: Some(i),
                    error,
                }),
            }
        }
        return;
    }
    match Resource::from_value(value) {
        Ok(r) => out.resources.push(r),
        Err(error) => out.errors.push(LoadError::NotAnObject {
            source_name: source_name.to_string(),
            index,
            item: None,
            error,
        }),
    }
}

fn is_list(v: &Value) -> bool {
    let Some(map) = v.as_object() else { return false };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    kind.ends_with("List")
        && map.get("items").is_some_and(|i| i.is_array() || i.is_null())
        && map.get("metadata").and_then(|m| m.get("name")).is_none()
}

/// Loads a file, or every `.yaml`, `.yml` and `.json` file under a directory (recursively, in path
/// order, skipping hidden entries). `-` reads standard input.
pub fn load_path(path: &Path) -> Loaded {
    load_path_with(path, LoadOptions::default())
}

/// [`load_path`] with options.
pub fn load_path_with(path: &Path, options: LoadOptions) -> Loaded {
    if path == Path::new("-") {
        return load_reader_with("<stdin>", std::io::stdin().lock(), options);
    }
    let mut out = Loaded::default();
    let display = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(error) => {
            out.errors.push(LoadError::Io {
                source_name: display,
                error,
            });
            return out;
        }
    };
    if meta.is_dir() {
        let mut files = Vec::new();
        if let Err(error) = collect_manifest_files(path, &mut files) {
            out.errors.push(LoadError::Io {
                source_name: display,
                error,
            });
        }
        files.sort();
        for f in files {
            out.extend(load_file(&f, options));
        }
    } else {
        out.extend(load_file(path, options));
    }
    out
}

fn load_file(path: &Path, options: LoadOptions) -> Loaded {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => parse_bytes(&name, &bytes, options),
        Err(error) => Loaded {
            resources: Vec::new(),
            errors: vec![LoadError::Io {
                source_name: name,
                error,
            }],
        },
    }
}

/// Reads a whole stream (for example standard input) and parses it.
pub fn load_reader(source_name: &str, reader: impl Read) -> Loaded {
    load_reader_with(source_name, reader, LoadOptions::default())
}

/// [`load_reader`] with options.
pub fn load_reader_with(source_name: &str, mut reader: impl Read, options: LoadOptions) -> Loaded {
    let mut bytes = Vec::new();
    match reader.read_to_end(&mut bytes) {
        Ok(_) => parse_bytes(source_name, &bytes, options),
        Err(error) => Loaded {
            resources: Vec::new(),
            errors: vec![LoadError::Io {
                source_name: source_name.to_string(),
                error,
            }],
        },
    }
}

pub(crate) fn parse_bytes(source_name: &str, bytes: &[u8], options: LoadOptions) -> Loaded {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_documents_with(source_name, text, options),
        Err(e) => Loaded {
            resources: Vec::new(),
            errors: vec![LoadError::Syntax {
                source_name: source_name.to_string(),
                index: 0,
                line: 1 + bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() as u64,
                reason: "input is not valid UTF-8".to_string(),
            }],
        },
    }
}

/// The manifest files (`.yaml`, `.yml`, `.json`) under a directory, sorted: hidden entries are skipped
/// and symbolic links to directories are not followed, so a ConfigMap-style mount (`..data` and a
/// hidden timestamped directory) gives each file once and a link loop ends; links to files are read.
///
/// # Errors
/// The directory cannot be read.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect_manifest_files(dir, &mut out)?;
    out.sort();
    Ok(out)
}

fn collect_manifest_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let ty = entry.file_type()?;
        if ty.is_dir() {
            collect_manifest_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Depth of a JSON value (a scalar has depth 1). Iterative, so it is safe on any input.
pub fn depth(value: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    max
}

/// Checks that a value is an object no deeper than [`MAX_DEPTH`], for callers that build values
/// themselves instead of parsing them.
pub fn check_shape(value: &Value) -> Result<(), String> {
    if !value.is_object() {
        return Err(format!("not an object (found {})", json_type(value)));
    }
    let d = depth(value);
    if d > MAX_DEPTH {
        return Err(format!("nested {d} levels deep; the limit is {MAX_DEPTH}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn compact_loading_drops_what_is_never_compared() {
        let item = |n: u32| {
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("d{n}"), "namespace": "x", "managedFields": [
                    {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}, "f:status": {}}},
                    {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}}]},
                "spec": {"replicas": n}, "status": {"replicas": n}})
        };
        let list =
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [item(1), item(2)]}).to_string();
        let single = item(3).to_string();
        let odd = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "items": [1, "a", null, {"status": 1}]}"#;
        let text = format!("{list}\n{single}\n{odd}");
        let compact = parse_documents_with("t.json", &text, LoadOptions::compact());
        let full = parse_documents("t.json", &text);
        assert!(compact.errors.is_empty(), "{:?}", compact.errors);
        assert_eq!(compact.resources.len(), 4);
        assert_eq!(full.resources.len(), 4);
        for r in &compact.resources[..3] {
            assert!(r.object.get("status").is_none());
            let mf = r.object["metadata"]["managedFields"]
                .as_array()
                .expect("managedFields");
            assert_eq!(mf.len(), 1, "the status entry is gone");
            assert!(mf[0]["fieldsV1"].get("f:status").is_none());
            assert_eq!(mf[0]["fieldsV1"]["f:spec"], serde_json::json!({"f:replicas": {}}));
        }
        assert!(full.resources[0].object.get("status").is_some());
        // A field named `items` in an object that is not a list keeps its values.
        assert_eq!(
            compact.resources[3].object["items"],
            serde_json::json!([1, "a", null, {}])
        );
    }

    use super::*;

    #[test]
    fn aliases_cannot_amplify_a_small_input() {
        // 99 aliases of a 1,000-item anchor: ~6 KB of text, ~100,000 values once expanded.
        let items: Vec<String> = (0..1000).map(|i| format!("v{i}")).collect();
        let mut text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bomb}}\nx: &a [{}]\ny:\n",
            items.join(", ")
        );
        for _ in 0..99 {
            text.push_str("- *a\n");
        }
        let l = parse_documents("bomb.yaml", &text);
        assert!(l.resources.is_empty(), "expanded instead of refused");
        assert_eq!(l.errors.len(), 1);
        assert!(l.errors[0].to_string().contains("bomb.yaml"), "{}", l.errors[0]);
        // A few aliases, as real manifests use them, still load.
        let ok = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: &d {k: v}\nbinaryData: *d\n";
        assert_eq!(parse_documents("ok.yaml", ok).resources.len(), 1);
    }

    #[test]
    fn multi_document_with_a_broken_one() {
        let text = "---\n# comment only\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: [\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n";
        let l = parse_documents("f.yaml", text);
        assert_eq!(
            l.resources
                .iter()
                .map(|r| r.key.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "s"]
        );
        assert_eq!(l.errors.len(), 1);
        let msg = l.errors[0].to_string();
        assert!(msg.starts_with("f.yaml: document 1 (line 10)"), "{msg}");
    }

    #[test]
    fn missing_name_names_document() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n";
        let l = parse_documents("x.yaml", text);
        assert_eq!(
            l.errors[0].to_string(),
            "x.yaml: document 0: missing or non-string field `metadata.name`"
        );
    }

    #[test]
    fn kubectl_list_and_raw_api_list() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"x"}},
            {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","namespace":"x"}}]}"#;
        let l = parse_documents("-", text);
        assert_eq!(l.resources.len(), 2);
        assert_eq!(l.resources[1].key.group, "apps");
        let raw = r#"{"apiVersion":"apps/v1","kind":"DeploymentList","metadata":{"resourceVersion":"1"},
            "items":[{"metadata":{"name":"d","namespace":"x"}}]}"#;
        let l = parse_documents("-", raw);
        assert_eq!(l.resources[0].key.kind, "Deployment");
        assert!(l.errors.is_empty());
    }

    #[test]
    fn list_items_errors_name_item() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- kind: ConfigMap\n";
        let l = parse_documents("l.yaml", text);
        assert_eq!(l.resources.len(), 1);
        assert_eq!(
            l.errors[0].to_string(),
            "l.yaml: document 0 item 1: missing or non-string field `apiVersion`"
        );
    }

    #[test]
    fn deep_yaml_is_an_error_not_a_crash() {
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\ndata: {}{}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        let l = parse_documents("deep.yaml", &text);
        assert!(l.resources.is_empty());
        assert_eq!(l.errors.len(), 1);
    }

    #[test]
    fn deep_json_is_an_error_not_a_crash() {
        let text = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let l = parse_documents("deep.json", &text);
        assert!(l.resources.is_empty());
        assert_eq!(l.errors.len(), 1);
    }

    #[test]
    fn separator_with_comment_and_document_end() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n--- # next\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n...\n";
        let l = parse_documents("f", text);
        assert_eq!(l.resources.len(), 2, "{:?}", l.errors);
    }

    #[test]
    fn depth_is_iterative() {
        let mut v = Value::Null;
        for _ in 0..10 {
            v = Value::Array(vec![v]);
        }
        assert_eq!(depth(&v), 11);
    }
}
