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

/// Bits of [`key_slot`]: the slots of [`key_slots`].
const SLOT_BITS: u32 = 12;
/// A slot two listed keys fall in (none does with [`KEYS`] as listed: a test says so).
const SHARED_SLOT: u16 = u16::MAX;

/// Where a key falls in [`key_slots`]: its length and four of its bytes, mixed by one
/// multiplication (a multiplier under which every key of [`KEYS`] falls in a slot of its own).
#[inline]
fn key_slot(k: &[u8]) -> usize {
    let Some(&last) = k.last() else {
        return 0;
    };
    let at = |i: usize| u64::from(k.get(i).copied().unwrap_or(0));
    let features =
        (k.len() as u64 & 0xff) | at(0) << 8 | at(1) << 16 | at(k.len() / 2) << 24 | u64::from(last) << 32;
    (features.wrapping_mul(0xe4b0_6ce6_0741_c7a9) >> (64 - SLOT_BITS)) as usize
}

/// Each slot's listed key (its id plus one; 0: none; [`SHARED_SLOT`]: several, looked up by hash).
fn key_slots() -> &'static [u16] {
    static SLOTS: OnceLock<Vec<u16>> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let mut slots = vec![0u16; 1 << SLOT_BITS];
        for (id, k) in KEYS.iter().enumerate() {
            if let Some(slot) = slots.get_mut(key_slot(k.as_bytes())) {
                *slot = if *slot == 0 {
                    u16::try_from(id + 1).unwrap_or(SHARED_SLOT)
                } else {
                    SHARED_SLOT
                };
            }
        }
        slots
    })
}

/// A key's id in [`KEYS`]: one multiplication and one comparison (no hashing of the text).
#[inline]
fn key_id(k: &str) -> Option<usize> {
    match key_slots().get(key_slot(k.as_bytes())).copied().unwrap_or(0) {
        0 => None,
        SHARED_SLOT => key_ids().get(k).copied(),
        n => {
            let id = usize::from(n) - 1;
            (KEYS.get(id) == Some(&k)).then_some(id)
        }
    }
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

/// Fields a decoding leaves out (read past, never built): `keys` of the map being read; the map under
/// `nested.0` is read with the rule `nested.1`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Skip {
    pub(crate) keys: &'static [&'static str],
    pub(crate) nested: Option<(&'static str, &'static Skip)>,
}

impl Skip {
    /// Nothing left out.
    pub(crate) const NONE: Skip = Skip {
        keys: &[],
        nested: None,
    };
}

impl Compiled {
    /// Decodes JSON text straight into the compiled form, leaving out what `skip` names: the same
    /// bytes as [`Compiled::of`] of the value `serde_json` would parse (the last of duplicate keys
    /// wins), without building that value.
    pub(crate) fn from_json(text: &str, skip: &Skip) -> Result<Compiled, serde_json::Error> {
        let mut out = Vec::with_capacity(text.len() / 2);
        let mut de = serde_json::Deserializer::from_str(text);
        serde::de::DeserializeSeed::deserialize(Decode { out: &mut out, skip }, &mut de)?;
        de.end()?;
        Ok(Compiled {
            bytes: out.into_boxed_slice(),
        })
    }
}

/// Writes one decoded node into `out`; a map's entries are read with `skip`.
struct Decode<'o, 's> {
    out: &'o mut Vec<u8>,
    skip: &'s Skip,
}

impl<'de> serde::de::DeserializeSeed<'de> for Decode<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Writes a container's header (tag, a one-byte count, a 4-byte length); returns where it starts.
fn header(out: &mut Vec<u8>, tag: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[tag, 0, 0, 0, 0, 0]);
    at
}

/// Completes the header written at `at` once the body (after it) is written: the count as a
/// varint (widened in place past 127) and the body length.
fn finish(out: &mut Vec<u8>, at: usize, count: usize) {
    let body = out.len() - at - 6;
    let len = u32::try_from(body).unwrap_or(u32::MAX).to_le_bytes();
    if let Ok(one) = u8::try_from(count)
        && one < 0x80
    {
        out[at + 1] = one;
        out[at + 2..at + 6].copy_from_slice(&len);
    } else {
        let mut head = Vec::with_capacity(14);
        varint(count as u64, &mut head);
        head.extend_from_slice(&len);
        out.splice(at + 1..at + 6, head);
    }
}

impl<'de> serde::de::Visitor<'de> for Decode<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.out.push(NULL);
        Ok(())
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<(), E> {
        self.out.push(if b { TRUE } else { FALSE });
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<(), E> {
        self.out.push(POS);
        varint(n, self.out);
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<(), E> {
        match u64::try_from(n) {
            Ok(u) => self.visit_u64(u),
            Err(_) => {
                self.out.push(NEG);
                varint(!(n as u64), self.out);
                Ok(())
            }
        }
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<(), E> {
        // As `Value`: a float that is no JSON number is `null`.
        if f.is_finite() {
            self.out.push(FLOAT);
            self.out.extend_from_slice(&f.to_le_bytes());
        } else {
            self.out.push(NULL);
        }
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        self.out.push(STR);
        varint(s.len() as u64, self.out);
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = header(self.out, ARR);
        let mut count = 0;
        while seq
            .next_element_seed(Decode {
                out: self.out,
                skip: &Skip::NONE,
            })?
            .is_some()
        {
            count += 1;
        }
        finish(self.out, at, count);
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.out;
        let at = header(out, OBJ);
        // Each entry's start; entries are written as they come, then put in key order.
        let mut starts: Vec<usize> = Vec::new();
        let mut sorted = true;
        loop {
            let start = out.len();
            let seed = KeySeed {
                out: &mut *out,
                skip: self.skip,
                prev: starts.last().copied(),
            };
            let skip = match map.next_key_seed(seed)? {
                None => break,
                Some(KeyRead::Skipped) => {
                    // (Never an entry of the same key before it: that key is always skipped here.)
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
                Some(KeyRead::Written { in_order, rule }) => {
                    sorted &= in_order;
                    rule
                }
            };
            map.next_value_seed(Decode { out: &mut *out, skip })?;
            starts.push(start);
        }
        let count = if sorted {
            starts.len()
        } else {
            order_entries(out, at + 6, &starts)
        };
        finish(out, at, count);
        Ok(())
    }
}

/// What reading a map key did.
enum KeyRead<'s> {
    /// The rule leaves this entry out: nothing written.
    Skipped,
    /// Written; whether it sorts after the entry before it, and the rule its value is read with.
    Written { in_order: bool, rule: &'s Skip },
}

/// Writes a map key as it is read, unless the rule leaves it out.
struct KeySeed<'o, 's> {
    out: &'o mut Vec<u8>,
    skip: &'s Skip,
    /// Where the entry before it starts.
    prev: Option<usize>,
}

impl<'de, 's> serde::de::DeserializeSeed<'de> for KeySeed<'_, 's> {
    type Value = KeyRead<'s>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<KeyRead<'s>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 's> serde::de::Visitor<'de> for KeySeed<'_, 's> {
    type Value = KeyRead<'s>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<KeyRead<'s>, E> {
        if self.skip.keys.contains(&k) {
            return Ok(KeyRead::Skipped);
        }
        let in_order = self
            .prev
            .and_then(|p| entry_key_bytes(self.out, p))
            .is_none_or(|p| p < k.as_bytes());
        let rule = match self.skip.nested {
            Some((name, rule)) if name == k => rule,
            _ => &Skip::NONE,
        };
        write_key(k, self.out);
        Ok(KeyRead::Written { in_order, rule })
    }
}

/// The key of the entry written at `start`, as bytes (ordered as the strings are).
fn entry_key_bytes(out: &[u8], start: usize) -> Option<&[u8]> {
    let (k, rest) = read_varint(out.get(start..)?)?;
    if k & 1 == 0 {
        KEYS.get(usize::try_from(k >> 1).ok()?).map(|k| k.as_bytes())
    } else {
        rest.get(..usize::try_from(k >> 1).ok()?)
    }
}

/// Puts the entries written from `body` on (starting at `starts`) in key order, the last of
/// duplicate keys kept; returns how many are left.
fn order_entries(out: &mut Vec<u8>, body: usize, starts: &[usize]) -> usize {
    let end = out.len();
    let mut ranges: Vec<(usize, usize)> = starts
        .iter()
        .enumerate()
        .map(|(i, &s)| (s, starts.get(i + 1).copied().unwrap_or(end)))
        .collect();
    // Stable: of equal keys, the later stays later.
    ranges.sort_by(|a, b| entry_key_bytes(out, a.0).cmp(&entry_key_bytes(out, b.0)));
    let mut ordered = Vec::with_capacity(end - body);
    let mut count = 0;
    for (i, &(s, e)) in ranges.iter().enumerate() {
        if ranges
            .get(i + 1)
            .is_some_and(|n| entry_key_bytes(out, n.0) == entry_key_bytes(out, s))
        {
            continue;
        }
        ordered.extend_from_slice(&out[s..e]);
        count += 1;
    }
    out.truncate(body);
    out.extend_from_slice(&ordered);
    count
}

/// Writes a map key (interned when it is a common one).
fn write_key(k: &str, out: &mut Vec<u8>) {
    match key_id(k) {
        Some(id) => varint((id as u64) << 1, out),
        None => {
            varint(((k.len() as u64) << 1) | 1, out);
            out.extend_from_slice(k.as_bytes());
        }
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
            for (k, x) in m {
                write_key(k, out);
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
            (Node::Str(s), rest)
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
    /// UTF-8 as written (checked only where it is read as text: equality compares bytes).
    Str(&'a [u8]),
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
            Node::Str(s) => std::str::from_utf8(s).ok(),
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
            Node::Str(s) => std::str::from_utf8(s).map_or(Value::Null, |s| Value::String(s.to_string())),
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

    /// Whether two nodes are equal as serde_json compares values. Equal bytes are equal values;
    /// unequal bytes are compared by structure (`0.0` and `-0.0` are equal).
    pub(crate) fn eq_node(&self, other: &Node<'_>) -> bool {
        match (*self, *other) {
            (Node::Arr(a), Node::Arr(b)) => {
                a.len == b.len && (a.body == b.body || a.items().zip(b.items()).all(|(x, y)| x.eq_node(&y)))
            }
            (Node::Obj(a), Node::Obj(b)) => {
                a.len == b.len
                    && (a.body == b.body
                        || a.entries()
                            .zip(b.entries())
                            .all(|((ka, va), (kb, vb))| ka == kb && va.eq_node(&vb)))
            }
            (Node::Null, Node::Null) => true,
            (Node::Bool(a), Node::Bool(b)) => a == b,
            (Node::Pos(a), Node::Pos(b)) => a == b,
            (Node::Neg(a), Node::Neg(b)) => a == b,
            (Node::Float(a), Node::Float(b)) => a == b,
            (Node::Str(a), Node::Str(b)) => a == b,
            _ => false,
        }
    }

    /// Whether the node equals a value as serde_json compares values (`1` is not `1.0`).
    pub(crate) fn eq_value(&self, v: &Value) -> bool {
        match (*self, v) {
            (Node::Null, Value::Null) => true,
            (Node::Bool(a), Value::Bool(b)) => a == *b,
            (Node::Pos(a), Value::Number(b)) => b.as_u64() == Some(a),
            (Node::Neg(a), Value::Number(b)) => b.as_i64() == Some(a),
            (Node::Float(a), Value::Number(b)) => b.is_f64() && b.as_f64() == Some(a),
            (Node::Str(a), Value::String(b)) => a == b.as_bytes(),
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
        assert_eq!(meta.get("name"), Some(Node::Str(b"x")));
        assert_eq!(root.get("absent"), None);
        let ids = key_ids();
        assert_eq!(ids.len(), KEYS.len(), "no key is listed twice");
        // Every listed key has a slot of its own (else it is still found, by hash, more slowly);
        // each is found, and keys not listed are not (the same length and ends as listed ones,
        // empty, long, not ASCII).
        assert!(
            !key_slots().contains(&SHARED_SLOT),
            "two listed keys share a slot"
        );
        for (id, k) in KEYS.iter().enumerate() {
            assert_eq!(key_id(k), Some(id), "{k}");
            let mut other = k.to_string();
            other.insert(k.len() / 2, 'x');
            assert_eq!(key_id(&other), ids.get(other.as_str()).copied(), "{other}");
            let upper = k.to_uppercase();
            assert_eq!(key_id(&upper), ids.get(upper.as_str()).copied(), "{upper}");
        }
        for k in ["", "x", "minReplicaz", "maxReplicaz", "ñame", &"a".repeat(300)] {
            assert_eq!(key_id(k), None, "{k}");
        }
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

    /// A value as JSON text with its object keys in reverse order and, for some, a duplicate key
    /// (an earlier value the later one overrides), as text from an API server or a person comes.
    fn unsorted_text(v: &Value, dup: &mut u32, out: &mut String) {
        match v {
            Value::Object(m) => {
                out.push('{');
                let mut first = true;
                for (k, x) in m.iter().rev() {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    *dup += 1;
                    if (*dup).is_multiple_of(3) {
                        out.push_str(&Value::String(k.clone()).to_string());
                        out.push_str(":[\"overridden\"],");
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    unsorted_text(x, dup, out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    unsorted_text(x, dup, out);
                }
                out.push(']');
            }
            _ => out.push_str(&v.to_string()),
        }
    }

    fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-zé\"\\\\/ ]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 200, 140, |inner| {
            let key = prop_oneof![
                Just("metadata".to_string()),
                Just("name".to_string()),
                Just("status".to_string()),
                "[a-zA-Z~/ é]{0,6}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..140).prop_map(Value::Array),
                proptest::collection::btree_map(key, inner, 0..140)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn decoding_text_gives_the_bytes_compiling_its_value_gives(v in arb_value()) {
            // Sorted and unique keys, as printed.
            // (Against the value serde_json parses from the text: its float parsing does not
            // always give back the printed float.)
            let text = v.to_string();
            let parsed: Value = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(Compiled::from_json(&text, &Skip::NONE).unwrap(), Compiled::of(&parsed));
            // Keys in another order, some given twice: the value serde_json parses from the text.
            let mut dup = 0;
            let mut odd = String::new();
            unsorted_text(&v, &mut dup, &mut odd);
            let odd_parsed: Value = serde_json::from_str(&odd).unwrap();
            proptest::prop_assert_eq!(&odd_parsed, &parsed);
            proptest::prop_assert_eq!(Compiled::from_json(&odd, &Skip::NONE).unwrap(), Compiled::of(&parsed));
        }
    }

    #[test]
    fn decoding_leaves_out_what_the_rule_names_at_its_level_only() {
        const ANNOTATIONS: Skip = Skip {
            keys: &["drop-me"],
            nested: None,
        };
        const META: Skip = Skip {
            keys: &["managedFields"],
            nested: Some(("annotations", &ANNOTATIONS)),
        };
        const ROOT: Skip = Skip {
            keys: &["status"],
            nested: Some(("metadata", &META)),
        };
        let text = r#"{"status": {"a": 1}, "metadata": {"managedFields": [1], "name": "x",
            "annotations": {"drop-me": "1", "keep": "2"}, "status": "kept below the root"},
            "spec": {"status": "kept", "managedFields": "kept"}, "status": 2}"#;
        let want = serde_json::json!({"metadata": {"name": "x", "annotations": {"keep": "2"},
            "status": "kept below the root"}, "spec": {"status": "kept", "managedFields": "kept"}});
        assert_eq!(Compiled::from_json(text, &ROOT).unwrap(), Compiled::of(&want));
        // A skipped key given twice; the others in order.
        let text = r#"{"b": 1, "status": 1, "a": 2, "status": {"x": 1}}"#;
        assert_eq!(
            Compiled::from_json(text, &ROOT).unwrap(),
            Compiled::of(&serde_json::json!({"a": 2, "b": 1}))
        );
    }

    #[test]
    fn text_that_is_not_json_is_an_error_with_its_line() {
        for (text, line) in [("{\"a\": 1,\n\"b\": }", 2), ("[1, 2", 1), ("{} {}", 1), ("", 1)] {
            let e = Compiled::from_json(text, &Skip::NONE).unwrap_err();
            assert_eq!(e.line(), line, "{text}: {e}");
        }
        // Counts past one byte and bodies past any small size.
        let big = Value::Array((0..300).map(Value::from).collect());
        let wide = Value::Object((0..300).map(|i| (format!("k{i}"), Value::from(i))).collect());
        for v in [big, wide] {
            assert_eq!(
                Compiled::from_json(&v.to_string(), &Skip::NONE).unwrap(),
                Compiled::of(&v)
            );
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
