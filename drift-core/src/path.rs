//! Field paths: a JSON Pointer into the live object plus a readable form that names list elements by
//! their keys, and path patterns that select them.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A map key.
    Field(String),
    /// A position in a list without keys.
    Index(usize),
    /// An element of a keyed list, named by its key fields (e.g. `name=web`). `index` is its position
    /// in the live list, or `None` when the element is missing from live.
    Key {
        /// Key field names and values, in key order.
        fields: Vec<(String, Value)>,
        /// Position in the live list.
        index: Option<usize>,
    },
}

/// A location in an object: a JSON Pointer into the live object (usable in a JSON Patch) and a readable
/// form with list keys, e.g. `spec.template.spec.containers[name=web].ports[containerPort=8080,protocol=TCP]`.
///
/// For an element missing from a live list the pointer ends in `/-` (the append position).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

impl FieldPath {
    /// The empty path (the whole object).
    pub fn root() -> Self {
        FieldPath { segments: Vec::new() }
    }

    /// Builds a path from segments.
    pub fn from_segments(segments: Vec<Segment>) -> Self {
        FieldPath { segments }
    }

    /// A path of map keys only, e.g. `FieldPath::fields(["spec", "replicas"])`.
    pub fn fields<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        FieldPath {
            segments: names.into_iter().map(|n| Segment::Field(n.to_string())).collect(),
        }
    }

    /// The segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Appends a segment.
    pub fn push(&mut self, seg: Segment) {
        self.segments.push(seg);
    }

    /// The JSON Pointer into the live object.
    pub fn pointer(&self) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            out.push('/');
            match seg {
                Segment::Field(f) => escape_pointer_token(f, &mut out),
                Segment::Index(i) => {
                    let _ = write!(out, "{i}");
                }
                Segment::Key { index: Some(i), .. } => {
                    let _ = write!(out, "{i}");
                }
                Segment::Key { index: None, .. } => out.push('-'),
            }
        }
        out
    }

    /// The readable form.
    pub fn readable(&self) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Field(f) => {
                    if is_plain_name(f) {
                        if !out.is_empty() {
                            out.push('.');
                        }
                        out.push_str(f);
                    } else {
                        let _ = write!(out, "[{}]", serde_json::Value::String(f.clone()));
                    }
                }
                Segment::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
                Segment::Key { fields, .. } => {
                    out.push('[');
                    for (n, (k, v)) in fields.iter().enumerate() {
                        if n > 0 {
                            out.push(',');
                        }
                        out.push_str(k);
                        out.push('=');
                        push_key_value(v, &mut out);
                    }
                    out.push(']');
                }
            }
        }
        out
    }

    /// Rebuilds a path from its readable form and pointer (as stored in drift records).
    ///
    /// # Errors
    /// [`PatternError`] when the readable form is malformed or does not line up with the pointer.
    pub fn parse_readable(readable: &str, pointer: &str) -> Result<FieldPath, PatternError> {
        let err = |reason: &str| PatternError {
            pattern: readable.to_string(),
            reason: reason.to_string(),
        };
        let tokens = pointer_tokens(pointer);
        let mut segments = Vec::new();
        let bytes = readable.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'.' => i += 1,
                b'[' => {
                    let rest = &readable[i + 1..];
                    if rest.starts_with('"') {
                        let mut de = serde_json::Deserializer::from_str(rest).into_iter::<String>();
                        let name = de
                            .next()
                            .and_then(Result::ok)
                            .ok_or_else(|| err("bad quoted field"))?;
                        let used = de.byte_offset();
                        if !rest[used..].starts_with(']') {
                            return Err(err("expected `]` after a quoted field"));
                        }
                        segments.push(Segment::Field(name));
                        i += 1 + used + 1;
                    } else {
                        let end = rest.find(']').ok_or_else(|| err("`[` without `]`"))?;
                        let inner = &rest[..end];
                        let token = tokens.get(segments.len());
                        if let Ok(n) = inner.parse::<usize>() {
                            segments.push(Segment::Index(n));
                        } else {
                            let mut fields = Vec::new();
                            for pair in inner.split(',') {
                                let (k, v) = pair
                                    .split_once('=')
                                    .ok_or_else(|| err("key selector without `=`"))?;
                                let value = match serde_json::from_str::<Value>(v) {
                                    Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => v,
                                    _ => Value::String(v.to_string()),
                                };
                                fields.push((k.to_string(), value));
                            }
                            let index = token.and_then(|t| t.parse::<usize>().ok());
                            segments.push(Segment::Key { fields, index });
                        }
                        i += 1 + end + 1;
                    }
                }
                _ => {
                    let start = i;
                    while i < bytes.len() && bytes[i] != b'.' && bytes[i] != b'[' {
                        i += 1;
                    }
                    segments.push(Segment::Field(readable[start..i].to_string()));
                }
            }
        }
        if !pointer.is_empty() && tokens.len() != segments.len() {
            return Err(err("readable path and pointer have different lengths"));
        }
        Ok(FieldPath { segments })
    }

    /// Whether `self` is `other` or lies under it.
    pub fn starts_with(&self, other: &FieldPath) -> bool {
        self.segments.len() >= other.segments.len()
            && self.segments.iter().zip(&other.segments).all(|(a, b)| a == b)
    }

    /// The last map key of the path, if the path ends in one.
    pub fn last_field(&self) -> Option<&str> {
        match self.segments.last() {
            Some(Segment::Field(f)) => Some(f),
            _ => None,
        }
    }
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$')
}

pub(crate) fn push_key_value(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Null => out.push_str("null"),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Escapes one JSON Pointer token (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn escape_pointer_token(token: &str, out: &mut String) {
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// Splits a JSON Pointer into unescaped tokens.
pub fn pointer_tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.readable())
    }
}

/// Serialized as `{"pointer": ..., "field": ...}`.
impl Serialize for FieldPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("FieldPath", 2)?;
        st.serialize_field("pointer", &self.pointer())?;
        st.serialize_field("field", &self.readable())?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Repr {
            pointer: String,
        }
        let r = Repr::deserialize(d)?;
        Ok(FieldPath {
            segments: pointer_tokens(&r.pointer)
                .into_iter()
                .map(|t| match t.parse::<usize>() {
                    Ok(i) => Segment::Index(i),
                    Err(_) => Segment::Field(t),
                })
                .collect(),
        })
    }
}

/// One step of a [`PathPattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternSegment {
    /// A map key, or a list position when it is a number.
    Field(String),
    /// `*`: any single step.
    Any,
    /// `**`: any number of steps, including none.
    AnyDepth,
    /// `[k=v,...]`: a keyed list element whose key fields include these values.
    Key(Vec<(String, String)>),
}

/// A pattern over field paths in JSON Pointer syntax, with three extensions:
/// `*` matches one step, `**` any number of steps, and `[name=web]` (or `[containerPort=80,protocol=TCP]`)
/// matches a keyed list element by its key fields.
///
/// A pattern *covers* a path when it matches the path or one of its ancestors, so
/// `/spec/template/spec/containers/*/env/[name=TOKEN]` covers everything inside that env var.
///
/// ```
/// use drift_core::path::{FieldPath, PathPattern, Segment};
/// use serde_json::json;
/// let p = PathPattern::parse("/spec/template/spec/containers/[name=web]/image").unwrap();
/// let path = FieldPath::from_segments(vec![
///     Segment::Field("spec".into()), Segment::Field("template".into()), Segment::Field("spec".into()),
///     Segment::Field("containers".into()),
///     Segment::Key { fields: vec![("name".into(), json!("web"))], index: Some(0) },
///     Segment::Field("image".into()),
/// ]);
/// assert!(p.covers(&path));
/// assert!(PathPattern::parse("/spec/template/spec/containers/0").unwrap().covers(&path));
/// assert!(PathPattern::parse("/spec/**/image").unwrap().covers(&path));
/// assert!(!PathPattern::parse("/spec/replicas").unwrap().covers(&path));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segments: Vec<PatternSegment>,
}

/// Why a path pattern does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path pattern `{pattern}`: {reason}")]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong.
    pub reason: String,
}

impl PathPattern {
    /// Parses a pattern. It must start with `/` (the empty string is the whole object).
    ///
    /// # Errors
    /// [`PatternError`] when the pattern does not start with `/` or a `[...]` selector is malformed.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let err = |reason: &str| PatternError {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        if pattern.is_empty() {
            return Ok(PathPattern {
                source: String::new(),
                segments: Vec::new(),
            });
        }
        if !pattern.starts_with('/') {
            return Err(err("a path pattern is a JSON Pointer and starts with `/`"));
        }
        let mut segments = Vec::new();
        for raw in pattern[1..].split('/') {
            let seg = if raw == "*" {
                PatternSegment::Any
            } else if raw == "**" {
                PatternSegment::AnyDepth
            } else if let Some(inner) = raw.strip_prefix('[') {
                let inner = inner
                    .strip_suffix(']')
                    .ok_or_else(|| err("`[` without a closing `]`"))?;
                let mut pairs = Vec::new();
                for pair in inner.split(',') {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| err("a key selector is `[field=value]`"))?;
                    if k.trim().is_empty() {
                        return Err(err("empty key field name in selector"));
                    }
                    pairs.push((k.trim().to_string(), v.trim().to_string()));
                }
                PatternSegment::Key(pairs)
            } else {
                PatternSegment::Field(raw.replace("~1", "/").replace("~0", "~"))
            };
            segments.push(seg);
        }
        Ok(PathPattern {
            source: pattern.to_string(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches `path` or an ancestor of it.
    pub fn covers(&self, path: &FieldPath) -> bool {
        covers_from(&self.segments, path.segments())
    }

    /// Whether the pattern matches exactly `path` (not an ancestor).
    pub fn matches(&self, path: &FieldPath) -> bool {
        matches_exact(&self.segments, path.segments())
    }
}

fn seg_matches(p: &PatternSegment, s: &Segment) -> bool {
    match (p, s) {
        (PatternSegment::Any, _) => true,
        (PatternSegment::Field(f), Segment::Field(g)) => f == g,
        (PatternSegment::Field(f), Segment::Index(i)) => f.parse::<usize>().ok() == Some(*i),
        (PatternSegment::Field(f), Segment::Key { index: Some(i), .. }) => {
            f.parse::<usize>().ok() == Some(*i)
        }
        (PatternSegment::Key(pairs), Segment::Key { fields, .. }) => pairs.iter().all(|(k, v)| {
            fields.iter().any(|(fk, fv)| {
                fk == k && {
                    let mut s = String::new();
                    push_key_value(fv, &mut s);
                    &s == v
                }
            })
        }),
        _ => false,
    }
}

fn covers_from(pat: &[PatternSegment], path: &[Segment]) -> bool {
    match pat.split_first() {
        None => true,
        Some((PatternSegment::AnyDepth, rest)) => {
            (0..=path.len()).any(|skip| covers_from(rest, &path[skip..]))
        }
        Some((p, rest)) => match path.split_first() {
            Some((s, tail)) => seg_matches(p, s) && covers_from(rest, tail),
            None => false,
        },
    }
}

fn matches_exact(pat: &[PatternSegment], path: &[Segment]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((PatternSegment::AnyDepth, rest)) => {
            (0..=path.len()).any(|skip| matches_exact(rest, &path[skip..]))
        }
        Some((p, rest)) => match path.split_first() {
            Some((s, tail)) => seg_matches(p, s) && matches_exact(rest, tail),
            None => false,
        },
    }
}

impl Serialize for PathPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for PathPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PathPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path() -> FieldPath {
        FieldPath::from_segments(vec![
            Segment::Field("spec".into()),
            Segment::Field("ports".into()),
            Segment::Key {
                fields: vec![("port".into(), json!(443)), ("protocol".into(), json!("UDP"))],
                index: None,
            },
        ])
    }

    #[test]
    fn pointer_and_readable() {
        let p = path();
        assert_eq!(p.pointer(), "/spec/ports/-");
        assert_eq!(p.readable(), "spec.ports[port=443,protocol=UDP]");
        let l = FieldPath::fields(["metadata", "labels", "app.kubernetes.io/name"]);
        assert_eq!(l.pointer(), "/metadata/labels/app.kubernetes.io~1name");
        assert_eq!(l.readable(), "metadata.labels[\"app.kubernetes.io/name\"]");
    }

    #[test]
    fn readable_round_trip() {
        let mut p = path();
        p.push(Segment::Field("app.kubernetes.io/x".into()));
        p.push(Segment::Index(3));
        let back = FieldPath::parse_readable(&p.readable(), &p.pointer()).unwrap();
        assert_eq!(back, p);
        let live = FieldPath::from_segments(vec![
            Segment::Field("containers".into()),
            Segment::Key {
                fields: vec![("name".into(), json!("web"))],
                index: Some(2),
            },
        ]);
        assert_eq!(
            FieldPath::parse_readable(&live.readable(), &live.pointer()).unwrap(),
            live
        );
    }

    #[test]
    fn key_patterns() {
        assert!(
            PathPattern::parse("/spec/ports/[port=443]")
                .unwrap()
                .covers(&path())
        );
        assert!(
            PathPattern::parse("/spec/ports/[port=443,protocol=UDP]")
                .unwrap()
                .matches(&path())
        );
        assert!(
            !PathPattern::parse("/spec/ports/[port=80]")
                .unwrap()
                .covers(&path())
        );
        assert!(PathPattern::parse("/**").unwrap().covers(&path()));
        assert!(PathPattern::parse("").unwrap().covers(&path()));
    }

    #[test]
    fn pattern_errors() {
        assert!(PathPattern::parse("spec/replicas").is_err());
        assert!(PathPattern::parse("/a/[name").is_err());
        assert!(PathPattern::parse("/a/[name]").is_err());
        assert!(PathPattern::parse("/a/[=x]").is_err());
    }
}
