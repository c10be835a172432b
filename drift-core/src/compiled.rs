//! The compiled form of a desired object: one contiguous byte string that the diff walks in place.
//!
//! A `serde_json::Value` costs about ten times the JSON it holds, as a tree of scattered
//! allocations; keeping desired objects that way does not fit the detector's memory budget, and
//! keeping them as JSON text means parsing a tree again (and freeing it) for every comparison. The
//! compiled form is read where it lies: nothing is allocated to compare it.
//!
//! Encoding (in-process only, never stored or sent): a node is a tag byte and its payload.
//! `null`, `false`, `true`; a non-negative integer (varint), a negative one (varint of `!n`), a float
//! (8 bytes); a string (varint length, UTF-8 bytes); an array or object (varint element count,
//! 4-byte body length, body). An object's body is its entries in the map's order (sorted), each a
//! key and a node. A key is a varint `k`: even, the `k/2`-th of the field names Kubernetes objects
//! share (a static table, so `metadata` takes one byte); odd, `k/2` bytes of UTF-8 follow. Numbers keep
//! serde_json's variant, so equality is serde_json's, and the encoding is canonical: equal bytes are
//! equal values (the one exception, `0.0` against `-0.0`, only costs a spare comparison).
//!
//! Reading never panics: the bytes are this module's own, and a read past the end (a bug) yields
//! `null` or an empty container rather than a crash.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Number, Value};

/// Field names shared by Kubernetes objects, interned as one-byte keys (the index is the id; order is
/// free, the form is never stored).
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "spec",
    "status",
    "app",
    "selector",
    "matchLabels",
    "template",
    "containers",
    "initContainers",
    "image",
    "ports",
    "containerPort",
    "protocol",
    "port",
    "targetPort",
    "nodePort",
    "env",
    "value",
    "valueFrom",
    "envFrom",
    "resources",
    "requests",
    "limits",
    "cpu",
    "memory",
    "replicas",
    "volumes",
    "volumeMounts",
    "mountPath",
    "readOnly",
    "configMap",
    "secret",
    "secretName",
    "configMapKeyRef",
    "secretKeyRef",
    "key",
    "items",
    "path",
    "data",
    "stringData",
    "binaryData",
    "type",
    "securityContext",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "fsGroup",
    "privileged",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "capabilities",
    "drop",
    "add",
    "readinessProbe",
    "livenessProbe",
    "startupProbe",
    "httpGet",
    "tcpSocket",
    "grpc",
    "exec",
    "command",
    "args",
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "successThreshold",
    "failureThreshold",
    "httpHeaders",
    "serviceAccountName",
    "serviceAccount",
    "imagePullPolicy",
    "imagePullSecrets",
    "nodeSelector",
    "tolerations",
    "affinity",
    "operator",
    "effect",
    "strategy",
    "rollingUpdate",
    "maxSurge",
    "maxUnavailable",
    "terminationGracePeriodSeconds",
    "restartPolicy",
    "dnsPolicy",
    "schedulerName",
    "clusterIP",
    "clusterIPs",
    "sessionAffinity",
    "workingDir",
    "emptyDir",
    "persistentVolumeClaim",
    "claimName",
    "hostPath",
    "storageClassName",
    "accessModes",
    "storage",
    "rules",
    "host",
    "http",
    "paths",
    "backend",
    "service",
    "number",
    "pathType",
    "tls",
    "hosts",
    "ingressClassName",
    "scaleTargetRef",
    "minReplicas",
    "maxReplicas",
    "metrics",
    "resource",
    "target",
    "averageUtilization",
    "schedule",
    "jobTemplate",
    "backoffLimit",
    "completions",
    "parallelism",
    "subjects",
    "roleRef",
    "apiGroup",
    "verbs",
    "apiGroups",
    "resourceNames",
    "podSelector",
    "ingress",
    "egress",
    "from",
    "to",
    "policyTypes",
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "ownerReferences",
    "finalizers",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "minReadySeconds",
    "topologySpreadConstraints",
    "priorityClassName",
    "hostNetwork",
    "subPath",
    "defaultMode",
    "optional",
    "fieldRef",
    "fieldPath",
    "lifecycle",
    "preStop",
    "postStart",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "stdin",
    "tty",
    "version",
    "group",
    "scope",
    "names",
    "plural",
    "singular",
    "versions",
    "served",
    "schema",
    "openAPIV3Schema",
    "properties",
    "required",
    "description",
    "format",
    "default",
    "enum",
    "minimum",
    "maximum",
    "weight",
    "values",
    "matchExpressions",
    "nodeAffinity",
    "podAffinity",
    "podAntiAffinity",
    "topologyKey",
    "labelSelector",
];

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const POS: u8 = 3;
const NEG: u8 = 4;
const FLOAT: u8 = 5;
const STR: u8 = 6;
const ARR: u8 = 7;
const OBJ: u8 = 8;

fn key_ids() -> &'static HashMap<&'static str, usize, foldhash::fast::FixedState> {
    static IDS: OnceLock<HashMap<&'static str, usize, foldhash::fast::FixedState>> = OnceLock::new();
    IDS.get_or_init(|| KEYS.iter().enumerate().map(|(i, k)| (*k, i)).collect())
}

/// A desired object in compiled form.
#[derive(Clone, PartialEq, Eq)]
pub struct Compiled {
    bytes: Box<[u8]>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compiled({} bytes)", self.bytes.len())
    }
}

impl Compiled {
    /// Compiles a value.
    pub fn of(value: &Value) -> Self {
        thread_local! {
            /// Each thread encodes into one buffer, copied out at its exact length: no growing
            /// copies per object, no slack kept.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let copied = |out: &mut Vec<u8>| {
            out.clear();
            encode(value, out);
            let bytes = Box::from(out.as_slice());
            if out.capacity() > 1 << 20 {
                // One huge object does not pin its buffer.
                *out = Vec::new();
            }
            Compiled { bytes }
        };
        SCRATCH
            .try_with(|s| s.try_borrow_mut().ok().map(|mut out| copied(&mut out)))
            .ok()
            .flatten()
            .unwrap_or_else(|| copied(&mut Vec::new()))
    }

    /// Wraps bytes [`Compiled::as_bytes`] gave (reading them never panics, whatever they hold).
    pub fn from_bytes(bytes: Box<[u8]>) -> Self {
        Compiled { bytes }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is held (never, for a compiled value).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The root node.
    pub(crate) fn root(&self) -> Node<'_> {
        read(&self.bytes).map_or(Node::Null, |(n, _)| n)
    }

    /// The value again.
    pub fn to_value(&self) -> Value {
        self.root().to_value()
    }
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push(POS);
                varint(u, out);
            } else if let Some(i) = n.as_i64() {
                out.push(NEG);
                varint(!(i as u64), out);
            } else {
                out.push(FLOAT);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_le_bytes());
            }
        }
        Value::String(s) => {
            out.push(STR);
            varint(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(a) => {
            out.push(ARR);
            varint(a.len() as u64, out);
            let at = body_start(out);
            for x in a {
                encode(x, out);
            }
            body_end(out, at);
        }
        Value::Object(m) => {
            out.push(OBJ);
            varint(m.len() as u64, out);
            let at = body_start(out);
            let ids = key_ids();
            for (k, x) in m {
                match ids.get(k.as_str()) {
                    Some(id) => varint((*id as u64) << 1, out),
                    None => {
                        varint(((k.len() as u64) << 1) | 1, out);
                        out.extend_from_slice(k.as_bytes());
                    }
                }
                encode(x, out);
            }
            body_end(out, at);
        }
    }
}

/// Reserves the 4-byte body length; returns where the body starts.
fn body_start(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0; 4]);
    out.len()
}

/// Writes the body length in front of the body that started at `at`.
fn body_end(out: &mut [u8], at: usize) {
    let len = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(at - 4..at) {
        slot.copy_from_slice(&len.to_le_bytes());
    }
}

#[inline]
fn read_varint(buf: &[u8]) -> Option<(u64, &[u8])> {
    let mut n = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, buf.get(i + 1..)?));
        }
    }
    None
}

#[inline]
fn split(buf: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (buf.len() >= n).then(|| buf.split_at(n))
}

/// A node and the bytes after it.
#[inline]
fn read(buf: &[u8]) -> Option<(Node<'_>, &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    Some(match tag {
        NULL => (Node::Null, rest),
        FALSE => (Node::Bool(false), rest),
        TRUE => (Node::Bool(true), rest),
        POS => {
            let (n, rest) = read_varint(rest)?;
            (Node::Pos(n), rest)
        }
        NEG => {
            let (n, rest) = read_varint(rest)?;
            (Node::Neg(!n as i64), rest)
        }
        FLOAT => {
            let (b, rest) = split(rest, 8)?;
            (Node::Float(f64::from_le_bytes(b.try_into().ok()?)), rest)
        }
        STR => {
            let (len, rest) = read_varint(rest)?;
            let (s, rest) = split(rest, usize::try_from(len).ok()?)?;
            (Node::Str(std::str::from_utf8(s).ok()?), rest)
        }
        ARR | OBJ => {
            let (len, rest) = read_varint(rest)?;
            let (size, rest) = split(rest, 4)?;
            let size = u32::from_le_bytes(size.try_into().ok()?) as usize;
            let (body, rest) = split(rest, size)?;
            let seq = Seq {
                len: usize::try_from(len).ok()?,
                body,
            };
            (
                if tag == ARR {
                    Node::Arr(seq)
                } else {
                    Node::Obj(seq)
                },
                rest,
            )
        }
        _ => return None,
    })
}

#[inline]
fn read_key(buf: &[u8]) -> Option<(&str, &[u8])> {
    let (k, rest) = read_varint(buf)?;
    if k & 1 == 0 {
        Some((KEYS.get(usize::try_from(k >> 1).ok()?)?, rest))
    } else {
        let (s, rest) = split(rest, usize::try_from(k >> 1).ok()?)?;
        Some((std::str::from_utf8(s).ok()?, rest))
    }
}

/// A node of a compiled value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    Pos(u64),
    Neg(i64),
    Float(f64),
    Str(&'a str),
    Arr(Seq<'a>),
    Obj(Seq<'a>),
}

/// An array's or object's elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Seq<'a> {
    len: usize,
    body: &'a [u8],
}

/// An array's elements in order.
pub(crate) struct ArrIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for ArrIter<'a> {
    type Item = Node<'a>;
    #[inline]
    fn next(&mut self) -> Option<Node<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (n, rest) = read(self.rest)?;
        self.rest = rest;
        Some(n)
    }
}

/// An object's entries in order.
pub(crate) struct ObjIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for ObjIter<'a> {
    type Item = (&'a str, Node<'a>);
    #[inline]
    fn next(&mut self) -> Option<(&'a str, Node<'a>)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (k, rest) = read_key(self.rest)?;
        let (n, rest) = read(rest)?;
        self.rest = rest;
        Some((k, n))
    }
}

impl<'a> Seq<'a> {
    /// Number of elements.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements (of an array).
    #[inline]
    pub(crate) fn items(&self) -> ArrIter<'a> {
        ArrIter {
            rest: self.body,
            left: self.len,
        }
    }

    /// Entries (of an object).
    #[inline]
    pub(crate) fn entries(&self) -> ObjIter<'a> {
        ObjIter {
            rest: self.body,
            left: self.len,
        }
    }

    /// An object's value for a key.
    pub(crate) fn get(&self, key: &str) -> Option<Node<'a>> {
        self.entries().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// An object as a map.
    pub(crate) fn to_map(self) -> Map<String, Value> {
        self.entries()
            .map(|(k, v)| (k.to_string(), v.to_value()))
            .collect()
    }
}

impl<'a> Node<'a> {
    #[inline]
    pub(crate) fn as_str(&self) -> Option<&'a str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Empty, or a zero value (`0`, `""`, `false`) that an `omitempty` field drops, or a map whose
    /// every value is so (as `Tree::is_effectively_empty` of a `Value`).
    pub(crate) fn is_effectively_empty(&self) -> bool {
        match self {
            Node::Null | Node::Bool(false) => true,
            Node::Bool(true) | Node::Neg(_) => false,
            Node::Pos(n) => *n == 0,
            Node::Float(f) => *f == 0.0,
            Node::Str(s) => s.is_empty(),
            Node::Arr(a) => a.is_empty(),
            Node::Obj(m) => m.entries().all(|(_, v)| v.is_effectively_empty()),
        }
    }

    /// A zero scalar: `0`, `""` or `false`.
    pub(crate) fn is_zero(&self) -> bool {
        match self {
            Node::Pos(n) => *n == 0,
            Node::Float(f) => *f == 0.0,
            Node::Str(s) => s.is_empty(),
            Node::Bool(b) => !b,
            _ => false,
        }
    }

    /// The node as a value.
    pub(crate) fn to_value(self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Pos(n) => Value::Number(n.into()),
            Node::Neg(n) => Value::Number(n.into()),
            Node::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Node::Str(s) => Value::String(s.to_string()),
            Node::Arr(a) => Value::Array(a.items().map(|n| n.to_value()).collect()),
            Node::Obj(m) => Value::Object(m.to_map()),
        }
    }

    /// A number as serde_json's.
    #[inline]
    pub(crate) fn as_number(&self) -> Option<Number> {
        match *self {
            Node::Pos(n) => Some(n.into()),
            Node::Neg(n) => Some(n.into()),
            Node::Float(f) => Number::from_f64(f),
            _ => None,
        }
    }

    /// The node at a JSON pointer below this one (as `Value::pointer`).
    pub(crate) fn pointer(&self, ptr: &str) -> Option<Node<'a>> {
        if ptr.is_empty() {
            return Some(*self);
        }
        let rest = ptr.strip_prefix('/')?;
        rest.split('/').try_fold(*self, |node, token| {
            let token: Cow<'_, str> = if token.contains('~') {
                Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
            } else {
                Cow::Borrowed(token)
            };
            match node {
                Node::Obj(m) => m.get(&token),
                Node::Arr(a) => {
                    let i: usize = token.parse().ok()?;
                    (token == "0" || !token.starts_with('0')).then_some(())?;
                    a.items().nth(i)
                }
                _ => None,
            }
        })
    }

    /// Whether the node equals a value as serde_json compares values (`1` is not `1.0`).
    pub(crate) fn eq_value(&self, v: &Value) -> bool {
        match (*self, v) {
            (Node::Null, Value::Null) => true,
            (Node::Bool(a), Value::Bool(b)) => a == *b,
            (Node::Pos(a), Value::Number(b)) => b.as_u64() == Some(a),
            (Node::Neg(a), Value::Number(b)) => b.as_i64() == Some(a),
            (Node::Float(a), Value::Number(b)) => b.is_f64() && b.as_f64() == Some(a),
            (Node::Str(a), Value::String(b)) => a == b,
            (Node::Arr(a), Value::Array(b)) => {
                a.len() == b.len() && a.items().zip(b).all(|(x, y)| x.eq_value(y))
            }
            (Node::Obj(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.entries()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka == kb && va.eq_value(vb))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn samples() -> Vec<Value> {
        vec![
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(1),
            json!(-1),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1.0),
            json!(-2.5e300),
            json!(0.0),
            json!(""),
            json!("ünïcödé \u{0} \"quoted\""),
            json!([]),
            json!({}),
            json!([1, [2, [3, {"a": []}]], "x", null]),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.27",
                "resources": {"limits": {"cpu": "500m"}}, "env": [{"name": "A", "value": "1"}]}]}}},
                "not-a-common-key": {"x".repeat(300): "y".repeat(70_000)}}),
        ]
    }

    #[test]
    fn every_value_comes_back_as_it_went_in() {
        for v in samples() {
            let c = Compiled::of(&v);
            assert_eq!(c.to_value(), v, "{v}");
            assert!(c.root().eq_value(&v), "{v}");
            // Numbers keep serde_json's variant: 1 is not 1.0.
            let back = c.to_value();
            assert_eq!(back.to_string(), v.to_string());
        }
    }

    #[test]
    fn equality_is_serde_jsons() {
        let vs = samples();
        for a in &vs {
            for b in &vs {
                assert_eq!(Compiled::of(a).root().eq_value(b), a == b, "{a} vs {b}");
                // Canonical: equal values, equal bytes (and unequal values, unequal bytes).
                assert_eq!(Compiled::of(a) == Compiled::of(b), a == b, "{a} vs {b}");
            }
        }
        assert!(!Compiled::of(&json!(1)).root().eq_value(&json!(1.0)));
        assert!(
            !Compiled::of(&json!({"a": 1}))
                .root()
                .eq_value(&json!({"a": 1, "b": 2}))
        );
        assert!(
            !Compiled::of(&json!({"a": 1, "c": 2}))
                .root()
                .eq_value(&json!({"a": 1, "b": 2}))
        );
    }

    #[test]
    fn common_keys_are_interned_and_lookups_find_every_key() {
        let v = json!({"metadata": {"name": "x"}, "zz-custom": 1});
        let c = Compiled::of(&v);
        // tag, count, 4-byte length, then `metadata` as one byte.
        assert_eq!(c.as_bytes()[6], 4, "metadata is the key with id 2");
        let Node::Obj(root) = c.root() else {
            panic!("object")
        };
        assert_eq!(root.get("zz-custom"), Some(Node::Pos(1)));
        let Some(Node::Obj(meta)) = root.get("metadata") else {
            panic!("metadata")
        };
        assert_eq!(meta.get("name"), Some(Node::Str("x")));
        assert_eq!(root.get("absent"), None);
        let ids = key_ids();
        assert_eq!(ids.len(), KEYS.len(), "no key is listed twice");
    }

    #[test]
    fn emptiness_and_zero_agree_with_the_values() {
        for v in samples()
            .into_iter()
            .chain([json!({"a": {"b": ""}}), json!({"a": 0.0}), json!(-0.0)])
        {
            let n = Compiled::of(&v);
            use crate::tree::Tree;
            assert_eq!(
                n.root().is_effectively_empty(),
                Tree::is_effectively_empty(&v),
                "{v}"
            );
            assert_eq!(n.root().is_zero(), Tree::is_zero(&v), "{v}");
        }
    }

    #[test]
    fn pointers_find_what_value_pointer_finds() {
        let v = json!({"a": {"b/c": [1, {"d~e": "x"}]}, "": 2});
        let c = Compiled::of(&v);
        for p in [
            "",
            "/a",
            "/a/b~1c",
            "/a/b~1c/0",
            "/a/b~1c/1/d~0e",
            "/",
            "/a/x",
            "/a/b~1c/2",
            "/a/b~1c/01",
            "a",
        ] {
            assert_eq!(
                c.root().pointer(p).map(|n| n.to_value()).as_ref(),
                v.pointer(p),
                "{p}"
            );
        }
        for n in [json!(1), json!(-1), json!(1.5), json!("1")] {
            assert_eq!(Compiled::of(&n).root().as_number(), n.as_number().cloned(), "{n}");
        }
    }

    #[test]
    fn damaged_bytes_read_as_null_or_short_never_panic() {
        let c = Compiled::of(&samples()[16]);
        let bytes = c.as_bytes();
        for cut in 0..bytes.len() {
            let d = Compiled::from_bytes(bytes[..cut].to_vec().into_boxed_slice());
            let _ = d.to_value();
            let mut flipped = bytes.to_vec();
            flipped[cut] ^= 0xff;
            let _ = Compiled::from_bytes(flipped.into_boxed_slice()).to_value();
        }
    }
}
