//! The running pipeline (ARCHITECTURE §6): one task owns the [`Detector`] and is fed by the live
//! watch, the desired-state changes and commands (from the HTTP API); drift events go to the history
//! through a spool that survives outages and restarts; fixes run in their own tasks (dry run, then for
//! real) and report back; analysis runs off the hot path, batched. Only the leader fixes and writes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drift_claude::AnalysisBatcher;
use drift_core::DriftId;
use drift_core::clock::{Clock, SystemClock};
use drift_core::detector::{Detector, DetectorConfig, DetectorStats, OpenDrift, Outcome};
use drift_core::ports::{
    Analysis, DesiredChange, DesiredStore, DriftEvent, DriftEventKind, DriftLog, DriftRecord, HistoryQuery,
    LiveEvent, LiveSource, RemediationMode, RemediationOutcome, RemediationPlan, RemediationStatus,
    Remediator,
};
use drift_core::{DiffEngine, ResourceKey};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::alerts::{AlertSink, AlertView};
use crate::metrics::{Kind, Metrics, Result_, SetSeverity};
use crate::store::Store;

/// What the pipeline is made of.
pub(crate) struct Parts {
    pub live: Arc<dyn LiveSource>,
    pub desired: Arc<dyn DesiredStore>,
    /// The durable history (ConfigHub or the local database).
    pub log: Arc<dyn DriftLog>,
    /// The local spool in front of a remote history (`None`: the history is local already).
    pub spool: Option<Arc<Store>>,
    pub remediator: Option<Arc<dyn Remediator>>,
    pub analyzer: Arc<dyn drift_core::ports::Analyzer>,
    pub alerts: AlertSink,
    /// `true` while this replica leads (always `true` without leader election).
    pub leader: watch::Receiver<bool>,
    pub detector: DetectorConfig,
    pub engine: DiffEngine,
    /// Counters of the ConfigHub client, when there is one.
    pub confighub_stats: Option<Arc<drift_confighub::ClientStats>>,
    /// Writes each drift transition as a Kubernetes Event on the object (leader only).
    pub kube_events: Option<drift_kube::KubeEventRecorder>,
    /// Sharding: this replica judges only the namespaces rendezvous hashing gives it.
    pub shard: Option<ShardParts>,
}

/// What sharding needs: who this replica is, the live members, and the namespaces to split.
pub(crate) struct ShardParts {
    pub identity: String,
    /// The live members (sorted); empty while this replica must own nothing.
    pub members: watch::Receiver<Vec<String>>,
    /// The namespaces to split (empty: those the desired state names).
    pub namespaces: Vec<String>,
}

/// This replica's shard, as `/api/drifts` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ShardView {
    pub identity: String,
    pub members: Vec<String>,
    pub namespaces: Vec<String>,
    pub cluster_scoped: bool,
}

/// A message to the pipeline.
pub(crate) enum Cmd {
    Snapshot(oneshot::Sender<Snapshot>),
    Approve {
        id: DriftId,
        actor: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Ignore {
        id: DriftId,
        actor: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    FixDone {
        plan: Box<RemediationPlan>,
        outcome: RemediationOutcome,
    },
    Analysis(Analysis),
    /// A load of the desired state finished (it runs off the loop: a slow source never stalls it);
    /// its parts came through the parts channel before. The errors are the sources that did not load.
    Desired(Result<Vec<drift_core::ports::SourceError>, drift_core::ports::PortError>),
}

/// A desired object the detector does not watch.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NotWatched {
    pub resource: String,
    pub reason: String,
}

/// What the dashboard and the API read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Snapshot {
    pub ready: bool,
    pub leader: bool,
    pub open: Vec<OpenDrift>,
    pub stats: DetectorStats,
    pub tracked: usize,
    /// Desired objects outside the watched kinds and namespaces, with the reason (never "missing").
    pub not_watched: Vec<NotWatched>,
    pub analysis: Option<Analysis>,
    pub alerts: Vec<AlertView>,
    pub recent: Vec<DriftEvent>,
    pub desired_errors: Vec<String>,
    pub spooled: usize,
    /// This replica's shard (`watch --sharding`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardView>,
}

/// A live update for the dashboard (server-sent events).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub(crate) enum UiEvent {
    Drift {
        event: Box<DriftEvent>,
    },
    Alert {
        alert: Box<AlertView>,
    },
    Analysis {
        analysis: Box<Analysis>,
    },
    Fix {
        drift_ids: Vec<String>,
        resource: String,
        status: RemediationStatus,
        message: String,
    },
    Status {
        ready: bool,
        leader: bool,
    },
}

/// Liveness and readiness, shared with the HTTP side.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub ready: AtomicBool,
    pub leader: AtomicBool,
    /// Milliseconds since the epoch of the last turn of the loop.
    pub heartbeat: AtomicU64,
}

/// The running pipeline.
pub(crate) struct Handle {
    pub cmd: mpsc::Sender<Cmd>,
    pub ui: broadcast::Sender<UiEvent>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<Status>,
    stop: watch::Sender<bool>,
    join: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// The current state.
    pub(crate) async fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Snapshot(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Approves (and so fixes) a drift.
    pub(crate) async fn approve(&self, id: &str, actor: &str) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Approve {
                id: DriftId(id.to_string()),
                actor: actor.to_string(),
                reply: tx,
            })
            .await
            .map_err(|_| "the pipeline has stopped".to_string())?;
        rx.await.map_err(|_| "the pipeline has stopped".to_string())?
    }

    /// Ignores a drift.
    pub(crate) async fn ignore(&self, id: &str, actor: &str) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Ignore {
                id: DriftId(id.to_string()),
                actor: actor.to_string(),
                reply: tx,
            })
            .await
            .map_err(|_| "the pipeline has stopped".to_string())?;
        rx.await.map_err(|_| "the pipeline has stopped".to_string())?
    }

    /// Stops: the loop ends, then every drift event is written (or left in the spool for the next start).
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.join.await;
        let _ = self.writer.await;
    }
}

/// Writes drift events to the history: through the spool when the history is remote, retrying until
/// written; on shutdown, what could not be written stays in the spool for the next start.
struct Writer {
    log: Arc<dyn DriftLog>,
    spool: Option<Arc<Store>>,
    metrics: Arc<Metrics>,
}

impl Writer {
    async fn write(&self, e: &DriftEvent) -> bool {
        let t = Instant::now();
        match self.log.append(e).await {
            Ok(()) => {
                self.metrics.log_write_seconds.observe(t.elapsed().as_secs_f64());
                if let Some(s) = &self.spool
                    && let Err(err) = s.unspool(&e.event_id)
                {
                    tracing::warn!(error = %err, "could not clear a written event from the spool");
                }
                true
            }
            Err(err) => {
                tracing::warn!(error = %err, event = %e.event_id, "drift history unavailable; the event stays queued");
                false
            }
        }
    }

    /// Runs until the pipeline closes the channel, then writes what is queued (for at most 10 s;
    /// with a spool, anything left is written at the next start).
    async fn run(self, mut rx: mpsc::UnboundedReceiver<DriftEvent>) {
        let mut queue: VecDeque<DriftEvent> = VecDeque::new();
        if let Some(s) = &self.spool {
            match s.spooled() {
                Ok(old) if !old.is_empty() => {
                    tracing::info!(
                        events = old.len(),
                        "writing drift events spooled before the last stop"
                    );
                    queue.extend(old);
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot read the spool"),
            }
        }
        let mut backoff = Duration::from_millis(200);
        let mut deadline: Option<Instant> = None;
        loop {
            while let Ok(e) = rx.try_recv() {
                self.enqueue(&mut queue, e);
            }
            match queue.front().cloned() {
                Some(e) => {
                    if self.write(&e).await {
                        queue.pop_front();
                        backoff = Duration::from_millis(200);
                    } else {
                        let wait = deadline.map_or(backoff, |d| {
                            backoff.min(d.saturating_duration_since(Instant::now()))
                        });
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            m = rx.recv(), if deadline.is_none() => match m {
                                Some(e) => self.enqueue(&mut queue, e),
                                None => deadline = Some(Instant::now() + Duration::from_secs(10)),
                            },
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
                None if deadline.is_some() => break,
                None => match rx.recv().await {
                    Some(e) => self.enqueue(&mut queue, e),
                    None => deadline = Some(Instant::now() + Duration::from_secs(10)),
                },
            }
            self.metrics.log_spooled.set(queue.len() as i64);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        if !queue.is_empty() {
            match &self.spool {
                Some(_) => tracing::warn!(
                    events = queue.len(),
                    "stopping with drift events not yet written; they are in the spool for the next start"
                ),
                None => tracing::error!(
                    events = queue.len(),
                    "stopping with drift events the local history could not take"
                ),
            }
        }
    }

    fn enqueue(&self, queue: &mut VecDeque<DriftEvent>, e: DriftEvent) {
        if let Some(s) = &self.spool
            && let Err(err) = s.spool(&e)
        {
            tracing::error!(error = %err, "could not spool a drift event; it is kept in memory");
        }
        queue.push_back(e);
    }
}

struct Loop {
    det: Detector,
    parts: Parts,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    ui: broadcast::Sender<UiEvent>,
    cmd_tx: mpsc::Sender<Cmd>,
    writer: mpsc::UnboundedSender<DriftEvent>,
    /// Kubernetes Events queue (bounded: Events are best effort, as in client-go's recorder).
    kube_events: Option<mpsc::Sender<DriftEvent>>,
    batcher: AnalysisBatcher,
    leader: bool,
    desired_loaded: bool,
    desired_errors: Vec<String>,
    analysis: Option<Analysis>,
    alerts: VecDeque<AlertView>,
    recent: VecDeque<DriftEvent>,
    last_stats: DetectorStats,
    last_ready: bool,
    clock: SystemClock,
    fixes_in_flight: Arc<Mutex<std::collections::HashSet<ResourceKey>>>,
}

/// Starts the pipeline.
pub(crate) fn start(parts: Parts, metrics: Arc<Metrics>) -> Handle {
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>(256);
    let (ui, _) = broadcast::channel::<UiEvent>(1024);
    let status = Arc::new(Status::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (wtx, wrx) = mpsc::unbounded_channel::<DriftEvent>();
    let writer = Writer {
        log: parts.log.clone(),
        spool: parts.spool.clone(),
        metrics: metrics.clone(),
    };
    let writer_join = tokio::spawn(writer.run(wrx));
    let kube_events = parts.kube_events.clone().map(|recorder| {
        let (tx, mut rx) = mpsc::channel::<DriftEvent>(1024);
        let m = metrics.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if let Err(err) = recorder.record(&e).await {
                    m.kube_event_failures.inc();
                    tracing::warn!(error = %err, drift = %e.drift.id, "could not write the Kubernetes Event (the drift is in the history and on the dashboard)");
                }
            }
        });
        tx
    });
    let batcher = AnalysisBatcher::spawn(parts.analyzer.clone(), Duration::from_millis(500), 500);
    let det = Detector::new(
        parts.engine.clone(),
        parts.detector.clone(),
        Arc::new(SystemClock),
    );
    let leader = *parts.leader.borrow();
    let lp = Loop {
        det,
        leader,
        parts,
        metrics: metrics.clone(),
        status: status.clone(),
        ui: ui.clone(),
        cmd_tx: cmd_tx.clone(),
        writer: wtx,
        kube_events,
        batcher,
        desired_loaded: false,
        desired_errors: Vec::new(),
        analysis: None,
        alerts: VecDeque::new(),
        recent: VecDeque::new(),
        last_stats: DetectorStats::default(),
        last_ready: false,
        clock: SystemClock,
        fixes_in_flight: Arc::default(),
    };
    let join = tokio::spawn(lp.run(cmd_rx, stop_rx));
    Handle {
        cmd: cmd_tx,
        ui,
        metrics,
        status,
        stop: stop_tx,
        join,
        writer: writer_join,
    }
}

impl Loop {
    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>, mut stop: watch::Receiver<bool>) {
        self.metrics.leader.set(i64::from(self.leader));
        self.status.leader.store(self.leader, Ordering::Relaxed);
        // History first: open drifts survive restarts. What the history has, plus what was reported
        // but still waits in the spool. The spool is read first: the writer removes an event from it
        // only after writing it, so an event missing there is in the history by the time that is read.
        let spooled = match &self.parts.spool {
            Some(spool) => spool.spooled().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not read the spool");
                Vec::new()
            }),
            None => Vec::new(),
        };
        // Bounded: with the history unreachable (a ConfigHub outage) the daemon starts from the spool.
        self.status.heartbeat.store(self.clock.now(), Ordering::Relaxed);
        let history = tokio::time::timeout(
            Duration::from_secs(10),
            self.parts.log.records(&HistoryQuery {
                open_only: true,
                ..HistoryQuery::default()
            }),
        )
        .await;
        let mut records: BTreeMap<DriftId, DriftRecord> = match history {
            Ok(Ok(open)) => open.into_iter().map(|r| (r.drift.id.clone(), r)).collect(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not read open drifts from the history; using the spool only");
                BTreeMap::new()
            }
            Err(_) => {
                tracing::warn!("the history did not answer within 10 s; using the spool only");
                BTreeMap::new()
            }
        };
        for e in spooled {
            match records.get_mut(&e.drift.id) {
                Some(r) => {
                    r.apply(&e);
                }
                None => {
                    records.insert(e.drift.id.clone(), DriftRecord::from_event(&e));
                }
            }
        }
        let open: Vec<DriftRecord> = records.into_values().filter(|r| r.state.is_open()).collect();
        if self.parts.shard.is_some() {
            // Sharded: nothing is ours until the membership says so.
            self.det.set_shard(Some(drift_core::shard::Shard::default()));
        }
        if !open.is_empty() {
            tracing::info!(drifts = open.len(), "restored open drifts from the history");
            self.det.restore(open);
        }
        let mut live = self.parts.live.watch();
        let mut changes = self.parts.desired.changes();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut leader_rx = self.parts.leader.clone();
        let mut leader_alive = true;
        let mut members_rx = self.parts.shard.as_ref().map(|s| s.members.clone());
        let mut load_retry = tokio::time::Instant::now();
        let mut parts: Option<futures::channel::mpsc::Receiver<Vec<drift_core::ports::DesiredResource>>> =
            None;
        let mut load_backoff = Duration::from_millis(500);
        let mut loading = false;
        loop {
            self.status.heartbeat.store(self.clock.now(), Ordering::Relaxed);
            let ready = self.is_ready();
            self.status.ready.store(ready, Ordering::Relaxed);
            self.metrics.ready.set(i64::from(ready));
            self.sync_counters();
            if !self.desired_loaded && !loading && tokio::time::Instant::now() >= load_retry {
                // Off the loop: the heartbeat (/health) keeps turning while the source is slow or down.
                // Parts come a few at a time (the channel is small), each stored compactly before
                // the next is parsed.
                loading = true;
                self.det.begin_desired();
                let (part_tx, part_rx) = futures::channel::mpsc::channel(1);
                parts = Some(part_rx);
                let desired = self.parts.desired.clone();
                let tx = self.cmd_tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(Cmd::Desired(desired.load_parts(part_tx).await)).await;
                });
            }
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                part = async { parts.as_mut()?.next().await }, if parts.is_some() => match part {
                    Some(p) => self.desired_part(p),
                    None => parts = None,
                },
                c = cmds.recv() => match c {
                    Some(Cmd::Desired(r)) => {
                        loading = false;
                        // The sender is gone: what is left in the channel is the last parts.
                        if let Some(mut rx) = parts.take() {
                            while let Some(p) = rx.next().await {
                                self.desired_part(p);
                            }
                        }
                        self.load_desired(r);
                        if !self.desired_loaded {
                            load_retry = tokio::time::Instant::now() + load_backoff;
                            load_backoff = (load_backoff * 2).min(Duration::from_secs(30));
                        }
                    }
                    Some(c) => self.command(c).await,
                    None => break,
                },
                // Live events wait for the desired state: compared with nothing, every restored drift
                // would look resolved.
                ev = live.next(), if self.desired_loaded => match ev {
                    Some(Ok(ev)) => {
                        let t = Instant::now();
                        let is_change = matches!(ev, LiveEvent::Applied(_) | LiveEvent::Deleted(_));
                        let is_list = matches!(ev, LiveEvent::Restarted { .. } | LiveEvent::Listing { .. });
                        self.det.observe(ev);
                        let n = self.drain();
                        if is_change && n > 0 {
                            self.metrics.event_to_report.observe(t.elapsed().as_secs_f64());
                        }
                        if is_list {
                            // A list's objects go compact now, before the next list arrives: the
                            // peak is one list's worth of parsed objects, not every list's.
                            self.det.compact(usize::MAX);
                        }
                    }
                    Some(Err(e)) => {
                        self.metrics.watch_errors.inc();
                        tracing::warn!(error = %e, "watch error (it backs off and resumes)");
                    }
                    None => {
                        tracing::error!("the live watch ended; restarting it");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        live = self.parts.live.watch();
                    }
                },
                ch = changes.next(), if self.desired_loaded => match ch {
                    Some(Ok(ch)) => {
                        self.desired_change(ch);
                        self.drain();
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "reading desired-state changes failed; retrying"),
                    None => changes = self.parts.desired.changes(),
                },
                r = leader_rx.changed(), if leader_alive => match r {
                    Ok(()) => {
                        let now = *leader_rx.borrow();
                        self.set_leader(now).await;
                    }
                    // The election stopped (shutting down): keep the last state.
                    Err(_) => leader_alive = false,
                },
                r = async { members_rx.as_mut()?.changed().await.ok() }, if members_rx.is_some() => match r {
                    Some(()) => self.reshard(),
                    None => members_rx = None,
                },
                _ = tick.tick() => self.tick(),
            }
        }
        tracing::info!("pipeline stopping");
        // Dropping the loop closes the writer's channel; the writer drains and stops.
    }

    /// A part of the desired state being loaded: its kinds watched, its objects staged.
    fn desired_part(&mut self, part: Vec<drift_core::ports::DesiredResource>) {
        self.watch_kinds_of(&part);
        self.det.desired_part(part);
    }

    fn load_desired(&mut self, r: Result<Vec<drift_core::ports::SourceError>, drift_core::ports::PortError>) {
        match r {
            Ok(errors) => {
                self.desired_errors = errors.iter().map(ToString::to_string).collect();
                for e in &errors {
                    tracing::warn!(source = %e.source, "desired state: {}", e.reason);
                }
                self.det.end_desired();
                tracing::info!(
                    resources = self.det.sizes().0,
                    broken = errors.len(),
                    "desired state loaded"
                );
                self.desired_loaded = true;
                self.reshard();
                self.drain();
            }
            Err(e) => {
                // What was staged is dropped at the next attempt's start.
                tracing::warn!(error = %e, "loading the desired state failed; retrying");
            }
        }
    }

    fn desired_change(&mut self, ch: DesiredChange) {
        match ch {
            DesiredChange::Replaced { source, resources } => {
                tracing::info!(%source, resources = resources.len(), "desired state changed");
                self.desired_errors
                    .retain(|e| !e.starts_with(&format!("{source}:")));
                self.watch_kinds_of(&resources);
                self.det.replace_source(&source, resources);
                self.reshard();
            }
            DesiredChange::Failed(e) => {
                tracing::warn!(source = %e.source, "desired source does not load (its previous version stays in force): {}", e.reason);
                self.desired_errors
                    .retain(|x| !x.starts_with(&format!("{}:", e.source)));
                self.desired_errors.push(e.to_string());
            }
            DesiredChange::Reloaded(set) => {
                self.desired_errors = set.errors.iter().map(ToString::to_string).collect();
                self.watch_kinds_of(&set.resources);
                self.det.set_desired(set.resources);
                self.reshard();
            }
            _ => {}
        }
    }

    /// Every kind the desired state names is watched (custom ones found through discovery), and the
    /// CRDs too when a custom kind is among them, for their schema defaults.
    fn watch_kinds_of(&self, resources: &[drift_core::ports::DesiredResource]) {
        let mut kinds: std::collections::BTreeSet<(String, String)> = resources
            .iter()
            .map(|r| (r.resource.key.group.clone(), r.resource.key.kind.clone()))
            .collect();
        if kinds
            .iter()
            .any(|(g, k)| drift_core::kinds::lookup(g, k).is_none())
        {
            kinds.insert(("apiextensions.k8s.io".into(), "CustomResourceDefinition".into()));
        }
        let kinds: Vec<(String, String)> = kinds.into_iter().collect();
        self.parts.live.ensure_watched(&kinds);
    }

    /// Sharded: recomputes this replica's namespaces from the members and the namespaces to split;
    /// when they changed, the detector and the watches follow.
    fn reshard(&mut self) {
        let Some(parts) = &self.parts.shard else {
            return;
        };
        let members = parts.members.borrow().clone();
        let universe: std::collections::BTreeSet<String> = if parts.namespaces.is_empty() {
            self.det.desired_namespaces()
        } else {
            parts.namespaces.iter().cloned().collect()
        };
        let shard = drift_core::shard::assign(&parts.identity, &members, universe.iter().map(String::as_str));
        self.metrics.shard_members.set(members.len() as i64);
        if self.det.shard() == Some(&shard) {
            return;
        }
        let ns: Vec<String> = shard.namespaces.iter().cloned().collect();
        tracing::info!(
            members = members.len(),
            namespaces = ?ns,
            cluster_scoped = shard.cluster_scoped,
            "shard assigned"
        );
        self.metrics.shard_namespaces.set(ns.len() as i64);
        self.metrics.shard_reassignments.inc();
        self.parts.live.set_namespaces(&ns);
        self.det.set_shard(Some(shard));
        self.drain();
    }

    /// Processes every queued key; returns how many reports came out.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        let mut analyse: Vec<DriftId> = Vec::new();
        loop {
            // In batches: the comparisons of a long queue (the initial scan) run on every core.
            let keys: Vec<_> = std::iter::from_fn(|| self.det.next_key()).take(1024).collect();
            if keys.is_empty() {
                break;
            }
            for out in self.det.process_all(&keys) {
                if out.report.is_some() {
                    n += 1;
                }
                for e in &out.events {
                    if matches!(e.kind, DriftEventKind::Opened | DriftEventKind::Updated) {
                        analyse.push(e.drift.id.clone());
                    }
                }
                self.outcome(out);
            }
        }
        if !analyse.is_empty() {
            self.analyse(analyse);
        }
        n
    }

    fn outcome(&mut self, out: Outcome) {
        let now = self.clock.now();
        for e in out.events {
            self.metrics
                .drift_events
                .get_or_create(&Kind {
                    kind: e.kind.as_str().into(),
                })
                .inc();
            if e.kind == DriftEventKind::Opened {
                self.metrics.drifts_detected.inc();
            }
            let what = if e.drift.rule == "missing-live" {
                "missing from the cluster".to_string()
            } else {
                e.drift.describe()
            };
            let by = e
                .drift
                .actor
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            tracing::info!(kind = e.kind.as_str(), drift = %e.drift.id, resource = %e.drift.key, by = %by, "{what}");
            if self.leader {
                let _ = self.writer.send(e.clone());
                if let Some(tx) = &self.kube_events
                    && tx.try_send(e.clone()).is_err()
                {
                    self.metrics.kube_event_failures.inc();
                    tracing::warn!(drift = %e.drift.id, "the Kubernetes Event queue is full; this transition gets no Event (it is in the history)");
                }
            }
            self.recent.push_back(e.clone());
            if self.recent.len() > 200 {
                self.recent.pop_front();
            }
            let _ = self.ui.send(UiEvent::Drift { event: Box::new(e) });
        }
        for a in out.alerts {
            let view = AlertView::from(&a, now);
            self.metrics.alerts.inc();
            if self.leader {
                self.parts.alerts.send(&view);
            }
            self.alerts.push_back(view.clone());
            if self.alerts.len() > 100 {
                self.alerts.pop_front();
            }
            let _ = self.ui.send(UiEvent::Alert {
                alert: Box::new(view),
            });
        }
        if self.leader {
            for plan in out.fixes {
                self.run_fix(plan);
            }
        }
    }

    /// Runs a fix in its own task: dry run, then for real; the result comes back as a command.
    fn run_fix(&self, plan: RemediationPlan) {
        let Some(rem) = self.parts.remediator.clone() else {
            tracing::warn!(resource = %plan.key, "a fix is due but no remediator is configured; alerting instead");
            let outcome = RemediationOutcome {
                key: plan.key.clone(),
                status: RemediationStatus::Skipped,
                message: "no remediator configured (use ConfigHub, or --remediate cluster)".into(),
                mode: RemediationMode::DryRun,
            };
            let tx = self.cmd_tx.clone();
            tokio::spawn(async move {
                let _ = tx
                    .send(Cmd::FixDone {
                        plan: Box::new(plan),
                        outcome,
                    })
                    .await;
            });
            return;
        };
        if !self
            .fixes_in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(plan.key.clone())
        {
            tracing::info!(resource = %plan.key, "a fix of this resource is already running");
            return;
        }
        let tx = self.cmd_tx.clone();
        let metrics = self.metrics.clone();
        let in_flight = self.fixes_in_flight.clone();
        let mut leader = self.parts.leader.clone();
        tokio::spawn(async move {
            metrics
                .fixes
                .get_or_create(&Result_ {
                    result: "attempted".into(),
                })
                .inc();
            let lost = |why: &str| RemediationOutcome {
                key: plan.key.clone(),
                status: RemediationStatus::Skipped,
                message: format!("this replica lost the leadership {why}: the new leader decides"),
                mode: RemediationMode::DryRun,
            };
            // The dry run is abandoned the moment leadership is lost; the real write starts only if this
            // replica still leads after it (a write already sent is guarded by its `test` operations).
            let dry = tokio::select! {
                d = rem.remediate(&plan, RemediationMode::DryRun) => Some(d),
                () = async {
                    // Without an election the sender is gone and this replica leads for good.
                    if leader.wait_for(|l| !*l).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => None,
            };
            let outcome = match dry {
                None => lost("during the dry run"),
                Some(_) if !*leader.borrow() => lost("before the write"),
                Some(d) if d.status == RemediationStatus::DryRunOk => {
                    rem.remediate(&plan, RemediationMode::Apply).await
                }
                Some(d) => d,
            };
            let result = match outcome.status {
                RemediationStatus::Applied => "applied",
                RemediationStatus::Conflict => "conflict",
                RemediationStatus::Rejected => "rejected",
                RemediationStatus::Skipped => "skipped",
                _ => "failed",
            };
            metrics
                .fixes
                .get_or_create(&Result_ {
                    result: result.into(),
                })
                .inc();
            in_flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&plan.key);
            let _ = tx
                .send(Cmd::FixDone {
                    plan: Box::new(plan),
                    outcome,
                })
                .await;
        });
    }

    fn analyse(&self, ids: Vec<DriftId>) {
        let items = self.det.analysis_items(&ids);
        if items.is_empty() {
            return;
        }
        let batcher = self.batcher.clone();
        let tx = self.cmd_tx.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            if let Ok(a) = batcher.analyze(items).await {
                metrics.analysis_seconds.observe(t.elapsed().as_secs_f64());
                let _ = tx.send(Cmd::Analysis(a)).await;
            }
        });
    }

    async fn command(&mut self, c: Cmd) {
        match c {
            // Handled by the loop, which tracks the load in progress.
            Cmd::Desired(r) => self.load_desired(r),
            Cmd::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Cmd::Approve { id, actor, reply } => {
                if !self.leader {
                    let _ = reply.send(Err("this replica is a standby; ask the leader".into()));
                    return;
                }
                match self.det.approve(&id, &actor) {
                    Ok((events, plan)) => {
                        self.outcome(Outcome {
                            events,
                            ..Outcome::default()
                        });
                        let msg = format!("fixing {} ({})", plan.key, plan.action.name());
                        self.run_fix(plan);
                        let _ = reply.send(Ok(msg));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            Cmd::Ignore { id, actor, reply } => match self.det.ignore(&id, &actor) {
                Ok(ev) => {
                    self.outcome(Outcome {
                        events: vec![ev],
                        ..Outcome::default()
                    });
                    let _ = reply.send(Ok("ignored".into()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
            Cmd::FixDone { plan, outcome } => {
                tracing::info!(resource = %plan.key, status = ?outcome.status, "fix: {}", outcome.message);
                let _ = self.ui.send(UiEvent::Fix {
                    drift_ids: plan.drifts.iter().map(|d| d.id.to_string()).collect(),
                    resource: plan.key.to_string(),
                    status: outcome.status,
                    message: outcome.message.clone(),
                });
                let out = self.det.record_fix(&plan, &outcome);
                self.outcome(out);
                self.drain();
            }
            Cmd::Analysis(a) => {
                tracing::info!(analyzer = %a.analyzer, "analysis: {}", a.summary);
                self.analysis = Some(merge_analysis(self.analysis.take(), a.clone()));
                let _ = self.ui.send(UiEvent::Analysis {
                    analysis: Box::new(a),
                });
            }
        }
    }

    async fn set_leader(&mut self, now: bool) {
        if now == self.leader {
            return;
        }
        self.leader = now;
        self.metrics.leader.set(i64::from(now));
        self.status.leader.store(now, Ordering::Relaxed);
        let _ = self.ui.send(UiEvent::Status {
            ready: self.is_ready(),
            leader: now,
        });
        if !now {
            tracing::warn!("lost the lease: standing by (no fixes, no history writes)");
            return;
        }
        tracing::info!("leading: reconciling the history, then fixing what is due");
        self.reconcile().await;
        for plan in self.det.pending_fixes() {
            self.run_fix(plan);
        }
    }

    /// After taking over: what the old leader wrote and what this replica saw, made one.
    async fn reconcile(&mut self) {
        let logged: Vec<DriftRecord> = match self
            .parts
            .log
            .records(&HistoryQuery {
                open_only: true,
                ..HistoryQuery::default()
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the history to reconcile; writing what this replica saw");
                Vec::new()
            }
        };
        let open = self.det.open_drifts();
        let now = self.clock.now();
        let actor = self.parts.detector.actor.clone();
        for o in &open {
            if !logged.iter().any(|r| r.drift.id == o.drift.id) {
                let e = DriftEvent::new(
                    DriftEventKind::Opened,
                    o.opened_at,
                    o.drift.clone(),
                    actor.clone(),
                    "live differs from desired (seen while standing by)",
                )
                .with_provenance(o.provenance.clone());
                let _ = self.writer.send(e);
            }
        }
        if self.is_ready() {
            for r in logged
                .iter()
                .filter(|r| !open.iter().any(|o| o.drift.id == r.drift.id))
            {
                let e = DriftEvent::new(
                    DriftEventKind::Resolved,
                    now,
                    r.drift.clone(),
                    actor.clone(),
                    "gone while another replica led",
                )
                .with_provenance(r.provenance.clone());
                let _ = self.writer.send(e);
            }
        }
    }

    fn is_ready(&self) -> bool {
        self.desired_loaded && self.det.is_ready()
    }

    fn tick(&mut self) {
        let now = self.clock.now();
        // Housekeeping off the hot path: processed live objects go compact.
        self.det.compact(usize::MAX);
        self.status.heartbeat.store(now, Ordering::Relaxed);
        let ready = self.is_ready();
        if ready != self.last_ready {
            self.last_ready = ready;
            let _ = self.ui.send(UiEvent::Status {
                ready,
                leader: self.leader,
            });
            if ready {
                tracing::info!(
                    tracked = self.det.sizes().0,
                    "ready: every watch listed and the desired state loaded"
                );
            }
        }
        self.metrics.ready.set(i64::from(ready));
        self.metrics.open_drifts.clear();
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        for o in self.det.open_drifts() {
            *counts
                .entry((o.drift.set.to_string(), o.drift.severity.to_string()))
                .or_default() += 1;
        }
        for ((set, severity), n) in counts {
            self.metrics
                .open_drifts
                .get_or_create(&SetSeverity { set, severity })
                .set(n);
        }
        if let Some(s) = &self.parts.spool {
            self.metrics.log_spooled.set(s.spool_len() as i64);
        }
    }

    /// Counters the detector and the ConfigHub client keep, carried into the metrics.
    fn sync_counters(&mut self) {
        let s = self.det.stats();
        let d = |a: u64, b: u64| a.saturating_sub(b);
        self.metrics
            .events_processed
            .inc_by(d(s.objects_seen, self.last_stats.objects_seen));
        self.metrics
            .events_skipped
            .inc_by(d(s.objects_skipped, self.last_stats.objects_skipped));
        self.metrics
            .watch_restarts
            .inc_by(d(s.relists, self.last_stats.relists));
        self.last_stats = s;
        if let Some(cs) = &self.parts.confighub_stats {
            let total = cs.requests.load(Ordering::Relaxed);
            let seen = self.metrics.confighub_requests.get();
            self.metrics.confighub_requests.inc_by(total.saturating_sub(seen));
            let retries = cs.retries.load(Ordering::Relaxed);
            let seen = self.metrics.confighub_retries.get();
            self.metrics
                .confighub_retries
                .inc_by(retries.saturating_sub(seen));
        }
    }

    fn snapshot(&self) -> Snapshot {
        let open = self.det.open_drifts();
        // The cost impact of what is open now (analyses arrive per batch).
        let analysis = self.analysis.clone().map(|mut a| {
            a.monthly_cost_delta = open.iter().filter_map(|o| o.monthly_cost_delta).sum();
            a
        });
        Snapshot {
            ready: self.is_ready(),
            leader: self.leader,
            open,
            stats: self.det.stats(),
            tracked: self.det.sizes().0,
            not_watched: self
                .det
                .not_watched()
                .into_iter()
                .map(|(k, reason)| NotWatched {
                    resource: k.to_string(),
                    reason,
                })
                .collect(),
            analysis,
            alerts: self.alerts.iter().rev().cloned().collect(),
            recent: self.recent.iter().rev().cloned().collect(),
            desired_errors: self.desired_errors.clone(),
            spooled: self.parts.spool.as_ref().map_or(0, |s| s.spool_len()),
            shard: self.parts.shard.as_ref().map(|p| {
                let s = self.det.shard().cloned().unwrap_or_default();
                ShardView {
                    identity: p.identity.clone(),
                    members: p.members.borrow().clone(),
                    namespaces: s.namespaces.into_iter().collect(),
                    cluster_scoped: s.cluster_scoped,
                }
            }),
        }
    }
}

/// Keeps the newest analysis of each drift.
fn merge_analysis(old: Option<Analysis>, new: Analysis) -> Analysis {
    let Some(mut old) = old else { return new };
    let ids: Vec<DriftId> = new.risks.iter().map(|r| r.drift_id.clone()).collect();
    old.risks.retain(|r| !ids.contains(&r.drift_id));
    old.recommendations.retain(|r| !ids.contains(&r.drift_id));
    old.risks.extend(new.risks);
    old.recommendations.extend(new.recommendations);
    Analysis {
        analyzer: new.analyzer,
        summary: new.summary,
        monthly_cost_delta: new.monthly_cost_delta,
        ..old
    }
}
