//! What the diff reads of an object, whichever form holds it: a `serde_json::Value` (a one-off
//! comparison, `drift-detector diff`, live objects as the watch delivers them) or its compiled form
//! (the detector's desired index, a live object decoded straight from its text). One walker,
//! compiled for each pair of forms: none pays for another.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use crate::compiled::{ArrIter, Node, ObjIter, Seq};
use crate::flat::{FArr, FEntries, FItems, FMap, FRef};

/// A node's shape.
pub(crate) enum Shape<M, A> {
    Null,
    Scalar,
    Obj(M),
    Arr(A),
}

/// A node (of either side).
pub(crate) trait Tree<'a>: Copy + 'a {
    type Map: TreeMap<'a, Node = Self>;
    type Arr: TreeArr<'a, Node = Self>;
    fn shape(self) -> Shape<Self::Map, Self::Arr>;
    fn as_str(self) -> Option<&'a str>;
    fn as_number(self) -> Option<Number>;
    /// Equality as serde_json's (`1` is not `1.0`).
    fn eq_value(self, v: &Value) -> bool;
    /// Equality with a compiled node, as serde_json's.
    fn eq_node(self, n: Node<'_>) -> bool;
    /// Equality with a flat node, as serde_json's.
    fn eq_flat(self, f: FRef<'_>) -> bool;
    /// Equality with a node of any form, as serde_json's.
    fn eq_tree<'b, U: Tree<'b>>(self, other: U) -> bool;
    /// The node at a JSON pointer below this one (as `Value::pointer`).
    fn pointer(self, ptr: &str) -> Option<Self>;
    /// A field of a map node (`None` for any other node).
    #[inline]
    fn get(self, key: &str) -> Option<Self> {
        match self.shape() {
            Shape::Obj(m) => m.get(key),
            _ => None,
        }
    }
    /// `null`, or an empty map or list.
    fn is_empty(self) -> bool {
        match self.shape() {
            Shape::Null => true,
            Shape::Obj(m) => m.entries().next().is_none(),
            Shape::Arr(a) => a.len() == 0,
            Shape::Scalar => false,
        }
    }
    /// The node as a value (borrowed where it is one).
    fn to_value(self) -> Cow<'a, Value>;
    /// Empty, or a zero value (`0`, `""`, `false`) that an `omitempty` field drops, or a map whose
    /// every value is so. A desired value like this is satisfied by an absent live field.
    fn is_effectively_empty(self) -> bool;
    /// A zero scalar: `0`, `""` or `false`.
    fn is_zero(self) -> bool;
    #[inline]
    fn is_null(self) -> bool {
        matches!(self.shape(), Shape::Null)
    }
    #[inline]
    fn is_scalar(self) -> bool {
        matches!(self.shape(), Shape::Scalar)
    }
}

/// A map.
pub(crate) trait TreeMap<'a>: Copy + 'a {
    type Node: Tree<'a>;
    type Iter: Iterator<Item = (&'a str, Self::Node)>;
    /// Entries in key order.
    fn entries(self) -> Self::Iter;
    fn get(self, key: &str) -> Option<Self::Node>;
    fn to_map(self) -> Cow<'a, Map<String, Value>>;
    /// The map as the schema's defaults read it.
    fn level(self) -> MapRef<'a>;
}

/// An array.
pub(crate) trait TreeArr<'a>: Copy + 'a {
    type Node: Tree<'a>;
    type Iter: Iterator<Item = Self::Node>;
    /// The elements, each reachable by position.
    type Indexed: Indexed<'a, Node = Self::Node>;
    fn items(self) -> Self::Iter;
    fn len(self) -> usize;
    fn indexed(self) -> Self::Indexed;
}

/// An array's elements by position.
pub(crate) trait Indexed<'a> {
    type Node: Tree<'a>;
    fn at(&self, i: usize) -> Option<Self::Node>;
    fn count(&self) -> usize;
}

impl<'a> Indexed<'a> for &'a [Value] {
    type Node = &'a Value;
    #[inline]
    fn at(&self, i: usize) -> Option<&'a Value> {
        self.get(i)
    }
    #[inline]
    fn count(&self) -> usize {
        self.len()
    }
}

impl<'a> Indexed<'a> for Vec<Node<'a>> {
    type Node = Node<'a>;
    #[inline]
    fn at(&self, i: usize) -> Option<Node<'a>> {
        self.get(i).copied()
    }
    #[inline]
    fn count(&self) -> usize {
        self.len()
    }
}

/// A map as the schema's default computations read it (sibling values).
#[derive(Debug, Clone, Copy)]
pub(crate) enum MapRef<'a> {
    Value(&'a Map<String, Value>),
    Compiled(Seq<'a>),
    Flat(FMap<'a>),
}

impl<'a> MapRef<'a> {
    /// A field's value.
    pub(crate) fn get(&self, key: &str) -> Option<Cow<'a, Value>> {
        match self {
            MapRef::Value(m) => m.get(key).map(Cow::Borrowed),
            MapRef::Compiled(m) => m.get(key).map(|n| Cow::Owned(Node::to_value(n))),
            MapRef::Flat(m) => m.get(key).map(|n| Cow::Owned(n.to_value())),
        }
    }

    /// The value at a JSON pointer below a field.
    pub(crate) fn pointer(&self, key: &str, rest: &str) -> Option<Cow<'a, Value>> {
        match self {
            MapRef::Value(m) => m.get(key)?.pointer(rest).map(Cow::Borrowed),
            MapRef::Compiled(m) => m.get(key)?.pointer(rest).map(|n| Cow::Owned(Node::to_value(n))),
            MapRef::Flat(m) => m.get(key)?.pointer(rest).map(|n| Cow::Owned(n.to_value())),
        }
    }
}

impl<'a> Tree<'a> for &'a Value {
    type Map = &'a Map<String, Value>;
    type Arr = &'a [Value];
    #[inline]
    fn shape(self) -> Shape<Self::Map, Self::Arr> {
        match self {
            Value::Null => Shape::Null,
            Value::Object(m) => Shape::Obj(m),
            Value::Array(a) => Shape::Arr(a),
            _ => Shape::Scalar,
        }
    }
    #[inline]
    fn as_str(self) -> Option<&'a str> {
        Value::as_str(self)
    }
    #[inline]
    fn as_number(self) -> Option<Number> {
        Value::as_number(self).cloned()
    }
    #[inline]
    fn eq_value(self, v: &Value) -> bool {
        self == v
    }
    #[inline]
    fn eq_node(self, n: Node<'_>) -> bool {
        n.eq_value(self)
    }
    #[inline]
    fn eq_flat(self, f: FRef<'_>) -> bool {
        f.eq_value(self)
    }
    #[inline]
    fn eq_tree<'b, U: Tree<'b>>(self, other: U) -> bool {
        other.eq_value(self)
    }
    #[inline]
    fn pointer(self, ptr: &str) -> Option<Self> {
        Value::pointer(self, ptr)
    }
    #[inline]
    fn to_value(self) -> Cow<'a, Value> {
        Cow::Borrowed(self)
    }
    fn is_effectively_empty(self) -> bool {
        match self {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(m) => m.values().all(Tree::is_effectively_empty),
        }
    }
    #[inline]
    fn is_zero(self) -> bool {
        match self {
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Bool(b) => !b,
            _ => false,
        }
    }
}

impl<'a> TreeMap<'a> for &'a Map<String, Value> {
    type Node = &'a Value;
    type Iter =
        std::iter::Map<serde_json::map::Iter<'a>, fn((&'a String, &'a Value)) -> (&'a str, &'a Value)>;
    #[inline]
    fn entries(self) -> Self::Iter {
        self.iter().map(|(k, v)| (k.as_str(), v))
    }
    #[inline]
    fn get(self, key: &str) -> Option<&'a Value> {
        Map::get(self, key)
    }
    #[inline]
    fn to_map(self) -> Cow<'a, Map<String, Value>> {
        Cow::Borrowed(self)
    }
    #[inline]
    fn level(self) -> MapRef<'a> {
        MapRef::Value(self)
    }
}

impl<'a> TreeArr<'a> for &'a [Value] {
    type Node = &'a Value;
    type Iter = std::slice::Iter<'a, Value>;
    type Indexed = &'a [Value];
    #[inline]
    fn indexed(self) -> &'a [Value] {
        self
    }
    #[inline]
    fn items(self) -> Self::Iter {
        self.iter()
    }
    #[inline]
    fn len(self) -> usize {
        <[Value]>::len(self)
    }
}

impl<'a> Tree<'a> for Node<'a> {
    type Map = Obj<'a>;
    type Arr = Arr<'a>;
    #[inline]
    fn shape(self) -> Shape<Obj<'a>, Arr<'a>> {
        match self {
            Node::Null => Shape::Null,
            Node::Obj(m) => Shape::Obj(Obj(m)),
            Node::Arr(a) => Shape::Arr(Arr(a)),
            _ => Shape::Scalar,
        }
    }
    #[inline]
    fn as_str(self) -> Option<&'a str> {
        Node::as_str(&self)
    }
    #[inline]
    fn as_number(self) -> Option<Number> {
        Node::as_number(&self)
    }
    #[inline]
    fn eq_value(self, v: &Value) -> bool {
        Node::eq_value(&self, v)
    }
    #[inline]
    fn eq_node(self, n: Node<'_>) -> bool {
        Node::eq_node(&self, &n)
    }
    #[inline]
    fn eq_flat(self, f: FRef<'_>) -> bool {
        f.eq_node(self)
    }
    #[inline]
    fn eq_tree<'b, U: Tree<'b>>(self, other: U) -> bool {
        other.eq_node(self)
    }
    #[inline]
    fn pointer(self, ptr: &str) -> Option<Self> {
        Node::pointer(&self, ptr)
    }
    #[inline]
    fn to_value(self) -> Cow<'a, Value> {
        Cow::Owned(Node::to_value(self))
    }
    #[inline]
    fn is_effectively_empty(self) -> bool {
        Node::is_effectively_empty(&self)
    }
    #[inline]
    fn is_zero(self) -> bool {
        Node::is_zero(&self)
    }
}

/// A compiled object.
#[derive(Clone, Copy)]
pub(crate) struct Obj<'a>(pub(crate) Seq<'a>);

/// A compiled array.
#[derive(Clone, Copy)]
pub(crate) struct Arr<'a>(Seq<'a>);

impl<'a> TreeMap<'a> for Obj<'a> {
    type Node = Node<'a>;
    type Iter = ObjIter<'a>;
    #[inline]
    fn entries(self) -> ObjIter<'a> {
        self.0.entries()
    }
    #[inline]
    fn get(self, key: &str) -> Option<Node<'a>> {
        self.0.get(key)
    }
    fn to_map(self) -> Cow<'a, Map<String, Value>> {
        Cow::Owned(self.0.to_map())
    }
    #[inline]
    fn level(self) -> MapRef<'a> {
        MapRef::Compiled(self.0)
    }
}

impl<'a> TreeArr<'a> for Arr<'a> {
    type Node = Node<'a>;
    type Iter = ArrIter<'a>;
    type Indexed = Vec<Node<'a>>;
    fn indexed(self) -> Vec<Node<'a>> {
        self.0.items().collect()
    }
    #[inline]
    fn items(self) -> ArrIter<'a> {
        self.0.items()
    }
    #[inline]
    fn len(self) -> usize {
        self.0.len()
    }
}

impl<'a> Tree<'a> for FRef<'a> {
    type Map = FMap<'a>;
    type Arr = FArr<'a>;
    #[inline]
    fn shape(self) -> Shape<FMap<'a>, FArr<'a>> {
        FRef::shape(self)
    }
    #[inline]
    fn as_str(self) -> Option<&'a str> {
        FRef::as_str(self)
    }
    #[inline]
    fn as_number(self) -> Option<Number> {
        FRef::as_number(self)
    }
    #[inline]
    fn eq_value(self, v: &Value) -> bool {
        FRef::eq_value(self, v)
    }
    #[inline]
    fn eq_node(self, n: Node<'_>) -> bool {
        FRef::eq_node(self, n)
    }
    #[inline]
    fn eq_flat(self, f: FRef<'_>) -> bool {
        FRef::eq_flat(self, f)
    }
    #[inline]
    fn eq_tree<'b, U: Tree<'b>>(self, other: U) -> bool {
        other.eq_flat(self)
    }
    #[inline]
    fn pointer(self, ptr: &str) -> Option<Self> {
        FRef::pointer(self, ptr)
    }
    #[inline]
    fn to_value(self) -> Cow<'a, Value> {
        Cow::Owned(FRef::to_value(self))
    }
    #[inline]
    fn is_effectively_empty(self) -> bool {
        FRef::is_effectively_empty(self)
    }
    #[inline]
    fn is_zero(self) -> bool {
        FRef::is_zero(self)
    }
}

impl<'a> TreeMap<'a> for FMap<'a> {
    type Node = FRef<'a>;
    type Iter = FEntries<'a>;
    #[inline]
    fn entries(self) -> FEntries<'a> {
        FMap::entries(self)
    }
    #[inline]
    fn get(self, key: &str) -> Option<FRef<'a>> {
        FMap::get(self, key)
    }
    fn to_map(self) -> Cow<'a, Map<String, Value>> {
        Cow::Owned(FMap::to_map(self))
    }
    #[inline]
    fn level(self) -> MapRef<'a> {
        MapRef::Flat(self)
    }
}

impl<'a> TreeArr<'a> for FArr<'a> {
    type Node = FRef<'a>;
    type Iter = FItems<'a>;
    type Indexed = FArr<'a>;
    #[inline]
    fn indexed(self) -> FArr<'a> {
        self
    }
    #[inline]
    fn items(self) -> FItems<'a> {
        FArr::items(self)
    }
    #[inline]
    fn len(self) -> usize {
        FArr::len(self)
    }
}

impl<'a> Indexed<'a> for FArr<'a> {
    type Node = FRef<'a>;
    #[inline]
    fn at(&self, i: usize) -> Option<FRef<'a>> {
        FArr::at(*self, i)
    }
    #[inline]
    fn count(&self) -> usize {
        FArr::len(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiled::Compiled;
    use serde_json::json;

    #[test]
    fn both_forms_answer_alike() {
        for v in [
            json!(null),
            json!(0),
            json!(-0.0),
            json!(""),
            json!(false),
            json!({"a": {"b": ""}, "c": []}),
            json!({"a": 1}),
            json!([1, "x"]),
            json!("text"),
            json!(2.5),
        ] {
            let c = Compiled::of(&v);
            let n = c.root();
            let r = &v;
            assert_eq!(
                Tree::is_effectively_empty(n),
                Tree::is_effectively_empty(r),
                "{v}"
            );
            assert_eq!(Tree::is_zero(n), Tree::is_zero(r), "{v}");
            assert_eq!(Tree::is_empty(n), Tree::is_empty(r), "{v}");
            assert_eq!(
                Tree::pointer(n, "/a")
                    .map(|x| Tree::to_value(x).into_owned())
                    .as_ref(),
                r.pointer("/a"),
                "{v}"
            );
            assert_eq!(Tree::is_null(n), Tree::is_null(r), "{v}");
            assert_eq!(Tree::is_scalar(n), Tree::is_scalar(r), "{v}");
            assert_eq!(Tree::as_str(n), Tree::as_str(r), "{v}");
            assert_eq!(Tree::as_number(n), Tree::as_number(r), "{v}");
            assert_eq!(Tree::to_value(n).into_owned(), v);
            assert!(Tree::eq_value(n, &v) && Tree::eq_value(r, &v));
            if let (Shape::Obj(a), Shape::Obj(b)) = (Tree::shape(n), Tree::shape(r)) {
                assert_eq!(a.to_map(), b.to_map());
                assert_eq!(a.level().get("a"), b.level().get("a"));
                assert_eq!(a.level().pointer("a", "/b"), b.level().pointer("a", "/b"));
                let ka: Vec<&str> = a.entries().map(|(k, _)| k).collect();
                let kb: Vec<&str> = b.entries().map(|(k, _)| k).collect();
                assert_eq!(ka, kb);
            }
            if let (Shape::Arr(a), Shape::Arr(b)) = (Tree::shape(n), Tree::shape(r)) {
                assert_eq!(a.len(), b.len());
            }
        }
    }
}
