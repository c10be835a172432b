//! The diff engine: ARCHITECTURE §3, the normative diff semantics.
//!
//! One walk over the desired object, with the live object and the kind's schema alongside:
//! every desired field is compared after normalization; a live field the desired object lacks is
//! drift only when it edits a server default, was applied by the owner of the desired state, or sits
//! in a closed collection; otherwise it is reported as unmanaged. Nothing is allocated on the path
//! where the two agree except the walker's small stacks.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use std::borrow::Cow;

use crate::compiled::Compiled;
use crate::drift::{Change, Drift, DriftId, DriftReport, DriftStatus, UnmanagedField};
use crate::flat::FlatLive;
use crate::ignore::{IgnoreSet, ResourceIgnores};
use crate::load::MAX_DEPTH;
use crate::model::ResourceKey;
use crate::object::{Autoscalers, CompiledLive, DesiredObject, LiveObject};
use crate::ownership::Ownership;
use crate::ownership::Step;
use crate::path::{FieldPath, Segment, escape_pointer_token};
use crate::rules::{DriftSite, RuleSet};
use crate::schema::{self, DefaultVerdict, Level, ListSpec, Node};
use crate::tree::{Indexed, Shape, Tree, TreeArr, TreeMap};
use crate::value::{loose_eq, number_eq, quantity_eq};

/// Field managers of the tools people use to change a cluster by hand. A live field one of them owns
/// in an object the desired state manages is drift ("added by hand"), not an unmanaged extra.
/// `kubectl` is what the API server records for kubectl commands that send no field manager
/// (`kubectl scale` up to at least 1.33: the manager comes from the User-Agent, with subresource
/// `scale`; also `kubectl apply --server-side`'s default). `kubectl create` and `kubectl replace` are
/// not here: their managers own every field of the
/// object, server defaults included, so they say nothing about which field a person added.
pub const HAND_MANAGERS: &[&str] = &[
    "kubectl",
    "kubectl-edit",
    "kubectl-set",
    "kubectl-patch",
    "kubectl-scale",
    "kubectl-label",
    "kubectl-annotate",
    "k9s",
    "lens",
];

/// Options of the diff engine.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DiffOptions {
    /// Field managers that apply the desired state (`--manager`): a live field they own that the
    /// desired state no longer has is drift (ARCHITECTURE §3.2b).
    pub appliers: Vec<String>,
    /// Field managers whose changes are not drift (`--ignore-manager`, ARCHITECTURE §3.6).
    pub ignore_managers: Vec<String>,
    /// Ignore rules and presets.
    pub ignore: IgnoreSet,
    /// Field managers of people's tools ([`HAND_MANAGERS`] by default): a live-only field one of
    /// them owns is drift, "added by hand" (`--hand-manager`, `handManagers:`).
    pub hand_managers: Vec<String>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            appliers: Vec::new(),
            ignore_managers: Vec::new(),
            ignore: IgnoreSet::default(),
            hand_managers: HAND_MANAGERS.iter().map(|m| (*m).to_string()).collect(),
        }
    }
}

impl DiffOptions {
    /// Adds an applier field manager.
    #[must_use]
    pub fn applier(mut self, manager: impl Into<String>) -> Self {
        self.appliers.push(manager.into());
        self
    }

    /// Adds an ignored field manager.
    #[must_use]
    pub fn ignore_manager(mut self, manager: impl Into<String>) -> Self {
        self.ignore_managers.push(manager.into());
        self
    }

    /// Replaces the list of hand-edit field managers (an empty list turns "added by hand" off).
    #[must_use]
    pub fn hand_managers(mut self, managers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.hand_managers = managers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the ignore rules.
    #[must_use]
    pub fn ignore(mut self, ignore: IgnoreSet) -> Self {
        self.ignore = ignore;
        self
    }
}

/// Per-comparison context that comes from outside the two objects.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffContext<'a> {
    /// Autoscaler targets in the live set.
    pub autoscalers: Option<&'a Autoscalers>,
    /// Schemas of custom kinds, from the live CRDs: their `default:` values are server defaults.
    pub custom: Option<&'a crate::custom::CustomSchemas>,
}

/// Compares desired objects with live ones and classifies the differences.
///
/// ```
/// use drift_core::{DiffEngine, DesiredObject, LiveObject, Resource};
/// use serde_json::json;
///
/// let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
///     "metadata": {"name": "backend-api", "namespace": "drift-test"}, "spec": {"replicas": 3}});
/// // Live carries server defaults and status, and someone scaled it to 5.
/// let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
///     "metadata": {"name": "backend-api", "namespace": "drift-test", "resourceVersion": "42", "generation": 2},
///     "spec": {"replicas": 5, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
///              "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}},
///     "status": {"replicas": 5}});
///
/// let engine = DiffEngine::default();
/// let report = engine.diff(
///     &DesiredObject::new(Resource::from_value(desired).unwrap()),
///     Some(&LiveObject::new(Resource::from_value(live).unwrap())),
/// );
/// assert_eq!(report.drifts.len(), 1);
/// assert_eq!(report.drifts[0].describe(), "spec.replicas expected=3, actual=5");
/// assert_eq!(report.drifts[0].rule, "replicas");
/// ```
#[derive(Debug, Clone, Default)]
pub struct DiffEngine {
    options: DiffOptions,
    rules: RuleSet,
}

impl DiffEngine {
    /// An engine with these options and rules.
    pub fn new(options: DiffOptions, rules: RuleSet) -> Self {
        DiffEngine { options, rules }
    }

    /// The options.
    pub fn options(&self) -> &DiffOptions {
        &self.options
    }

    /// The rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Compares one desired object with its live counterpart (`None` when live has no such object).
    pub fn diff(&self, desired: &DesiredObject, live: Option<&LiveObject>) -> DriftReport {
        self.diff_with(desired, live, &DiffContext::default())
    }

    /// [`DiffEngine::diff`] with context from the rest of the live set.
    pub fn diff_with(
        &self,
        desired: &DesiredObject,
        live: Option<&LiveObject>,
        ctx: &DiffContext<'_>,
    ) -> DriftReport {
        self.walk(desired.key(), desired.object(), live, ctx)
    }

    /// [`DiffEngine::diff_with`] of a desired object in compiled form (as the detector keeps them):
    /// the comparison reads it in place.
    pub fn diff_compiled(
        &self,
        key: &ResourceKey,
        desired: &Compiled,
        live: Option<&LiveObject>,
        ctx: &DiffContext<'_>,
    ) -> DriftReport {
        self.walk(key, desired.root(), live, ctx)
    }

    /// [`DiffEngine::diff_with`] against a live object in compiled form ([`CompiledLive`]): the
    /// comparison reads it in place, and builds values only for what it reports.
    pub fn diff_with_compiled_live(
        &self,
        desired: &DesiredObject,
        live: &CompiledLive,
        ctx: &DiffContext<'_>,
    ) -> DriftReport {
        self.compare_with(
            desired.key(),
            desired.object(),
            live.key(),
            live.root(),
            LiveRef::Compiled(live),
            ctx,
        )
    }

    /// [`DiffEngine::diff_with`] against a live object read flat from its text ([`FlatLive`]).
    pub fn diff_with_flat_live(
        &self,
        desired: &DesiredObject,
        live: &FlatLive<'_>,
        ctx: &DiffContext<'_>,
    ) -> DriftReport {
        self.compare_with(
            desired.key(),
            desired.object(),
            live.key(),
            live.root(),
            LiveRef::Flat(live),
            ctx,
        )
    }

    /// [`DiffEngine::diff_compiled`] against a live object read flat from its text ([`FlatLive`]).
    pub fn diff_compiled_flat_live(
        &self,
        key: &ResourceKey,
        desired: &Compiled,
        live: &FlatLive<'_>,
        ctx: &DiffContext<'_>,
    ) -> DriftReport {
        self.compare_with(
            key,
            desired.root(),
            live.key(),
            live.root(),
            LiveRef::Flat(live),
            ctx,
        )
    }

    /// [`DiffEngine::diff_compiled`] against a live object in compiled form: both read in place.
    pub fn diff_compiled_both(
        &self,
        key: &ResourceKey,
        desired: &Compiled,
        live: &CompiledLive,
        ctx: &DiffContext<'_>,
    ) -> DriftReport {
        self.compare_with(
            key,
            desired.root(),
            live.key(),
            live.root(),
            LiveRef::Compiled(live),
            ctx,
        )
    }

    /// The comparison, whichever form holds the desired object.
    fn walk<'a, T: Tree<'a>>(
        &self,
        key: &ResourceKey,
        desired: T,
        live: Option<&'a LiveObject>,
        ctx: &DiffContext<'_>,
    ) -> DriftReport {
        let Some(live) = live else {
            return DriftReport {
                key: key.clone(),
                status: DriftStatus::MissingLive,
                drifts: Vec::new(),
                unmanaged: Vec::new(),
            };
        };
        self.compare_with(
            key,
            desired,
            live.key(),
            live.object(),
            LiveRef::Object(live),
            ctx,
        )
    }

    /// The comparison, whichever forms hold the two objects.
    fn compare_with<'a, T: Tree<'a>, L: Tree<'a>>(
        &self,
        key: &ResourceKey,
        desired: T,
        lkey: &ResourceKey,
        lroot: L,
        live: LiveRef<'a>,
        ctx: &DiffContext<'_>,
    ) -> DriftReport {
        let key = key.clone();
        let (root, defaults) = schema::root_for(&lkey.group, &lkey.version, &lkey.kind);
        let ignores = self.options.ignore.for_tree(lkey, lroot);
        let autoscaled = crate::kinds::is_scalable_workload(&lkey.group, &lkey.kind)
            && ctx.autoscalers.is_some_and(|a| a.targets(lkey));
        let custom = ctx
            .custom
            .and_then(|c| c.schema(&lkey.group, &lkey.version, &lkey.kind));
        let mut w: Walker<'a, '_, T, L> = Walker {
            options: &self.options,
            live,
            defaults,
            custom,
            autoscaled,
            nested: false,
            ignores: &ignores,
            segs: Vec::with_capacity(16),
            anc: Vec::with_capacity(16),
            raw: Vec::new(),
            unmanaged: Vec::new(),
        };
        match (desired.shape(), lroot.shape()) {
            (Shape::Obj(d), Shape::Obj(l)) => w.compare_map(d, l, root),
            _ => w.compare(desired, Some(lroot), root),
        }
        let Walker { raw, unmanaged, .. } = w;
        let drifts = raw
            .into_iter()
            .map(|r| {
                let site = DriftSite {
                    key: &key,
                    path: &r.path,
                    change: r.change,
                    expected: r.expected.as_deref(),
                    actual: r.actual.as_deref(),
                };
                let (rule, class) = self.rules.classify(&site);
                Drift {
                    id: DriftId::of(&key, &r.path.readable()),
                    key: key.clone(),
                    change: r.change,
                    expected: r.expected.map(Cow::into_owned),
                    actual: r.actual.map(Cow::into_owned),
                    rule,
                    set: class.set,
                    severity: class.severity,
                    desired_pointer: r.desired_pointer,
                    actor: r.actor,
                    path: r.path,
                }
            })
            .collect::<Vec<_>>();
        let unmanaged = unmanaged
            .into_iter()
            .map(|(path, v)| UnmanagedField {
                path: path.pointer(),
                field: path.readable(),
                actual: v.into_owned(),
            })
            .collect();
        let status = if drifts.is_empty() {
            DriftStatus::InSync
        } else {
            DriftStatus::Drifted
        };
        DriftReport {
            key,
            status,
            drifts,
            unmanaged,
        }
    }
}

/// The live object compared, for what the walk reads besides its fields (field ownership).
#[derive(Clone, Copy)]
enum LiveRef<'a> {
    Object(&'a LiveObject),
    Compiled(&'a CompiledLive),
    Flat(&'a FlatLive<'a>),
}

impl<'a> LiveRef<'a> {
    fn ownership(self) -> &'a Ownership {
        match self {
            LiveRef::Object(l) => l.ownership(),
            LiveRef::Compiled(l) => l.ownership(),
            LiveRef::Flat(l) => l.ownership(),
        }
    }
}

/// A step of the walk.
#[derive(Clone, Copy)]
enum Seg<'a, M, LM> {
    Field(&'a str),
    Index(usize),
    Keyed {
        spec: &'static ListSpec,
        el: El<M, LM>,
        live: Option<usize>,
        desired: Option<usize>,
    },
}

/// A keyed list element: live's, or desired's where live has none.
#[derive(Clone, Copy)]
enum El<M, LM> {
    Live(LM),
    Desired(M),
}

impl<'a, M: TreeMap<'a>, LM: TreeMap<'a>> El<M, LM> {
    fn key_fields(&self, spec: &ListSpec) -> Vec<(String, Value)> {
        match self {
            El::Live(m) => key_fields_of(*m, spec),
            El::Desired(d) => key_fields_of(*d, spec),
        }
    }
}

struct RawDrift<'a> {
    path: FieldPath,
    actor: Option<crate::drift::Actor>,
    desired_pointer: Option<String>,
    change: Change,
    expected: Option<Cow<'a, Value>>,
    actual: Option<Cow<'a, Value>>,
}

/// The map of a node that is one.
#[inline]
fn as_map<'a, X: Tree<'a>>(x: X) -> Option<X::Map> {
    match x.shape() {
        Shape::Obj(m) => Some(m),
        _ => None,
    }
}

struct Walker<'a, 'o, T: Tree<'a>, L: Tree<'a>> {
    options: &'o DiffOptions,
    live: LiveRef<'a>,
    defaults: bool,
    /// The custom kind's schema (from its live CRD), for its `default:` values.
    custom: Option<&'o Value>,
    autoscaled: bool,
    /// A walk inside a set element: paths are relative, so ownership and ignore rules do not apply.
    nested: bool,
    ignores: &'o ResourceIgnores<'o>,
    segs: Vec<Seg<'a, T::Map, L::Map>>,
    anc: Vec<Level<'a>>,
    raw: Vec<RawDrift<'a>>,
    unmanaged: Vec<(FieldPath, Cow<'a, Value>)>,
}

impl<'a, 'o, T: Tree<'a>, L: Tree<'a>> Walker<'a, 'o, T, L> {
    fn compare(&mut self, d: T, l: Option<L>, node: &'static Node) {
        if node.skip {
            return;
        }
        if self.segs.len() > MAX_DEPTH {
            let d = d.to_value();
            if !l.is_some_and(|l| loose_eq(&d, &l.to_value())) {
                self.emit(Change::Changed, Some(d), l.map(Tree::to_value));
            }
            return;
        }
        if d.is_null() {
            // `null` in desired says nothing: treat the field as absent from desired.
            if let Some(l) = l {
                self.live_only(l, node, false);
            }
            return;
        }
        let Some(l) = l.filter(|l| !l.is_null()) else {
            if node.presence || !d.is_effectively_empty() {
                self.emit(Change::Missing, Some(d.to_value()), None);
            }
            return;
        };
        match (d.shape(), l.shape()) {
            (Shape::Obj(dm), Shape::Obj(lm)) => self.compare_map(dm, lm, node),
            (Shape::Arr(da), Shape::Arr(la)) => self.compare_list(d, da, l, la, node),
            _ => {
                if self.scalar_eq(d, l, node) {
                    return;
                }
                if node.zero_is_default && d.is_zero() && self.default_matches(node, l) {
                    return;
                }
                self.emit(Change::Changed, Some(d.to_value()), Some(l.to_value()));
            }
        }
    }

    #[inline]
    fn scalar_eq(&self, d: T, l: L, node: &Node) -> bool {
        if l.eq_tree(d) {
            return true;
        }
        match node.leaf {
            schema::Leaf::Quantity => quantity_eq(&d.to_value(), &l.to_value()),
            schema::Leaf::ResourceQuantity => {
                crate::value::resource_quantity_eq(&d.to_value(), &l.to_value())
            }
            schema::Leaf::Image => match (d.as_str(), l.as_str()) {
                (Some(a), Some(b)) => crate::image::same_image(a, b),
                _ => false,
            },
            schema::Leaf::IntOrString | schema::Leaf::Plain => match (d.as_number(), l.as_number()) {
                (Some(a), Some(b)) => number_eq(&a, &b),
                _ => false,
            },
        }
    }

    fn compare_map(&mut self, dm: T::Map, lm: L::Map, node: &'static Node) {
        self.anc.push(Level {
            live: lm.level(),
            desired: Some(dm.level()),
        });
        // Desired keys, live keys and the schema's fields are all sorted: one merge pass visits them.
        let mut schema = SchemaCursor::new(node);
        let mut live_iter = lm.entries().peekable();
        for (k, dv) in dm.entries() {
            let mut lv = None;
            while let Some(&(lk, v)) = live_iter.peek() {
                match key_cmp(lk, k) {
                    Ordering::Less => {
                        self.live_only_entry(lk, v, schema.child(lk), node.closed);
                        live_iter.next();
                    }
                    Ordering::Equal => {
                        lv = Some(v);
                        live_iter.next();
                        break;
                    }
                    Ordering::Greater => break,
                }
            }
            let child = schema.child(k);
            // The common case, a scalar equal on both sides, needs no path.
            if let Some(lv) = lv
                && !child.skip
                && dv.is_scalar()
                && self.scalar_eq(dv, lv, child)
            {
                continue;
            }
            self.segs.push(Seg::Field(k));
            if dv.is_null() || child.dropped_if.is_some_and(|dropped| dropped(&dm.to_map())) {
                if let Some(lv) = lv {
                    self.live_only(lv, child, node.closed);
                }
            } else {
                self.compare(dv, lv, child);
            }
            self.segs.pop();
        }
        for (lk, lv) in live_iter {
            self.live_only_entry(lk, lv, schema.child(lk), node.closed);
        }
        self.anc.pop();
    }

    #[inline]
    fn live_only_entry(&mut self, k: &'a str, v: L, child: &'static Node, parent_closed: bool) {
        if child.skip || v.is_empty() {
            return;
        }
        self.segs.push(Seg::Field(k));
        self.live_only(v, child, parent_closed);
        self.segs.pop();
    }

    /// A live value at a place the desired object leaves open.
    fn live_only(&mut self, lv: L, node: &'static Node, parent_closed: bool) {
        if node.skip || lv.is_empty() {
            return;
        }
        match self.default_verdict(node, lv) {
            DefaultVerdict::Matches => return,
            // Someone edited a field the server defaults (§3.2a): drift against the default.
            DefaultVerdict::Differs(default) => {
                self.emit(Change::Changed, Some(Cow::Owned(default)), Some(lv.to_value()));
                return;
            }
            DefaultVerdict::None => {}
        }
        if !parent_closed
            && self.segs.len() <= MAX_DEPTH
            && let Shape::Obj(lm) = lv.shape()
            && node.has_structure()
        {
            self.anc.push(Level {
                live: lm.level(),
                desired: None,
            });
            let mut schema = SchemaCursor::new(node);
            for (k, v) in lm.entries() {
                self.live_only_entry(k, v, schema.child(k), node.closed);
            }
            self.anc.pop();
            return;
        }
        self.unexplained(lv, parent_closed);
    }

    fn default_verdict(&self, node: &Node, lv: L) -> DefaultVerdict {
        if let Some(d) = self.custom_default() {
            return if loose_eq(d, &lv.to_value()) {
                DefaultVerdict::Matches
            } else {
                DefaultVerdict::Differs(d.clone())
            };
        }
        if !self.defaults {
            return DefaultVerdict::None;
        }
        let key = match self.segs.last() {
            Some(Seg::Field(k)) => k,
            _ => "",
        };
        schema::default_verdict(node, key, lv, &self.anc)
    }

    /// The `default:` the custom kind's schema gives the current field, if any.
    fn custom_default(&self) -> Option<&'o Value> {
        self.custom_schema()?.get("default")
    }

    /// The custom kind's schema of the current field, if any.
    fn custom_schema(&self) -> Option<&'o Value> {
        let mut s = self.custom?;
        for seg in &self.segs {
            s = match seg {
                Seg::Field(f) => crate::custom::child(s, Some(f))?,
                _ => crate::custom::child(s, None)?,
            };
        }
        Some(s)
    }

    fn default_matches(&self, node: &Node, lv: L) -> bool {
        self.default_verdict(node, lv) == DefaultVerdict::Matches
    }

    /// A live value nothing explains: drift if it is ours to remove or a person added it to an
    /// object we manage, else unmanaged.
    fn unexplained(&mut self, lv: L, closed: bool) {
        if closed || self.owned_by_applier() || self.owned_by_hand() {
            self.emit(Change::Extra, None, Some(lv.to_value()));
        } else {
            let path = self.field_path();
            if !self.ignores.covers(&path) {
                self.unmanaged.push((path, lv.to_value()));
            }
        }
    }

    fn compare_list(&mut self, d: T, da: T::Arr, l: L, la: L::Arr, node: &'static Node) {
        // A custom kind's list declares its own semantics (`x-kubernetes-list-type`).
        let spec = node
            .list
            .or_else(|| crate::custom::list_spec(self.custom_schema()?));
        match spec {
            Some(spec) if spec.set => {
                if !self.set_equivalent(da, la, spec) {
                    self.emit(Change::Changed, Some(d.to_value()), Some(l.to_value()));
                }
            }
            Some(spec) if !spec.keys.is_empty() => self.compare_keyed(da, la, spec, node.closed),
            _ => {
                let item = spec.map_or(&schema::GENERIC, |s| s.item);
                let (mut ds, mut ls) = (da.items(), la.items());
                for i in 0..da.len().max(la.len()) {
                    self.segs.push(Seg::Index(i));
                    match (ds.next(), ls.next()) {
                        (Some(d), Some(l)) => self.compare(d, Some(l), item),
                        (Some(d), None) => self.emit(Change::Missing, Some(d.to_value()), None),
                        (None, Some(l)) => self.emit(Change::Extra, None, Some(l.to_value())),
                        (None, None) => {}
                    }
                    self.segs.pop();
                }
            }
        }
    }

    fn compare_keyed(&mut self, da: T::Arr, la: L::Arr, spec: &'static ListSpec, closed: bool) {
        let la = la.indexed();
        let n = la.count();
        let mut matched = Matched::new(n);
        let index = (n > 32).then(|| key_index(&la, spec));
        for (i, del) in da.items().enumerate() {
            let Shape::Obj(dm) = del.shape() else {
                // Not an element with keys: compare it by position.
                if i < n {
                    matched.set(i);
                }
                self.segs.push(Seg::Index(i));
                self.compare(del, la.at(i), &schema::GENERIC);
                self.segs.pop();
                continue;
            };
            // Lists usually keep their order: try the same position first.
            let same_place = la
                .at(i)
                .filter(|_| !matched.get(i))
                .and_then(as_map)
                .is_some_and(|lm| keys_equal_of(dm, lm, spec));
            let found = if same_place {
                Some(i)
            } else {
                match &index {
                    Some(ix) => ix
                        .get(&key_string_of(dm, spec))
                        .and_then(|cands| cands.iter().copied().find(|j| !matched.get(*j))),
                    None => (0..n).find(|&j| {
                        !matched.get(j)
                            && la
                                .at(j)
                                .and_then(as_map)
                                .is_some_and(|lm| keys_equal_of(dm, lm, spec))
                    }),
                }
            };
            match found {
                Some(j) => {
                    matched.set(j);
                    let Some(lm) = la.at(j).and_then(as_map) else {
                        continue;
                    };
                    self.segs.push(Seg::Keyed {
                        spec,
                        el: El::Live(lm),
                        live: Some(j),
                        desired: Some(i),
                    });
                    self.compare_map(dm, lm, spec.item);
                    self.segs.pop();
                }
                None => {
                    self.segs.push(Seg::Keyed {
                        spec,
                        el: El::Desired(dm),
                        live: None,
                        desired: Some(i),
                    });
                    self.emit(Change::Missing, Some(del.to_value()), None);
                    self.segs.pop();
                }
            }
        }
        for j in 0..n {
            let Some(lel) = la.at(j) else { break };
            if matched.get(j) || lel.is_empty() {
                continue;
            }
            match as_map(lel) {
                Some(lm) => {
                    self.segs.push(Seg::Keyed {
                        spec,
                        el: El::Live(lm),
                        live: Some(j),
                        desired: None,
                    });
                    self.unexplained(lel, closed);
                    self.segs.pop();
                }
                None => {
                    self.segs.push(Seg::Index(j));
                    self.unexplained(lel, closed);
                    self.segs.pop();
                }
            }
        }
    }

    /// Sets compare without order: every desired element has its own equivalent live element and
    /// neither side has more.
    fn set_equivalent(&self, da: T::Arr, la: L::Arr, spec: &'static ListSpec) -> bool {
        if da.len() != la.len() {
            return false;
        }
        let la = la.indexed();
        let mut used = vec![false; la.count()];
        da.items().all(|d| {
            let found = (0..la.count())
                .find(|&j| !used[j] && la.at(j).is_some_and(|l| self.element_equivalent(d, l, spec.item)));
            match found {
                Some(j) => {
                    used[j] = true;
                    true
                }
                None => false,
            }
        })
    }

    /// Whether two set elements are equivalent under the diff semantics (no drift between them).
    fn element_equivalent(&self, d: T, l: L, item: &'static Node) -> bool {
        if l.eq_tree(d) {
            return true;
        }
        match (d.shape(), l.shape()) {
            (Shape::Obj(dm), Shape::Obj(lm)) => {
                let mut sub: Walker<'a, '_, T, L> = Walker {
                    options: self.options,
                    live: self.live,
                    defaults: self.defaults,
                    custom: None,
                    autoscaled: false,
                    nested: true,
                    ignores: &NO_IGNORES,
                    segs: Vec::new(),
                    anc: vec![],
                    raw: Vec::new(),
                    unmanaged: Vec::new(),
                };
                sub.compare_map(dm, lm, item);
                sub.raw.is_empty()
            }
            _ => self.scalar_eq(d, l, item),
        }
    }

    fn emit(&mut self, change: Change, expected: Option<Cow<'a, Value>>, actual: Option<Cow<'a, Value>>) {
        let path = self.field_path();
        if self.ignores.covers(&path) {
            return;
        }
        if self.autoscaled && is_spec_replicas(&path) {
            return;
        }
        if matches!(change, Change::Changed | Change::Extra) && self.owned_by_ignored_manager() {
            return;
        }
        let desired_pointer = self.desired_pointer();
        let actor = match change {
            Change::Changed | Change::Extra if !self.nested && !self.live.ownership().managed.is_empty() => {
                self.live.ownership().actor(&self.steps())
            }
            _ => None,
        };
        self.raw.push(RawDrift {
            path,
            actor,
            desired_pointer,
            change,
            expected,
            actual,
        });
    }

    fn field_path(&self) -> FieldPath {
        let segments = self
            .segs
            .iter()
            .map(|s| match s {
                Seg::Field(f) => Segment::Field((*f).to_string()),
                Seg::Index(i) => Segment::Index(*i),
                Seg::Keyed { spec, el, live, .. } => Segment::Key {
                    fields: el.key_fields(spec),
                    index: *live,
                },
            })
            .collect();
        FieldPath::from_segments(segments)
    }

    fn desired_pointer(&self) -> Option<String> {
        let mut out = String::new();
        for s in &self.segs {
            out.push('/');
            match s {
                Seg::Field(f) => escape_pointer_token(f, &mut out),
                Seg::Index(i) => out.push_str(&i.to_string()),
                Seg::Keyed { desired: Some(i), .. } => out.push_str(&i.to_string()),
                Seg::Keyed { desired: None, .. } => return None,
            }
        }
        Some(out)
    }

    fn steps(&self) -> Vec<Step<'a>> {
        self.segs
            .iter()
            .map(|s| match s {
                Seg::Field(f) => Step::Field(f),
                Seg::Index(i) => Step::Index(*i),
                Seg::Keyed { spec, el, .. } => Step::Key(
                    spec.keys
                        .iter()
                        .zip(el.key_fields(spec))
                        .map(|(k, (_, v))| (k.name, v))
                        .collect(),
                ),
            })
            .collect()
    }

    fn owned_by_applier(&self) -> bool {
        if self.nested {
            return false;
        }
        let own = self.live.ownership();
        if own.last_applied.is_none() && (self.options.appliers.is_empty() || own.managed.is_empty()) {
            return false;
        }
        let steps = self.steps();
        let key_default = |depth: usize, name: &str| match self.segs.get(depth) {
            Some(Seg::Keyed { spec, .. }) => spec
                .keys
                .iter()
                .find(|k| k.name == name)
                .and_then(|k| k.default)
                .map(|d| Value::String(d.to_string())),
            _ => None,
        };
        own.in_last_applied(&steps, &key_default) || own.applied_by(&self.options.appliers, &steps)
    }

    /// Whether a hand-edit tool's field manager owns the current node (someone ran `kubectl set
    /// env`, `kubectl edit`, k9s...). Controllers' additions stay unmanaged.
    fn owned_by_hand(&self) -> bool {
        if self.nested || self.options.hand_managers.is_empty() {
            return false;
        }
        let own = self.live.ownership();
        // Most objects were never touched by hand: no path is built for them.
        own.managed
            .iter()
            .any(|e| self.options.hand_managers.contains(&e.manager))
            && own.owned_by(&self.options.hand_managers, &self.steps())
    }

    fn owned_by_ignored_manager(&self) -> bool {
        if self.nested || self.options.ignore_managers.is_empty() && self.ignores.managers.is_empty() {
            return false;
        }
        let own = self.live.ownership();
        if own.managed.is_empty() {
            return false;
        }
        let steps = self.steps();
        own.owned_by(&self.options.ignore_managers, &steps) || own.owned_by(&self.ignores.managers, &steps)
    }
}

/// Which live list elements found their desired counterpart; a bitmask for the usual short lists.
enum Matched {
    Bits(u64),
    Vec(Vec<bool>),
}

impl Matched {
    fn new(len: usize) -> Self {
        if len <= 64 {
            Matched::Bits(0)
        } else {
            Matched::Vec(vec![false; len])
        }
    }
    #[inline]
    fn get(&self, i: usize) -> bool {
        match self {
            Matched::Bits(b) => i < 64 && b & (1 << i) != 0,
            Matched::Vec(v) => v.get(i).copied().unwrap_or(false),
        }
    }
    #[inline]
    fn set(&mut self, i: usize) {
        match self {
            Matched::Bits(b) => {
                if i < 64 {
                    *b |= 1 << i;
                }
            }
            Matched::Vec(v) => {
                if let Some(x) = v.get_mut(i) {
                    *x = true;
                }
            }
        }
    }
}

/// Compares map keys. Most sorted neighbours differ in their first byte, which decides without a
/// `memcmp` call; the rest compare as byte strings.
#[inline]
fn key_cmp(a: &str, b: &str) -> Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// Walks a node's sorted fields alongside sorted map keys: each lookup only moves forward.
struct SchemaCursor {
    node: &'static Node,
    at: usize,
}

impl SchemaCursor {
    #[inline]
    fn new(node: &'static Node) -> Self {
        SchemaCursor { node, at: 0 }
    }

    /// The schema of `key`; keys must come in ascending order.
    #[inline]
    fn child(&mut self, key: &str) -> &'static Node {
        let fields = self.node.fields;
        if fields.is_empty() {
            return self.node.values.unwrap_or(&schema::GENERIC);
        }
        while let Some((name, _)) = fields.get(self.at) {
            match key_cmp(name, key) {
                Ordering::Less => self.at += 1,
                Ordering::Equal => return fields[self.at].1,
                Ordering::Greater => break,
            }
        }
        self.node.values.unwrap_or(&schema::GENERIC)
    }
}

static NO_IGNORES: ResourceIgnores = ResourceIgnores {
    paths: Vec::new(),
    managers: Vec::new(),
};

fn is_spec_replicas(path: &FieldPath) -> bool {
    matches!(path.segments(), [Segment::Field(a), Segment::Field(b)] if a == "spec" && b == "replicas")
}

/// The key fields of a list element (in either form), with key defaults applied.
fn key_fields_of<'a, M: TreeMap<'a>>(el: M, spec: &ListSpec) -> Vec<(String, Value)> {
    spec.keys
        .iter()
        .map(|k| {
            let v = el
                .get(k.name)
                .map(|n| n.to_value().into_owned())
                .or_else(|| k.default.map(|d| Value::String(d.to_string())))
                .unwrap_or(Value::Null);
            (k.name.to_string(), v)
        })
        .collect()
}

/// [`keys_equal`] of a desired element and a live one, in either form.
fn keys_equal_of<'a, M: TreeMap<'a>, N: TreeMap<'a>>(a: M, b: N, spec: &ListSpec) -> bool {
    spec.keys.iter().all(|k| {
        let x = a.get(k.name).filter(|n| !n.is_null());
        let y = b.get(k.name).filter(|n| !n.is_null());
        match (x, y) {
            (Some(x), Some(y)) => y.eq_tree(x) || loose_eq(&x.to_value(), &y.to_value()),
            // An absent key field takes its default, if it has one.
            (Some(v), None) => k.default.is_some_and(|s| v.as_str() == Some(s)),
            (None, Some(v)) => k.default.is_some_and(|s| v.as_str() == Some(s)),
            (None, None) => true,
        }
    })
}

/// An element's key as text (equal keys, equal text), in either form.
fn key_string_of<'a, M: TreeMap<'a>>(el: M, spec: &ListSpec) -> String {
    let mut s = String::new();
    for k in spec.keys {
        match el.get(k.name).filter(|n| !n.is_null()) {
            Some(v) => match v.as_number() {
                Some(n) => s.push_str(&n.as_f64().map_or_else(|| n.to_string(), |f| f.to_string())),
                None => s.push_str(&v.to_value().to_string()),
            },
            None => match k.default {
                Some(d) => s.push_str(&Value::String(d.to_string()).to_string()),
                None => s.push('-'),
            },
        }
        s.push('\u{0}');
    }
    s
}

fn key_value<'v>(el: &'v Map<String, Value>, k: &crate::schema::KeySpec) -> KeyVal<'v> {
    match el.get(k.name) {
        Some(v) if !v.is_null() => KeyVal::Value(v),
        _ => match k.default {
            Some(d) => KeyVal::Str(d),
            None => KeyVal::Absent,
        },
    }
}

enum KeyVal<'v> {
    Value(&'v Value),
    Str(&'static str),
    Absent,
}

/// Whether two list elements have the same key, with key defaults applied.
pub(crate) fn keys_equal(a: &Map<String, Value>, b: &Map<String, Value>, spec: &ListSpec) -> bool {
    spec.keys
        .iter()
        .all(|k| match (key_value(a, k), key_value(b, k)) {
            (KeyVal::Value(x), KeyVal::Value(y)) => x == y || loose_eq(x, y),
            (KeyVal::Value(x), KeyVal::Str(s)) | (KeyVal::Str(s), KeyVal::Value(x)) => x.as_str() == Some(s),
            (KeyVal::Str(x), KeyVal::Str(y)) => x == y,
            (KeyVal::Absent, KeyVal::Absent) => true,
            _ => false,
        })
}

fn key_index<'a, I: Indexed<'a>>(la: &I, spec: &ListSpec) -> std::collections::HashMap<String, Vec<usize>> {
    let mut ix: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
    for j in 0..la.count() {
        if let Some(lm) = la.at(j).and_then(as_map) {
            ix.entry(key_string_of(lm, spec)).or_default().push(j);
        }
    }
    ix
}
