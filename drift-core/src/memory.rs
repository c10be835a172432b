//! In-memory implementations of the ports: the reference semantics, and test doubles.
//!
//! - [`MemoryCluster`]: a live set with watch subscribers; also a [`Remediator`] that applies revert
//!   patches with their `test` guards, as an API server does.
//! - [`MemoryDesiredStore`]: a desired set with change notifications.
//! - [`MemoryDriftLog`]: an idempotent drift log.
//! - The in-memory [`crate::ports::Analyzer`] is [`crate::analysis::DeterministicAnalyzer`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::channel::mpsc;
use futures::stream::{self, BoxStream, StreamExt};

use crate::drift::DriftId;
use crate::model::{Resource, ResourceKey};
use crate::ports::{
    DesiredChange, DesiredResource, DesiredSet, DesiredStore, DriftEvent, DriftLog, DriftRecord,
    HistoryQuery, LiveEvent, LiveSource, PortError, RelistScope, RemediationAction, RemediationMode,
    RemediationOutcome, RemediationPlan, RemediationStatus, Remediator,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it; the data is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Default)]
struct ClusterState {
    objects: BTreeMap<ResourceKey, Resource>,
    watchers: Vec<mpsc::UnboundedSender<Result<LiveEvent, PortError>>>,
    generation: u64,
}

/// An in-memory cluster: a live set that can be watched and patched.
#[derive(Clone, Default)]
pub struct MemoryCluster {
    state: Arc<Mutex<ClusterState>>,
}

impl std::fmt::Debug for MemoryCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCluster")
            .field("objects", &lock(&self.state).objects.len())
            .finish()
    }
}

impl MemoryCluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    fn broadcast(state: &mut ClusterState, event: LiveEvent) {
        state
            .watchers
            .retain(|w| w.unbounded_send(Ok(event.clone())).is_ok());
    }

    /// Creates or replaces an object and notifies watchers. As an API server does, a changed `spec`
    /// bumps `metadata.generation` (for kinds that keep one) and every write bumps `resourceVersion`.
    pub fn apply(&self, mut r: Resource) {
        let mut s = lock(&self.state);
        s.generation += 1;
        let rv = s.generation.to_string();
        if let Some(meta) = r
            .object
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut)
        {
            meta.insert("resourceVersion".into(), serde_json::Value::String(rv));
        }
        if crate::kinds::has_generation(&r.key.group, &r.key.kind) {
            let old = s.objects.get(&r.key);
            let old_gen = old
                .and_then(|o| o.object.pointer("/metadata/generation"))
                .and_then(serde_json::Value::as_i64);
            let new_gen = r
                .object
                .pointer("/metadata/generation")
                .and_then(serde_json::Value::as_i64);
            let spec_changed = old.is_some_and(|o| o.object.get("spec") != r.object.get("spec"));
            let generation = match (old_gen, new_gen) {
                (Some(o), n) if spec_changed && n.is_none_or(|n| n <= o) => Some(o + 1),
                (Some(o), None) => Some(o),
                (None, None) => Some(1),
                (_, n) => n,
            };
            if let (Some(g), Some(meta)) = (
                generation,
                r.object
                    .get_mut("metadata")
                    .and_then(serde_json::Value::as_object_mut),
            ) {
                meta.insert("generation".into(), serde_json::Value::from(g));
            }
        }
        s.objects.insert(r.key.clone(), r.clone());
        Self::broadcast(&mut s, LiveEvent::Applied(r));
    }

    /// Deletes an object and notifies watchers.
    pub fn delete(&self, key: &ResourceKey) {
        let mut s = lock(&self.state);
        if s.objects.remove(key).is_some() {
            Self::broadcast(&mut s, LiveEvent::Deleted(key.clone()));
        }
    }

    /// Simulates a watch gap: every watcher gets a fresh complete list.
    pub fn relist(&self) {
        let mut s = lock(&self.state);
        let resources: Vec<Resource> = s.objects.values().cloned().collect();
        Self::broadcast(
            &mut s,
            LiveEvent::Restarted {
                scope: RelistScope::All,
                resources,
            },
        );
    }

    /// One object.
    pub fn get(&self, key: &ResourceKey) -> Option<Resource> {
        lock(&self.state).objects.get(key).cloned()
    }

    /// Edits an object in place (as another controller would) and notifies watchers.
    pub fn edit(&self, key: &ResourceKey, f: impl FnOnce(&mut serde_json::Value)) -> bool {
        let Some(mut r) = self.get(key) else { return false };
        f(&mut r.object);
        self.apply(r);
        true
    }
}

#[async_trait]
impl LiveSource for MemoryCluster {
    async fn list(&self) -> Result<Vec<Resource>, PortError> {
        Ok(lock(&self.state).objects.values().cloned().collect())
    }

    fn watch(&self) -> BoxStream<'static, Result<LiveEvent, PortError>> {
        let (tx, rx) = mpsc::unbounded();
        let mut s = lock(&self.state);
        let resources: Vec<Resource> = s.objects.values().cloned().collect();
        s.watchers.push(tx);
        let first = stream::iter(vec![
            Ok(LiveEvent::Restarted {
                scope: RelistScope::All,
                resources,
            }),
            Ok(LiveEvent::Ready),
        ]);
        first.chain(rx).boxed()
    }
}

#[async_trait]
impl Remediator for MemoryCluster {
    fn name(&self) -> &str {
        "memory-cluster"
    }

    async fn remediate(&self, plan: &RemediationPlan, mode: RemediationMode) -> RemediationOutcome {
        let outcome = |status, message: String| RemediationOutcome {
            key: plan.key.clone(),
            status,
            message,
            mode,
        };
        match &plan.action {
            RemediationAction::Revert { patch } => {
                let Some(current) = self.get(&plan.key) else {
                    return outcome(RemediationStatus::Conflict, "the object no longer exists".into());
                };
                let mut obj = current.object.clone();
                match crate::patch::patch_in_place(&mut obj, patch) {
                    Ok(()) if mode == RemediationMode::DryRun => {
                        outcome(RemediationStatus::DryRunOk, "patch applies".into())
                    }
                    Ok(()) => {
                        self.apply(Resource {
                            key: current.key,
                            object: obj,
                        });
                        outcome(
                            RemediationStatus::Applied,
                            format!("{} operations applied", patch.0.len()),
                        )
                    }
                    Err(e) if matches!(e.kind, json_patch::PatchErrorKind::TestFailed) => outcome(
                        RemediationStatus::Conflict,
                        format!("live changed since the plan: {e}"),
                    ),
                    Err(e) => outcome(RemediationStatus::Failed, e.to_string()),
                }
            }
            RemediationAction::Reapply => match &plan.desired {
                Some(d) if !crate::redact::is_secret(&d.object) => {
                    if mode == RemediationMode::Apply {
                        self.apply(d.clone());
                        outcome(RemediationStatus::Applied, "object re-applied".into())
                    } else {
                        outcome(RemediationStatus::DryRunOk, "object can be re-applied".into())
                    }
                }
                _ => outcome(
                    RemediationStatus::Skipped,
                    "Secret data is re-applied from the source of truth".into(),
                ),
            },
            other => outcome(
                RemediationStatus::Skipped,
                format!("the cluster does not {}", other.name()),
            ),
        }
    }
}

#[derive(Default)]
struct DesiredState {
    set: DesiredSet,
    watchers: Vec<mpsc::UnboundedSender<Result<DesiredChange, PortError>>>,
}

/// An in-memory source of truth.
#[derive(Clone, Default)]
pub struct MemoryDesiredStore {
    state: Arc<Mutex<DesiredState>>,
}

impl std::fmt::Debug for MemoryDesiredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDesiredStore")
            .field("resources", &lock(&self.state).set.resources.len())
            .finish()
    }
}

impl MemoryDesiredStore {
    /// A store holding `set`.
    pub fn new(set: DesiredSet) -> Self {
        MemoryDesiredStore {
            state: Arc::new(Mutex::new(DesiredState {
                set,
                watchers: Vec::new(),
            })),
        }
    }

    /// Replaces one source's resources and notifies subscribers.
    pub fn replace(&self, source: &str, resources: Vec<DesiredResource>) {
        let mut s = lock(&self.state);
        s.set.resources.retain(|r| r.provenance.source != source);
        s.set.resources.extend(resources.iter().cloned());
        let change = DesiredChange::Replaced {
            source: source.to_string(),
            resources,
        };
        s.watchers
            .retain(|w| w.unbounded_send(Ok(change.clone())).is_ok());
    }
}

#[async_trait]
impl DesiredStore for MemoryDesiredStore {
    async fn load(&self) -> Result<DesiredSet, PortError> {
        Ok(lock(&self.state).set.clone())
    }

    fn changes(&self) -> BoxStream<'static, Result<DesiredChange, PortError>> {
        let (tx, rx) = mpsc::unbounded();
        lock(&self.state).watchers.push(tx);
        rx.boxed()
    }
}

/// An in-memory drift log, idempotent by event id.
#[derive(Clone, Default)]
pub struct MemoryDriftLog {
    records: Arc<Mutex<HashMap<DriftId, DriftRecord>>>,
}

impl std::fmt::Debug for MemoryDriftLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDriftLog")
            .field("records", &lock(&self.records).len())
            .finish()
    }
}

impl MemoryDriftLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of events stored.
    pub fn event_count(&self) -> usize {
        lock(&self.records).values().map(|r| r.timeline.len()).sum()
    }
}

/// Applies a query's ordering, `since` and `limit` to records (shared by log implementations).
pub fn select_records(mut records: Vec<DriftRecord>, q: &HistoryQuery) -> Vec<DriftRecord> {
    records.retain(|r| q.matches_record(r) && q.since.is_none_or(|s| r.updated_at >= s));
    records.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then_with(|| a.drift.id.cmp(&b.drift.id))
    });
    if let Some(n) = q.limit {
        records.truncate(n);
    }
    records
}

#[async_trait]
impl DriftLog for MemoryDriftLog {
    async fn append(&self, event: &DriftEvent) -> Result<(), PortError> {
        let mut r = lock(&self.records);
        match r.get_mut(&event.drift.id) {
            Some(rec) => {
                rec.apply(event);
            }
            None => {
                r.insert(event.drift.id.clone(), DriftRecord::from_event(event));
            }
        }
        Ok(())
    }

    async fn records(&self, query: &HistoryQuery) -> Result<Vec<DriftRecord>, PortError> {
        let all: Vec<DriftRecord> = lock(&self.records).values().cloned().collect();
        Ok(select_records(all, query))
    }
}
