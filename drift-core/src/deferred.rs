//! Loading for scale: every object's identity is read up front, the object itself only when asked
//! for ([`Deferred::resource`]).
//!
//! A JSON source is kept as its text; each object in it is found with its identity (`apiVersion`,
//! `kind`, `metadata.name`, `metadata.namespace`) by a scan that builds nothing else, and parsed when
//! asked for. So a caller can hold tens of thousands of objects as their text (about a tenth of the
//! memory of parsed ones) and parse, compare and drop them one at a time, on several threads
//! ([`Deferred`] is `Sync`). YAML sources, and JSON documents of unusual shape, are parsed at once as
//! [`crate::load_path_with`] does. Identities, errors and verdicts are the same as loading everything
//! first.

use std::borrow::Cow;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::compiled::{Compiled, Skip};
use crate::flat::{FlatLive, FlatTree};
use crate::load::{LoadError, LoadOptions, compact_object};
use crate::model::{Resource, ResourceKey};
use crate::object::CompiledLive;

/// Objects known by identity, parsed on demand.
#[derive(Debug, Default)]
pub struct Deferred {
    /// Source names (files, `<stdin>`).
    sources: Vec<String>,
    /// JSON texts items point into.
    texts: Vec<String>,
    items: Vec<Item>,
    /// Documents and objects that did not load.
    pub errors: Vec<LoadError>,
    options: LoadOptions,
    /// The namespace given to namespaced objects without one ([`Deferred::default_namespace`]).
    default_ns: Option<String>,
}

#[derive(Debug)]
struct Item {
    key: ResourceKey,
    source: usize,
    document: usize,
    item: Option<usize>,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// Bytes `start..end` of text `text`; `list_type` is the (apiVersion, kind) a typed list gives
    /// items that omit theirs.
    Raw {
        text: usize,
        start: usize,
        end: usize,
        list_type: Option<Box<(String, String)>>,
        /// Values the shapes leave out, where the scan found them ([`Cuts`]).
        cuts: Option<Cuts>,
    },
    /// Parsed already (YAML, or a JSON document of unusual shape).
    Parsed(Box<Resource>),
    /// Given parsed and kept as compact JSON text ([`Deferred::push`]).
    Text(Box<str>),
}

/// The identity fields of an object, borrowed where the text has no escapes.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<HeadMeta<'a>>,
    /// A list's items (a `kind: ...List` document).
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct HeadMeta<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
}

/// Values of an object's text that [`Shape::Comparable`] or [`Shape::Lean`] leave out, found as the
/// scan validated the object: `(start, end, lean only)` in the source's text, in order, apart. A
/// shape's parse reads the text with each such value replaced by `0` (the rule skips the key
/// whatever its value): serde reads past three characters instead of kilobytes — the escaped
/// last-applied annotation, `managedFields`, `status` are often most of a live object.
type Cuts = Box<[Cut]>;

/// One of [`Cuts`]: `(start, end, lean only)`.
type Cut = (usize, usize, bool);

/// An object held as text: the source's whole text, where the object lies in it, its cuts.
type RawText<'a> = (&'a str, usize, usize, Option<&'a [Cut]>);

/// [`Head`] with the values [`Cuts`] are made of, read in the same pass. Every field [`Head`] has,
/// as it has it, and only more ways to fail (these fields given twice, or of another type): where
/// this read succeeds, [`Head`]'s does with the same identity; where it fails, [`Head`] is read.
#[derive(Deserialize)]
struct ItemHead<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<ItemMeta<'a>>,
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ItemMeta<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(rename = "managedFields", borrow, default)]
    managed_fields: Option<&'a RawValue>,
    #[serde(borrow, default)]
    annotations: Option<LastApplied<'a>>,
}

/// An annotations map read for its last-applied annotation's value (the first, if given twice: any
/// of them can be cut), every other value validated and skipped. Not a map: an error.
struct LastApplied<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for LastApplied<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(LastAppliedVisitor(std::marker::PhantomData))
    }
}

struct LastAppliedVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for LastAppliedVisitor<'a> {
    type Value = LastApplied<'a>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map of annotations")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: Option<&'a RawValue> = None;
        while let Some(key) = map.next_key::<AnyStr<'de>>()? {
            if found.is_none() && key.0 == LAST_APPLIED {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(LastApplied(found))
    }
}

/// A string, borrowed where it has no escapes.
struct AnyStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for AnyStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AnyStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(AnyStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AnyStr(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'a> ItemHead<'a> {
    /// The identity fields, and the cuts (positions in `text`, which the read borrowed from).
    fn split(self, text: &str) -> (Head<'a>, Option<Cuts>) {
        let at = |raw: &RawValue, lean: bool| {
            let s = raw.get().as_ptr() as usize - text.as_ptr() as usize;
            (s, s + raw.get().len(), lean)
        };
        let mut cuts: Vec<Cut> = Vec::new();
        let metadata = self.metadata.map(|m| {
            cuts.extend(m.managed_fields.map(|r| at(r, true)));
            cuts.extend(m.annotations.and_then(|a| a.0).map(|r| at(r, true)));
            HeadMeta {
                name: m.name,
                namespace: m.namespace,
            }
        });
        cuts.extend(self.status.map(|r| at(r, false)));
        // Values of a few characters are read past as fast as the cut is made.
        cuts.retain(|(s, e, _)| e - s > 16);
        cuts.sort_unstable();
        let head = Head {
            api_version: self.api_version,
            kind: self.kind,
            metadata,
            items: self.items,
        };
        (head, (!cuts.is_empty()).then(|| cuts.into_boxed_slice()))
    }
}

impl Head<'_> {
    /// The identity [`Head::resource`] gives, read from the fields directly (as
    /// [`crate::model::identity_of`] reads them: non-empty strings, a valid `apiVersion`, no
    /// namespace for a cluster-scoped kind), building nothing else; `None` where it gives an error.
    fn key(&self, list_type: Option<&(String, String)>) -> Option<ResourceKey> {
        fn given(s: Option<&str>) -> Option<&str> {
            s.filter(|s| !s.is_empty())
        }
        let api = given(self.api_version.as_deref().or(list_type.map(|t| t.0.as_str())))?;
        crate::model::check_api_version(api).ok()?;
        let kind = given(self.kind.as_deref().or(list_type.map(|t| t.1.as_str())))?;
        let meta = self.metadata.as_ref()?;
        let name = given(meta.name.as_deref())?;
        let mut key = ResourceKey::new(api, kind, given(meta.namespace.as_deref()), name);
        if key.namespace.is_some() && crate::kinds::is_cluster_scoped(&key.group, &key.kind) {
            key.namespace = None;
        }
        Some(key)
    }

    /// The identity as [`Resource::from_value`] computes it, from a value holding only these fields.
    fn resource(&self, list_type: Option<&(String, String)>) -> Result<Resource, crate::ObjectError> {
        let mut meta = serde_json::Map::new();
        if let Some(m) = &self.metadata {
            if let Some(n) = &m.name {
                meta.insert("name".into(), Value::String(n.to_string()));
            }
            if let Some(ns) = &m.namespace {
                meta.insert("namespace".into(), Value::String(ns.to_string()));
            }
        }
        let mut obj = serde_json::Map::new();
        let api = self.api_version.as_deref().or(list_type.map(|t| t.0.as_str()));
        let kind = self.kind.as_deref().or(list_type.map(|t| t.1.as_str()));
        if let Some(a) = api {
            obj.insert("apiVersion".into(), Value::String(a.to_string()));
        }
        if let Some(k) = kind {
            obj.insert("kind".into(), Value::String(k.to_string()));
        }
        if self.metadata.is_some() {
            obj.insert("metadata".into(), Value::Object(meta));
        }
        Resource::from_value(Value::Object(obj))
    }
}

impl Deferred {
    /// Loads a file, a directory (every `.yaml`, `.yml` and `.json` inside, recursively, sorted) or
    /// `-` (stdin), deferring what can be deferred.
    pub fn load_path(path: &Path, options: LoadOptions) -> Deferred {
        let mut out = Deferred {
            options,
            ..Deferred::default()
        };
        out.add_path(path);
        out
    }

    /// Nothing yet, loading compactly ([`LoadOptions::compact`]) from [`Deferred::add_path`].
    pub fn default_compact() -> Deferred {
        Deferred {
            options: LoadOptions::compact(),
            ..Deferred::default()
        }
    }

    /// Adds a parsed object, kept as its compact JSON text until asked for: a caller receiving
    /// objects one page at a time (a cluster's list) holds them at a tenth of their parsed size.
    pub fn push(&mut self, r: Resource) {
        if self.sources.is_empty() {
            self.sources.push("<resources>".into());
        }
        let text = serde_json::to_string(&r.object).unwrap_or_default();
        self.items.push(Item {
            key: r.key,
            source: 0,
            document: self.items.len(),
            item: None,
            body: Body::Text(text.into_boxed_str()),
        });
    }

    /// Keeps only the objects whose identity `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&ResourceKey) -> bool) {
        self.items.retain(|it| keep(&it.key));
    }

    /// Adds another path's objects.
    pub fn add_path(&mut self, path: &Path) {
        let display = path.display().to_string();
        if path == Path::new("-") {
            let mut bytes = Vec::new();
            match std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes) {
                Ok(_) => self.add_bytes("<stdin>", bytes),
                Err(error) => self.errors.push(LoadError::Io {
                    source_name: "<stdin>".into(),
                    error,
                }),
            }
            return;
        }
        let files = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => match crate::load::manifest_files(path) {
                Ok(f) => f,
                Err(error) => {
                    self.errors.push(LoadError::Io {
                        source_name: display,
                        error,
                    });
                    return;
                }
            },
            Ok(_) => vec![path.to_path_buf()],
            Err(error) => {
                self.errors.push(LoadError::Io {
                    source_name: display,
                    error,
                });
                return;
            }
        };
        for f in files {
            let name = f.display().to_string();
            match std::fs::read(&f) {
                Ok(bytes) => self.add_bytes(&name, bytes),
                Err(error) => self.errors.push(LoadError::Io {
                    source_name: name,
                    error,
                }),
            }
        }
    }

    /// Adds a source's bytes: JSON is kept as text and scanned, anything else parsed now.
    pub fn add_bytes(&mut self, source_name: &str, bytes: Vec<u8>) {
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                // The loader's own message for it.
                let loaded = crate::load::parse_bytes(source_name, e.as_bytes(), self.options);
                self.add_loaded(source_name, loaded);
                return;
            }
        };
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
            let loaded = crate::parse_documents_with(source_name, &text, self.options);
            self.add_loaded(source_name, loaded);
            return;
        }
        let offset = text.len() - trimmed.len();
        // Four parts per core: the cores take them as they finish the last (even when one is slower).
        let scan = scan_list_parallel(trimmed, offset, PARALLEL_SCAN_MIN, 4 * crate::par::cores())
            .or_else(|| scan_json(trimmed, offset));
        let Some(scan) = scan else {
            // A document of a shape the scan does not take: the whole source the ordinary way.
            let loaded = crate::parse_documents_with(source_name, &text, self.options);
            self.add_loaded(source_name, loaded);
            return;
        };
        let source = self.sources.len();
        self.sources.push(source_name.to_string());
        let text_index = self.texts.len();
        // The identities, on every core: read by the scan already, else each a scan of its object.
        let (heads, cuts) = match scan.heads {
            Some(heads) => {
                let (heads, cuts): (Vec<_>, Vec<_>) = heads.into_iter().unzip();
                (keys_of(heads, &scan.items), cuts)
            }
            None => (identities(&text, &scan.items), Vec::new()),
        };
        let cuts = cuts.into_iter().chain(std::iter::repeat_with(|| None));
        for ((span, head), cuts) in scan.items.into_iter().zip(heads).zip(cuts) {
            let (document, item, start, end, list_type) = span;
            // The identity fields are not plain strings (or not there): the whole object tells why.
            let Some(key) = head else {
                self.add_whole_item(
                    source,
                    source_name,
                    document,
                    item,
                    &text[start..end],
                    list_type.as_deref(),
                );
                continue;
            };
            self.items.push(Item {
                key,
                source,
                document,
                item,
                body: Body::Raw {
                    text: text_index,
                    start,
                    end,
                    list_type,
                    cuts,
                },
            });
        }
        for (index, span) in scan.whole {
            let mut loaded = crate::load::Loaded::default();
            match serde_json::from_str::<Value>(&text[span.0..span.1]) {
                Ok(mut value) => {
                    if self.options.compact {
                        crate::load::compact_document(&mut value);
                    }
                    crate::load::push_value(source_name, index, value, &mut loaded);
                }
                Err(e) => loaded.errors.push(LoadError::Syntax {
                    source_name: source_name.to_string(),
                    index,
                    line: e.line() as u64,
                    reason: e.to_string(),
                }),
            }
            self.add_loaded_at(source, index, loaded);
        }
        if let Some((index, e)) = scan.syntax_error {
            self.errors.push(LoadError::Syntax {
                source_name: source_name.to_string(),
                index,
                line: e.line() as u64,
                reason: e.to_string(),
            });
        }
        self.texts.push(text);
    }

    /// An object whose identity the scan could not read, parsed whole: loaded, or its error.
    fn add_whole_item(
        &mut self,
        source: usize,
        source_name: &str,
        document: usize,
        item: Option<usize>,
        body: &str,
        list_type: Option<&(String, String)>,
    ) {
        match serde_json::from_str::<Value>(body) {
            Ok(mut v) => {
                fill_list_type(&mut v, list_type);
                match Resource::from_value(v) {
                    Ok(r) => self.push_parsed(source, document, item, r),
                    Err(error) => self.errors.push(LoadError::NotAnObject {
                        source_name: source_name.to_string(),
                        index: document,
                        item,
                        error,
                    }),
                }
            }
            Err(e) => self.errors.push(LoadError::Syntax {
                source_name: source_name.to_string(),
                index: document,
                line: e.line() as u64,
                reason: e.to_string(),
            }),
        }
    }

    fn add_loaded(&mut self, source_name: &str, loaded: crate::load::Loaded) {
        let source = self.sources.len();
        self.sources.push(source_name.to_string());
        self.add_loaded_at(source, 0, loaded);
    }

    fn add_loaded_at(&mut self, source: usize, document: usize, loaded: crate::load::Loaded) {
        for r in loaded.resources {
            self.push_parsed(source, document, None, r);
        }
        self.errors.extend(loaded.errors);
    }

    fn push_parsed(&mut self, source: usize, document: usize, item: Option<usize>, r: Resource) {
        self.items.push(Item {
            key: r.key.clone(),
            source,
            document,
            item,
            body: Body::Parsed(Box::new(r)),
        });
    }

    /// How many objects.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The identity of object `i`.
    pub fn key(&self, i: usize) -> &ResourceKey {
        &self.items[i].key
    }

    /// Every identity, in input order.
    pub fn keys(&self) -> impl Iterator<Item = &ResourceKey> {
        self.items.iter().map(|i| &i.key)
    }

    /// Gives namespaced objects without a namespace `ns` ([`Resource::default_namespace`]), now for
    /// their identities and when each is parsed.
    pub fn default_namespace(&mut self, ns: &str) {
        for it in &mut self.items {
            if it.key.namespace.is_none() && !crate::kinds::is_cluster_scoped(&it.key.group, &it.key.kind) {
                it.key.namespace = Some(ns.to_string());
            }
            if let Body::Parsed(r) = &mut it.body {
                r.default_namespace(ns);
            }
            // Text bodies get it when parsed (Deferred::parse).
        }
        self.default_ns = Some(ns.to_string());
    }

    /// Object `i`, parsed (and compacted when loading compactly).
    ///
    /// # Errors
    /// The object does not parse or is not a Kubernetes object: the error names its source,
    /// document and item.
    pub fn resource(&self, i: usize) -> Result<Resource, LoadError> {
        self.parse(i, Shape::Whole)
    }

    /// Object `i` for comparing: without its `status`, which no comparison reads (the diff's verdicts
    /// are those of [`Deferred::resource`]), and which is skipped as the text is read instead of
    /// being built and dropped.
    ///
    /// # Errors
    /// As [`Deferred::resource`].
    pub fn comparable(&self, i: usize) -> Result<Resource, LoadError> {
        self.parse(i, Shape::Comparable)
    }

    /// Object `i` for a quick first comparison: [`Deferred::comparable`] without what only field
    /// ownership and drift actors read — `metadata.managedFields` and the last-applied annotation,
    /// both skipped as read (they are often half of a live object). A diff of it that reads no
    /// ownership ([`crate::LiveObject::ownership_read`]) and finds no drift gives exactly the
    /// verdict of the whole object (neither field is ever compared itself); otherwise compare
    /// [`Deferred::comparable`].
    ///
    /// # Errors
    /// As [`Deferred::resource`].
    pub fn lean(&self, i: usize) -> Result<Resource, LoadError> {
        self.parse(i, Shape::Lean)
    }

    /// Object `i` read as [`Deferred::lean`] reads it, but decoded straight into the compiled form
    /// ([`CompiledLive`], for [`crate::DiffEngine::diff_with_compiled_live`]): no `Value` is built.
    /// `None` where the object read as a `Value` would not be the text as it stands — parsed
    /// already, a typed list's item without its own type, a namespace to add or drop — or the text
    /// does not decode, or redaction would change it: then [`Deferred::lean`] is the way. (Loading
    /// compactly changes nothing in a lean object: what [`crate::load::compact_object`] takes out
    /// is left out already.)
    pub fn lean_compiled(&self, i: usize) -> Option<CompiledLive> {
        let (key, object) = self.decoded(i, Shape::Lean)?;
        CompiledLive::unredacted(key, object, crate::redact::Redactor::global()).ok()
    }

    /// Object `i` read as [`Deferred::lean`] reads it, but into the flat form ([`FlatLive`], for
    /// [`crate::DiffEngine::diff_with_flat_live`]: a few allocations instead of one per string and
    /// map), handed to `f`, which returns what it makes of it. `None`, without calling `f`, where
    /// the object read as a `Value` would not be the text as it stands (see
    /// [`Deferred::lean_compiled`]), the text does not read, or redaction would change it: then
    /// [`Deferred::lean`] is the way.
    pub fn lean_flat<R>(&self, i: usize, f: impl FnOnce(&FlatLive<'_>) -> R) -> Option<R> {
        self.flat(i, Shape::Lean, f)
    }

    /// Object `i` read as [`Deferred::comparable`] reads it, but into the flat form, handed to `f`;
    /// `None` as for [`Deferred::lean_flat`].
    pub fn comparable_flat<R>(&self, i: usize, f: impl FnOnce(&FlatLive<'_>) -> R) -> Option<R> {
        self.flat(i, Shape::Comparable, f)
    }

    fn flat<R>(&self, i: usize, shape: Shape, f: impl FnOnce(&FlatLive<'_>) -> R) -> Option<R> {
        let (whole, start, end, cuts) = self.raw_text(i)?;
        let rule = shape.rule().unwrap_or(&Skip::NONE);
        let cut = cut_text(whole, start, end, cuts, shape);
        let tree = read_cut_first(cut.as_deref(), whole.get(start..end)?, |t| {
            FlatTree::from_json(t, rule)
        })
        .ok()?;
        let key = self.key_as_read(tree.root())?;
        if crate::redact::Redactor::global().would_change(tree.root()) {
            return None;
        }
        Some(f(&FlatLive::new(key, tree)))
    }

    /// Object `i`'s text (the whole source's, and where the object lies in it) and its cuts, when
    /// it is held as text and not a typed list's item.
    fn raw_text(&self, i: usize) -> Option<RawText<'_>> {
        let Body::Raw {
            text,
            start,
            end,
            list_type: None,
            cuts,
        } = &self.items.get(i)?.body
        else {
            return None;
        };
        Some((self.texts.get(*text)?, *start, *end, cuts.as_deref()))
    }

    /// The identity of an object read from its text as it stands, when reading it as a `Value`
    /// ([`Deferred::parse`]) gives that same object: no namespace to drop (a cluster-scoped kind's)
    /// or to add (the default one).
    fn key_as_read<'a, T: crate::tree::Tree<'a>>(&self, root: T) -> Option<ResourceKey> {
        let key = crate::model::identity_of(root).ok()?;
        let cluster_scoped = crate::kinds::is_cluster_scoped(&key.group, &key.kind);
        let given_namespace = root
            .pointer("/metadata/namespace")
            .and_then(crate::tree::Tree::as_str)
            .is_some_and(|n| !n.is_empty());
        if cluster_scoped && given_namespace
            || !cluster_scoped && key.namespace.is_none() && self.default_ns.is_some()
        {
            return None;
        }
        Some(key)
    }

    /// Object `i` as a desired object in compiled form, for [`crate::DiffEngine::diff_compiled`],
    /// with its key: decoded straight from its text, exactly the compiled form of
    /// [`crate::DesiredObject::new`] of [`Deferred::comparable`], without building a `Value`.
    /// `None` where that cannot be had so — parsed already, loaded compactly, a typed list's item
    /// without its own type, a namespaced object without a namespace (whatever default it will be
    /// given, before or after this call), a cluster-scoped one with one, redaction or a version
    /// conversion would change it, or the text does not decode: then prepare
    /// [`Deferred::comparable`] (which also says why it fails, if it does).
    pub fn desired_compiled(&self, i: usize) -> Option<(ResourceKey, Compiled)> {
        if self.options.compact {
            return None;
        }
        let (key, object) = self.decoded(i, Shape::Comparable)?;
        let namespace_to_give =
            key.namespace.is_none() && !crate::kinds::is_cluster_scoped(&key.group, &key.kind);
        if namespace_to_give
            || crate::object::preparing_changes(&key, object.root(), crate::redact::Redactor::global())
        {
            return None;
        }
        Some((key, object))
    }

    /// Object `i` decoded into the compiled form with `skip`, with its identity, when reading it as a
    /// `Value` ([`Deferred::parse`]) would give exactly that object: held as JSON text, not a typed
    /// list's item, and no namespace to drop (a cluster-scoped kind's) or to add (the default one).
    /// Where the scan located values the shape leaves out, they are cut first (as
    /// [`Deferred::parse`] cuts them; where that fails, the text as it stands is decoded).
    fn decoded(&self, i: usize, shape: Shape) -> Option<(ResourceKey, Compiled)> {
        let (whole, start, end, cuts) = self.raw_text(i)?;
        let skip = shape.rule().unwrap_or(&Skip::NONE);
        let cut = cut_text(whole, start, end, cuts, shape);
        let object = read_cut_first(cut.as_deref(), whole.get(start..end)?, |t| {
            Compiled::from_json(t, skip)
        })
        .ok()?;
        let key = self.key_as_read(object.root())?;
        Some((key, object))
    }

    fn parse(&self, i: usize, shape: Shape) -> Result<Resource, LoadError> {
        let it = &self.items[i];
        let (text, start, end, list_type, cuts) = match &it.body {
            Body::Parsed(r) => {
                let mut r = (**r).clone();
                shape.strip(&mut r.object);
                return Ok(r);
            }
            Body::Text(t) => {
                // Our own serialization of a valid object: it parses.
                let mut object: Value = serde_json::from_str(t).unwrap_or(Value::Null);
                shape.strip(&mut object);
                return self.finish(it, object);
            }
            Body::Raw {
                text,
                start,
                end,
                list_type,
                cuts,
            } => (*text, *start, *end, list_type, cuts),
        };
        let source_name = || self.sources[it.source].clone();
        let whole = &self.texts[text];
        let body = &whole[start..end];
        let parsed = match shape.rule() {
            None => serde_json::from_str::<Value>(body),
            Some(rule) => {
                let cut = cut_text(whole, start, end, cuts.as_deref(), shape);
                read_cut_first(cut.as_deref(), body, |t| read_skipping(t, rule))
            }
        };
        let mut v = parsed.map_err(|e| LoadError::Syntax {
            source_name: source_name(),
            index: it.document,
            line: e.line() as u64,
            reason: e.to_string(),
        })?;
        fill_list_type(&mut v, list_type.as_deref());
        if self.options.compact {
            compact_object(&mut v);
        }
        self.finish(it, v)
    }

    /// A parsed object as a resource: its identity from the object (which names no namespace where
    /// the item's key got the default one), then the default namespace into both.
    fn finish(&self, it: &Item, object: Value) -> Result<Resource, LoadError> {
        let mut r = Resource::from_value(object).map_err(|error| LoadError::NotAnObject {
            source_name: self.sources[it.source].clone(),
            index: it.document,
            item: it.item,
            error,
        })?;
        if let Some(ns) = &self.default_ns {
            r.default_namespace(ns);
        }
        Ok(r)
    }

    /// Every object parsed, and the errors (load errors first).
    pub fn into_loaded(self) -> crate::load::Loaded {
        let mut out = crate::load::Loaded::default();
        for i in 0..self.len() {
            match self.resource(i) {
                Ok(r) => out.resources.push(r),
                Err(e) => out.errors.push(e),
            }
        }
        let mut errors = self.errors;
        errors.append(&mut out.errors);
        out.errors = errors;
        out
    }
}

/// An object found by the scan: (document, item in a list, start, end, a typed list's type).
type Span = (usize, Option<usize>, usize, usize, Option<Box<(String, String)>>);

/// An item's identity fields and [`Cuts`], as the scan read them.
type ItemRead<'a> = (Option<Head<'a>>, Option<Cuts>);

/// What one pass over a JSON stream finds.
struct Scan<'a> {
    /// Objects to load deferred.
    items: Vec<Span>,
    /// Each item's identity fields, when the scan read them as it validated the items (the parallel
    /// list scan does): `None` for an item they could not be read from (not an object, a field of
    /// another type or given twice: serde's error for the whole object then tells why).
    /// With each, the values its shapes leave out ([`Cuts`]), where found.
    heads: Option<Vec<ItemRead<'a>>>,
    /// Documents to parse whole (`null`, a list with `items: null`...): (document, span).
    whole: Vec<(usize, (usize, usize))>,
    /// The syntax error that ended the stream, if any (as the eager loader, nothing after it loads).
    syntax_error: Option<(usize, serde_json::Error)>,
}

/// Finds the objects of a JSON stream in one pass: each document's identity fields and, for a list,
/// its items' spans. `None` when a document has a shape the scan does not take (identity fields that
/// are not strings, a non-object document...): the caller then loads the source the ordinary way.
fn scan_json(trimmed: &str, offset: usize) -> Option<Scan<'_>> {
    let mut scan = Scan {
        items: Vec::new(),
        heads: None,
        whole: Vec::new(),
        syntax_error: None,
    };
    let mut stream = serde_json::Deserializer::from_str(trimmed).into_iter::<Head<'_>>();
    let mut index = 0;
    loop {
        let before = stream.byte_offset();
        let Some(next) = stream.next() else { break };
        let head = match next {
            Ok(h) => h,
            Err(e) if e.is_data() => return None,
            Err(e) => {
                scan.syntax_error = Some((index, e));
                break;
            }
        };
        let raw = &trimmed[before..stream.byte_offset()];
        let lead = raw.len() - raw.trim_start().len();
        let (start, end) = (offset + before + lead, offset + stream.byte_offset());
        if !raw.trim_start().starts_with('{') {
            return None;
        }
        if head_is_list(&head) {
            let list_type = list_type_of(&head);
            for (i, item) in head.items.iter().flatten().enumerate() {
                let s = item.get().as_ptr() as usize - trimmed.as_ptr() as usize + offset;
                scan.items
                    .push((index, Some(i), s, s + item.get().len(), list_type.clone()));
            }
        } else if head.items.is_none() && !head.kind.as_deref().unwrap_or("").ends_with("List") {
            scan.items.push((index, None, start, end, None));
        } else {
            scan.whole.push((index, (start, end)));
        }
        index += 1;
    }
    Some(scan)
}

/// Texts smaller than this are scanned by [`scan_json`] alone (splitting costs more than it saves).
const PARALLEL_SCAN_MIN: usize = 4 << 20;

/// [`scan_json`]'s answer for the common large input, one list document (`{..., "items": [...]}`
/// and nothing after it), with its items found and validated on every core. `None` wherever the
/// text is of another shape or anything in it is not valid: [`scan_json`] then scans it (and words
/// the error). Each item is validated as serde's `RawValue` would be inside the document (serde's
/// skipping has no depth limit, so alone or in place is the same), the separators between items
/// exactly, and the document without its items as [`scan_json`] reads a document: the same items,
/// spans, head and verdict. `min` is [`PARALLEL_SCAN_MIN`] and `parts` the cores but in tests.
fn scan_list_parallel(trimmed: &str, offset: usize, min: usize, parts: usize) -> Option<Scan<'_>> {
    if trimmed.len() < min {
        return None;
    }
    let b = trimmed.as_bytes();
    // The members up to `items`, each validated as read.
    let mut i = open_object(b, 0)?;
    let (open, items, close) = loop {
        i = skip_ws(b, i);
        let (key, after) = json_value::<Cow<'_, str>>(trimmed, i)?;
        let colon = skip_ws(b, after);
        (b.get(colon) == Some(&b':')).then_some(())?;
        i = skip_ws(b, colon + 1);
        if key == "items" {
            (b.get(i) == Some(&b'[')).then_some(())?;
            let (items, close) = list_items(trimmed, i, parts)?;
            break (i, items, close);
        }
        let (_, end) = json_value::<serde::de::IgnoredAny>(trimmed, i)?;
        let next = skip_ws(b, end);
        (b.get(next) == Some(&b',')).then_some(())?;
        i = next + 1;
    };
    // The document with its items left out, read as `scan_json` reads it: head, validation of the
    // rest, one document and nothing after it.
    let rest = format!("{}{}", trimmed.get(..=open)?, trimmed.get(close..)?);
    let mut stream = serde_json::Deserializer::from_str(&rest).into_iter::<Head<'_>>();
    let head = stream.next()?.ok()?;
    if stream.next().is_some() || !head_is_list(&head) {
        return None;
    }
    let list_type = list_type_of(&head);
    let shift = |cuts: Cuts| -> Cuts {
        cuts.iter()
            .map(|&(s, e, lean)| (offset + s, offset + e, lean))
            .collect()
    };
    let (spans, heads): (Vec<Span>, Vec<ItemRead<'_>>) = items
        .into_iter()
        .enumerate()
        .map(|(n, (s, e, h, cuts))| {
            (
                (0, Some(n), offset + s, offset + e, list_type.clone()),
                (h, cuts.map(shift)),
            )
        })
        .unzip();
    Some(Scan {
        items: spans,
        heads: Some(heads),
        whole: Vec::new(),
        syntax_error: None,
    })
}

/// A JSON value of type `T` starting at `i` (after white space), validated by serde, and the
/// position just past it.
fn json_value<'a, T: Deserialize<'a>>(text: &'a str, i: usize) -> Option<(T, usize)> {
    let mut stream = serde_json::Deserializer::from_str(text.get(i..)?).into_iter::<T>();
    let value = stream.next()?.ok()?;
    Some((value, i + stream.byte_offset()))
}

/// Items' (start, end) in a text, and their identity fields and [`Cuts`] where read
/// ([`scan_items`]).
type ItemSpans<'a> = Vec<(usize, usize, Option<Head<'a>>, Option<Cuts>)>;

/// Where an item scan stopped.
enum ItemsEnd {
    /// At the start of the item at this position, the first at or past the scan's limit.
    At(usize),
    /// At the list's `]`, at this position.
    Close(usize),
}

/// The items' spans of the JSON array whose `[` is at `open`, and the position of its `]`. The text
/// is split in `parts` parts (four per core: the cores take them as they finish the last, so none
/// waits long on another's larger share), each starting at a likely item boundary
/// ([`scan_part`]); a part's items count only when the part before it stopped exactly at its first
/// item's start, else the scan goes on from where the part before stopped: the spans are those of
/// one scan from the start, whatever the guesses.
fn list_items(text: &str, open: usize, parts: usize) -> Option<(ItemSpans<'_>, usize)> {
    let b = text.as_bytes();
    let first = skip_ws(b, open + 1);
    if b.get(first) == Some(&b']') {
        return Some((Vec::new(), first));
    }
    let limits: Vec<usize> = (1..parts)
        .map(|k| first + (b.len() - first) * k / parts)
        .chain([usize::MAX])
        .collect();
    let from: Vec<(usize, usize)> = [first]
        .into_iter()
        .chain(limits.iter().copied())
        .zip(limits.iter().copied())
        .collect();
    let scanned = crate::par::map(from, 2, |(from, limit)| {
        if from == first {
            scan_items(text, first, limit).map(|(spans, end)| (first, spans, end))
        } else {
            scan_part(text, from, limit)
        }
    });
    let mut spans = Vec::new();
    let mut at = first;
    for part in scanned {
        let Some((start, mut found, end)) = part else {
            break;
        };
        if start != at {
            break; // not where the part before stopped: scanned on from there below
        }
        spans.append(&mut found);
        match end {
            ItemsEnd::Close(close) => return Some((spans, close)),
            ItemsEnd::At(next) => at = next,
        }
    }
    let (mut found, end) = scan_items(text, at, usize::MAX)?;
    spans.append(&mut found);
    match end {
        ItemsEnd::Close(close) => Some((spans, close)),
        ItemsEnd::At(_) => None,
    }
}

/// A part of a list scanned from a guessed item start: the first [`likely_item_start`] at or after
/// `from` whose scan reaches `limit` (or, for the last part, the list's end near the text's end);
/// guesses that end sooner (an array of objects inside an item, a string) are followed by the next.
/// `None` when no guess holds before `limit`.
fn scan_part(text: &str, from: usize, limit: usize) -> Option<(usize, ItemSpans<'_>, ItemsEnd)> {
    let b = text.as_bytes();
    let mut from = from;
    loop {
        let start = likely_item_start(b, from)?;
        if start >= limit {
            return None;
        }
        match scan_items(text, start, limit) {
            Some((spans, ItemsEnd::At(next))) => return Some((start, spans, ItemsEnd::At(next))),
            // The list's end is followed by the rest of the document only (small); an inner
            // array's end, by the rest of the items.
            Some((spans, ItemsEnd::Close(close))) if b.len() - close <= LIST_TAIL_MAX => {
                return Some((start, spans, ItemsEnd::Close(close)));
            }
            Some((_, ItemsEnd::Close(close))) => from = close + 1,
            None => from = start + 1,
        }
    }
}

/// The most text [`scan_part`] expects after a list's `]` (the document's other members).
const LIST_TAIL_MAX: usize = 64 << 10;

/// The items from the one starting at `start` until the list's end or the first item starting at
/// or past `limit`; each validated by serde. `None` at anything but an item, `,` or `]`.
///
/// An object item is read as its identity fields ([`Head`]) in the same pass: serde validates what
/// it skips as it validates a `RawValue`, so where that read succeeds the item is valid and ends
/// where serde stopped, and its identity is what reading the item's text alone would give (the
/// later identity pass is not needed); read as an [`ItemHead`] first, for its [`Cuts`] too.
/// Anything else — not an object, or a field serde will not take as an identity — is validated as
/// a `RawValue` and has no identity here.
fn scan_items(text: &str, start: usize, limit: usize) -> Option<(ItemSpans<'_>, ItemsEnd)> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = start;
    loop {
        let at = skip_ws(b, i);
        let object = b.get(at) == Some(&b'{');
        let read = object
            .then(|| json_value::<ItemHead<'_>>(text, at))
            .flatten()
            .map(|(item, end)| (item.split(text), end))
            .or_else(|| {
                object
                    .then(|| json_value::<Head<'_>>(text, at))
                    .flatten()
                    .map(|(head, end)| ((head, None), end))
            });
        let (s, e, head, cuts) = match read {
            Some(((head, cuts), end)) => (at, end, Some(head), cuts),
            None => {
                let (raw, _) = json_value::<&RawValue>(text, i)?;
                let s = raw.get().as_ptr() as usize - text.as_ptr() as usize;
                (s, s + raw.get().len(), None, None)
            }
        };
        spans.push((s, e, head, cuts));
        let next = skip_ws(b, e);
        match b.get(next)? {
            b']' => return Some((spans, ItemsEnd::Close(next))),
            b',' => i = skip_ws(b, next + 1),
            _ => return None,
        }
        if i >= limit {
            return Some((spans, ItemsEnd::At(i)));
        }
    }
}

/// The first place at or after `from` that looks like the start of a list item: a `{` after a `,`
/// after a `}` (white space allowed between). Only a guess: the scan checks it.
fn likely_item_start(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let comma = i + memchr::memchr(b',', b.get(i..)?)?;
        let before = b.get(..comma)?.iter().rposition(|c| !c.is_ascii_whitespace());
        let after = skip_ws(b, comma + 1);
        if before.is_some_and(|p| b[p] == b'}') && b.get(after) == Some(&b'{') {
            return Some(after);
        }
        i = comma + 1;
    }
}

/// Each object's identity from the identity fields the scan read, as [`identities`] gives it.
fn keys_of(heads: Vec<Option<Head<'_>>>, spans: &[Span]) -> Vec<Option<ResourceKey>> {
    let items: Vec<(Option<Head<'_>>, &Span)> = heads.into_iter().zip(spans).collect();
    crate::par::map(items, 2_000, |(head, span)| head?.key(span.4.as_deref()))
}

/// Each object's identity, or `None` where the fields do not give one (the object is then parsed
/// whole for its error). Large inputs are split across the cores.
fn identities(text: &str, spans: &[Span]) -> Vec<Option<ResourceKey>> {
    let one = |(_, _, start, end, list_type): &Span| {
        let body = &text[*start..*end];
        if !body.starts_with('{') {
            return None;
        }
        // The scan validated every span: the quick read is exact where it answers.
        let head = match quick_head(body) {
            Some(h) => h,
            None => serde_json::from_str::<Head<'_>>(body).ok()?,
        };
        head.resource(list_type.as_deref()).ok().map(|r| r.key)
    };
    crate::par::map_ref(spans, 2_000, one)
}

/// The identity fields of an object's text **already validated as JSON**, read by following its
/// structure (strings skipped with `memchr`, nothing built or checked again): what
/// `serde_json::from_str::<Head>` answers, several times faster. `None` (ask serde) wherever the
/// answer could differ: a key or an identity value with an escape, a field given twice (serde
/// rejects it), an identity field that is neither a string nor `null`, an `items` field.
fn quick_head(body: &str) -> Option<Head<'_>> {
    let b = body.as_bytes();
    let mut head = Head {
        api_version: None,
        kind: None,
        metadata: None,
        items: None,
    };
    let (mut api, mut kind, mut meta) = (false, false, false);
    let mut i = open_object(b, 0)?;
    while let Some((key, at)) = next_key(body, &mut i)? {
        i = at;
        match key {
            "apiVersion" => (head.api_version, i) = first_plain(&mut api, body, i)?,
            "kind" => (head.kind, i) = first_plain(&mut kind, body, i)?,
            "metadata" => {
                if std::mem::replace(&mut meta, true) {
                    return None;
                }
                if b[i..].starts_with(b"null") {
                    i += 4;
                } else {
                    let (m, at) = quick_meta(body, i)?;
                    head.metadata = Some(m);
                    i = at;
                }
            }
            "items" => return None,
            _ => i = skip_value(b, i)?,
        }
        i = after_member(b, i)?;
    }
    Some(head)
}

/// `metadata`'s `name` and `namespace` (see [`quick_head`]); the object starts at `i`.
fn quick_meta(body: &str, i: usize) -> Option<(HeadMeta<'_>, usize)> {
    let b = body.as_bytes();
    let mut meta = HeadMeta {
        name: None,
        namespace: None,
    };
    let (mut name, mut namespace) = (false, false);
    let mut i = open_object(b, i)?;
    while let Some((key, at)) = next_key(body, &mut i)? {
        i = at;
        match key {
            "name" => (meta.name, i) = first_plain(&mut name, body, i)?,
            "namespace" => (meta.namespace, i) = first_plain(&mut namespace, body, i)?,
            _ => i = skip_value(b, i)?,
        }
        i = after_member(b, i)?;
    }
    Some((meta, i))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Past the `{` at `i` (after white space).
fn open_object(b: &[u8], i: usize) -> Option<usize> {
    let i = skip_ws(b, i);
    (b.get(i) == Some(&b'{')).then_some(i + 1)
}

/// The next member's key and where its value starts, or `None` at the object's end (`*i` then past
/// its `}`). `Err`-like `None` outside: a key with an escape.
#[allow(clippy::option_option)] // outer: ask serde; inner: the object ended
fn next_key<'a>(body: &'a str, i: &mut usize) -> Option<Option<(&'a str, usize)>> {
    let b = body.as_bytes();
    let at = skip_ws(b, *i);
    match b.get(at)? {
        b'}' => {
            *i = at + 1;
            Some(None)
        }
        b'"' => {
            let end = at + 1 + memchr::memchr2(b'"', b'\\', b.get(at + 1..)?)?;
            if b[end] != b'"' {
                return None;
            }
            let colon = skip_ws(b, end + 1);
            (b.get(colon) == Some(&b':')).then_some(())?;
            Some(Some((body.get(at + 1..end)?, skip_ws(b, colon + 1))))
        }
        _ => None,
    }
}

/// Past the `,` after a member's value, or at the `}` ending the object.
fn after_member(b: &[u8], i: usize) -> Option<usize> {
    let i = skip_ws(b, i);
    match b.get(i)? {
        b',' => Some(i + 1),
        b'}' => Some(i),
        _ => None,
    }
}

/// An identity field's value at `i` (see [`plain_string_or_null`]) and the position after it; `None`
/// (ask serde) when the field was given before.
fn first_plain<'a>(seen: &mut bool, body: &'a str, i: usize) -> Option<(Option<Cow<'a, str>>, usize)> {
    if std::mem::replace(seen, true) {
        return None;
    }
    let (v, at) = plain_string_or_null(body, i)?;
    Some((v.map(Cow::Borrowed), at))
}

/// A string without escapes (borrowed) or `null` at `i`, and the position after it.
fn plain_string_or_null(body: &str, i: usize) -> Option<(Option<&str>, usize)> {
    let b = body.as_bytes();
    match b.get(i)? {
        b'"' => {
            let end = i + 1 + memchr::memchr2(b'"', b'\\', b.get(i + 1..)?)?;
            (b[end] == b'"').then_some(())?;
            Some((Some(body.get(i + 1..end)?), end + 1))
        }
        b'n' if b[i..].starts_with(b"null") => Some((None, i + 4)),
        _ => None,
    }
}

/// Past the (valid) JSON value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            // A number or a literal: up to the next delimiter.
            let len = b
                .get(i..)?
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace())
                .unwrap_or(b.len() - i);
            Some(i + len)
        }
    }
}

/// Past the string whose opening quote is at `i`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j] == b'\\' {
            j += 2;
        } else {
            return Some(j + 1);
        }
    }
}

/// What of an object to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Everything.
    Whole,
    /// Without `status`.
    Comparable,
    /// Without `status`, `metadata.managedFields` and the last-applied annotation.
    Lean,
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What [`Shape::Comparable`] leaves out.
const COMPARABLE: Skip = Skip {
    keys: &["status"],
    nested: None,
};

/// What [`Shape::Lean`] leaves out (read past by serde and by [`Compiled::from_json`] alike).
const LEAN: Skip = Skip {
    keys: &["status"],
    nested: Some((
        "metadata",
        &Skip {
            keys: &["managedFields"],
            nested: Some((
                "annotations",
                &Skip {
                    keys: &[LAST_APPLIED],
                    nested: None,
                },
            )),
        },
    )),
};

impl Shape {
    /// What this shape leaves out, if anything.
    fn rule(self) -> Option<&'static Skip> {
        match self {
            Shape::Whole => None,
            Shape::Comparable => Some(&COMPARABLE),
            Shape::Lean => Some(&LEAN),
        }
    }

    /// Removes from a parsed object what this shape leaves out.
    fn strip(self, v: &mut Value) {
        if let Some(rule) = self.rule() {
            strip(v, rule);
        }
    }
}

/// Removes from a map what `rule` leaves out.
fn strip(v: &mut Value, rule: &Skip) {
    let Some(m) = v.as_object_mut() else { return };
    for k in rule.keys {
        m.remove(*k);
    }
    if let Some((name, nested)) = rule.nested
        && let Some(child) = m.get_mut(name)
    {
        strip(child, nested);
    }
}

/// Bytes `start..end` of `text` with each value `shape` leaves out that the scan located ([`Cuts`])
/// replaced by `0`; `None` when there is nothing to cut or a cut lies outside (not the text it was
/// found in).
fn cut_text(text: &str, start: usize, end: usize, cuts: Option<&[Cut]>, shape: Shape) -> Option<String> {
    let lean = shape == Shape::Lean;
    let cuts = cuts?;
    let mut out = String::with_capacity(end - start);
    let mut at = start;
    for &(s, e, lean_only) in cuts {
        if lean_only && !lean {
            continue;
        }
        out.push_str(text.get(at..s)?);
        out.push('0');
        at = e;
    }
    if at == start {
        return None;
    }
    out.push_str(text.get(at..end)?);
    Some(out)
}

/// `read` of the cut text ([`cut_text`]) where there is one and it reads, else of the text as it
/// stands (whose error, if any, is the one to tell: worded as it would have been).
fn read_cut_first<'s, T, E>(
    cut: Option<&'s str>,
    whole: &'s str,
    read: impl Fn(&'s str) -> Result<T, E>,
) -> Result<T, E> {
    match cut.map(&read) {
        Some(Ok(v)) => Ok(v),
        _ => read(whole),
    }
}

/// An object read from JSON text with what `rule` leaves out skipped (never built).
fn read_skipping(text: &str, rule: &'static Skip) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = serde::de::DeserializeSeed::deserialize(MapWith(rule), &mut de)?;
    de.end()?;
    Ok(v)
}

/// A map read with the keys `rule` names skipped; the one it reads into, with its own rule. The
/// last occurrence of a key wins, as in a `Value`. An object that is not a map is an error (the
/// caller then parses it whole, which says what is wrong).
struct MapWith(&'static Skip);

impl<'de> serde::de::DeserializeSeed<'de> for MapWith {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for MapWith {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.0.keys.contains(&key.as_str()) {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            let v = match self.0.nested {
                Some((name, nested)) if name == key => map.next_value_seed(MapWith(nested))?,
                _ => map.next_value::<Value>()?,
            };
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// [`crate::load`]'s list test on a scanned head.
/// The (apiVersion, kind) a typed list (`kind: DeploymentList`) gives items that omit theirs.
fn list_type_of(head: &Head<'_>) -> Option<Box<(String, String)>> {
    let kind = head.kind.as_deref().unwrap_or_default();
    match (&head.api_version, kind.strip_suffix("List")) {
        (Some(api), Some(k)) if !k.is_empty() => Some(Box::new((api.to_string(), k.to_string()))),
        _ => None,
    }
}

fn head_is_list(h: &Head<'_>) -> bool {
    h.kind.as_deref().unwrap_or("").ends_with("List")
        && h.items.is_some()
        && h.metadata.as_ref().and_then(|m| m.name.as_ref()).is_none()
}

/// A typed list's (apiVersion, kind) for an item that omits its own.
fn fill_list_type(v: &mut Value, list_type: Option<&(String, String)>) {
    if let (Some(obj), Some((api, kind))) = (v.as_object_mut(), list_type) {
        obj.entry("apiVersion")
            .or_insert_with(|| Value::String(api.clone()));
        obj.entry("kind").or_insert_with(|| Value::String(kind.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster-scoped kind given a namespace (reading drops it: not the text's object), and one
    /// without; whether each is read from its text as it stands.
    fn cluster_scoped_cases() -> [(String, bool); 2] {
        [
            (
                r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "namespace": "y"}}"#
                    .to_string(),
                false,
            ),
            (
                r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}"#.to_string(),
                true,
            ),
        ]
    }

    /// A live object is decoded compiled only where reading it as a `Value` would give exactly the
    /// text's object, and redaction would leave it alone; then it compares as the `Value` does.
    #[test]
    fn lean_compiled_only_where_the_value_would_be_the_text() {
        let deploy = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
            "namespace": "shop", "managedFields": [{"manager": "kubectl"}]}, "spec": {"replicas": 2},
            "status": {"replicas": 2}}"#;
        let cases = [
            (deploy.to_string(), true),
            // A namespace the default would add.
            (deploy.replace(r#""namespace": "shop","#, ""), false),
            // Redaction would change these.
            (
                r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "shop"},
                    "data": {"a": "Yg=="}}"#
                    .to_string(),
                false,
            ),
            (
                r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"},
                    "data": {"db_password": "x"}}"#
                    .to_string(),
                false,
            ),
        ];
        for (text, compiled) in cases.into_iter().chain(cluster_scoped_cases()) {
            let mut d = Deferred::default_compact();
            d.add_bytes("live.json", text.clone().into_bytes());
            d.default_namespace("default");
            let got = d.lean_compiled(0);
            assert_eq!(got.is_some(), compiled, "{text}");
            if let Some(c) = got {
                let lean = d.lean(0).expect("reads");
                assert_eq!(c.key(), &lean.key, "{text}");
                assert_eq!(c.compiled(), &Compiled::of(&lean.object), "{text}");
            }
            // Read flat: where and as compiled.
            let flat = d.lean_flat(0, |f| (f.key().clone(), f.root().to_value()));
            assert_eq!(flat.is_some(), compiled, "{text}");
            if let Some((key, object)) = flat {
                let lean = d.lean(0).expect("reads");
                assert_eq!((key, object), (lean.key, lean.object), "{text}");
            }
            let flat = d.comparable_flat(0, |f| (f.key().clone(), f.root().to_value()));
            assert_eq!(flat.is_some(), compiled, "{text}");
            if let Some((key, object)) = flat {
                let whole = d.comparable(0).expect("reads");
                assert_eq!((key, object), (whole.key, whole.object), "{text}");
            }
        }
        // A typed list's item without its own type.
        let mut d = Deferred::default_compact();
        d.add_bytes(
            "list.json",
            br#"{"apiVersion": "v1", "kind": "ConfigMapList", "items": [{"metadata": {"name": "c", "namespace": "shop"}}]}"#
                .to_vec(),
        );
        assert_eq!(d.len(), 1);
        assert!(d.lean_compiled(0).is_none());
        assert!(d.lean_flat(0, |_| ()).is_none());
        assert!(d.comparable_flat(0, |_| ()).is_none());
        assert!(d.lean(0).is_ok());
    }

    /// A desired object is decoded compiled only where that is exactly the prepared object
    /// (`DesiredObject::new` of its comparable read): never where a default namespace, redaction or
    /// a version conversion would change it, whether the namespace is defaulted before or after.
    #[test]
    fn desired_compiled_only_where_it_is_the_prepared_object() {
        let deploy = r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
            "namespace": "shop"}, "spec": {"replicas": 2, "template": {"spec": {"containers":
            [{"name": "c", "image": "nginx"}]}}}, "status": {"replicas": 2}}"#;
        let cases = [
            (deploy.to_string(), true),
            // Keys out of order, given twice: the last one wins, as in a `Value`.
            (
                r#"{"spec": {"replicas": 1}, "kind": "Deployment", "apiVersion": "apps/v1",
                    "metadata": {"namespace": "shop", "name": "web"}, "spec": {"replicas": 3}}"#
                    .to_string(),
                true,
            ),
            // A namespace the default would add.
            (deploy.replace(r#""namespace": "shop""#, r#""labels": {}"#), false),
            // Redaction would change these.
            (
                r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "shop"},
                    "stringData": {"a": "b"}}"#
                    .to_string(),
                false,
            ),
            (
                deploy.replace(r#""image": "nginx""#, r#""image": "nginx", "env": [{"name": "DB_PASSWORD", "value": "x"}]"#),
                false,
            ),
            // The version live objects are read in: the deprecated `serviceAccount` (even `null`),
            // an `autoscaling/v1` HorizontalPodAutoscaler.
            (
                deploy.replace(r#""containers""#, r#""serviceAccount": "robot", "containers""#),
                false,
            ),
            (
                deploy.replace(r#""containers""#, r#""serviceAccount": null, "containers""#),
                false,
            ),
            (
                r#"{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "j", "namespace": "shop"},
                    "spec": {"jobTemplate": {"spec": {"template": {"spec": {"serviceAccount": "robot"}}}}}}"#
                    .to_string(),
                false,
            ),
            (
                r#"{"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h",
                    "namespace": "shop"}, "spec": {"targetCPUUtilizationPercentage": 70}}"#
                    .to_string(),
                false,
            ),
            (
                r#"{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h",
                    "namespace": "shop"}, "spec": {"minReplicas": 1}}"#
                    .to_string(),
                true,
            ),
            // Not an object, or without an identity.
            ("[1, 2]".to_string(), false),
            (r#"{"kind": "ConfigMap"}"#.to_string(), false),
        ];
        for (text, compiled) in &cases
            .into_iter()
            .chain(cluster_scoped_cases())
            .collect::<Vec<_>>()
        {
            for default_first in [false, true] {
                let mut d = Deferred::default();
                d.add_bytes("desired.json", text.clone().into_bytes());
                if d.is_empty() {
                    assert!(!compiled, "{text}");
                    continue;
                }
                if default_first {
                    d.default_namespace("default");
                }
                let got = d.desired_compiled(0);
                d.default_namespace("default");
                assert_eq!(got.is_some(), *compiled, "{text}");
                if let Some((key, c)) = got {
                    let prepared = crate::DesiredObject::new(d.comparable(0).expect("reads"));
                    assert_eq!(&key, prepared.key(), "{text}");
                    assert_eq!(c, Compiled::of(prepared.object()), "{text}");
                }
            }
        }
        // Loaded compactly, or a typed list's item without its own type: the `Value` way.
        let mut d = Deferred::default_compact();
        d.add_bytes("desired.json", deploy.as_bytes().to_vec());
        assert!(d.desired_compiled(0).is_none());
        let mut d = Deferred::default();
        d.add_bytes(
            "list.json",
            br#"{"apiVersion": "v1", "kind": "ConfigMapList", "items": [{"metadata": {"name": "c", "namespace": "shop"}}]}"#
                .to_vec(),
        );
        assert!(d.desired_compiled(0).is_none());
        assert!(d.comparable(0).is_ok());
    }

    /// apiVersion, kind and metadata's (name, namespace), as text.
    fn head_fields(h: &Head<'_>) -> String {
        let m = h
            .metadata
            .as_ref()
            .map(|m| (m.name.as_deref(), m.namespace.as_deref()));
        format!("{:?} {:?} {m:?}", h.api_version.as_deref(), h.kind.as_deref())
    }

    #[test]
    fn the_quick_identity_read_answers_as_serde_or_defers_to_it() {
        let bodies = [
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","namespace":"b"},"spec":{"x":[1,{"y":"}"}]}}"#,
            r#" { "spec" : { "s": "a \" quoted } brace", "n": [ -1.5e3, true, false, null, {} , [] ] } ,
                "metadata" : { "labels": {"name": "not-me"}, "name" : "web" } , "kind" : "Service", "apiVersion" : "v1" } "#,
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":null}"#,
            r#"{"kind":null,"apiVersion":"v1","metadata":{"name":null,"namespace":"x"}}"#,
            r#"{}"#,
            r#"{"status":{"conditions":[{"message":"\\\"}"}]},"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"}}"#,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"managedFields":[{"f:spec":{"f:x":{}}}],"namespace":"n","name":"p"}}"#,
            r#"{"kind":"Pod","metadata":{"name":"p","name":"q"}}"#,
            r#"{"kind":"Pod","kind":"Service","metadata":{"name":"p"}}"#,
            r#"{"kind":"Pod","metadata":{"name":"p"},"metadata":{"name":"q"}}"#,
            r#"{"kind":"Po\u0064","metadata":{"name":"p"}}"#,
            r#"{"ki\u006ed":"Pod","metadata":{"name":"p"}}"#,
            r#"{"kind":7,"metadata":{"name":"p"}}"#,
            r#"{"kind":"Pod","metadata":"p"}"#,
            r#"{"kind":"PodList","items":[{"kind":"Pod"}]}"#,
            r#"{"kind":"Pod","metadata":{"name":["p"]}}"#,
            r#"{"kind":"Pod","x":12345,"y":-0.5,"metadata":{"uid":1e10,"name":"p"},"z":true}"#,
        ];
        let mut answered = 0;
        for body in bodies {
            let serde = serde_json::from_str::<Head<'_>>(body)
                .ok()
                .map(|h| head_fields(&h));
            if let Some(quick) = quick_head(body) {
                answered += 1;
                assert_eq!(Some(head_fields(&quick)), serde, "{body}");
            }
        }
        // The plain spellings are read quickly; escapes, duplicates, odd types and lists defer.
        assert_eq!(answered, 8);
    }

    fn both(text: &str) -> (crate::load::Loaded, crate::load::Loaded) {
        let eager = crate::parse_documents_with("in.json", text, LoadOptions::compact());
        let mut d = Deferred {
            options: LoadOptions::compact(),
            ..Deferred::default()
        };
        d.add_bytes("in.json", text.as_bytes().to_vec());
        (eager, d.into_loaded())
    }

    fn assert_same(text: &str) {
        let (eager, deferred) = both(text);
        assert_eq!(eager.resources, deferred.resources, "{text}");
        // Comparable and lean objects are the whole ones without what they leave out.
        let mut d = Deferred::default();
        d.add_bytes("in.json", text.as_bytes().to_vec());
        for i in 0..d.len() {
            for shape in [Shape::Comparable, Shape::Lean] {
                if let (Ok(a), Ok(mut b)) = (d.parse(i, shape), d.resource(i)) {
                    shape.strip(&mut b.object);
                    assert_eq!(a, b);
                }
            }
        }
        let msgs = |l: &crate::load::Loaded| {
            let mut m: Vec<String> = l.errors.iter().map(ToString::to_string).collect();
            m.sort();
            m
        };
        assert_eq!(msgs(&eager), msgs(&deferred), "{text}");
    }

    #[test]
    fn deferred_loading_gives_what_eager_loading_gives() {
        // A kubectl list, a typed list whose items omit their type, single objects in a stream,
        // escapes in names, cluster-scoped objects with a namespace, broken items, status dropped.
        assert_same(
            r#"{"apiVersion":"v1","items":[{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","namespace":"x",
                    "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"kind\":\"Deployment\"}","team":"t"},
                    "managedFields":[{"manager":"kubectl","operation":"Update","fieldsV1":{"f:spec":{"f:replicas":{}}}}]},
                  "spec":{"replicas":1},"status":{"replicas":1}},
                {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n\u0031","namespace":"x"}},
                {"kind":"ConfigMap","metadata":{"name":"noapi"}},
                {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":7}},
                {"apiVersion":"V1","kind":"Secret","metadata":{"name":"s"}},
                [1,2]],"kind":"List","metadata":{"resourceVersion":""}}"#,
        );
        assert_same(
            r#"{"apiVersion":"apps/v1","kind":"DeploymentList","items":[{"metadata":{"name":"typed"},"spec":{}}]}
               {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"single"},"data":{"k":"v"}}
               null
               {"apiVersion":"v1","kind":"ConfigMapList","items":null}
               {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","name":"dup2"}}"#,
        );
        assert_same(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}} {"broken": "#);
        assert_same(r#"[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}]"#);
    }

    /// A list of `n` items full of what looks like item boundaries: arrays of objects, strings
    /// holding `},{` and `},{"apiVersion"`, escaped quotes; `sep` between items.
    fn tricky_list(n: usize, sep: &str) -> String {
        let items: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p{i}","annotations":{{"a":"x}},{{\"apiVersion\":1}},{{y","b":"}},{{"}}}},
                       "spec":{{"containers":[{{"name":"c","ports":[{{"p":1}},{{"p":2}}]}},{{"name":"d"}}],"s":"\\\"}},{{\\\""}}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{}],"metadata":{{"resourceVersion":""}}}}"#,
            items.join(sep)
        )
    }

    /// A list whose items spell their identities every odd way: escapes in keys and values, fields
    /// given twice, of other types or `null`, in another order, an item that is a list, items that
    /// are not objects (one an array serde could read as the identity's fields in order), one nested
    /// deeper than serde's recursion limit; between plain ones.
    fn odd_identities() -> String {
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        let items = [
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"plain","namespace":"a"}}"#.to_string(),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"esc\u0061ped","namespace":"a\/b"}}"#.into(),
            r#"{"\u0061piVersion":"v1","kind":"Pod","metadata":{"name":"escaped-key"}}"#.into(),
            r#"{"apiVersion":"v1","kind":"Pod","kind":"Pod","metadata":{"name":"twice"}}"#.into(),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","name":"b"}}"#.into(),
            r#"{"apiVersion":"v1","kind":5,"metadata":{"name":"number"}}"#.into(),
            r#"{"apiVersion":null,"kind":"Pod","metadata":{"name":"nulls","namespace":null}}"#.into(),
            r#"{"metadata":null,"kind":"Pod","apiVersion":"v1"}"#.into(),
            r#"{"spec":{"x":[1,{"kind":"Decoy"}]},"metadata":{"labels":{"name":"decoy"},"name":"late"},"kind":"Pod","apiVersion":"v1"}"#.into(),
            r#"{"apiVersion":"v1","kind":"List","items":[{"kind":"Pod"}]}"#.into(),
            r#"["v1","Pod",{"name":"array"}]"#.into(),
            r#""text""#.into(),
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep"}},"data":{deep}}}"#),
            r#"{ "apiVersion" : "v1" , "kind" : "ConfigMap" , "metadata" : { "name" : "spaced" } }"#.into(),
            // Empty, invalid or missing identity fields; namespaces a cluster-scoped kind drops.
            r#"{"apiVersion":"","kind":"Pod","metadata":{"name":"empty-api"}}"#.into(),
            r#"{"apiVersion":"a/b/c","kind":"Pod","metadata":{"name":"bad-api"}}"#.into(),
            r#"{"apiVersion":"v1","kind":"","metadata":{"name":"empty-kind"}}"#.into(),
            r#"{"kind":"ConfigMap","metadata":{"name":"no-api"}}"#.into(),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#.into(),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"","namespace":"a"}}"#.into(),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"empty-ns","namespace":""}}"#.into(),
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"ns","namespace":"x"}}"#.into(),
            r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"cr","namespace":"x"}}"#.into(),
        ];
        format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
            items.join(",\n")
        )
    }

    #[test]
    fn the_parallel_list_scan_finds_what_the_serial_scan_finds() {
        let list = tricky_list(300, ",");
        let pretty = tricky_list(300, "\n  ,\n  ");
        let typed = r#"{"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}},{"apiVersion":"","metadata":{"name":"c"}},{"kind":"ConfigMap","metadata":{"name":"d"}}],"kind":"PodList","apiVersion":"v1"}"#;
        let broken_item = list.replacen(r#""name":"p150""#, r#""name":"p150","#, 1);
        let cases: Vec<(String, bool)> = vec![
            // (text, whether the parallel scan takes it)
            (list.clone(), true),
            (pretty, true),
            (typed.to_string(), true),
            (r#"{"apiVersion":"v1","kind":"List","items":[ ]}"#.into(), true),
            (
                r#"{"apiVersion":"v1","kind":"List","items":[1,[2],"x",{}]}"#.into(),
                true,
            ),
            (format!("{list}\n"), true),
            // another document after it, errors, odd shapes: the serial scan's
            (
                format!(r#"{list} {{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c"}}}}"#),
                false,
            ),
            (format!("{list} x"), false),
            (broken_item, false),
            (list.replacen("}],\"metadata\"", "},],\"metadata\"", 1), false),
            (
                r#"{"apiVersion":"v1","kind":"List","items":[{}],"items":[{}]}"#.into(),
                false,
            ),
            (
                r#"{"apiVersion":"v1","kind":"List","\u0069tems":[{"kind":"Pod"}]}"#.into(),
                true,
            ),
            (r#"{"apiVersion":"v1","kind":"List","items":null}"#.into(), false),
            (r#"{"apiVersion":"v1","kind":"Pod","items":[{}]}"#.into(), false),
            (
                r#"{"apiVersion":"v1","kind":"List","metadata":{"name":"named"},"items":[{}]}"#.into(),
                false,
            ),
            (r#"{"apiVersion":"v1","kind":"List"}"#.into(), false),
            (r#"[{"apiVersion":"v1"}]"#.into(), false),
        ];
        let mut cases = cases;
        cases.push((odd_identities(), true));
        for (text, taken) in &cases {
            let serial = scan_json(text, 0);
            for parts in [1, 2, 3, 7, 16] {
                let parallel = scan_list_parallel(text, 0, 0, parts);
                assert_eq!(parallel.is_some(), *taken, "{parts} parts: {text}");
                if let Some(p) = parallel {
                    let s = serial
                        .as_ref()
                        .expect("the serial scan takes what the parallel one does");
                    assert!(s.syntax_error.is_none() && s.whole.is_empty(), "{text}");
                    assert_eq!(p.items, s.items, "{parts} parts: {text}");
                    assert!(p.whole.is_empty() && p.syntax_error.is_none());
                    // The identities read while scanning are those the identity pass reads.
                    let heads = p.heads.expect("the parallel scan reads identities");
                    let read = keys_of(heads.into_iter().map(|(h, _)| h).collect(), &p.items);
                    assert_eq!(read, identities(text, &s.items), "{parts} parts: {text}");
                }
            }
        }
        // A guess inside an item (an array of objects, a string) moves on to the next item's start
        // (where the list's end is not in sight: an inner array's end passes for it there).
        let list = tricky_list(2_000, ",");
        let serial = scan_json(&list, 0).expect("scan");
        let starts: Vec<usize> = serial.items.iter().map(|s| s.2).collect();
        for k in [1, 100, 1_000] {
            let inside = starts[k - 1] + list[starts[k - 1]..].find("\"ports\"").expect("ports");
            let (start, _, _) = scan_part(&list, inside, usize::MAX).expect("a later item");
            assert_eq!(start, starts[k], "guess inside item {}", k - 1);
        }
        // Large lists go to the parallel scan by default.
        let mut d = Deferred::default();
        let n = PARALLEL_SCAN_MIN / (tricky_list(2, ",").len() - tricky_list(1, ",").len()) + 1;
        let big = tricky_list(n, ",");
        assert!(big.len() > PARALLEL_SCAN_MIN);
        assert!(scan_list_parallel(&big, 0, PARALLEL_SCAN_MIN, 2).is_some());
        d.add_bytes("big.json", big.into_bytes());
        assert_eq!(d.len(), n);
        assert!(d.errors.is_empty());
        assert_eq!(d.key(7).name, "p7");
    }

    /// Live objects as the API server returns them, spelt every way the cuts must survive: pretty
    /// and compact, keys in any order, `status` first, given twice, `null` or a string, the
    /// last-applied annotation given twice or with an escaped key, annotations or metadata that are
    /// not maps, `managedFields` of another type.
    fn cut_cases() -> Vec<String> {
        let applied = serde_json::to_string(&serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "annotations": {}}, "spec": {"replicas": 2, "template": {"spec": {
            "containers": [{"name": "c", "image": "nginx:1.27", "env": [{"name": "MODE", "value": "a \"quoted\" value"}]}]}}}}))
            .expect("json");
        let la = serde_json::to_string(&applied).expect("json");
        let managed = r#"[{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"apps/v1","time":"2026-11-20T08:15:02Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:image":{}}}}}}}}]"#;
        let status = r#"{"replicas":2,"readyReplicas":2,"conditions":[{"type":"Available","status":"True","message":"Deployment has minimum availability."}]}"#;
        let spec = r#"{"replicas":2,"template":{"spec":{"containers":[{"name":"c","image":"nginx:1.27","env":[{"name":"MODE","value":"a \"quoted\" value"}]}]}}}"#;
        let la_key = "kubectl.kubernetes.io/last-applied-configuration";
        let ann = format!(r#"{{"deployment.kubernetes.io/revision":"3","{la_key}":{la}}}"#);
        let item = |meta: &str, rest: &str| {
            format!(r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{meta},{rest}}}"#)
        };
        let meta = |name: &str, annotations: &str, managed: &str| {
            format!(
                r#"{{"name":"{name}","namespace":"shop","annotations":{annotations},"managedFields":{managed},"uid":"u-{name}"}}"#
            )
        };
        vec![
            item(
                &meta("plain", &ann, managed),
                &format!(r#""spec":{spec},"status":{status}"#),
            ),
            format!(
                r#"{{"status":{status},"spec":{spec},"metadata":{},"kind":"Deployment","apiVersion":"apps/v1"}}"#,
                meta("status-first", &ann, managed)
            ),
            serde_json::to_string_pretty(
                &serde_json::from_str::<Value>(&item(
                    &meta("pretty", &ann, managed),
                    &format!(r#""spec":{spec},"status":{status}"#),
                ))
                .expect("json"),
            )
            .expect("json"),
            item(
                &meta("status-twice", &ann, managed),
                &format!(r#""status":{status},"spec":{spec},"status":{status}"#),
            ),
            item(
                &meta("status-null", &ann, managed),
                &format!(r#""spec":{spec},"status":null"#),
            ),
            item(
                &meta("status-text", &ann, managed),
                &format!(r#""spec":{spec},"status":"a status that is a long string""#),
            ),
            item(
                &meta(
                    "la-twice",
                    &format!(
                        r#"{{"{la_key}":{la},"a":"b","{la_key}":"{{\"kind\":\"Deployment\",\"apiVersion\":\"apps/v1\"}}"}}"#
                    ),
                    managed,
                ),
                &format!(r#""spec":{spec}"#),
            ),
            item(
                &meta(
                    "la-escaped-key",
                    &format!(r#"{{"kubectl.kubernetes.io\/last-applied-configuration":{la}}}"#),
                    managed,
                ),
                &format!(r#""spec":{spec}"#),
            ),
            item(
                &meta("annotations-text", r#""not a map of annotations""#, managed),
                &format!(r#""spec":{spec},"status":{status}"#),
            ),
            item(
                &meta("annotations-twice", &ann, managed).replacen(
                    r#""uid""#,
                    &format!(r#""annotations":{ann},"uid""#),
                    1,
                ),
                &format!(r#""spec":{spec},"status":{status}"#),
            ),
            item(
                &meta("managed-text", &ann, r#""managed fields that are a string""#),
                &format!(r#""spec":{spec},"status":{status}"#),
            ),
            item(
                r#""metadata that is a string""#,
                &format!(r#""spec":{spec},"status":{status}"#),
            ),
            item(&meta("no-cuts", "{}", "[]"), &format!(r#""spec":{spec}"#)),
        ]
    }

    #[test]
    fn values_cut_by_the_scan_read_as_the_whole_text_reads() {
        let cases = cut_cases();
        // A list large enough for the parallel scan (which finds the cuts): every case many times,
        // each copy named apart.
        let mut items = Vec::new();
        let mut size = 0;
        while size <= PARALLEL_SCAN_MIN {
            for (k, case) in cases.iter().enumerate() {
                let copy = case.replacen(
                    r#""namespace":"shop""#,
                    &format!(r#""namespace":"ns-{}""#, items.len()),
                    1,
                );
                size += copy.len();
                items.push((k, copy));
            }
        }
        let list = format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
            items
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut big = Deferred::default();
        big.add_bytes("big.json", list.into_bytes());
        let index: std::collections::HashMap<ResourceKey, usize> =
            (0..big.len()).map(|i| (big.key(i).clone(), i)).collect();
        // Each object read from the big list (cut) as it reads alone (the serial scan: no cuts).
        let mut compared = std::collections::BTreeSet::new();
        for (k, text) in items.iter().take(3 * cases.len()) {
            let mut alone = Deferred::default();
            alone.add_bytes("one.json", text.clone().into_bytes());
            if alone.is_empty() {
                assert!(!alone.errors.is_empty(), "case {k}: neither loaded nor an error");
                continue;
            }
            let i = index[alone.key(0)];
            assert_eq!(big.resource(i).ok(), alone.resource(0).ok(), "case {k}");
            assert_eq!(big.comparable(i).ok(), alone.comparable(0).ok(), "case {k}");
            assert_eq!(big.lean(i).ok(), alone.lean(0).ok(), "case {k}");
            // The compiled reads too (cut where the big list's scan located the values).
            let compiled_lean = |d: &Deferred, i| {
                d.lean_compiled(i)
                    .map(|c| (c.key().clone(), c.compiled().clone()))
            };
            assert_eq!(compiled_lean(&big, i), compiled_lean(&alone, 0), "case {k}");
            assert_eq!(big.desired_compiled(i), alone.desired_compiled(0), "case {k}");
            let flat_lean = |d: &Deferred, i| d.lean_flat(i, |f| (f.key().clone(), f.root().to_value()));
            assert_eq!(flat_lean(&big, i), flat_lean(&alone, 0), "case {k}");
            if let Some((key, object)) = flat_lean(&big, i) {
                let lean = big.lean(i).expect("reads");
                assert_eq!((key, object), (lean.key, lean.object), "case {k}");
            }
            let flat_whole =
                |d: &Deferred, i| d.comparable_flat(i, |f| (f.key().clone(), f.root().to_value()));
            assert_eq!(flat_whole(&big, i), flat_whole(&alone, 0), "case {k}");
            if let Some((key, object)) = flat_whole(&big, i) {
                let whole = big.comparable(i).expect("reads");
                assert_eq!((key, object), (whole.key, whole.object), "case {k}");
            }
            if big.lean(i).is_ok() {
                compared.insert(*k);
            }
        }
        // All but the one without an identity and the one whose annotations are no map (its
        // lean read is an error either way: the caller then reads it whole).
        assert_eq!(compared.len(), cases.len() - 2, "{compared:?}");
        // The cuts themselves make texts that read as the whole ones do (not only the fallback).
        let mut cut_items = 0;
        for it in &big.items {
            let Body::Raw {
                text,
                start,
                end,
                cuts: Some(cuts),
                ..
            } = &it.body
            else {
                continue;
            };
            cut_items += 1;
            let whole = &big.texts[*text];
            for (shape, lean) in [(Shape::Lean, true), (Shape::Comparable, false)] {
                let rule = shape.rule().expect("a rule");
                let expected = read_skipping(&whole[*start..*end], rule).expect("valid");
                let expected_compiled = Compiled::from_json(&whole[*start..*end], rule).expect("valid");
                match cut_text(whole, *start, *end, Some(cuts), shape) {
                    Some(t) => {
                        assert_eq!(
                            read_skipping(&t, rule).expect("the cut text reads"),
                            expected,
                            "{}",
                            it.key
                        );
                        assert_eq!(
                            Compiled::from_json(&t, rule).expect("the cut text decodes"),
                            expected_compiled,
                            "{}",
                            it.key
                        );
                    }
                    None => assert!(!lean && cuts.iter().all(|c| c.2), "{}", it.key),
                }
            }
        }
        // The cases with something to cut, bar those read without cuts (given twice, not maps).
        assert!(
            cut_items >= big.len() * 8 / cases.len(),
            "{cut_items} of {}",
            big.len()
        );
    }

    #[test]
    fn pushed_objects_come_back_the_same() {
        let r = |ns: Option<&str>| {
            let mut v = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c"}, "data": {"k": "v"}, "status": {"x": 1}});
            if let Some(ns) = ns {
                v["metadata"]["namespace"] = ns.into();
            }
            Resource::from_value(v).expect("resource")
        };
        let mut d = Deferred::default();
        d.push(r(Some("a")));
        d.push(r(None));
        d.default_namespace("shop");
        assert_eq!(d.resource(0).expect("0"), r(Some("a")));
        let mut shop = r(None);
        shop.default_namespace("shop");
        assert_eq!(d.resource(1).expect("1"), shop);
        assert!(d.comparable(1).expect("1").object.get("status").is_none());
        d.retain(|k| k.namespace.as_deref() == Some("a"));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn yaml_and_default_namespaces_are_as_eager() {
        let mut d = Deferred::default();
        d.add_bytes(
            "in.yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-y}\n".to_vec(),
        );
        d.add_bytes(
            "in.json",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"}}"#.to_vec(),
        );
        d.default_namespace("shop");
        assert!(d.keys().all(|k| k.namespace.as_deref() == Some("shop")));
        let comparable: Vec<Resource> = (0..d.len()).filter_map(|i| d.comparable(i).ok()).collect();
        let loaded = d.into_loaded();
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(comparable, loaded.resources, "no status here: the same objects");
        assert_eq!(loaded.resources.len(), 2);
        for r in &loaded.resources {
            assert_eq!(r.object["metadata"]["namespace"], "shop");
        }
    }
}
