//! A JSON object read into two flat arrays for one comparison: its nodes, and its maps' entries
//! in key order, strings borrowed from the text wherever they hold no escape. Building it costs a
//! few allocations where a `serde_json::Value` costs one per string, map node and array, and
//! freeing it as few; the diff walks it as it walks a `Value` ([`crate::tree::Tree`]).
//!
//! Read as `serde_json` reads a `Value`: the last of duplicate keys wins, numbers keep serde_json's
//! variant (`1` is not `1.0`), a float no JSON number can hold is `null`. Reading never panics:
//! indices are this module's own, and one out of range (a bug) reads as `null` or empty.

use std::borrow::Cow;
use std::sync::OnceLock;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::compiled::{Node, Skip};
use crate::model::ResourceKey;
use crate::object::LiveObject;
use crate::ownership::Ownership;

/// A node: a scalar, or a container's range in [`FlatTree::nodes`] (an array's elements) or
/// [`FlatTree::entries`] (a map's entries).
#[derive(Debug, Clone)]
enum FNode<'t> {
    Null,
    Bool(bool),
    Pos(u64),
    Neg(i64),
    Float(f64),
    Str(Cow<'t, str>),
    Arr(u32, u32),
    Obj(u32, u32),
}

/// An object read from JSON text (see the module's documentation).
#[derive(Debug)]
pub(crate) struct FlatTree<'t> {
    nodes: Vec<FNode<'t>>,
    entries: Vec<(Cow<'t, str>, u32)>,
    root: u32,
}

impl<'t> FlatTree<'t> {
    /// Reads `text`, leaving out what `skip` names (read past, never built). A value read with a
    /// rule (the root, and each map the rule names) must be a map, as `Deferred`'s `Value` reads
    /// with a rule require: anything else is an error, and the caller reads the object the way
    /// that words it.
    pub(crate) fn from_json(text: &'t str, skip: &Skip) -> Result<FlatTree<'t>, serde_json::Error> {
        let mut b = Builder {
            nodes: Vec::with_capacity(text.len() / 16),
            entries: Vec::with_capacity(text.len() / 24),
            elements: Vec::new(),
            fields: Vec::new(),
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let root = Read { b: &mut b, skip }.deserialize(&mut de)?;
        de.end()?;
        let at = b.push(root);
        Ok(FlatTree {
            nodes: b.nodes,
            entries: b.entries,
            root: at,
        })
    }

    /// The root node.
    pub(crate) fn root(&self) -> FRef<'_> {
        FRef {
            t: self,
            i: self.root,
        }
    }
}

/// The tree under construction; a container's children wait in `elements`/`fields` until it
/// closes, then move to the tree in one contiguous run.
struct Builder<'t> {
    nodes: Vec<FNode<'t>>,
    entries: Vec<(Cow<'t, str>, u32)>,
    elements: Vec<FNode<'t>>,
    fields: Vec<(Cow<'t, str>, FNode<'t>)>,
}

impl<'t> Builder<'t> {
    fn push(&mut self, n: FNode<'t>) -> u32 {
        self.nodes.push(n);
        index(self.nodes.len() - 1)
    }
}

fn index(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

struct Read<'b, 't, 's> {
    b: &'b mut Builder<'t>,
    skip: &'s Skip,
}

impl<'de: 't, 't> DeserializeSeed<'de> for Read<'_, 't, '_> {
    type Value = FNode<'t>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<FNode<'t>, D::Error> {
        // A value read with a rule is a map, as the `Value` reads with one require (anything else
        // is an error, and the caller reads the object whole).
        if self.skip.keys.is_empty() && self.skip.nested.is_none() {
            d.deserialize_any(self)
        } else {
            d.deserialize_map(self)
        }
    }
}

/// A map key, borrowed where it has no escape.
struct Key<'t>(Cow<'t, str>);

impl<'de: 't, 't> serde::Deserialize<'de> for Key<'t> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'t>(std::marker::PhantomData<&'t ()>);
        impl<'de: 't, 't> Visitor<'de> for V<'t> {
            type Value = Key<'t>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'t>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'t>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl<'de: 't, 't> Visitor<'de> for Read<'_, 't, '_> {
    type Value = FNode<'t>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<FNode<'t>, E> {
        Ok(FNode::Null)
    }
    fn visit_none<E>(self) -> Result<FNode<'t>, E> {
        Ok(FNode::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<FNode<'t>, E> {
        Ok(FNode::Bool(b))
    }
    fn visit_u64<E>(self, n: u64) -> Result<FNode<'t>, E> {
        Ok(FNode::Pos(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<FNode<'t>, E> {
        Ok(u64::try_from(n).map_or(FNode::Neg(n), FNode::Pos))
    }
    fn visit_f64<E>(self, f: f64) -> Result<FNode<'t>, E> {
        // As `Value`: a float that is no JSON number is `null`.
        Ok(if f.is_finite() {
            FNode::Float(f)
        } else {
            FNode::Null
        })
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<FNode<'t>, E> {
        Ok(FNode::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<FNode<'t>, E> {
        Ok(FNode::Str(Cow::Owned(v.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FNode<'t>, A::Error> {
        let b = self.b;
        let base = b.elements.len();
        while let Some(n) = seq.next_element_seed(Read {
            b: &mut *b,
            skip: &Skip::NONE,
        })? {
            b.elements.push(n);
        }
        let start = index(b.nodes.len());
        let len = index(b.elements.len() - base);
        b.nodes.extend(b.elements.drain(base..));
        Ok(FNode::Arr(start, len))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FNode<'t>, A::Error> {
        let b = self.b;
        let base = b.fields.len();
        let mut sorted = true;
        while let Some(Key(k)) = map.next_key::<Key<'t>>()? {
            if self.skip.keys.contains(&k.as_ref()) {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            let rule = match self.skip.nested {
                Some((name, rule)) if name == k => rule,
                _ => &Skip::NONE,
            };
            let v = map.next_value_seed(Read {
                b: &mut *b,
                skip: rule,
            })?;
            sorted &= b.fields.len() == base || b.fields.last().is_some_and(|(p, _)| *p < k);
            b.fields.push((k, v));
        }
        if !sorted {
            // In key order; of equal keys the last (a stable sort keeps their order).
            b.fields[base..].sort_by(|x, y| x.0.cmp(&y.0));
            let mut kept = base;
            for i in base..b.fields.len() {
                if i + 1 < b.fields.len() && b.fields[i].0 == b.fields[i + 1].0 {
                    continue;
                }
                b.fields.swap(kept, i);
                kept += 1;
            }
            b.fields.truncate(kept);
        }
        let start = index(b.entries.len());
        let len = index(b.fields.len() - base);
        for (k, v) in b.fields.drain(base..) {
            b.nodes.push(v);
            let at = index(b.nodes.len() - 1);
            b.entries.push((k, at));
        }
        Ok(FNode::Obj(start, len))
    }
}

/// A live object read flat from its text for one comparison
/// ([`crate::deferred::Deferred::lean_flat`], only where redaction would change nothing), for
/// [`crate::DiffEngine::diff_with_flat_live`]: built with a few allocations instead of one per
/// string and map, read in place, dropped with the comparison.
#[derive(Debug)]
pub struct FlatLive<'t> {
    key: ResourceKey,
    tree: FlatTree<'t>,
    ownership: OnceLock<Ownership>,
}

impl<'t> FlatLive<'t> {
    pub(crate) fn new(key: ResourceKey, tree: FlatTree<'t>) -> Self {
        FlatLive {
            key,
            tree,
            ownership: OnceLock::new(),
        }
    }

    /// A prepared live object (redacted already, as it is) read flat from its JSON text, handed to
    /// `f` (the flat form borrows the text, which lives only for the call). `None` where the text
    /// does not read back (nesting past serde_json's recursion limit).
    pub fn of<R>(live: &LiveObject, f: impl FnOnce(&FlatLive<'_>) -> R) -> Option<R> {
        let text = live.object().to_string();
        let tree = FlatTree::from_json(&text, &Skip::NONE).ok()?;
        Some(f(&FlatLive::new(live.key().clone(), tree)))
    }

    /// Identity.
    pub fn key(&self) -> &ResourceKey {
        &self.key
    }

    /// As [`crate::LiveObject::ownership_read`].
    pub fn ownership_read(&self) -> bool {
        self.ownership.get().is_some()
    }

    pub(crate) fn root(&self) -> FRef<'_> {
        self.tree.root()
    }

    /// Field ownership, read from the object's `metadata` when first asked for.
    pub(crate) fn ownership(&self) -> &Ownership {
        self.ownership
            .get_or_init(|| Ownership::from_metadata(self.root().pointer("/metadata")))
    }
}

/// A node of a [`FlatTree`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct FRef<'a> {
    t: &'a FlatTree<'a>,
    i: u32,
}

/// A map of a [`FlatTree`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct FMap<'a> {
    t: &'a FlatTree<'a>,
    start: u32,
    len: u32,
}

/// An array of a [`FlatTree`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct FArr<'a> {
    t: &'a FlatTree<'a>,
    start: u32,
    len: u32,
}

const NULL: FNode<'static> = FNode::Null;

impl<'a> FRef<'a> {
    fn node(self) -> &'a FNode<'a> {
        self.t.nodes.get(self.i as usize).unwrap_or(&NULL)
    }

    pub(crate) fn shape(self) -> crate::tree::Shape<FMap<'a>, FArr<'a>> {
        use crate::tree::Shape;
        match *self.node() {
            FNode::Null => Shape::Null,
            FNode::Obj(start, len) => Shape::Obj(FMap {
                t: self.t,
                start,
                len,
            }),
            FNode::Arr(start, len) => Shape::Arr(FArr {
                t: self.t,
                start,
                len,
            }),
            _ => Shape::Scalar,
        }
    }

    pub(crate) fn as_str(self) -> Option<&'a str> {
        match self.node() {
            FNode::Str(s) => Some(s.as_ref()),
            _ => None,
        }
    }

    pub(crate) fn as_number(self) -> Option<Number> {
        match *self.node() {
            FNode::Pos(n) => Some(n.into()),
            FNode::Neg(n) => Some(n.into()),
            FNode::Float(f) => Number::from_f64(f),
            _ => None,
        }
    }

    pub(crate) fn to_value(self) -> Value {
        match self.node() {
            FNode::Null => Value::Null,
            FNode::Bool(b) => Value::Bool(*b),
            FNode::Pos(n) => Value::Number((*n).into()),
            FNode::Neg(n) => Value::Number((*n).into()),
            FNode::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            FNode::Str(s) => Value::String(s.to_string()),
            FNode::Arr(..) => Value::Array(
                self.arr()
                    .into_iter()
                    .flat_map(FArr::items)
                    .map(FRef::to_value)
                    .collect(),
            ),
            FNode::Obj(..) => Value::Object(self.map().map(FMap::to_map).unwrap_or_default()),
        }
    }

    /// Empty, or a zero value, or a map whose every value is so (as for a `Value`).
    pub(crate) fn is_effectively_empty(self) -> bool {
        match *self.node() {
            FNode::Null | FNode::Bool(false) => true,
            FNode::Bool(true) | FNode::Neg(_) => false,
            FNode::Pos(n) => n == 0,
            FNode::Float(f) => f == 0.0,
            FNode::Str(ref s) => s.is_empty(),
            FNode::Arr(_, len) => len == 0,
            FNode::Obj(..) => self
                .map()
                .is_none_or(|m| m.entries().all(|(_, v)| v.is_effectively_empty())),
        }
    }

    /// A zero scalar: `0`, `""` or `false`.
    pub(crate) fn is_zero(self) -> bool {
        match *self.node() {
            FNode::Pos(n) => n == 0,
            FNode::Float(f) => f == 0.0,
            FNode::Str(ref s) => s.is_empty(),
            FNode::Bool(b) => !b,
            _ => false,
        }
    }

    /// The node at a JSON pointer below this one (as `Value::pointer`).
    pub(crate) fn pointer(self, ptr: &str) -> Option<FRef<'a>> {
        if ptr.is_empty() {
            return Some(self);
        }
        let rest = ptr.strip_prefix('/')?;
        rest.split('/').try_fold(self, |node, token| {
            let token: Cow<'_, str> = if token.contains('~') {
                Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
            } else {
                Cow::Borrowed(token)
            };
            match node.shape() {
                crate::tree::Shape::Obj(m) => m.get(&token),
                crate::tree::Shape::Arr(a) => {
                    let i: usize = token.parse().ok()?;
                    (token == "0" || !token.starts_with('0')).then_some(())?;
                    a.at(i)
                }
                _ => None,
            }
        })
    }

    /// Whether the node equals a value as serde_json compares values (`1` is not `1.0`).
    pub(crate) fn eq_value(self, v: &Value) -> bool {
        match (self.node(), v) {
            (FNode::Null, Value::Null) => true,
            (FNode::Bool(a), Value::Bool(b)) => a == b,
            (FNode::Pos(a), Value::Number(b)) => b.as_u64() == Some(*a),
            (FNode::Neg(a), Value::Number(b)) => b.as_i64() == Some(*a),
            (FNode::Float(a), Value::Number(b)) => b.is_f64() && b.as_f64() == Some(*a),
            (FNode::Str(a), Value::String(b)) => a == b,
            (FNode::Arr(..), Value::Array(b)) => self
                .arr()
                .is_some_and(|a| a.len() == b.len() && a.items().zip(b).all(|(x, y)| x.eq_value(y))),
            (FNode::Obj(..), Value::Object(b)) => self.map().is_some_and(|a| {
                a.len as usize == b.len()
                    && a.entries()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka == kb && va.eq_value(vb))
            }),
            _ => false,
        }
    }

    /// Whether the node equals a compiled node, as serde_json compares values.
    pub(crate) fn eq_node(self, n: Node<'_>) -> bool {
        match (self.node(), n) {
            (FNode::Null, Node::Null) => true,
            (FNode::Bool(a), Node::Bool(b)) => *a == b,
            (FNode::Pos(a), Node::Pos(b)) => *a == b,
            (FNode::Neg(a), Node::Neg(b)) => *a == b,
            (FNode::Float(a), Node::Float(b)) => *a == b,
            (FNode::Str(a), Node::Str(b)) => a.as_bytes() == b,
            (FNode::Arr(..), Node::Arr(b)) => self
                .arr()
                .is_some_and(|a| a.len() == b.len() && a.items().zip(b.items()).all(|(x, y)| x.eq_node(y))),
            (FNode::Obj(..), Node::Obj(b)) => self.map().is_some_and(|a| {
                a.len as usize == b.len()
                    && a.entries()
                        .zip(b.entries())
                        .all(|((ka, va), (kb, vb))| ka == kb && va.eq_node(vb))
            }),
            _ => false,
        }
    }

    /// Whether two nodes are equal, as serde_json compares values.
    pub(crate) fn eq_flat(self, other: FRef<'_>) -> bool {
        match (self.node(), other.node()) {
            (FNode::Null, FNode::Null) => true,
            (FNode::Bool(a), FNode::Bool(b)) => a == b,
            (FNode::Pos(a), FNode::Pos(b)) => a == b,
            (FNode::Neg(a), FNode::Neg(b)) => a == b,
            (FNode::Float(a), FNode::Float(b)) => a == b,
            (FNode::Str(a), FNode::Str(b)) => a == b,
            (FNode::Arr(..), FNode::Arr(..)) => match (self.arr(), other.arr()) {
                (Some(a), Some(b)) => {
                    a.len() == b.len() && a.items().zip(b.items()).all(|(x, y)| x.eq_flat(y))
                }
                _ => false,
            },
            (FNode::Obj(..), FNode::Obj(..)) => match (self.map(), other.map()) {
                (Some(a), Some(b)) => {
                    a.len == b.len
                        && a.entries()
                            .zip(b.entries())
                            .all(|((ka, va), (kb, vb))| ka == kb && va.eq_flat(vb))
                }
                _ => false,
            },
            _ => false,
        }
    }

    fn arr(self) -> Option<FArr<'a>> {
        match self.shape() {
            crate::tree::Shape::Arr(a) => Some(a),
            _ => None,
        }
    }

    fn map(self) -> Option<FMap<'a>> {
        match self.shape() {
            crate::tree::Shape::Obj(m) => Some(m),
            _ => None,
        }
    }
}

/// A map's entries in key order.
pub(crate) struct FEntries<'a> {
    t: &'a FlatTree<'a>,
    at: std::ops::Range<usize>,
}

impl<'a> Iterator for FEntries<'a> {
    type Item = (&'a str, FRef<'a>);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (k, i) = self.t.entries.get(self.at.next()?)?;
        Some((k.as_ref(), FRef { t: self.t, i: *i }))
    }
}

impl<'a> FMap<'a> {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }

    pub(crate) fn entries(self) -> FEntries<'a> {
        FEntries {
            t: self.t,
            at: self.range(),
        }
    }

    /// A field's value (the entries are sorted and unique).
    pub(crate) fn get(self, key: &str) -> Option<FRef<'a>> {
        let entries = self.t.entries.get(self.range())?;
        let at = entries.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok()?;
        entries.get(at).map(|(_, i)| FRef { t: self.t, i: *i })
    }

    pub(crate) fn to_map(self) -> Map<String, Value> {
        self.entries()
            .map(|(k, v)| (k.to_string(), v.to_value()))
            .collect()
    }
}

/// An array's elements in order.
pub(crate) struct FItems<'a> {
    t: &'a FlatTree<'a>,
    at: std::ops::Range<u32>,
}

impl<'a> Iterator for FItems<'a> {
    type Item = FRef<'a>;
    #[inline]
    fn next(&mut self) -> Option<FRef<'a>> {
        Some(FRef {
            t: self.t,
            i: self.at.next()?,
        })
    }
}

impl<'a> FArr<'a> {
    pub(crate) fn items(self) -> FItems<'a> {
        FItems {
            t: self.t,
            at: self.start..self.start.saturating_add(self.len),
        }
    }

    pub(crate) fn len(self) -> usize {
        self.len as usize
    }

    pub(crate) fn at(self, i: usize) -> Option<FRef<'a>> {
        let i = u32::try_from(i).ok().filter(|i| *i < self.len)?;
        Some(FRef {
            t: self.t,
            i: self.start + i,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiled::Compiled;
    use serde_json::json;

    fn texts() -> Vec<String> {
        let mut out: Vec<String> = [
            json!(null),
            json!(true),
            json!(0),
            json!(-1),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1.0),
            json!(-0.0),
            json!(-2.5e300),
            json!(""),
            json!("ünïcödé \u{0} \"quoted\" \\ /"),
            json!([]),
            json!({}),
            json!([1, [2, [3, {"a": []}]], "x", null]),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
                "labels": {"app": "web"}}, "spec": {"replicas": 3, "template": {"spec": {"containers":
                [{"name": "c", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}]}]}}}}),
        ]
        .iter()
        .map(Value::to_string)
        .collect();
        // Keys out of order, given twice (the last wins), escaped, pretty-printed; numbers as
        // written.
        out.extend(
            [
                r#"{"b": 1, "a": 2, "b": 3}"#,
                r#"{"z": {"y": 1, "x": [3, 2, {"k": "v", "j": null}]}, "a": "\u00e9\n", "a\"b": 1e2}"#,
                r#"{"x": 1, "x": {"p": 1}, "y": [], "x": 2}"#,
                r#"{"n": 1.0, "m": 1, "o": -0, "p": 12345678901234567890, "q": 1E400}"#,
                "{\n  \"spec\" : { \"b\" : true , \"a\" : false }\n}",
                r#"{"": "", "a": {"": {"": []}}}"#,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        out
    }

    /// Read as serde_json reads a `Value` (or fails where it fails), and answers every question as
    /// the `Value` and the compiled form do.
    #[test]
    fn reads_and_answers_as_a_value_does() {
        for text in texts() {
            let v: Result<Value, _> = serde_json::from_str(&text);
            let f = FlatTree::from_json(&text, &Skip::NONE);
            let (Ok(v), Ok(f)) = (v, f.as_ref()) else {
                // serde_json refuses `1E400`; so does the flat read.
                assert!(
                    f.is_err() && serde_json::from_str::<Value>(&text).is_err(),
                    "{text}"
                );
                continue;
            };
            let r = f.root();
            assert_eq!(r.to_value(), v, "{text}");
            assert!(r.eq_value(&v), "{text}");
            let c = Compiled::of(&v);
            assert!(r.eq_node(c.root()), "{text}");
            assert!(r.eq_flat(r), "{text}");
            assert_eq!(
                r.is_effectively_empty(),
                crate::tree::Tree::is_effectively_empty(&v),
                "{text}"
            );
            assert_eq!(r.is_zero(), crate::tree::Tree::is_zero(&v), "{text}");
            assert_eq!(r.as_str(), v.as_str(), "{text}");
            assert_eq!(r.as_number().as_ref(), v.as_number(), "{text}");
            for p in [
                "",
                "/a",
                "/b",
                "/x",
                "/z/x/2/k",
                "/z/x/02",
                "/a\"b",
                "/spec/a",
                "/3/0",
                "/metadata/name",
            ] {
                assert_eq!(
                    r.pointer(p).map(FRef::to_value).as_ref(),
                    v.pointer(p),
                    "{text} {p}"
                );
            }
            if let (crate::tree::Shape::Obj(m), Some(vm)) = (r.shape(), v.as_object()) {
                let keys: Vec<&str> = m.entries().map(|(k, _)| k).collect();
                let vkeys: Vec<&str> = vm.keys().map(String::as_str).collect();
                assert_eq!(keys, vkeys, "{text}");
                for k in vm.keys().map(String::as_str).chain(["", "zz", "nope"]) {
                    assert_eq!(m.get(k).map(FRef::to_value).as_ref(), vm.get(k), "{text} {k}");
                }
            }
            // Unequal values are unequal in every form.
            for other in texts() {
                let Ok(w) = serde_json::from_str::<Value>(&other) else {
                    continue;
                };
                let g = FlatTree::from_json(&other, &Skip::NONE).expect("reads");
                assert_eq!(r.eq_value(&w), v == w, "{text} vs {other}");
                assert_eq!(r.eq_flat(g.root()), v == w, "{text} vs {other}");
                assert_eq!(r.eq_node(Compiled::of(&w).root()), v == w, "{text} vs {other}");
            }
        }
    }

    /// What a rule leaves out is not read into the tree, at any depth the rule names; a value read
    /// with a rule must be a map.
    #[test]
    fn skipped_keys_are_left_out() {
        const INNER: Skip = Skip {
            keys: &["drop"],
            nested: None,
        };
        const RULE: Skip = Skip {
            keys: &["status"],
            nested: Some(("metadata", &INNER)),
        };
        let text = r#"{"status": {"a": 1}, "metadata": {"drop": [1], "keep": 2, "x": {"drop": 3}}, "spec": {"status": 4}}"#;
        let f = FlatTree::from_json(text, &RULE).expect("reads");
        assert_eq!(
            f.root().to_value(),
            json!({"metadata": {"keep": 2, "x": {"drop": 3}}, "spec": {"status": 4}})
        );
        for not_a_map in [
            r#"{"metadata": "text"}"#,
            r#"{"metadata": null}"#,
            r#"{"metadata": []}"#,
            "[]",
            "1",
        ] {
            assert!(FlatTree::from_json(not_a_map, &RULE).is_err(), "{not_a_map}");
        }
        assert!(FlatTree::from_json(r#"{"other": "text", "status": 1}"#, &RULE).is_ok());
    }
}
