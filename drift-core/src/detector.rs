//! The detector (ARCHITECTURE §6): the pipeline's logic, free of I/O and of any async runtime.
//!
//! It owns the desired index and the live cache, and turns events into drift lifecycle transitions:
//!
//! 1. [`Detector::observe`] takes a live event. If nothing compared can have changed (the
//!    [fingerprint](crate::fingerprint) is unchanged) it stops there; otherwise the key is queued.
//! 2. The queue coalesces per key (latest wins): a storm of updates to one object is one diff.
//! 3. [`Detector::process`] diffs the key, compares the result with the open-drift table and emits
//!    only transitions: opened, updated, resolved, corrected.
//! 4. Each new or changed drift gets a policy decision; fixes pass the safety gates (never unattended
//!    for critical drifts, a rate limit, a flap guard) and come out as [`RemediationPlan`]s.
//! 5. [`Detector::record_fix`] takes the remediator's answer; a fixed drift counts as corrected only
//!    when a later live event shows it gone.
//!
//! The caller drives it: feed events, call `process` while [`Detector::next_key`] returns keys (or
//! [`Detector::process_all`] with batches of them: compared on every core, same outcomes), append
//! the returned events to the drift log, run the returned plans through a remediator (dry run first).
//!
//! ```
//! use std::sync::Arc;
//! use drift_core::clock::ManualClock;
//! use drift_core::detector::{Detector, DetectorConfig};
//! use drift_core::ports::{DesiredResource, LiveEvent, Provenance, RelistScope, DriftEventKind};
//! use drift_core::{DiffEngine, Resource};
//! use serde_json::json;
//!
//! let deploy = |replicas: i64| Resource::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
//!     "metadata": {"name": "web", "namespace": "shop", "generation": replicas}, "spec": {"replicas": replicas}})).unwrap();
//! let mut d = Detector::new(DiffEngine::default(), DetectorConfig::default(), Arc::new(ManualClock::new(0)));
//! d.set_desired(vec![DesiredResource { resource: deploy(3), provenance: Provenance::file("web.yaml") }]);
//! d.observe(LiveEvent::Restarted { scope: RelistScope::All, resources: vec![deploy(3)] });
//! d.observe(LiveEvent::Ready);
//! while let Some(k) = d.next_key() { d.process(&k); }
//! assert!(d.open_drifts().is_empty());
//!
//! d.observe(LiveEvent::Applied(deploy(5)));
//! let key = d.next_key().unwrap();
//! let out = d.process(&key);
//! assert_eq!(out.events[0].kind, DriftEventKind::Opened);
//! assert_eq!(out.events[0].drift.describe(), "spec.replicas expected=3, actual=5");
//! ```

use indexmap::map::RawEntryApiV1 as _;
use indexmap::map::raw_entry_v1::RawEntryMut;
use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, Millis};
use crate::compiled::Compiled;
use crate::cost::PriceTable;
use crate::diff::{DiffContext, DiffEngine};
use crate::drift::{Change, Drift, DriftId, DriftReport, DriftStatus};
use crate::fingerprint::{Fingerprint, fingerprint};
use crate::model::ResourceKey;
use crate::object::{Autoscalers, CompiledLive, DesiredObject, LiveObject};
use crate::patch::{PatchError, revert_patch};
use crate::path::FieldPath;
use crate::policy::{Action, Policy, is_critical};
use crate::ports::{
    AnalysisItem, DesiredResource, DriftEvent, DriftEventKind, DriftRecord, DriftState, LiveEvent,
    Provenance, RecommendedAction, RelistScope, RemediationAction, RemediationOutcome, RemediationPlan,
    RemediationStatus,
};
use crate::rules::{DriftSet, Severity};
use crate::safety::{FlapGuard, FlapGuardConfig, RateLimitConfig, RateLimiter};
use crate::shard::Shard;

/// The detector's hash maps and sets: foldhash (several times faster than SipHash on keys of five
/// strings), seeded per process.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
/// The desired index: a hash map that iterates in the order the set was given. Its keys are shared
/// with the queue and, for objects listed under the same version, the live map: one copy of each
/// key, and a key taken from the queue is looked up by its address (no text compared).
type DesiredIndex = indexmap::IndexMap<Arc<ResourceKey>, DesiredEntry, foldhash::fast::RandomState>;

/// Detector settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DetectorConfig {
    /// The remediation policy.
    pub policy: Policy,
    /// Fix rate limits.
    pub rate_limit: RateLimitConfig,
    /// Flap guard.
    pub flap_guard: FlapGuardConfig,
    /// Prices for the cost model.
    pub prices: PriceTable,
    /// The detector's identity in drift records and change descriptions.
    pub actor: String,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            policy: Policy::default(),
            rate_limit: RateLimitConfig::default(),
            flap_guard: FlapGuardConfig::default(),
            prices: PriceTable::default(),
            actor: "drift-detector".to_string(),
        }
    }
}

/// Errors of detector commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DetectorError {
    /// No open drift has this id.
    #[error("no open drift with id {0}")]
    UnknownDrift(DriftId),
    /// The fix cannot be built.
    #[error("cannot fix {id}: {reason}")]
    CannotFix {
        /// The drift.
        id: DriftId,
        /// Why.
        reason: String,
    },
}

/// A desired object, kept in the compiled form of its prepared form (a `serde_json::Value` costs
/// about ten times the JSON it holds): the diff reads it in place, nothing is parsed to compare it.
struct DesiredEntry {
    compiled: Compiled,
    /// Shared by the entries of one source given together (a `Provenance` is some 200 bytes,
    /// the same for every object of a file or unit).
    provenance: Arc<Provenance>,
}

impl DesiredEntry {
    /// A desired resource prepared ([`DesiredObject::new`]) and compiled, with its key as given:
    /// moved out of the prepared object, not copied (an `autoscaling/v1` HorizontalPodAutoscaler
    /// keeps `v1` in its key, compared in its `v2` form).
    fn new(resource: crate::model::Resource, provenance: Arc<Provenance>) -> (ResourceKey, Self) {
        let given = crate::object::converts_version(&resource.key).then(|| resource.key.version.clone());
        let object = DesiredObject::new(resource);
        let compiled = Compiled::of(object.object());
        let mut key = object.into_resource().key;
        if let Some(version) = given {
            key.version = version;
        }
        (key, DesiredEntry { compiled, provenance })
    }

    /// The prepared object as a value (for fixes, prices and the API: most comparisons never need it).
    fn object(&self, key: &ResourceKey) -> DesiredObject {
        DesiredObject::prepared(crate::model::Resource {
            key: key.clone(),
            object: self.compiled.to_value(),
        })
    }
}

/// A live object: parsed while its key waits to be processed, then kept compiled and LZ4-packed (a
/// `serde_json::Value` costs about ten times the JSON it holds) and read back only for re-diffs.
struct LiveEntry {
    /// Set when the entry is made, except for an object stored as it came (redaction changed
    /// nothing): then taken from it when first asked for (an event for its key, or the compaction
    /// that frees it), not while a list's new objects are stored — a kind without a generation is
    /// fingerprinted by its whole content, a walk over the object the scan need not wait for.
    fingerprint: OnceLock<Fingerprint>,
    fresh: Option<Arc<LiveObject>>,
    compact: Option<Box<[u8]>>,
    /// The object's comparison made as it was stored (on any core, while it was in cache), with the
    /// [`Detector::inputs`] stamp it was made under: taken by the key's next judging while the
    /// stamp still holds (nothing else a comparison reads has changed), else dropped then.
    early: std::sync::Mutex<Option<Box<(u64, DriftReport)>>>,
}

/// The provenance given last, shared with the next entries while they give the same.
#[derive(Default)]
struct Shared(Option<Arc<Provenance>>);

impl Shared {
    /// `provenance`, as the one held when equal.
    fn of(&mut self, provenance: Provenance) -> Arc<Provenance> {
        match &self.0 {
            Some(held) if **held == provenance => held.clone(),
            _ => self.arc(Arc::new(provenance)),
        }
    }

    /// `provenance`, as the one held when equal; else held from now on.
    fn arc(&mut self, provenance: Arc<Provenance>) -> Arc<Provenance> {
        match &self.0 {
            Some(held) if Arc::ptr_eq(held, &provenance) || **held == *provenance => held.clone(),
            _ => self.0.insert(provenance).clone(),
        }
    }
}

/// An object in compiled form, LZ4-packed (field names interned; what repeats besides packs about 2x).
fn pack(value: &serde_json::Value) -> Box<[u8]> {
    lz4_flex::compress_prepend_size(Compiled::of(value).as_bytes()).into_boxed_slice()
}

/// The compiled object [`pack`] packed (our own packing of a valid value: it unpacks and reads back).
fn unpack(packed: &[u8]) -> Option<Compiled> {
    let bytes = lz4_flex::decompress_size_prepended(packed).ok()?;
    Some(Compiled::from_bytes(bytes.into_boxed_slice()))
}

/// A live object's fingerprint, with what its kind keeps (a generation or not).
fn fingerprint_of(object: &serde_json::Value, key: &ResourceKey) -> Fingerprint {
    fingerprint(object, crate::kinds::has_generation(&key.group, &key.kind))
}

impl LiveEntry {
    /// An entry for a prepared object; without a fingerprint only for an object redaction left as
    /// it came (whose fingerprint is then its own, taken later).
    fn new(object: Arc<LiveObject>, fingerprint: Option<Fingerprint>) -> Self {
        let fp = OnceLock::new();
        if let Some(f) = fingerprint {
            let _ = fp.set(f);
        }
        LiveEntry {
            fingerprint: fp,
            fresh: Some(object),
            compact: None,
            early: std::sync::Mutex::new(None),
        }
    }

    /// The fingerprint of the object as it came.
    fn fingerprint(&self, key: &ResourceKey) -> Fingerprint {
        *self.fingerprint.get_or_init(|| {
            // Only an object stored as it came has none yet, and compaction sets it before the
            // parsed form goes; read back from the compact form otherwise (never expected).
            match self.object() {
                Some(o) => fingerprint_of(o.object(), key),
                None => fingerprint_of(&serde_json::Value::Null, key),
            }
        })
    }

    fn object(&self) -> Option<Arc<LiveObject>> {
        if let Some(f) = &self.fresh {
            return Some(f.clone());
        }
        let value = unpack(self.compact.as_deref()?)?.to_value();
        crate::model::Resource::from_value(value)
            .ok()
            .map(|r| Arc::new(LiveObject::new(r)))
    }

    /// The stored compact form, for a diff that reads it in place (no `Value` built): only when
    /// the object is held compactly.
    fn compiled(&self, key: &ResourceKey) -> Option<CompiledLive> {
        if self.fresh.is_some() {
            return None;
        }
        Some(CompiledLive::prepared(
            key.clone(),
            unpack(self.compact.as_deref()?)?,
        ))
    }

    /// The early comparison, taken out, if it was made under this stamp.
    fn take_early(&self, stamp: u64) -> Option<DriftReport> {
        let early = self.early.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let (made, report) = *early;
        (made == stamp).then_some(report)
    }

    /// Heap bytes held (for measurements).
    fn compact_len(&self) -> usize {
        self.compact.as_ref().map_or(0, |c| c.len())
    }
}

/// A live object made ready apart from the detector's state (on any core): its fingerprint and,
/// unless it looked unchanged then, its prepared form.
struct PreparedLive {
    /// `None` for a new key's object stored as it came (see [`LiveEntry::fingerprint`]).
    fingerprint: Option<Fingerprint>,
    /// Boxed where it was prepared (on any core), with the copy of its key the live map keeps
    /// (shared, as is, by the queue or the compaction list when applying puts it there): the
    /// arrival-ordered part moves pointers, it copies nothing.
    object: Result<(Arc<LiveObject>, Arc<ResourceKey>), crate::model::Resource>,
    /// Its key is desired.
    desired: bool,
    /// Its key is queued already.
    queued: bool,
    /// The detector holds its key.
    held: bool,
    /// A new desired key's comparison, made while preparing (see [`LiveEntry::early`]).
    early: Option<Box<(u64, DriftReport)>>,
}

/// How far [`Detector::judge_start`] got.
enum Start<'d> {
    /// The judgement (`None`: the key is not judged).
    Done(Option<Judged>),
    /// Left for [`Detector::judge_finish`] (on any core).
    Costly(Costly<'d>),
}

/// A judgement that still needs a comparison or prices, with what was looked up for it.
struct Costly<'d> {
    entry: &'d DesiredEntry,
    held: Option<(&'d ResourceKey, &'d LiveEntry)>,
    settle: Option<Arc<ResourceKey>>,
    /// The comparison made as the object was stored (its drifts to price); `None`: to compare.
    early: Option<DriftReport>,
}

/// A key's comparison, made apart from the detector's state (on any core), with its drifts priced
/// there too (most comparisons find none; the objects a price reads are built and freed on the
/// core that judged).
struct Judged {
    report: DriftReport,
    /// The monthly cost delta of each of the report's drifts, in order (see [`Detector::cost_of`]).
    costs: Vec<Option<f64>>,
    /// The live map's key (shared, not copied) when its live object is still held parsed: to store
    /// compactly afterwards (see [`Detector::compact`]).
    settle: Option<Arc<ResourceKey>>,
}

/// Batches smaller than this are handled on the calling thread (threads cost more than they save).
const PARALLEL_MIN: usize = 64;

/// An open drift as the detector tracks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenDrift {
    /// The drift.
    pub drift: Drift,
    /// Its state.
    pub state: DriftState,
    /// When it opened.
    pub opened_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
    /// The policy decision.
    pub action: Action,
    /// Why (policy, gate, escalation), for people.
    pub note: String,
    /// Environment of the desired object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Provenance of the desired object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// Monthly cost delta (cost model), for replica and resource drifts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_cost_delta: Option<f64>,
    /// Whether a fix was applied and awaits verification.
    pub fix_pending: bool,
    /// Whether fixing it needs a person's approval.
    pub needs_approval: bool,
}

/// Something for a person to look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// The drift.
    pub drift: Drift,
    /// Environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Why it needs attention.
    pub reason: String,
    /// Whether the flap guard escalated it.
    pub escalation: bool,
}

/// What processing one key produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The diff report (`None` when the key is not desired, or its kind has not been listed yet).
    pub report: Option<DriftReport>,
    /// Lifecycle events to append to the drift log.
    pub events: Vec<DriftEvent>,
    /// Fixes that passed policy and gates; run each as a dry run first.
    pub fixes: Vec<RemediationPlan>,
    /// Drifts that need a person.
    pub alerts: Vec<Alert>,
}

/// What [`Detector::observe`] did with an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// Keys queued for a diff.
    pub queued: usize,
    /// Objects recognised as unchanged without a diff.
    pub skipped: usize,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectorStats {
    /// Live objects seen in events.
    pub objects_seen: u64,
    /// Of those, recognised as unchanged by fingerprint.
    pub objects_skipped: u64,
    /// Diffs run.
    pub diffs: u64,
    /// Re-lists received.
    pub relists: u64,
    /// Drifts opened.
    pub opened: u64,
    /// Drifts corrected.
    pub corrected: u64,
    /// Drifts resolved on their own.
    pub resolved: u64,
    /// Fix plans emitted.
    pub fixes_planned: u64,
    /// Fixes held back by the rate limit.
    pub fixes_rate_limited: u64,
    /// Escalations by the flap guard.
    pub escalations: u64,
}

/// The detector. See the [module documentation](self).
pub struct Detector {
    engine: DiffEngine,
    config: DetectorConfig,
    clock: Arc<dyn Clock>,
    /// In the order the desired set was given (see [`DesiredIndex`]; a source replaced later adds its
    /// new keys at the end, and a removed key's place takes the last key): keys are queued in it,
    /// and a scan then reads the compiled objects in the order they were stored.
    desired: DesiredIndex,
    /// How many desired objects there are of each kind, per (group, version): an autoscaler's
    /// target (named by kind, namespace and name) is looked up under each, not searched for.
    desired_kinds: HashMap<String, Vec<(String, String, usize)>>,
    /// Each key shared with the queue or the compaction list when either holds it too.
    live: HashMap<Arc<ResourceKey>, LiveEntry>,
    autoscalers: Autoscalers,
    /// Schemas of custom kinds, from live CRDs.
    custom: crate::custom::CustomSchemas,
    open: HashMap<ResourceKey, BTreeMap<DriftId, OpenDrift>>,
    /// Keys to process, in order, each at most once.
    queue: crate::queue::KeyQueue,
    /// Every desired key is queued (a whole desired set was queued and no key has left the queue
    /// since): a first listing or `Ready` has nothing to add, and skips looking at every key.
    desired_all_queued: bool,
    /// A stamp of what a comparison reads besides its two objects — the desired set, the
    /// autoscalers, the custom kinds' schemas — changed with each of them: an early comparison
    /// ([`LiveEntry::early`]) made under another stamp is not used.
    inputs: u64,
    listed: Vec<RelistScope>,
    ready: bool,
    rate: RateLimiter,
    flap: FlapGuard,
    /// Approvals, each for the live value the person saw: a later value needs a new approval.
    approved: HashMap<DriftId, Option<serde_json::Value>>,
    /// Drifts with a fix planned whose outcome has not been recorded yet (in flight).
    planned: HashSet<DriftId>,
    /// Live entries still held as full objects, to store compactly (see [`Detector::compact`]).
    unsettled: Vec<Arc<ResourceKey>>,
    /// Desired objects outside every watched scope, with the reason: never judged, never "missing".
    not_watched: BTreeMap<ResourceKey, String>,
    /// The part of the cluster this detector judges (sharding); `None`: all of it.
    shard: Option<Shard>,
    /// Namespaces acquired since the live set was ready whose watches have not all listed yet.
    pending_namespaces: HashSet<String>,
    /// Open drifts of objects outside the shard, kept aside: judged again if the shard comes back.
    dormant: HashMap<ResourceKey, BTreeMap<DriftId, OpenDrift>>,
    /// Keys seen in the parts of lists still arriving ([`LiveEvent::Listing`]), per scope.
    listing: HashMap<RelistScope, HashSet<ResourceKey>>,
    /// A desired set being loaded in parts ([`Detector::begin_desired`]).
    staged: Option<DesiredIndex>,
    stats: DetectorStats,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("desired", &self.desired.len())
            .field("live", &self.live.len())
            .field("open", &self.open.values().map(BTreeMap::len).sum::<usize>())
            .field("queued", &self.queue.len())
            .field("ready", &self.ready)
            .finish()
    }
}

/// The drift standing for a whole object missing from live.
pub fn missing_live_drift(key: &ResourceKey) -> Drift {
    Drift {
        id: DriftId::of(key, ""),
        key: key.clone(),
        path: FieldPath::root(),
        change: Change::Missing,
        expected: None,
        actual: None,
        rule: "missing-live".to_string(),
        set: DriftSet::Critical,
        severity: Severity::Critical,
        desired_pointer: Some(String::new()),
        actor: None,
    }
}

impl Detector {
    /// A detector with an engine, settings and a clock.
    pub fn new(engine: DiffEngine, config: DetectorConfig, clock: Arc<dyn Clock>) -> Self {
        Detector {
            rate: RateLimiter::new(config.rate_limit),
            flap: FlapGuard::new(config.flap_guard),
            engine,
            config,
            clock,
            desired: DesiredIndex::default(),
            live: HashMap::default(),
            desired_kinds: HashMap::default(),
            autoscalers: Autoscalers::default(),
            custom: crate::custom::CustomSchemas::default(),
            open: HashMap::default(),
            queue: crate::queue::KeyQueue::default(),
            desired_all_queued: false,
            inputs: 0,
            listed: Vec::new(),
            ready: false,
            approved: HashMap::default(),
            planned: HashSet::default(),
            unsettled: Vec::new(),
            not_watched: BTreeMap::new(),
            shard: None,
            pending_namespaces: HashSet::default(),
            dormant: HashMap::default(),
            listing: HashMap::default(),
            staged: None,
            stats: DetectorStats::default(),
        }
    }

    /// Desired objects the live source does not watch (a kind or namespace outside its scopes, a kind
    /// the cluster does not serve or forbids), with the reason. They are not compared, and never
    /// reported missing.
    pub fn not_watched(&self) -> Vec<(ResourceKey, String)> {
        self.not_watched
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect()
    }

    /// Why a key falls outside every listed scope, when the live source lists by scope.
    fn unwatched_reason(&self, key: &ResourceKey) -> Option<String> {
        if self.listed.is_empty() || self.listed.iter().any(|s| s.covers(key)) {
            return None;
        }
        let same_kind: Vec<&Option<String>> = self
            .listed
            .iter()
            .filter_map(|s| match s {
                RelistScope::Kind {
                    group,
                    kind,
                    namespace,
                } if *group == key.group && *kind == key.kind => Some(namespace),
                _ => None,
            })
            .collect();
        Some(if same_kind.is_empty() {
            format!(
                "kind {} is not watched (not served, forbidden, or not among the watched kinds)",
                key.kind
            )
        } else {
            format!(
                "namespace {} is not watched",
                key.namespace.as_deref().unwrap_or("(cluster scope)")
            )
        })
    }

    /// The settings.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// The engine.
    pub fn engine(&self) -> &DiffEngine {
        &self.engine
    }

    /// Turns auto-fix on or off at run time.
    pub fn set_auto_fix(&mut self, on: bool) {
        self.config.policy.auto_fix = on;
    }

    /// Counters.
    pub fn stats(&self) -> DetectorStats {
        self.stats
    }

    /// Whether every watch has listed once.
    pub fn is_ready(&self) -> bool {
        // Sharded: a namespace acquired while running makes it not ready until its lists are in.
        self.ready && self.pending_namespaces.is_empty()
    }

    /// Bytes of packed objects held in the live cache (objects settle there once processed).
    pub fn live_cache_bytes(&self) -> usize {
        self.live.values().map(LiveEntry::compact_len).sum()
    }

    /// Stores processed live objects as compact text (a `serde_json::Value` costs about ten times
    /// the JSON it holds). Processing defers this so a burst of events gets its reports first; call it
    /// when idle. It runs by itself once more than 65,536 objects wait (a re-list already holds every
    /// listed object as a `Value` while it arrives, so deferring does not raise the peak). Returns how
    /// many were stored.
    pub fn compact(&mut self, max: usize) -> usize {
        let n = self.unsettled.len().min(max);
        // Taken out here, packed (and the parsed forms freed) on every core, stored back in order.
        // An object stored as it came is fingerprinted from its parsed form before that goes.
        let fresh: Vec<(Arc<ResourceKey>, Arc<LiveObject>, bool)> = self
            .unsettled
            .drain(..n)
            .filter_map(|key| {
                let e = self.live.get_mut(&key)?;
                let f = e.fresh.take()?;
                let fingerprinted = e.fingerprint.get().is_some();
                Some((key, f, fingerprinted))
            })
            .collect();
        let done = fresh.len();
        let packed = crate::par::map(fresh, PARALLEL_MIN, |(key, f, fingerprinted)| {
            let fp = (!fingerprinted).then(|| fingerprint_of(f.object(), &key));
            (key, pack(f.object()), fp)
        });
        for (key, p, fp) in packed {
            if let Some(e) = self.live.get_mut(&key) {
                e.compact = Some(p);
                if let Some(fp) = fp {
                    let _ = e.fingerprint.set(fp);
                }
            }
        }
        if self.unsettled.is_empty() {
            self.unsettled = Vec::new();
        }
        done
    }

    /// Live objects waiting for [`Detector::compact`].
    pub fn uncompacted(&self) -> usize {
        self.unsettled.len()
    }

    fn defer_settle(&mut self, key: &ResourceKey) {
        let held = self.live.get_key_value(key);
        if let Some((key, _)) = held.filter(|(_, e)| e.fresh.is_some()) {
            self.settle(Some(key.clone()));
        }
    }

    /// Marks a live entry held parsed for the next compaction (a long backlog is compacted now).
    fn settle(&mut self, key: Option<Arc<ResourceKey>>) {
        if let Some(key) = key {
            self.unsettled.push(key);
            if self.unsettled.len() > 65_536 {
                self.compact(usize::MAX);
            }
        }
    }

    /// Number of desired and live objects held.
    pub fn sizes(&self) -> (usize, usize) {
        (self.desired.len(), self.live.len())
    }

    fn enqueue(&mut self, key: &ResourceKey) -> bool {
        // Most keys offered during a scan are queued already: no copy of them then.
        if self.queue.contains(key) {
            return false;
        }
        self.enqueue_owned(key.clone())
    }

    /// [`Detector::enqueue`] of a key the caller owns (one copy fewer).
    fn enqueue_owned(&mut self, key: ResourceKey) -> bool {
        self.queue.push(key)
    }

    /// [`Detector::enqueue`] of a shared key (the desired set's): no copy.
    fn enqueue_shared(&mut self, key: Arc<ResourceKey>) -> bool {
        self.queue.push_shared(key)
    }

    /// The next key to process, in arrival order; each key is queued at most once (latest wins).
    /// The key is the one the detector holds, shared: processing it looks it up by its address.
    pub fn next_key(&mut self) -> Option<Arc<ResourceKey>> {
        let k = self.queue.pop()?;
        self.desired_all_queued = false;
        Some(k)
    }

    /// Queues the desired keys `pick` selects that are not queued yet, copying only those (after a
    /// scan, none; nothing is looked at while every desired key is known to be queued).
    fn queue_unqueued(&mut self, pick: impl Fn(&ResourceKey) -> bool) -> usize {
        if self.desired_all_queued {
            return 0;
        }
        let keys: Vec<Arc<ResourceKey>> = self
            .desired
            .keys()
            .filter(|k| pick(k) && !self.queue.contains(k))
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| self.enqueue_shared(k))
            .filter(|queued| *queued)
            .count()
    }

    /// Keys waiting.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    // --------------------------------------------------------------------------------------------
    // desired state

    /// Replaces the whole desired set. Changed, added and removed keys are queued.
    pub fn set_desired(&mut self, resources: Vec<DesiredResource>) -> usize {
        self.begin_desired();
        self.desired_part(resources);
        self.end_desired()
    }

    /// Starts replacing the whole desired set part by part ([`Detector::desired_part`], then
    /// [`Detector::end_desired`]): each part is stored compactly as it comes, so a large set is
    /// never held parsed all at once. The current set stays in force until the end.
    pub fn begin_desired(&mut self) {
        self.staged = Some(DesiredIndex::default());
    }

    /// A part of the set being staged (see [`Detector::begin_desired`]; without it, one is begun).
    pub fn desired_part(&mut self, resources: Vec<DesiredResource>) {
        use std::hash::BuildHasher as _;
        let staged = self.staged.get_or_insert_with(DesiredIndex::default);
        let hasher = staged.hasher().clone();
        // Preparing and packing each object is independent of the rest: on every core, its key's
        // hash too (then the serial insertion below reads no key's text: a new key's slot is found
        // by its hash alone).
        let runs = crate::par::map_claims(resources, PARALLEL_MIN, |run| {
            let mut shared = Shared::default();
            run.into_iter()
                .map(|r| {
                    let (key, entry) = DesiredEntry::new(r.resource, shared.of(r.provenance));
                    (hasher.hash_one(&key), Arc::new(key), entry)
                })
                .collect()
        });
        staged.reserve(runs.iter().map(Vec::len).sum());
        // One provenance for the runs of a source, not one per worker's run.
        let mut shared = Shared::default();
        for (hash, key, mut entry) in runs.into_iter().flatten() {
            entry.provenance = shared.arc(entry.provenance);
            // As `insert`: a key given again keeps its place and takes the later object.
            match staged.raw_entry_mut_v1().from_hash(hash, |k| *k == key) {
                RawEntryMut::Occupied(mut held) => *held.get_mut() = entry,
                RawEntryMut::Vacant(slot) => {
                    slot.insert_hashed_nocheck(hash, key, entry);
                }
            }
        }
    }

    /// Puts the staged set in force. Changed, added and removed keys are queued.
    pub fn end_desired(&mut self) -> usize {
        use std::hash::BuildHasher as _;
        let next = self.staged.take().unwrap_or_default();
        let old = std::mem::replace(&mut self.desired, next);
        self.inputs += 1;
        // The kinds counted, and the changed and added keys found, copied and hashed for the
        // queue, on every core (for a first set: every key); then queued in the set's order, then
        // the removed ones.
        let entries: Vec<(&Arc<ResourceKey>, &DesiredEntry)> = self.desired.iter().collect();
        self.desired_kinds = count_kinds(&entries);
        let hasher = self.queue.hasher();
        let changed: Vec<Option<(u64, Arc<ResourceKey>)>> =
            crate::par::map_ref(&entries, PARALLEL_MIN, |(k, n)| {
                old.get(&***k)
                    .is_none_or(|e| n.compiled != e.compiled)
                    .then(|| (hasher.hash_one(&***k), Arc::clone(k)))
            });
        drop(entries);
        let removed: Vec<Arc<ResourceKey>> = old
            .keys()
            .filter(|k| !self.desired.contains_key(*k))
            .cloned()
            .collect();
        self.queue.reserve(changed.len() + removed.len());
        let mut queued = changed
            .into_iter()
            .flatten()
            .map(|(hash, k)| self.queue.push_hashed(hash, k))
            .filter(|queued| *queued)
            .count();
        queued += removed
            .into_iter()
            .map(|k| self.enqueue_shared(k))
            .filter(|queued| *queued)
            .count();
        // Every key of a first set is queued now; a later set keeps the flag (its unchanged keys are
        // as queued as before, the others were just queued).
        self.desired_all_queued |= old.is_empty();
        queued
    }

    /// Replaces the resources of one source (a file, a ConfigHub unit). Only affected keys are queued.
    pub fn replace_source(&mut self, source: &str, resources: Vec<DesiredResource>) -> usize {
        self.inputs += 1;
        let previous: Vec<Arc<ResourceKey>> = self
            .desired
            .iter()
            .filter(|(_, e)| e.provenance.source == source)
            .map(|(k, _)| k.clone())
            .collect();
        let mut touched = Vec::new();
        let mut fresh = HashSet::default();
        let mut shared = Shared::default();
        for r in resources {
            let (key, entry) = DesiredEntry::new(r.resource, shared.of(r.provenance));
            let key = Arc::new(key);
            fresh.insert(key.clone());
            let same = self
                .desired
                .get(&key)
                .is_some_and(|e| e.compiled == entry.compiled && e.provenance == entry.provenance);
            if !same {
                if self.desired.insert(key.clone(), entry).is_none() {
                    count_kind(&mut self.desired_kinds, &key, true);
                }
                touched.push(key);
            }
        }
        for k in previous {
            if !fresh.contains(&*k) {
                if self.desired.swap_remove(&k).is_some() {
                    count_kind(&mut self.desired_kinds, &k, false);
                }
                touched.push(k);
            }
        }
        touched.iter().filter(|k| self.enqueue(k)).count()
    }

    // --------------------------------------------------------------------------------------------
    // live state

    /// Takes a live event.
    pub fn observe(&mut self, event: LiveEvent) -> Observed {
        let mut obs = Observed::default();
        match event {
            // Events of namespaces outside the shard (a watch being stopped) are not ours.
            LiveEvent::Applied(r) if !self.keeps_live(&r.key) => {}
            LiveEvent::Deleted(key) if !self.keeps_live(&key) => {}
            LiveEvent::Restarted {
                scope: RelistScope::Kind {
                    namespace: Some(ns), ..
                },
                ..
            }
            | LiveEvent::Listing {
                scope: RelistScope::Kind {
                    namespace: Some(ns), ..
                },
                ..
            } if self.shard.as_ref().is_some_and(|s| !s.namespaces.contains(&ns)) => {}
            LiveEvent::Applied(r) => self.apply_live(r, &mut obs),
            LiveEvent::Deleted(key) => self.delete_live(&key, &mut obs),
            LiveEvent::Listing {
                scope,
                resources,
                first,
            } => {
                let seen = self.listing.entry(scope).or_default();
                if first {
                    seen.clear();
                }
                seen.extend(resources.iter().map(|r| r.key.clone()));
                let mut resources = resources;
                resources.retain(|r| self.keeps_live(&r.key));
                self.apply_all(resources, &mut obs);
            }
            LiveEvent::Restarted { scope, mut resources } => {
                self.stats.relists += 1;
                if self.shard.is_some() {
                    resources.retain(|r| self.keeps_live(&r.key));
                }
                // What the list (and its earlier parts) holds; the keys borrowed, not copied. Nothing
                // can be gone when nothing is held (the first listing).
                let parts: HashSet<ResourceKey> = self.listing.remove(&scope).unwrap_or_default();
                if !self.live.is_empty() {
                    let listed: HashSet<&ResourceKey> = resources.iter().map(|r| &r.key).collect();
                    let gone: Vec<Arc<ResourceKey>> = self
                        .live
                        .keys()
                        .filter(|k| scope.covers(k) && !listed.contains(&***k) && !parts.contains(&***k))
                        .cloned()
                        .collect();
                    for k in gone {
                        self.delete_live(&k, &mut obs);
                    }
                }
                self.apply_all(resources, &mut obs);
                if !self.listed.contains(&scope) {
                    self.listed.push(scope.clone());
                    // First listing of this scope: desired objects there can now be judged.
                    obs.queued += self.queue_unqueued(|k| scope.covers(k));
                }
            }
            LiveEvent::NamespaceListed(ns) => {
                // Every desired object there can be judged now (kinds not served there included:
                // they become "not watched").
                if self.pending_namespaces.remove(&ns) {
                    let keys: Vec<Arc<ResourceKey>> = self
                        .desired
                        .keys()
                        .filter(|k| k.namespace.as_deref() == Some(ns.as_str()) && self.in_shard(k))
                        .cloned()
                        .collect();
                    for k in keys {
                        if self.enqueue_shared(k) {
                            obs.queued += 1;
                        }
                    }
                }
            }
            LiveEvent::Ready => {
                if !self.ready {
                    self.ready = true;
                    obs.queued += self.queue_unqueued(|_| true);
                }
            }
        }
        obs
    }

    /// Whether a live object cannot carry a compared change against what the detector holds (same
    /// fingerprint): the check [`Detector::observe`] makes before anything else.
    pub fn is_unchanged(&self, r: &crate::model::Resource) -> bool {
        self.live
            .get(&r.key)
            .is_some_and(|e| e.fingerprint(&r.key) == fingerprint_of(&r.object, &r.key))
    }

    fn apply_live(&mut self, r: crate::model::Resource, obs: &mut Observed) {
        let p = self.prepare_live(r);
        self.apply_prepared(p, obs);
    }

    /// Fingerprints a live object and, unless the detector holds it unchanged, prepares it; notes
    /// whether its key is desired and queued (lookups made here, on any core, not in arrival order).
    fn prepare_live(&self, r: crate::model::Resource) -> PreparedLive {
        // A first listing holds nothing yet, and a first scan has every desired key queued: no
        // lookup then.
        let held = if self.live.is_empty() {
            None
        } else {
            self.live.get_key_value(&r.key)
        };
        let desired_entry = self.desired.get_key_value(&r.key);
        let desired = desired_entry.is_some();
        let queued = desired && (self.desired_all_queued || self.queue.contains(&r.key));
        let Some((held_key, entry)) = held else {
            // A key not held: nothing to compare its fingerprint with yet. An object redaction
            // leaves as it came is stored without one (taken from it when first asked for).
            let (object, fp) = if crate::redact::Redactor::global().would_change(&r.object) {
                let fp = fingerprint_of(&r.object, &r.key);
                (LiveObject::new(r), Some(fp))
            } else {
                (LiveObject::left_by_redaction(r), None)
            };
            // The desired set's key when the object is listed under the version it was given (one
            // key for both, and the queue's: looking it up compares addresses); else its own.
            let key = match desired_entry {
                Some((k, _)) if k.version == object.key().version => k.clone(),
                _ => Arc::new(object.key().clone()),
            };
            // A new desired key's comparison is made now, while the object is in this core's
            // cache (judging it later would read it from memory again). Not an autoscaler's or a
            // CRD's: storing one changes what comparisons read, so its report would go unused.
            let early = desired_entry
                .map(|(_, entry)| entry)
                .filter(|_| self.in_shard(&key) && !is_autoscaler(&key) && !crate::custom::is_crd(&key))
                .map(|entry| {
                    let report =
                        self.engine
                            .diff_compiled(&key, &entry.compiled, Some(&object), &self.diff_context());
                    Box::new((self.inputs, report))
                });
            return PreparedLive {
                fingerprint: fp,
                object: Ok((Arc::new(object), key)),
                desired,
                queued,
                held: false,
                early,
            };
        };
        let fp = fingerprint_of(&r.object, &r.key);
        let unchanged = entry.fingerprint(held_key) == fp;
        PreparedLive {
            fingerprint: Some(fp),
            object: if unchanged {
                Err(r)
            } else {
                let key = Arc::new(r.key.clone());
                Ok((Arc::new(LiveObject::new(r)), key))
            },
            desired,
            queued,
            held: true,
            early: None,
        }
    }

    /// [`Detector::prepare_live`] of a list's objects, on every core, then each applied in order.
    fn apply_all(&mut self, resources: Vec<crate::model::Resource>, obs: &mut Observed) {
        let prepared = crate::par::map(resources, PARALLEL_MIN, |r| self.prepare_live(r));
        // Room for the new keys at once, not by doubling as they come.
        self.live.reserve(prepared.iter().filter(|p| !p.held).count());
        for p in prepared {
            self.apply_prepared(p, obs);
        }
    }

    /// Takes a prepared live object, in arrival order (an object prepared as unchanged is prepared
    /// now if an earlier one of the same batch changed the entry). What preparing noted still holds:
    /// a batch changes neither the desired set nor takes keys out of the queue.
    fn apply_prepared(&mut self, p: PreparedLive, obs: &mut Observed) {
        self.stats.objects_seen += 1;
        let PreparedLive {
            fingerprint: fp,
            object,
            desired,
            queued,
            early,
            ..
        } = p;
        // An object held the same already (an earlier one of the batch, or the one held when it
        // was prepared) is skipped; one stored as it came is fingerprinted only to tell.
        let (object, key) = match object {
            Err(r) if self.holds_as(&r.key, fp, &r.object) => return self.skip(obs),
            Err(r) => {
                let key = Arc::new(r.key.clone());
                (Arc::new(LiveObject::new(r)), key)
            }
            Ok(prepared) => prepared,
        };
        // To queue, or to compact later, unless it is desired and queued already: the map's key.
        let then = (!desired || !queued).then(|| key.clone());
        let held_as = |d: &Self, key: &ResourceKey| d.holds_as(key, fp, object.object());
        if is_autoscaler(&key) {
            if held_as(self, &key) {
                return self.skip(obs);
            }
            let before = self.autoscaler_targets_of(&key);
            self.autoscalers.observe(object.resource());
            self.inputs += 1;
            self.live.insert(key.clone(), LiveEntry::new(object, fp));
            let after = self.autoscaler_targets_of(&key);
            for t in before.into_iter().chain(after) {
                if self.desired.contains_key(&t) && self.enqueue(&t) {
                    obs.queued += 1;
                }
            }
        } else if crate::custom::is_crd(&key) {
            if held_as(self, &key) {
                return self.skip(obs);
            }
            self.custom.observe(object.resource());
            self.inputs += 1;
            let kinds = crd_kind(object.resource());
            self.live.insert(key, LiveEntry::new(object, fp));
            // Its custom resources are judged again with the new schema.
            self.requeue_kind(kinds, obs);
        } else {
            // One lookup: an entry equal to it (an earlier object of the batch) is kept.
            match self.live.entry(key) {
                Entry::Occupied(e)
                    if e.get().fingerprint(e.key())
                        == fp.unwrap_or_else(|| fingerprint_of(object.object(), e.key())) =>
                {
                    return self.skip(obs);
                }
                e => {
                    let entry = LiveEntry::new(object, fp);
                    if let Some(early) = early {
                        *entry.early.lock().unwrap_or_else(|p| p.into_inner()) = Some(early);
                    }
                    e.insert_entry(entry);
                }
            }
        }
        let Some(key) = then else { return };
        if !desired {
            // Objects nobody desires are never diffed: they go compact with the next compaction.
            self.unsettled.push(key);
        } else if self.queue.push_shared(key) {
            obs.queued += 1;
        }
    }

    /// Whether the entry held for a key has this fingerprint (`None`: the object's own, taken
    /// now; it is the object as it came).
    fn holds_as(&self, key: &ResourceKey, fp: Option<Fingerprint>, object: &serde_json::Value) -> bool {
        self.live
            .get_key_value(key)
            .is_some_and(|(k, e)| e.fingerprint(k) == fp.unwrap_or_else(|| fingerprint_of(object, k)))
    }

    /// Counts an object recognised as held already.
    fn skip(&mut self, obs: &mut Observed) {
        self.stats.objects_skipped += 1;
        obs.skipped += 1;
    }

    /// Queues every desired object of a custom kind (its CRD's schema changed).
    fn requeue_kind(&mut self, kind: Option<(String, String)>, obs: &mut Observed) {
        let Some((group, kind)) = kind else { return };
        let keys: Vec<Arc<ResourceKey>> = self
            .desired
            .keys()
            .filter(|k| k.group == group && k.kind == kind)
            .cloned()
            .collect();
        for k in keys {
            if self.enqueue_shared(k) {
                obs.queued += 1;
            }
        }
    }

    fn delete_live(&mut self, key: &ResourceKey, obs: &mut Observed) {
        let Some(gone) = self.live.remove(key) else {
            return;
        };
        if crate::custom::is_crd(key) {
            let kind = gone.object().as_deref().and_then(|r| crd_kind(r.resource()));
            self.custom.forget(key);
            self.inputs += 1;
            self.requeue_kind(kind, obs);
        }
        if is_autoscaler(key) {
            let targets = self.autoscaler_targets_of(key);
            self.autoscalers.forget(key);
            self.inputs += 1;
            for t in targets {
                if self.desired.contains_key(&t) && self.enqueue(&t) {
                    obs.queued += 1;
                }
            }
        }
        if self.desired.contains_key(key) && self.enqueue(key) {
            obs.queued += 1;
        }
    }

    fn autoscaler_targets_of(&self, autoscaler: &ResourceKey) -> Vec<ResourceKey> {
        // Workloads in the same namespace named by the autoscaler's scaleTargetRef.
        let Some(e) = self.live.get(autoscaler).and_then(LiveEntry::object) else {
            return Vec::new();
        };
        let obj = e.object();
        let Some(t) = obj.pointer("/spec/scaleTargetRef") else {
            return Vec::new();
        };
        let name = t.get("name").and_then(|v| v.as_str()).unwrap_or("");
        let kind = t.get("kind").and_then(|v| v.as_str()).unwrap_or("Deployment");
        // Under each desired (group, version) of that kind: a few lookups, not a walk of the set.
        self.desired_kinds
            .get(kind)
            .into_iter()
            .flatten()
            .map(|(group, version, _)| ResourceKey {
                group: group.clone(),
                version: version.clone(),
                kind: kind.to_string(),
                namespace: autoscaler.namespace.clone(),
                name: name.to_string(),
            })
            .filter(|k| self.desired.contains_key(k))
            .collect()
    }

    fn is_listed(&self, key: &ResourceKey) -> bool {
        if self.listed.iter().any(|s| s.covers(key)) {
            return true;
        }
        // A namespace acquired after the start waits for its own lists.
        self.ready
            && !key
                .namespace
                .as_ref()
                .is_some_and(|ns| self.pending_namespaces.contains(ns))
    }

    /// Whether a key is in this detector's shard (always, without sharding).
    fn in_shard(&self, key: &ResourceKey) -> bool {
        self.shard.as_ref().is_none_or(|s| s.covers(key))
    }

    /// Whether a live object is kept: cluster-scoped ones always (every replica watches them, for
    /// CRD schemas), namespaced ones in the shard.
    fn keeps_live(&self, key: &ResourceKey) -> bool {
        key.namespace.is_none() || self.in_shard(key)
    }

    /// The shard this detector judges, if sharded.
    pub fn shard(&self) -> Option<&Shard> {
        self.shard.as_ref()
    }

    /// Limits the detector to one shard of the cluster (`None`: all of it). Objects leaving the
    /// shard are forgotten without a word — another replica judges them now: no event, their open
    /// drifts kept aside in case the shard comes back, their live objects dropped. Objects entering
    /// it are judged once their namespace's watches have listed (a [`LiveEvent::Restarted`] each),
    /// never reported missing before. Returns the keys queued.
    pub fn set_shard(&mut self, shard: Option<Shard>) -> usize {
        let old = std::mem::replace(&mut self.shard, shard);
        if old == self.shard {
            return 0;
        }
        let covers = |s: &Option<Shard>, k: &ResourceKey| s.as_ref().is_none_or(|s| s.covers(k));
        let owns_ns = |s: &Option<Shard>, ns: &str| s.as_ref().is_none_or(|s| s.namespaces.contains(ns));
        // Leaving.
        let leaving: Vec<ResourceKey> = self
            .open
            .keys()
            .filter(|k| !covers(&self.shard, k))
            .cloned()
            .collect();
        for k in leaving {
            if let Some(table) = self.open.remove(&k) {
                for id in table.keys() {
                    self.approved.remove(id);
                    self.planned.remove(id);
                }
                self.dormant.insert(k, table);
            }
        }
        let gone: Vec<Arc<ResourceKey>> = self
            .live
            .keys()
            .filter(|k| k.namespace.is_some() && !covers(&self.shard, k))
            .cloned()
            .collect();
        for k in &gone {
            self.live.remove(k);
            if is_autoscaler(k) {
                self.autoscalers.forget(k);
                self.inputs += 1;
            }
        }
        let shard = self.shard.clone();
        self.not_watched.retain(|k, _| covers(&shard, k));
        self.listed.retain(|s| match s {
            RelistScope::Kind {
                namespace: Some(ns), ..
            } => owns_ns(&shard, ns),
            _ => true,
        });
        self.pending_namespaces.retain(|ns| owns_ns(&shard, ns));
        // Entering.
        if let Some(new) = &self.shard {
            for ns in &new.namespaces {
                if !owns_ns(&old, ns) {
                    self.pending_namespaces.insert(ns.clone());
                }
            }
        } else {
            self.pending_namespaces.clear();
        }
        let back: Vec<ResourceKey> = self
            .dormant
            .keys()
            .filter(|k| covers(&shard, k))
            .cloned()
            .collect();
        for k in back {
            if let Some(table) = self.dormant.remove(&k) {
                self.open.insert(k, table);
            }
        }
        let entering: Vec<Arc<ResourceKey>> = self
            .desired
            .keys()
            .filter(|k| covers(&shard, k) && !covers(&old, k))
            .cloned()
            .collect();
        entering
            .into_iter()
            .filter(|k| self.enqueue_shared(k.clone()))
            .count()
    }

    /// The live object for a key.
    pub fn live_object(&self, key: &ResourceKey) -> Option<Arc<LiveObject>> {
        self.live.get(key).and_then(LiveEntry::object)
    }

    /// The desired object and its provenance.
    pub fn desired_object(&self, key: &ResourceKey) -> Option<(DesiredObject, &Provenance)> {
        self.desired.get(key).map(|e| (e.object(key), &*e.provenance))
    }

    /// Every desired key.
    pub fn desired_keys(&self) -> Vec<ResourceKey> {
        let mut k: Vec<ResourceKey> = self.desired.keys().map(|k| ResourceKey::clone(k)).collect();
        k.sort();
        k
    }

    /// The namespaces the desired state names.
    pub fn desired_namespaces(&self) -> std::collections::BTreeSet<String> {
        self.desired.keys().filter_map(|k| k.namespace.clone()).collect()
    }

    /// Queues every desired key (a full scan).
    pub fn queue_all(&mut self) -> usize {
        let keys: Vec<Arc<ResourceKey>> = self.desired.keys().cloned().collect();
        let queued = keys
            .into_iter()
            .filter(|k| self.enqueue_shared(k.clone()))
            .count();
        self.desired_all_queued = true;
        queued
    }

    // --------------------------------------------------------------------------------------------
    // processing

    /// Diffs one key and returns the transitions, fixes and alerts.
    pub fn process(&mut self, key: &ResourceKey) -> Outcome {
        match self.judge(key) {
            Some(judged) => self.conclude(key, judged),
            None => self.process_unjudged(key),
        }
    }

    /// [`Detector::process`] of each key, in order, with the comparisons (the costly part) made on
    /// every core: the outcomes are those of processing the keys one by one. The way to drain a long
    /// queue (the initial scan):
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use drift_core::{DiffEngine, clock::ManualClock, detector::{Detector, DetectorConfig}};
    /// # let mut d = Detector::new(DiffEngine::default(), DetectorConfig::default(), Arc::new(ManualClock::new(0)));
    /// loop {
    ///     let keys: Vec<_> = std::iter::from_fn(|| d.next_key()).take(1024).collect();
    ///     if keys.is_empty() { break }
    ///     for outcome in d.process_all(&keys) { /* events, fixes, alerts */ }
    /// }
    /// ```
    pub fn process_all<K: std::borrow::Borrow<ResourceKey> + Sync>(&mut self, keys: &[K]) -> Vec<Outcome> {
        // What needs no comparison or price (most keys of a scan: compared as their objects were
        // stored) is taken here, on this core: a thread costs more than that. Prices are made on
        // every core, and from the first key that needs comparing (a batch of them, typically:
        // live objects held compactly, judged again) every key left is judged there.
        let mut judged: Vec<Option<Judged>> = Vec::with_capacity(keys.len());
        let mut costly: Vec<(usize, Costly<'_>)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match self.judge_start(k.borrow()) {
                Start::Done(j) => judged.push(j),
                // A key to compare (nothing was taken for it): it and the rest are judged on every
                // core.
                Start::Costly(c) if c.early.is_none() => break,
                Start::Costly(c) => {
                    judged.push(None);
                    costly.push((i, c));
                }
            }
        }
        let rest = keys.get(judged.len()..).unwrap_or_default();
        let finished = crate::par::map(costly, PARALLEL_MIN, |(i, c)| {
            (i, keys.get(i).map(|k| self.judge_finish(k.borrow(), c)))
        });
        let rest = crate::par::map_ref(rest, PARALLEL_MIN, |k| self.judge(k.borrow()));
        if judged.is_empty() {
            judged = rest;
        } else {
            judged.extend(rest);
        }
        for (i, j) in finished {
            if let Some(slot) = judged.get_mut(i) {
                *slot = j;
            }
        }
        keys.iter()
            .map(std::borrow::Borrow::borrow)
            .zip(judged)
            .map(|(key, judged)| match judged {
                Some(judged) => self.conclude(key, judged),
                None => self.process_unjudged(key),
            })
            .collect()
    }

    /// A key's comparison, when it is to be compared: in the shard, desired, listed, watched. Reads
    /// the detector only; what is judged is concluded by [`Detector::conclude`].
    fn judge(&self, key: &ResourceKey) -> Option<Judged> {
        match self.judge_start(key) {
            Start::Done(judged) => judged,
            Start::Costly(c) => Some(self.judge_finish(key, c)),
        }
    }

    /// The cheap part of [`Detector::judge`]: whether the key is judged, and the comparison made as
    /// its object was stored, taken; the judgement itself when that is all it needs.
    fn judge_start(&self, key: &ResourceKey) -> Start<'_> {
        if !self.in_shard(key) || !self.is_listed(key) || (self.ready && self.unwatched_reason(key).is_some())
        {
            return Start::Done(None);
        }
        let Some(entry) = self.desired.get(key) else {
            return Start::Done(None);
        };
        let held = self.live.get_key_value(key);
        // The map's key, shared: nothing copied.
        let settle = held.filter(|(_, e)| e.fresh.is_some()).map(|(k, _)| k.clone());
        // Compared already as it was stored, with nothing it reads changed since: that comparison.
        let early = held.and_then(|(_, e)| e.take_early(self.inputs));
        match early {
            // Nothing to price: judged.
            Some(report) if !report.drifts.iter().any(PriceTable::prices) => Start::Done(Some(Judged {
                costs: vec![None; report.drifts.len()],
                report,
                settle,
            })),
            early => Start::Costly(Costly {
                entry,
                held: held.map(|(k, e)| (&**k, e)),
                settle,
                early,
            }),
        }
    }

    /// The costly part of [`Detector::judge`]: the comparison, unless it was made as the object was
    /// stored, and the prices of its drifts.
    fn judge_finish(&self, key: &ResourceKey, costly: Costly<'_>) -> Judged {
        let Costly {
            entry,
            held,
            settle,
            early,
        } = costly;
        let ctx = self.diff_context();
        let report = match early {
            Some(report) => report,
            // A compactly held object is compared in its compiled form, as stored (keyed as the
            // live map holds it: the object's own key): parsed back into a `Value` only when it has
            // drifts to price and fix.
            None => match held.and_then(|(k, e)| e.compiled(k)) {
                Some(compiled) => self
                    .engine
                    .diff_compiled_both(key, &entry.compiled, &compiled, &ctx),
                None => {
                    let live = held.and_then(|(_, e)| e.object());
                    self.engine
                        .diff_compiled(key, &entry.compiled, live.as_deref(), &ctx)
                }
            },
        };
        // The desired object is built as a value only when a drift is priced.
        let costs = if !report.drifts.iter().any(PriceTable::prices) {
            vec![None; report.drifts.len()]
        } else {
            self.costs_of(
                &entry.object(key),
                held.and_then(|(_, e)| e.object()).as_deref(),
                &report,
            )
        };
        Judged {
            report,
            costs,
            settle,
        }
    }

    /// A key [`Detector::judge`] does not compare: another replica's, no longer desired, its list
    /// still arriving, or not watched.
    fn process_unjudged(&mut self, key: &ResourceKey) -> Outcome {
        let now = self.clock.now();
        let mut out = Outcome::default();
        if !self.in_shard(key) {
            return out; // another replica's
        }
        if !self.desired.contains_key(key) {
            // No longer desired: whatever was open is resolved.
            let closed = self.open.remove(key).unwrap_or_default();
            for (_, o) in closed {
                self.stats.resolved += 1;
                out.events.push(self.event(
                    DriftEventKind::Resolved,
                    now,
                    o.drift,
                    o.provenance,
                    "the desired state no longer has this resource",
                ));
            }
            return out;
        }
        if !self.is_listed(key) {
            // Its list is still arriving: judged when it is complete; stored compactly meanwhile.
            self.defer_settle(key);
            return out;
        }
        if self.ready
            && let Some(reason) = self.unwatched_reason(key)
        {
            self.not_watched.insert(key.clone(), reason);
            return out;
        }
        // The checks above are the complement of `judge`'s: every other key was judged.
        out
    }

    /// Turns a key's comparison into transitions, fixes and alerts.
    fn conclude(&mut self, key: &ResourceKey, judged: Judged) -> Outcome {
        let now = self.clock.now();
        let mut out = Outcome::default();
        // Judged just now, by `process` or `process_all`: desired (nothing in between changes the
        // desired set).
        let Judged {
            report,
            costs,
            settle,
        } = judged;
        self.not_watched.remove(key);
        self.stats.diffs += 1;
        // In sync, and nothing was open: no transition (most keys of a scan).
        if report.drifts.is_empty()
            && report.status != DriftStatus::MissingLive
            && !self.open.contains_key(key)
        {
            out.report = Some(report);
            self.settle(settle);
            return out;
        }
        let Some(provenance) = self.desired.get(key).map(|e| e.provenance.clone()) else {
            return out;
        };
        let env = provenance.environment.clone();
        let current: Vec<Drift> = if report.status == DriftStatus::MissingLive {
            vec![missing_live_drift(key)]
        } else {
            report.drifts.clone()
        };
        let current_ids: HashSet<&DriftId> = current.iter().map(|d| &d.id).collect();

        // Closed drifts.
        let mut table = self.open.remove(key).unwrap_or_default();
        let gone: Vec<DriftId> = table
            .keys()
            .filter(|id| !current_ids.contains(id))
            .cloned()
            .collect();
        for id in gone {
            let Some(o) = table.remove(&id) else { continue };
            self.approved.remove(&id);
            let in_flight = self.planned.remove(&id);
            if in_flight && !o.fix_pending {
                // The fix landed before its remediator reported back: live is the proof.
                out.events.push(self.event(
                    DriftEventKind::Remediated,
                    now,
                    o.drift.clone(),
                    Some(Provenance::clone(&provenance)),
                    "the fix was applied (live changed before the remediator reported)",
                ));
            }
            if o.fix_pending || in_flight {
                self.stats.corrected += 1;
                self.flap.fixed(&id);
                let mut d = o.drift;
                d.set = DriftSet::Corrected;
                d.severity = Severity::Info;
                out.events.push(self.event(
                    DriftEventKind::Corrected,
                    now,
                    d,
                    Some(Provenance::clone(&provenance)),
                    "live matches desired after the fix",
                ));
            } else {
                self.stats.resolved += 1;
                out.events.push(self.event(
                    DriftEventKind::Resolved,
                    now,
                    o.drift,
                    Some(Provenance::clone(&provenance)),
                    "live matches desired again",
                ));
            }
        }

        // New and changed drifts.
        let mut to_decide: Vec<DriftId> = Vec::new();
        // A missing object's one drift is not the report's (and has no price).
        let costs = if report.status == DriftStatus::MissingLive {
            Vec::new()
        } else {
            costs
        };
        for (i, d) in current.into_iter().enumerate() {
            let cost = costs.get(i).copied().flatten();
            match table.get_mut(&d.id) {
                None => {
                    self.stats.opened += 1;
                    let id = d.id.clone();
                    let escalate = self.flap.opened(&id, now);
                    out.events.push(self.event(
                        DriftEventKind::Opened,
                        now,
                        d.clone(),
                        Some(Provenance::clone(&provenance)),
                        "live differs from desired",
                    ));
                    let mut o = OpenDrift {
                        drift: d,
                        state: DriftState::Open,
                        opened_at: now,
                        updated_at: now,
                        action: Action::Track,
                        note: String::new(),
                        environment: env.clone(),
                        provenance: Some(Provenance::clone(&provenance)),
                        monthly_cost_delta: cost,
                        fix_pending: false,
                        needs_approval: false,
                    };
                    if escalate || self.flap.is_escalated(&id) {
                        if escalate {
                            self.stats.escalations += 1;
                            let reason = format!(
                                "{} re-opened {} times within {} s after being fixed: another controller keeps changing it; auto-fix stopped",
                                o.drift.path.readable(),
                                self.flap.reopen_count(&id),
                                self.config.flap_guard.window_ms / 1000
                            );
                            out.events.push(self.event(
                                DriftEventKind::Escalated,
                                now,
                                o.drift.clone(),
                                Some(Provenance::clone(&provenance)),
                                &reason,
                            ));
                            out.alerts.push(Alert {
                                drift: o.drift.clone(),
                                environment: env.clone(),
                                reason: reason.clone(),
                                escalation: true,
                            });
                            o.note = reason;
                        }
                        o.state = DriftState::Escalated;
                        o.action = Action::Alert;
                        o.needs_approval = true;
                    } else {
                        to_decide.push(id.clone());
                    }
                    table.insert(id, o);
                }
                Some(o) => {
                    if o.drift.expected != d.expected
                        || o.drift.actual != d.actual
                        || o.drift.change != d.change
                    {
                        o.drift = d.clone();
                        o.updated_at = now;
                        o.monthly_cost_delta = cost;
                        o.fix_pending = false;
                        if o.state == DriftState::Remediating {
                            o.state = DriftState::Open;
                        }
                        let (id, st) = (d.id.clone(), o.state);
                        out.events.push(self.event(
                            DriftEventKind::Updated,
                            now,
                            d,
                            Some(Provenance::clone(&provenance)),
                            "live value changed again",
                        ));
                        if matches!(st, DriftState::Open) {
                            to_decide.push(id);
                        }
                    }
                }
            }
        }

        // Decisions.
        let mut fix: Vec<DriftId> = Vec::new();
        for id in to_decide {
            let Some(o) = table.get_mut(&id) else { continue };
            let approved = self.approved.get(&id).is_some_and(|seen| *seen == o.drift.actual);
            let requested = self
                .config
                .policy
                .requested(&o.drift, env.as_deref(), &provenance.labels);
            let decided = if approved {
                Action::AutoFix
            } else {
                self.config
                    .policy
                    .decide(&o.drift, env.as_deref(), &provenance.labels)
            };
            o.action = decided;
            o.needs_approval = !approved && decided == Action::Alert;
            match decided {
                Action::AutoFix => fix.push(id),
                Action::Alert => {
                    o.note = if is_critical(&o.drift) && requested != Action::Track {
                        "critical drift: fixing it needs approval".to_string()
                    } else if requested == Action::AutoFix {
                        "auto-fix is off: fixing it needs approval".to_string()
                    } else {
                        "policy: alert".to_string()
                    };
                    out.alerts.push(Alert {
                        drift: o.drift.clone(),
                        environment: env.clone(),
                        reason: o.note.clone(),
                        escalation: false,
                    });
                }
                Action::Track => o.note = "policy: track".to_string(),
            }
        }
        self.open.insert(key.clone(), table);
        if !fix.is_empty() {
            match self.plan_fix(key, &fix, "policy: auto-fix", &self.config.actor.clone()) {
                Ok(plan) => out.fixes.push(plan),
                Err(reason) => {
                    if let Some(table) = self.open.get_mut(key) {
                        for id in &fix {
                            if let Some(o) = table.get_mut(id) {
                                o.note = reason.clone();
                                o.needs_approval = true;
                                out.alerts.push(Alert {
                                    drift: o.drift.clone(),
                                    environment: env.clone(),
                                    reason: reason.clone(),
                                    escalation: false,
                                });
                            }
                        }
                    }
                }
            }
        }
        out.report = Some(report);
        self.settle(settle);
        if self.open.get(key).is_some_and(BTreeMap::is_empty) {
            self.open.remove(key);
        }
        out
    }

    fn cost_of(&self, desired: &DesiredObject, live: Option<&LiveObject>, d: &Drift) -> Option<f64> {
        self.config.prices.drift_delta(desired, live?, d)
    }

    /// What a comparison reads besides its two objects (see [`Detector::inputs`]).
    fn diff_context(&self) -> DiffContext<'_> {
        DiffContext {
            autoscalers: Some(&self.autoscalers),
            custom: Some(&self.custom),
        }
    }

    /// [`Detector::cost_of`] of each of a report's drifts, in order.
    fn costs_of(
        &self,
        desired: &DesiredObject,
        live: Option<&LiveObject>,
        report: &DriftReport,
    ) -> Vec<Option<f64>> {
        report
            .drifts
            .iter()
            .map(|d| self.cost_of(desired, live, d))
            .collect()
    }

    fn event(
        &self,
        kind: DriftEventKind,
        at: Millis,
        drift: Drift,
        provenance: Option<Provenance>,
        reason: &str,
    ) -> DriftEvent {
        DriftEvent::new(kind, at, drift, self.config.actor.clone(), reason).with_provenance(provenance)
    }

    /// Builds a plan for some open drifts of one resource, after the rate limit.
    fn plan_fix(
        &mut self,
        key: &ResourceKey,
        ids: &[DriftId],
        reason: &str,
        actor: &str,
    ) -> Result<RemediationPlan, String> {
        let now = self.clock.now();
        if let Err(e) = self.rate.check(key, now) {
            self.stats.fixes_rate_limited += 1;
            return Err(format!("fix held back: {e}"));
        }
        let drifts: Vec<Drift> = self
            .open
            .get(key)
            .map(|t| {
                ids.iter()
                    .filter_map(|id| t.get(id))
                    .map(|o| o.drift.clone())
                    .collect()
            })
            .unwrap_or_default();
        if drifts.is_empty() {
            return Err("no open drift to fix".to_string());
        }
        let entry = self.desired.get(key).ok_or("the resource is no longer desired")?;
        let desired = entry.object(key);
        let action = if drifts.iter().any(|d| d.rule == "missing-live") {
            RemediationAction::Reapply
        } else {
            let live = self
                .live
                .get(key)
                .and_then(LiveEntry::object)
                .ok_or("the resource is not live")?;
            match revert_patch(&desired, &live, &drifts) {
                Ok(patch) => RemediationAction::Revert { patch },
                Err(PatchError::SecretValue { .. }) => RemediationAction::Reapply,
                Err(e) => return Err(e.to_string()),
            }
        };
        self.rate.record(key, now);
        self.stats.fixes_planned += 1;
        self.planned.extend(drifts.iter().map(|d| d.id.clone()));
        Ok(RemediationPlan {
            key: key.clone(),
            drifts,
            action,
            provenance: Some(Provenance::clone(&entry.provenance)),
            desired: Some(desired.into_resource()),
            actor: actor.to_string(),
            reason: reason.to_string(),
        })
    }

    /// Takes the remediator's answer for a plan (the final, non-dry-run outcome).
    pub fn record_fix(&mut self, plan: &RemediationPlan, outcome: &RemediationOutcome) -> Outcome {
        let now = self.clock.now();
        let mut out = Outcome::default();
        let env = plan.provenance.as_ref().and_then(|p| p.environment.clone());
        if outcome.status != RemediationStatus::DryRunOk {
            for d in &plan.drifts {
                self.planned.remove(&d.id);
            }
        }
        for d in &plan.drifts {
            let Some(o) = self.open.get_mut(&plan.key).and_then(|t| t.get_mut(&d.id)) else {
                continue;
            };
            match outcome.status {
                RemediationStatus::Applied => {
                    o.fix_pending = true;
                    o.state = DriftState::Remediating;
                    o.note = format!(
                        "fixed by {} ({}); waiting for live to confirm",
                        plan.actor,
                        plan.action.name()
                    );
                    let (drift, prov) = (o.drift.clone(), o.provenance.clone());
                    out.events.push(self.event(
                        DriftEventKind::Remediated,
                        now,
                        drift,
                        prov,
                        &format!("{}: {}", plan.reason, outcome.message),
                    ));
                }
                RemediationStatus::Conflict => {
                    o.note = format!("live changed while fixing ({}); re-planning", outcome.message);
                }
                RemediationStatus::DryRunOk => {}
                _ => {
                    o.needs_approval = true;
                    o.note = format!("fix {}: {}", status_word(outcome.status), outcome.message);
                    let (drift, prov, note) = (o.drift.clone(), o.provenance.clone(), o.note.clone());
                    out.events
                        .push(self.event(DriftEventKind::FixFailed, now, drift.clone(), prov, &note));
                    out.alerts.push(Alert {
                        drift,
                        environment: env.clone(),
                        reason: note,
                        escalation: false,
                    });
                }
            }
        }
        if outcome.status == RemediationStatus::Conflict {
            // Re-read and re-plan on the next live event, never force: the key is diffed again.
            self.enqueue(&plan.key);
        }
        out
    }

    // --------------------------------------------------------------------------------------------
    // commands from people

    fn find(&self, id: &DriftId) -> Option<(&ResourceKey, &OpenDrift)> {
        self.open.iter().find_map(|(k, t)| t.get(id).map(|o| (k, o)))
    }

    /// A person approves fixing a drift (or asks for a fix): records the approval and plans the fix
    /// now (dry run first is still the caller's job). Critical drifts and escalated ones need this.
    ///
    /// # Errors
    /// [`DetectorError`] when the drift is not open or no fix can be built.
    pub fn approve(
        &mut self,
        id: &DriftId,
        actor: &str,
    ) -> Result<(Vec<DriftEvent>, RemediationPlan), DetectorError> {
        let now = self.clock.now();
        let (key, o) = self
            .find(id)
            .map(|(k, o)| (k.clone(), o.clone()))
            .ok_or_else(|| DetectorError::UnknownDrift(id.clone()))?;
        self.approved.insert(id.clone(), o.drift.actual.clone());
        self.flap.reset(id);
        let ev = DriftEvent::new(
            DriftEventKind::Approved,
            now,
            o.drift.clone(),
            actor,
            "approved for a fix",
        )
        .with_provenance(o.provenance.clone());
        if let Some(t) = self.open.get_mut(&key).and_then(|t| t.get_mut(id)) {
            t.state = DriftState::Open;
            t.needs_approval = false;
            t.action = Action::AutoFix;
        }
        let plan = self
            .plan_fix(
                &key,
                std::slice::from_ref(id),
                &format!("approved by {actor}"),
                actor,
            )
            .map_err(|reason| DetectorError::CannotFix {
                id: id.clone(),
                reason,
            })?;
        Ok((vec![ev], plan))
    }

    /// Plans the fixes the policy asked for but nobody carried out: open drifts decided `AutoFix`
    /// with no fix under way. A standby that becomes leader calls this, so fixes the old leader never
    /// made are made once (rate limit and flap guard still apply).
    pub fn pending_fixes(&mut self) -> Vec<RemediationPlan> {
        let mut by_key: BTreeMap<ResourceKey, Vec<DriftId>> = BTreeMap::new();
        for (k, t) in &self.open {
            for (id, o) in t {
                if o.action == Action::AutoFix && !o.fix_pending && o.state == DriftState::Open {
                    by_key.entry(k.clone()).or_default().push(id.clone());
                }
            }
        }
        let actor = self.config.actor.clone();
        by_key
            .into_iter()
            .filter_map(|(k, ids)| {
                self.plan_fix(&k, &ids, "policy: auto-fix (taken over)", &actor)
                    .ok()
            })
            .collect()
    }

    /// A person chooses to ignore a drift: no more alerts or fixes while it stays as it is.
    ///
    /// # Errors
    /// [`DetectorError::UnknownDrift`] when the drift is not open.
    pub fn ignore(&mut self, id: &DriftId, actor: &str) -> Result<DriftEvent, DetectorError> {
        let now = self.clock.now();
        let o = self
            .open
            .values_mut()
            .find_map(|t| t.get_mut(id))
            .ok_or_else(|| DetectorError::UnknownDrift(id.clone()))?;
        o.state = DriftState::Ignored;
        o.action = Action::Track;
        o.needs_approval = false;
        o.note = format!("ignored by {actor}");
        let (drift, prov) = (o.drift.clone(), o.provenance.clone());
        Ok(
            DriftEvent::new(DriftEventKind::Ignored, now, drift, actor, "ignored by a person")
                .with_provenance(prov),
        )
    }

    /// Seeds the open-drift table from the drift log after a restart, so drifts still present are not
    /// opened twice and drifts that went away while the detector was down are closed.
    pub fn restore(&mut self, records: Vec<DriftRecord>) {
        for r in records.into_iter().filter(|r| r.state.is_open()) {
            let key = r.drift.key.clone();
            let in_shard = self.in_shard(&key);
            let o = OpenDrift {
                state: r.state,
                opened_at: r.opened_at,
                updated_at: r.updated_at,
                action: Action::Track,
                note: "restored from the drift log".to_string(),
                environment: r.environment,
                fix_pending: r.state == DriftState::Remediating,
                needs_approval: false,
                monthly_cost_delta: None,
                provenance: r.provenance,
                drift: r.drift,
            };
            let table = if in_shard {
                &mut self.open
            } else {
                &mut self.dormant
            };
            table
                .entry(key.clone())
                .or_default()
                .insert(o.drift.id.clone(), o);
            if in_shard {
                self.enqueue(&key);
            }
        }
    }

    /// Open drifts, oldest first.
    pub fn open_drifts(&self) -> Vec<OpenDrift> {
        let mut v: Vec<OpenDrift> = self.open.values().flat_map(|t| t.values().cloned()).collect();
        v.sort_by(|a, b| {
            (a.opened_at, &a.drift.key, &a.drift.id).cmp(&(b.opened_at, &b.drift.key, &b.drift.id))
        });
        v
    }

    /// One open drift.
    pub fn open_drift(&self, id: &DriftId) -> Option<OpenDrift> {
        self.find(id).map(|(_, o)| o.clone())
    }

    /// Items for the analyzer: the open drifts with the ids given (all when empty), with cost deltas
    /// and the actions the engine can build for each.
    pub fn analysis_items(&self, ids: &[DriftId]) -> Vec<AnalysisItem> {
        self.open_drifts()
            .into_iter()
            .filter(|o| ids.is_empty() || ids.contains(&o.drift.id))
            .map(|o| {
                let mut allowed = vec![RecommendedAction::Revert, RecommendedAction::Track];
                let secret = o.drift.key.group.is_empty() && o.drift.key.kind == "Secret";
                if o.drift.rule != "missing-live" && !secret {
                    allowed.insert(1, RecommendedAction::Adopt);
                }
                AnalysisItem {
                    drift: o.drift,
                    environment: o.environment,
                    monthly_cost_delta: o.monthly_cost_delta,
                    allowed_actions: allowed,
                }
            })
            .collect()
    }
}

/// The (group, kind) a CRD defines.
fn crd_kind(r: &crate::Resource) -> Option<(String, String)> {
    Some((
        r.object.pointer("/spec/group")?.as_str()?.to_string(),
        r.object.pointer("/spec/names/kind")?.as_str()?.to_string(),
    ))
}

/// [`count_kind`] of every key given (in parts, on every core, then added up).
fn count_kinds(
    entries: &[(&Arc<ResourceKey>, &DesiredEntry)],
) -> HashMap<String, Vec<(String, String, usize)>> {
    let parts: Vec<&[(&Arc<ResourceKey>, &DesiredEntry)]> = entries.chunks(1024).collect();
    let counted = crate::par::map_ref(&parts, 2, |part| {
        let mut kinds = HashMap::default();
        for (k, _) in *part {
            count_kind(&mut kinds, k, true);
        }
        kinds
    });
    let mut counted = counted.into_iter();
    let mut kinds = counted.next().unwrap_or_default();
    for part in counted {
        for (kind, versions) in part {
            let into = kinds.entry(kind).or_default();
            for (group, version, n) in versions {
                match into.iter_mut().find(|(g, v, _)| *g == group && *v == version) {
                    Some(held) => held.2 += n,
                    None => into.push((group, version, n)),
                }
            }
        }
    }
    kinds
}

/// Counts a desired key in or out of the per-kind counts (nothing copied when its kind is known).
fn count_kind(kinds: &mut HashMap<String, Vec<(String, String, usize)>>, k: &ResourceKey, add: bool) {
    let versions = match kinds.get_mut(k.kind.as_str()) {
        Some(v) => v,
        None if add => kinds.entry(k.kind.clone()).or_default(),
        None => return,
    };
    match versions
        .iter()
        .position(|(g, v, _)| *g == k.group && *v == k.version)
    {
        Some(i) if add => versions[i].2 += 1,
        Some(i) => {
            versions[i].2 = versions[i].2.saturating_sub(1);
            if versions[i].2 == 0 {
                versions.swap_remove(i);
            }
        }
        None if add => versions.push((k.group.clone(), k.version.clone(), 1)),
        None => {}
    }
    if versions.is_empty() {
        kinds.remove(k.kind.as_str());
    }
}

fn is_autoscaler(key: &ResourceKey) -> bool {
    (key.group == "autoscaling" && key.kind == "HorizontalPodAutoscaler")
        || (key.group == "keda.sh" && key.kind == "ScaledObject")
}

fn status_word(s: RemediationStatus) -> &'static str {
    match s {
        RemediationStatus::Applied => "applied",
        RemediationStatus::DryRunOk => "dry run passed",
        RemediationStatus::Conflict => "conflict",
        RemediationStatus::Rejected => "rejected by the server (a patch cannot fix it)",
        RemediationStatus::Failed => "failed",
        RemediationStatus::Skipped => "skipped",
    }
}
