//! The ports (ARCHITECTURE §5): the traits adapters implement to bring live state, desired state,
//! remediation, drift history and analysis to the engine. All are async and object-safe
//! (`Box<dyn LiveSource>` works), `Send + Sync`, and return [`PortError`].
//!
//! [`crate::memory`] has an in-memory implementation of each: the reference semantics and the test
//! doubles.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::Millis;
use crate::drift::{Drift, DriftId};
use crate::model::{Resource, ResourceKey};
use crate::rules::{DriftSet, Severity};

/// Errors from any port. Each names what it was about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// The backend cannot be reached or refused to serve; retrying later may help.
    #[error("{what} is unavailable: {reason}")]
    Unavailable {
        /// What was being accessed.
        what: String,
        /// Why.
        reason: String,
    },
    /// The thing asked for does not exist.
    #[error("{what} was not found")]
    NotFound {
        /// What was asked for.
        what: String,
    },
    /// A write lost a race (optimistic concurrency); re-read and retry.
    #[error("conflict on {what}: {reason}")]
    Conflict {
        /// What was written.
        what: String,
        /// Why.
        reason: String,
    },
    /// The request or the data is invalid; retrying will not help.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: String,
        /// Why.
        reason: String,
    },
    /// Anything else, with its cause.
    #[error("{what}: {source}")]
    Other {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl PortError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PortError::Unavailable { .. } | PortError::Conflict { .. })
    }
}

// ------------------------------------------------------------------------------------------------
// live state

/// What a re-list covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RelistScope {
    /// The whole live set.
    All,
    /// One kind, in one namespace or (`None`) all namespaces.
    Kind {
        /// API group.
        group: String,
        /// Kind.
        kind: String,
        /// Namespace the watch is limited to.
        namespace: Option<String>,
    },
}

impl RelistScope {
    /// Whether a key falls in this scope.
    pub fn covers(&self, key: &ResourceKey) -> bool {
        match self {
            RelistScope::All => true,
            RelistScope::Kind {
                group,
                kind,
                namespace,
            } => {
                key.group == *group
                    && key.kind == *kind
                    && namespace
                        .as_ref()
                        .is_none_or(|n| key.namespace.as_ref() == Some(n))
            }
        }
    }
}

/// A change in the live set.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LiveEvent {
    /// An object was created or changed (the whole new object).
    Applied(Resource),
    /// An object was deleted.
    Deleted(ResourceKey),
    /// A re-list (first list, or after a watch gap): the complete current objects of `scope`, replacing
    /// whatever was known there before. Nothing that changed during the gap is missed.
    Restarted {
        /// What the list covers.
        scope: RelistScope,
        /// The objects.
        resources: Vec<Resource>,
    },
    /// Part of a (re-)list still arriving, for sources that deliver large lists in pages: these
    /// objects are current. `first` starts a new list of `scope` (forgetting the parts of an earlier,
    /// unfinished one); the [`LiveEvent::Restarted`] of the same scope ends it, and everything in
    /// the scope that neither it nor its parts hold is gone.
    Listing {
        /// What the list covers.
        scope: RelistScope,
        /// This part's objects.
        resources: Vec<Resource>,
        /// Whether this part starts the list.
        first: bool,
    },
    /// Every watch has listed once: the live set is complete.
    Ready,
    /// Every watch of a namespace started while running (sharding: a namespace acquired) has listed
    /// once: its part of the live set is complete.
    NamespaceListed(String),
}

/// Live cluster state.
#[async_trait]
pub trait LiveSource: Send + Sync {
    /// The current live set (one consistent list per kind).
    async fn list(&self) -> Result<Vec<Resource>, PortError>;
    /// Changes as they happen: first a [`LiveEvent::Restarted`] per watched scope, then
    /// [`LiveEvent::Ready`], then applied/deleted events and re-lists after gaps. Errors are items, so
    /// the caller sees them and the stream keeps going (the source backs off by itself).
    fn watch(&self) -> BoxStream<'static, Result<LiveEvent, PortError>>;
    /// Also watches these kinds, (group, kind) — the kinds the desired state names, custom ones
    /// included — from now on: their objects arrive on the [`LiveSource::watch`] stream with a
    /// [`LiveEvent::Restarted`] of their own. Sources with a fixed set of kinds ignore it.
    fn ensure_watched(&self, kinds: &[(String, String)]) {
        let _ = kinds;
    }
    /// Sharding: watches namespaced kinds in exactly these namespaces from now on. Watches of
    /// namespaces no longer named stop; each new one starts with a [`LiveEvent::Restarted`] of its
    /// own. Sources with a fixed scope ignore it.
    fn set_namespaces(&self, namespaces: &[String]) {
        let _ = namespaces;
    }
}

// ------------------------------------------------------------------------------------------------
// desired state

/// Where a desired resource came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// A stable name for the source (a file path, or `space/unit`); resources with the same source
    /// are replaced together.
    pub source: String,
    /// ConfigHub space slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
    /// ConfigHub unit slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// ConfigHub unit id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_id: Option<String>,
    /// ConfigHub space id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<String>,
    /// Revision of the source (ConfigHub `HeadRevisionNum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Labels of the source (ConfigHub unit labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Environment (`dev`, `staging`, `prod`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

impl Provenance {
    /// Provenance for a plain file.
    pub fn file(path: impl Into<String>) -> Self {
        Provenance {
            source: path.into(),
            ..Provenance::default()
        }
    }
}

/// A desired resource and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredResource {
    /// The resource.
    pub resource: Resource,
    /// Its provenance.
    pub provenance: Provenance,
}

/// A source that did not load (a unit whose data does not parse, an unreadable file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceError {
    /// The source (unit slug, file).
    pub source: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.reason)
    }
}

/// The desired set: what loaded and what did not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DesiredSet {
    /// Resources that loaded.
    pub resources: Vec<DesiredResource>,
    /// Sources that did not.
    pub errors: Vec<SourceError>,
}

/// A change in the desired set.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DesiredChange {
    /// Everything from `source` is now `resources` (possibly none: the source was removed).
    Replaced {
        /// The source whose resources are replaced.
        source: String,
        /// Its resources now.
        resources: Vec<DesiredResource>,
    },
    /// A source failed to load; its previous resources stay in force.
    Failed(SourceError),
    /// A complete reload.
    Reloaded(DesiredSet),
}

/// The source of truth.
#[async_trait]
pub trait DesiredStore: Send + Sync {
    /// Loads every desired resource. One broken source is an entry in [`DesiredSet::errors`], not an
    /// error of the call.
    async fn load(&self) -> Result<DesiredSet, PortError>;
    /// Changes after the load.
    fn changes(&self) -> BoxStream<'static, Result<DesiredChange, PortError>>;
    /// Loads every desired resource as [`DesiredStore::load`] does, handing them over a part at a
    /// time (a bounded channel: the receiver's pace), so a large desired state never stands in
    /// memory parsed all at once. Returns the sources that did not load. The default loads
    /// everything and sends it as one part.
    async fn load_parts(
        &self,
        mut parts: futures::channel::mpsc::Sender<Vec<DesiredResource>>,
    ) -> Result<Vec<SourceError>, PortError> {
        use futures::SinkExt as _;
        let set = self.load().await?;
        // A receiver gone is a caller that stopped listening: nothing left to deliver to.
        let _ = parts.send(set.resources).await;
        Ok(set.errors)
    }
}

// ------------------------------------------------------------------------------------------------
// remediation

/// What a plan does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RemediationAction {
    /// Put live back to desired with this guarded JSON Patch.
    Revert {
        /// The patch (with `test` guards).
        patch: json_patch::Patch,
    },
    /// Re-apply the desired object from the source of truth (a missing object, Secret data, or
    /// "ConfigHub wins").
    Reapply,
    /// Make the desired state take the live values: desired pointer → live value (`null` removes).
    Adopt {
        /// Values to write into the desired state.
        values: Map<String, Value>,
    },
    /// Record only.
    Track,
}

impl RemediationAction {
    /// Short name: `revert`, `reapply`, `adopt`, `track`.
    pub fn name(&self) -> &'static str {
        match self {
            RemediationAction::Revert { .. } => "revert",
            RemediationAction::Reapply => "reapply",
            RemediationAction::Adopt { .. } => "adopt",
            RemediationAction::Track => "track",
        }
    }
}

/// A fix to carry out on one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct RemediationPlan {
    /// The resource.
    pub key: ResourceKey,
    /// The drifts it fixes.
    pub drifts: Vec<Drift>,
    /// What to do.
    pub action: RemediationAction,
    /// Where the desired object came from.
    pub provenance: Option<Provenance>,
    /// The desired object (redacted), for `Reapply` through a cluster remediator.
    pub desired: Option<Resource>,
    /// Who asked (the detector's identity, or a person).
    pub actor: String,
    /// Why (policy, approval, manual request).
    pub reason: String,
}

impl RemediationPlan {
    /// The ids of the drifts the plan fixes.
    pub fn drift_ids(&self) -> Vec<DriftId> {
        self.drifts.iter().map(|d| d.id.clone()).collect()
    }

    /// The audit line carried into change descriptions: who, what, why.
    pub fn audit(&self) -> String {
        let ids: Vec<&str> = self.drifts.iter().map(|d| d.id.as_str()).collect();
        let rules: Vec<&str> = {
            let mut r: Vec<&str> = self.drifts.iter().map(|d| d.rule.as_str()).collect();
            r.sort_unstable();
            r.dedup();
            r
        };
        format!(
            "drift-detector {} of {} by {} (drifts {}; rules {}): {}",
            self.action.name(),
            self.key,
            self.actor,
            ids.join(","),
            rules.join(","),
            self.reason
        )
    }
}

/// Dry run or for real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemediationMode {
    /// Validate only (the API server's `dryRun=All`, ConfigHub's `dry_run`).
    DryRun,
    /// Change things.
    Apply,
}

/// How a remediation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RemediationStatus {
    /// Applied.
    Applied,
    /// The dry run passed.
    DryRunOk,
    /// A `test` guard or a version check failed: live moved on. Re-read and re-plan.
    Conflict,
    /// The server refused the change itself (an immutable field such as a selector, a Job's
    /// template, a Service's clusterIP): no patch can fix this drift; retrying would not help.
    Rejected,
    /// Failed.
    Failed,
    /// Not attempted (the remediator cannot do this action).
    Skipped,
}

/// The outcome for one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationOutcome {
    /// The resource.
    pub key: ResourceKey,
    /// Status.
    pub status: RemediationStatus,
    /// Details for people.
    pub message: String,
    /// Mode used.
    pub mode: RemediationMode,
}

/// Carries out remediation plans.
#[async_trait]
pub trait Remediator: Send + Sync {
    /// A short name (`cluster`, `confighub`).
    fn name(&self) -> &str;
    /// Carries out a plan. Failures are outcomes, not errors: every plan gets an answer.
    async fn remediate(&self, plan: &RemediationPlan, mode: RemediationMode) -> RemediationOutcome;
}

// ------------------------------------------------------------------------------------------------
// drift history

/// A drift lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DriftEventKind {
    /// A new drift.
    Opened,
    /// The live value changed again while the drift was open.
    Updated,
    /// A fix was applied; the drift counts as corrected once live shows it gone.
    Remediated,
    /// A fix failed.
    FixFailed,
    /// The drift is gone after our fix: verified corrected.
    Corrected,
    /// The drift went away on its own (someone fixed it, or desired changed).
    Resolved,
    /// The flap guard stopped fixing it: something else keeps undoing the fix.
    Escalated,
    /// A person approved fixing it.
    Approved,
    /// A person chose to ignore it.
    Ignored,
}

impl DriftEventKind {
    /// The kebab-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            DriftEventKind::Opened => "opened",
            DriftEventKind::Updated => "updated",
            DriftEventKind::Remediated => "remediated",
            DriftEventKind::FixFailed => "fix-failed",
            DriftEventKind::Corrected => "corrected",
            DriftEventKind::Resolved => "resolved",
            DriftEventKind::Escalated => "escalated",
            DriftEventKind::Approved => "approved",
            DriftEventKind::Ignored => "ignored",
        }
    }

    /// Whether the drift is closed after this event.
    pub fn closes(&self) -> bool {
        matches!(self, DriftEventKind::Corrected | DriftEventKind::Resolved)
    }
}

/// One drift lifecycle event; `event_id` makes appends idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftEvent {
    /// Unique per event, stable across retries of the same write.
    pub event_id: String,
    /// What happened.
    pub kind: DriftEventKind,
    /// When (ms since the epoch).
    pub at: Millis,
    /// The drift as it was at that moment (values redacted for Secrets).
    pub drift: Drift,
    /// Environment of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Where the desired object came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// Who caused it (the detector's identity, a person).
    pub actor: String,
    /// Why, in words.
    pub reason: String,
}

impl DriftEvent {
    /// Builds an event with an id derived from the drift, the kind and the time.
    pub fn new(
        kind: DriftEventKind,
        at: Millis,
        drift: Drift,
        actor: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        let event_id = format!("{}-{}-{}", drift.id, kind.as_str(), at);
        DriftEvent {
            event_id,
            kind,
            at,
            drift,
            environment: None,
            provenance: None,
            actor: actor.into(),
            reason: reason.into(),
        }
    }

    /// Adds provenance (and its environment).
    #[must_use]
    pub fn with_provenance(mut self, p: Option<Provenance>) -> Self {
        self.environment = p.as_ref().and_then(|p| p.environment.clone());
        self.provenance = p;
        self
    }
}

/// The state of a drift in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DriftState {
    /// Open.
    Open,
    /// A fix was applied, not yet verified.
    Remediating,
    /// Auto-fix stopped by the flap guard; needs a person.
    Escalated,
    /// Ignored by a person.
    Ignored,
    /// Gone after our fix.
    Corrected,
    /// Gone on its own.
    Resolved,
}

impl DriftState {
    /// The state after an event.
    pub fn after(self, kind: DriftEventKind) -> DriftState {
        match kind {
            DriftEventKind::Opened | DriftEventKind::Approved => DriftState::Open,
            DriftEventKind::Updated | DriftEventKind::FixFailed => match self {
                DriftState::Escalated | DriftState::Ignored => self,
                _ => DriftState::Open,
            },
            DriftEventKind::Remediated => DriftState::Remediating,
            DriftEventKind::Corrected => DriftState::Corrected,
            DriftEventKind::Resolved => DriftState::Resolved,
            DriftEventKind::Escalated => DriftState::Escalated,
            DriftEventKind::Ignored => DriftState::Ignored,
        }
    }

    /// Whether the drift is still open in some form.
    pub fn is_open(&self) -> bool {
        !matches!(self, DriftState::Corrected | DriftState::Resolved)
    }

    /// The kebab-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            DriftState::Open => "open",
            DriftState::Remediating => "remediating",
            DriftState::Escalated => "escalated",
            DriftState::Ignored => "ignored",
            DriftState::Corrected => "corrected",
            DriftState::Resolved => "resolved",
        }
    }
}

/// The current state of one drift with its timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftRecord {
    /// The latest drift snapshot.
    pub drift: Drift,
    /// State.
    pub state: DriftState,
    /// When it was first opened.
    pub opened_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
    /// Environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Provenance of the desired object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// The events, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// One line of a record's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// Event id.
    pub event_id: String,
    /// What happened.
    pub kind: DriftEventKind,
    /// When.
    pub at: Millis,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: String,
}

impl DriftRecord {
    /// Starts a record from its first event.
    pub fn from_event(e: &DriftEvent) -> DriftRecord {
        DriftRecord {
            drift: e.drift.clone(),
            state: DriftState::Open.after(e.kind),
            opened_at: e.at,
            updated_at: e.at,
            environment: e.environment.clone(),
            provenance: e.provenance.clone(),
            timeline: vec![TimelineEntry::from(e)],
        }
    }

    /// Folds an event in; returns `false` when the event was already there (idempotent replay).
    pub fn apply(&mut self, e: &DriftEvent) -> bool {
        if self.timeline.iter().any(|t| t.event_id == e.event_id) {
            return false;
        }
        if e.kind == DriftEventKind::Opened && !self.state.is_open() {
            self.opened_at = e.at;
        }
        self.state = self.state.after(e.kind);
        self.updated_at = self.updated_at.max(e.at);
        self.drift = e.drift.clone();
        if e.environment.is_some() {
            self.environment = e.environment.clone();
        }
        if e.provenance.is_some() {
            self.provenance = e.provenance.clone();
        }
        self.timeline.push(TimelineEntry::from(e));
        true
    }
}

impl From<&DriftEvent> for TimelineEntry {
    fn from(e: &DriftEvent) -> Self {
        TimelineEntry {
            event_id: e.event_id.clone(),
            kind: e.kind,
            at: e.at,
            actor: e.actor.clone(),
            reason: e.reason.clone(),
        }
    }
}

/// A history query. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryQuery {
    /// One drift.
    pub drift_id: Option<DriftId>,
    /// Events at or after this time.
    pub since: Option<Millis>,
    /// Drift set.
    pub set: Option<DriftSet>,
    /// Minimum severity.
    pub min_severity: Option<Severity>,
    /// Environment.
    pub environment: Option<String>,
    /// Only drifts still open.
    pub open_only: bool,
    /// At most this many (newest first).
    pub limit: Option<usize>,
}

impl HistoryQuery {
    /// Whether a record matches (ignoring `since` and `limit`).
    pub fn matches_record(&self, r: &DriftRecord) -> bool {
        self.drift_id.as_ref().is_none_or(|id| *id == r.drift.id)
            && self.set.is_none_or(|s| {
                s == r.drift.set || (s == DriftSet::Corrected && r.state == DriftState::Corrected)
            })
            && self.min_severity.is_none_or(|s| r.drift.severity >= s)
            && self
                .environment
                .as_ref()
                .is_none_or(|e| r.environment.as_ref() == Some(e))
            && (!self.open_only || r.state.is_open())
    }
}

/// Persistent drift history.
#[async_trait]
pub trait DriftLog: Send + Sync {
    /// Appends an event. Idempotent by `event_id`: writing the same event twice stores it once.
    async fn append(&self, event: &DriftEvent) -> Result<(), PortError>;
    /// Records (current state and timeline) matching the query, most recently updated first.
    async fn records(&self, query: &HistoryQuery) -> Result<Vec<DriftRecord>, PortError>;
}

// ------------------------------------------------------------------------------------------------
// analysis

/// A risk level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    /// None to speak of.
    None,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

impl RiskLevel {
    /// `none`, `low`, `medium`, `high`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RiskLevel::None => "none",
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }
}

impl std::fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A drift to analyse, with what the engine knows about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisItem {
    /// The drift (redacted).
    pub drift: Drift,
    /// Environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Monthly cost delta from the cost model, when it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_cost_delta: Option<f64>,
    /// Actions the engine can build for this drift.
    pub allowed_actions: Vec<RecommendedAction>,
}

/// A batch of drifts to analyse.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRequest {
    /// The drifts.
    pub items: Vec<AnalysisItem>,
}

/// What to do about a drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecommendedAction {
    /// Put live back to desired.
    Revert,
    /// Make desired take the live value.
    Adopt,
    /// Leave it, keep watching.
    Track,
}

/// Risk of one drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftRisk {
    /// The drift.
    pub drift_id: DriftId,
    /// Availability risk.
    pub availability: RiskLevel,
    /// Security risk.
    pub security: RiskLevel,
    /// Cost risk.
    pub cost: RiskLevel,
    /// Explanation.
    pub note: String,
}

/// A recommendation; always about a known drift and one of the actions the engine can build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// The drift.
    pub drift_id: DriftId,
    /// The action.
    pub action: RecommendedAction,
    /// Why.
    pub reason: String,
}

/// The result of an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Which analyzer produced it (`deterministic`, `claude:<model>`).
    pub analyzer: String,
    /// Summary.
    pub summary: String,
    /// Per-drift risk.
    pub risks: Vec<DriftRisk>,
    /// Total monthly cost delta of the batch (USD, positive = more spend).
    pub monthly_cost_delta: f64,
    /// Recommendations.
    pub recommendations: Vec<Recommendation>,
}

/// Enriches drifts with a summary, risk, cost impact and recommendations. Detection never waits on it.
#[async_trait]
pub trait Analyzer: Send + Sync {
    /// A short name.
    fn name(&self) -> &str;
    /// Analyses a batch.
    async fn analyze(&self, request: &AnalysisRequest) -> Result<Analysis, PortError>;
}
