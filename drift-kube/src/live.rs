//! [`LiveSource`] over kube-runtime watchers: no polling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use drift_core::ports::{LiveEvent, LiveSource, PortError, RelistScope};
use drift_core::{Resource, kinds};
use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::core::{ApiResource, DynamicResourceScope, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::project::Projection;

/// The kinds watched by default: workloads, Services, ConfigMaps, Secrets, ServiceAccounts, RBAC, and
/// HorizontalPodAutoscalers (for replica ownership).
pub const DEFAULT_KINDS: &[(&str, &str)] = &[
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("", "Service"),
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "ServiceAccount"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("autoscaling", "HorizontalPodAutoscaler"),
];

/// What to watch.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LiveSourceConfig {
    /// (group, kind) pairs; see [`DEFAULT_KINDS`].
    pub kinds: Vec<(String, String)>,
    /// Namespaces to watch (empty: all). Cluster-scoped kinds are always watched cluster-wide.
    pub namespaces: Vec<String>,
    /// A label selector every watched object must match.
    pub label_selector: Option<String>,
    /// The projection applied to every object.
    pub projection: Projection,
    /// List page size (default 500, as kube's watcher).
    pub page_size: u32,
    /// Sharded: namespaced kinds are watched only in the namespaces given to
    /// [`LiveSource::set_namespaces`] (none until then); `namespaces` is ignored.
    pub sharded: bool,
}

impl Default for LiveSourceConfig {
    fn default() -> Self {
        LiveSourceConfig {
            kinds: DEFAULT_KINDS
                .iter()
                .map(|(g, k)| ((*g).to_string(), (*k).to_string()))
                .collect(),
            namespaces: Vec::new(),
            label_selector: None,
            projection: Projection::default(),
            page_size: 500,
            sharded: false,
        }
    }
}

impl LiveSourceConfig {
    /// Watches these namespaces only.
    #[must_use]
    pub fn namespaces(mut self, ns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.namespaces = ns.into_iter().map(Into::into).collect();
        self
    }
    /// Watches these kinds only.
    #[must_use]
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>) -> Self {
        self.kinds = kinds.into_iter().map(|(g, k)| (g.into(), k.into())).collect();
        self
    }
    /// Sharded watching: see [`LiveSourceConfig::sharded`].
    #[must_use]
    pub fn sharded(mut self, on: bool) -> Self {
        self.sharded = on;
        self
    }
    /// Adds a label selector.
    #[must_use]
    pub fn label_selector(mut self, s: impl Into<String>) -> Self {
        self.label_selector = Some(s.into());
        self
    }
    /// Keeps `managedFields` of these managers (all of them are kept unless
    /// [`LiveSourceConfig::actors`] turned that off).
    #[must_use]
    pub fn keep_managers(mut self, m: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.projection.keep_managers = m.into_iter().map(Into::into).collect();
        self
    }
    /// Whether every field manager's ownership is kept (drift actors, "added by hand"; on by
    /// default). Off saves a few hundred bytes per cached object.
    #[must_use]
    pub fn actors(mut self, on: bool) -> Self {
        self.projection.actors = on;
        self
    }
}

/// Counters a caller can read while watching (for metrics).
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Live events delivered.
    pub events: AtomicU64,
    /// Re-lists after the first (watch gaps, expired resourceVersions).
    pub restarts: AtomicU64,
    /// Watch errors seen.
    pub errors: AtomicU64,
}

/// Live state from a cluster, through kube-runtime watches.
#[derive(Clone)]
pub struct KubeLiveSource {
    client: kube::Client,
    config: Arc<LiveSourceConfig>,
    stats: Arc<WatchStats>,
    runtime: Arc<std::sync::Mutex<Runtime>>,
    /// One first list at a time: each scope's objects arrive whole (one `Restarted`), so lists run
    /// one after another keep the peak at one list's objects instead of all of them.
    listing: Arc<tokio::sync::Semaphore>,
}

/// Kinds added while running ([`LiveSource::ensure_watched`]), and where their events go.
#[derive(Default)]
struct Runtime {
    /// Every kind watched or to be watched.
    kinds: std::collections::BTreeSet<(String, String)>,
    /// The stream's sender once watching.
    tx: Option<mpsc::Sender<Result<LiveEvent, PortError>>>,
    /// Sharded: the namespaces watched now.
    namespaces: std::collections::BTreeSet<String>,
    /// Sharded: every kind resolved for watching (to start its watch in a namespace acquired later).
    resolved: Vec<Arc<WatchKind>>,
    /// Sharded: the watch tasks of each namespace, to stop when it is given away.
    tasks: std::collections::HashMap<String, Vec<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for KubeLiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLiveSource")
            .field("kinds", &self.config.kinds)
            .field("namespaces", &self.config.namespaces)
            .finish()
    }
}

/// A kind to watch, as the cluster serves it: built-in kinds from drift-core's table, custom ones
/// (and any other the table lacks) found through API discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WatchKind {
    group: String,
    version: String,
    kind: String,
    plural: String,
    namespaced: bool,
}

impl From<&kinds::KindInfo> for WatchKind {
    fn from(k: &kinds::KindInfo) -> Self {
        WatchKind {
            group: k.group.to_string(),
            version: k.version.to_string(),
            kind: k.kind.to_string(),
            plural: k.plural.to_string(),
            namespaced: k.namespaced,
        }
    }
}

/// One watch: a kind in one namespace (or all).
#[derive(Debug, Clone)]
struct Scope {
    info: Arc<WatchKind>,
    namespace: Option<String>,
}

impl Scope {
    fn relist_scope(&self) -> RelistScope {
        RelistScope::Kind {
            group: self.info.group.clone(),
            kind: self.info.kind.clone(),
            namespace: self.namespace.clone(),
        }
    }
    fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} in namespace {ns}", self.info.plural),
            None => self.info.plural.clone(),
        }
    }
}

/// A watched object kept as the JSON it arrived as. The watcher needs only a few metadata fields
/// (name, namespace, resourceVersion, uid); everything else stays one `serde_json::Value`, with no
/// typed round trip (`DynamicObject` would decode through serde's buffered `flatten` and then have
/// to be converted back to a `Value`).
#[derive(Clone, Debug)]
struct RawObject {
    metadata: ObjectMeta,
    object: Value,
}

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let object = Value::deserialize(d)?;
        let meta = object.get("metadata");
        let field = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let metadata = ObjectMeta {
            name: field("name"),
            namespace: field("namespace"),
            resource_version: field("resourceVersion"),
            uid: field("uid"),
            ..ObjectMeta::default()
        };
        Ok(RawObject { metadata, object })
    }
}

impl kube::Resource for RawObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn api_resource(info: &WatchKind) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&info.group, &info.version, &info.kind),
        &info.plural,
    )
}

fn api_for(client: &kube::Client, scope: &Scope) -> Api<RawObject> {
    let ar = api_resource(&scope.info);
    match (&scope.namespace, scope.info.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// Whether an error means the cluster will never serve this watch (not served, or forbidden).
fn is_permanent(e: &watcher::Error) -> Option<u16> {
    let (watcher::Error::InitialListFailed(kube::Error::Api(api_err))
    | watcher::Error::WatchStartFailed(kube::Error::Api(api_err))) = e
    else {
        return None;
    };
    matches!(api_err.code, 403..=405).then_some(api_err.code)
}

impl KubeLiveSource {
    /// A live source on a client. Kinds drift-core's table lacks (custom resources) are found
    /// through API discovery when watching starts; one the cluster does not serve is reported and
    /// skipped, never fatal.
    ///
    /// # Errors
    /// [`PortError::Invalid`] when a configured kind has no name.
    pub fn new(client: kube::Client, config: LiveSourceConfig) -> Result<Self, PortError> {
        for (g, k) in &config.kinds {
            if k.is_empty() || k.contains('/') {
                return Err(PortError::Invalid {
                    what: "watched kind".into(),
                    reason: format!("`{g}/{k}` is not a kind"),
                });
            }
        }
        let runtime = Runtime {
            kinds: config.kinds.iter().cloned().collect(),
            ..Runtime::default()
        };
        Ok(KubeLiveSource {
            client,
            config: Arc::new(config),
            stats: Arc::new(WatchStats::default()),
            runtime: Arc::new(std::sync::Mutex::new(runtime)),
            listing: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    /// Counters.
    pub fn stats(&self) -> Arc<WatchStats> {
        self.stats.clone()
    }

    fn runtime(&self) -> std::sync::MutexGuard<'_, Runtime> {
        self.runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The kinds to watch (configured and added) drift-core's table knows, and those to discover.
    fn known_and_unknown(&self) -> (Vec<Arc<WatchKind>>, Vec<(String, String)>) {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        let all: Vec<(String, String)> = self.runtime().kinds.iter().cloned().collect();
        for (g, k) in &all {
            match kinds::lookup(g, k) {
                Some(info) => known.push(Arc::new(WatchKind::from(info))),
                None => unknown.push((g.clone(), k.clone())),
            }
        }
        (known, unknown)
    }

    /// Finds a kind through API discovery (the group's preferred version).
    async fn discover(&self, group: &str, kind: &str) -> Result<Arc<WatchKind>, PortError> {
        let what = || {
            format!(
                "discovering {}",
                if group.is_empty() {
                    kind.to_string()
                } else {
                    format!("{kind}.{group}")
                }
            )
        };
        let api_group =
            kube::discovery::group(&self.client, group)
                .await
                .map_err(|e| PortError::Unavailable {
                    what: what(),
                    reason: match e {
                        kube::Error::Discovery(_) => "not served by this cluster".to_string(),
                        other => other.to_string(),
                    },
                })?;
        let (ar, caps) = api_group
            .recommended_kind(kind)
            .ok_or_else(|| PortError::Unavailable {
                what: what(),
                reason: "not served by this cluster".into(),
            })?;
        Ok(Arc::new(WatchKind {
            group: ar.group,
            version: ar.version,
            kind: ar.kind,
            plural: ar.plural,
            namespaced: caps.scope == kube::discovery::Scope::Namespaced,
        }))
    }

    /// Every kind to watch, discovered where needed; kinds the cluster does not serve come back
    /// beside them as (group, kind, reason).
    async fn resolve(&self) -> (Vec<Arc<WatchKind>>, Vec<(String, String, String)>) {
        let (mut kinds, unknown) = self.known_and_unknown();
        let mut unserved = Vec::new();
        for (g, k) in unknown {
            match self.discover(&g, &k).await {
                Ok(w) => kinds.push(w),
                Err(PortError::Unavailable { reason, .. }) => unserved.push((g, k, reason)),
                Err(other) => unserved.push((g, k, other.to_string())),
            }
        }
        (kinds, unserved)
    }

    fn scopes_of(&self, kinds: &[Arc<WatchKind>]) -> Vec<Scope> {
        let mut out = Vec::new();
        let namespaces: Vec<String> = if self.config.sharded {
            let mut rt = self.runtime();
            for k in kinds {
                if !rt.resolved.contains(k) {
                    rt.resolved.push(k.clone());
                }
            }
            rt.namespaces.iter().cloned().collect()
        } else {
            self.config.namespaces.clone()
        };
        for info in kinds {
            if info.namespaced && (self.config.sharded || !namespaces.is_empty()) {
                for ns in &namespaces {
                    out.push(Scope {
                        info: info.clone(),
                        namespace: Some(ns.clone()),
                    });
                }
            } else {
                out.push(Scope {
                    info: info.clone(),
                    namespace: None,
                });
            }
        }
        out
    }

    fn watcher_config(&self, info: &WatchKind) -> watcher::Config {
        let mut c = watcher::Config::default().page_size(self.config.page_size);
        if let Some(s) = &self.config.label_selector {
            c = c.labels(s);
        }
        if let Some(f) = field_selector(info) {
            c = c.fields(f);
        }
        c
    }

    fn to_resource(&self, obj: RawObject, info: &WatchKind) -> Option<Resource> {
        let mut v = obj.object;
        if let Some(m) = v.as_object_mut() {
            // Objects in watch events may omit their type; the scope knows it.
            m.entry("apiVersion")
                .or_insert_with(|| Value::String(api_resource(info).api_version));
            m.entry("kind")
                .or_insert_with(|| Value::String(info.kind.clone()));
        }
        self.config.projection.apply(&mut v);
        Resource::from_value(v).ok()
    }
}

/// Scopes still to list before an event is due: [`LiveEvent::Ready`] for the first scopes, a
/// [`LiveEvent::NamespaceListed`] for a namespace acquired while running.
struct Pending {
    left: AtomicUsize,
    done: LiveEvent,
}

impl Pending {
    fn new(left: usize, done: LiveEvent) -> Arc<Pending> {
        Arc::new(Pending {
            left: AtomicUsize::new(left),
            done,
        })
    }
    /// Scopes that hold nothing back.
    fn none() -> Arc<Pending> {
        Pending::new(usize::MAX / 2, LiveEvent::Ready)
    }
    /// One scope done; the event when it was the last.
    fn done_one(&self) -> Option<LiveEvent> {
        (self.left.fetch_sub(1, Ordering::SeqCst) == 1).then(|| self.done.clone())
    }
}

/// Objects per [`LiveEvent::Listing`] part of a large list.
const LIST_PART: usize = 1_000;

/// Helm keeps every release, rendered, in a Secret of type `helm.sh/release.v1`: never desired state,
/// often large, never read.
fn field_selector(info: &WatchKind) -> Option<&'static str> {
    (info.group.is_empty() && info.kind == "Secret").then_some("type!=helm.sh/release.v1")
}

impl KubeLiveSource {
    /// One consistent list per kind, and the kinds skipped because the cluster does not serve them
    /// or RBAC forbids them, as (group, kind, reason).
    ///
    /// # Errors
    /// [`PortError::Unavailable`] when a list fails for another reason.
    pub async fn list_served(&self) -> Result<(Vec<Resource>, Vec<(String, String, String)>), PortError> {
        let mut out = Vec::new();
        let skipped = self.list_served_each(&mut |r| out.push(r)).await?;
        Ok((out, skipped))
    }

    /// [`KubeLiveSource::list_served`] handing each object to `each` as its page arrives (pages of
    /// [`LiveSourceConfig::page_size`]), so a caller can store a large list compactly; returns the
    /// kinds skipped.
    ///
    /// # Errors
    /// As [`KubeLiveSource::list_served`].
    pub async fn list_served_each(
        &self,
        each: &mut (dyn FnMut(Resource) + Send),
    ) -> Result<Vec<(String, String, String)>, PortError> {
        let (kinds, mut skipped) = self.resolve().await;
        for scope in self.scopes_of(&kinds) {
            let api = api_for(&self.client, &scope);
            let mut params = ListParams::default().limit(self.config.page_size);
            if let Some(s) = &self.config.label_selector {
                params = params.labels(s);
            }
            if let Some(f) = field_selector(&scope.info) {
                params = params.fields(f);
            }
            loop {
                let page = match api.list(&params).await {
                    Ok(p) => p,
                    Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404) => {
                        let reason = if s.code == 403 {
                            "forbidden by RBAC"
                        } else {
                            "not served by this cluster"
                        };
                        if !skipped
                            .iter()
                            .any(|(g, k, _)| *g == scope.info.group && *k == scope.info.kind)
                        {
                            skipped.push((scope.info.group.clone(), scope.info.kind.clone(), reason.into()));
                        }
                        break;
                    }
                    Err(e) => {
                        return Err(PortError::Unavailable {
                            what: format!("listing {}", scope.describe()),
                            reason: e.to_string(),
                        });
                    }
                };
                for r in page
                    .items
                    .into_iter()
                    .filter_map(|o| self.to_resource(o, &scope.info))
                {
                    each(r);
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(c) => params = params.continue_token(&c),
                    None => break,
                }
            }
        }
        Ok(skipped)
    }
}

#[async_trait]
impl LiveSource for KubeLiveSource {
    async fn list(&self) -> Result<Vec<Resource>, PortError> {
        let (out, unserved) = self.list_served().await?;
        for (g, k, reason) in unserved {
            tracing::warn!(group = %g, kind = %k, "skipping a kind: {reason}");
        }
        Ok(out)
    }
    fn watch(&self) -> BoxStream<'static, Result<LiveEvent, PortError>> {
        let (tx, rx) = mpsc::channel::<Result<LiveEvent, PortError>>(4096);
        self.runtime().tx = Some(tx.clone());
        let (known, unknown) = self.known_and_unknown();
        let (known_scopes, sharded_scopes): (Vec<Scope>, Vec<Scope>) = self
            .scopes_of(&known)
            .into_iter()
            .partition(|s| self.holds_ready(s));
        // Each scope, and each kind still to discover, holds Ready back until it has listed (or
        // turned out not to be served).
        let pending = Pending::new(known_scopes.len() + unknown.len(), LiveEvent::Ready);
        if known_scopes.is_empty() && unknown.is_empty() {
            let _ = tx.try_send(Ok(LiveEvent::Ready));
        }
        for scope in known_scopes {
            self.spawn_scope(scope, tx.clone(), pending.clone());
        }
        let no_hold = Pending::none();
        for scope in sharded_scopes {
            self.spawn_scope(scope, tx.clone(), no_hold.clone());
        }
        for (group, kind) in unknown {
            self.spawn_discovered(group, kind, tx.clone(), pending.clone());
        }
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) }).boxed()
    }

    fn set_namespaces(&self, namespaces: &[String]) {
        if !self.config.sharded {
            return;
        }
        let wanted: std::collections::BTreeSet<String> = namespaces.iter().cloned().collect();
        let mut rt = self.runtime();
        let added: Vec<String> = wanted.difference(&rt.namespaces).cloned().collect();
        let removed: Vec<String> = rt.namespaces.difference(&wanted).cloned().collect();
        for ns in &removed {
            for task in rt.tasks.remove(ns).unwrap_or_default() {
                task.abort();
            }
        }
        rt.namespaces = wanted;
        let Some(tx) = rt.tx.clone() else {
            return; // watching has not started: it starts with these
        };
        let kinds: Vec<Arc<WatchKind>> = rt.resolved.iter().filter(|k| k.namespaced).cloned().collect();
        drop(rt);
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(?added, ?removed, "watched namespaces changed");
        }
        // Ready was announced (or is held back by the first scopes); each new namespace is
        // announced listed once every kind's list there is in.
        for ns in added {
            let pending = Pending::new(kinds.len(), LiveEvent::NamespaceListed(ns.clone()));
            if kinds.is_empty() {
                let _ = tx.try_send(Ok(LiveEvent::NamespaceListed(ns.clone())));
            }
            for info in &kinds {
                let scope = Scope {
                    info: info.clone(),
                    namespace: Some(ns.clone()),
                };
                self.spawn_scope(scope, tx.clone(), pending.clone());
            }
        }
    }

    fn ensure_watched(&self, kinds: &[(String, String)]) {
        let mut rt = self.runtime();
        let added: Vec<(String, String)> = kinds
            .iter()
            .filter(|k| rt.kinds.insert((*k).clone()))
            .cloned()
            .collect();
        let Some(tx) = rt.tx.clone() else {
            return; // picked up when watching starts
        };
        drop(rt);
        for (group, kind) in added {
            tracing::info!(group = %group, kind = %kind, "watching a kind the desired state names");
            // Ready has been announced already: a late kind holds nothing back.
            let pending = Pending::none();
            match kinds::lookup(&group, &kind) {
                Some(info) => {
                    for scope in self.scopes_of(&[Arc::new(WatchKind::from(info))]) {
                        self.spawn_scope(scope, tx.clone(), pending.clone());
                    }
                }
                None => self.spawn_discovered(group, kind, tx.clone(), pending),
            }
        }
    }
}

impl KubeLiveSource {
    /// Whether a scope holds Ready back until it lists: not a sharded namespace's (it may be given
    /// away before it lists; the detector waits for each of those by itself).
    fn holds_ready(&self, scope: &Scope) -> bool {
        !(self.config.sharded && scope.namespace.is_some())
    }

    /// Starts one scope's watch; a sharded namespace's watches are kept to stop with it.
    fn spawn_scope(
        &self,
        scope: Scope,
        tx: mpsc::Sender<Result<LiveEvent, PortError>>,
        pending: Arc<Pending>,
    ) {
        let ns = scope.namespace.clone();
        let this = self.clone();
        let task = tokio::spawn(async move { this.run_watch(scope, tx, pending).await });
        if let (true, Some(ns)) = (self.config.sharded, ns) {
            self.runtime()
                .tasks
                .entry(ns)
                .or_default()
                .push(task.abort_handle());
        }
    }

    /// Discovers a kind, then watches each of its scopes; a kind the cluster does not serve is an
    /// error on the stream and releases its hold on Ready.
    fn spawn_discovered(
        &self,
        group: String,
        kind: String,
        tx: mpsc::Sender<Result<LiveEvent, PortError>>,
        pending: Arc<Pending>,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.discover(&group, &kind).await {
                Ok(info) => {
                    let (scopes, sharded): (Vec<Scope>, Vec<Scope>) = this
                        .scopes_of(&[info])
                        .into_iter()
                        .partition(|s| this.holds_ready(s));
                    // This kind's one slot becomes one per scope.
                    pending.left.fetch_add(scopes.len(), Ordering::SeqCst);
                    if let Some(done) = pending.done_one() {
                        let _ = tx.send(Ok(done)).await;
                    }
                    for scope in scopes {
                        this.spawn_scope(scope, tx.clone(), pending.clone());
                    }
                    let no_hold = Pending::none();
                    for scope in sharded {
                        this.spawn_scope(scope, tx.clone(), no_hold.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a kind the cluster does not serve");
                    let _ = tx.send(Err(e)).await;
                    if let Some(done) = pending.done_one() {
                        let _ = tx.send(Ok(done)).await;
                    }
                }
            }
        });
    }
}

impl KubeLiveSource {
    async fn run_watch(
        &self,
        scope: Scope,
        tx: mpsc::Sender<Result<LiveEvent, PortError>>,
        pending: Arc<Pending>,
    ) {
        let span = tracing::info_span!(
            "watch",
            kind = scope.info.kind.as_str(),
            namespace = scope.namespace.as_deref().unwrap_or("*")
        );
        let _enter = span.enter();
        // Held until this scope has listed once, or failed: then the next scope lists.
        let mut permit = tokio::select! {
            p = self.listing.clone().acquire_owned() => p.ok(),
            _ = tx.closed() => return,
        };
        let mut stream = watcher::watcher(api_for(&self.client, &scope), self.watcher_config(&scope.info))
            .default_backoff()
            .boxed();
        let mut buffer: Vec<Resource> = Vec::new();
        let mut first_page = true;
        let mut listed = false;
        // The event this scope's first listing completes (Ready, a namespace listed), if any.
        let mark_listed = |listed: &mut bool| {
            if !*listed {
                *listed = true;
                pending.done_one()
            } else {
                None
            }
        };
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = tx.closed() => return,
            };
            let Some(item) = item else { return };
            let mut out: Vec<Result<LiveEvent, PortError>> = Vec::new();
            if matches!(item, Ok(Event::InitDone) | Err(_)) {
                drop(permit.take());
            }
            match item {
                Ok(Event::Init) => {
                    buffer.clear();
                    first_page = true;
                }
                Ok(Event::InitApply(o)) => {
                    buffer.extend(self.to_resource(o, &scope.info));
                    // Large lists go in parts, so the receiver can store each part compactly
                    // before the next arrives.
                    if buffer.len() >= LIST_PART {
                        out.push(Ok(LiveEvent::Listing {
                            scope: scope.relist_scope(),
                            resources: std::mem::take(&mut buffer),
                            first: std::mem::take(&mut first_page),
                        }));
                    }
                }
                Ok(Event::InitDone) => {
                    if listed {
                        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(objects = buffer.len(), "re-listed after a watch gap");
                    }
                    if first_page && listed {
                        // A list that came whole: forget the parts of an earlier one cut short.
                        out.push(Ok(LiveEvent::Listing {
                            scope: scope.relist_scope(),
                            resources: Vec::new(),
                            first: true,
                        }));
                    }
                    out.push(Ok(LiveEvent::Restarted {
                        scope: scope.relist_scope(),
                        resources: std::mem::take(&mut buffer),
                    }));
                    if let Some(done) = mark_listed(&mut listed) {
                        out.push(Ok(done));
                    }
                }
                Ok(Event::Apply(o)) => {
                    if let Some(r) = self.to_resource(o, &scope.info) {
                        self.stats.events.fetch_add(1, Ordering::Relaxed);
                        out.push(Ok(LiveEvent::Applied(r)));
                    }
                }
                Ok(Event::Delete(o)) => {
                    if let Some(r) = self.to_resource(o, &scope.info) {
                        self.stats.events.fetch_add(1, Ordering::Relaxed);
                        out.push(Ok(LiveEvent::Deleted(r.key)));
                    }
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(code) = is_permanent(&e) {
                        let reason = if code == 403 {
                            "forbidden by RBAC"
                        } else {
                            "not served by this cluster"
                        };
                        tracing::warn!(watch = %scope.describe(), code, "skipping: {reason}");
                        out.push(Err(PortError::Unavailable {
                            what: format!("watching {}", scope.describe()),
                            reason: reason.to_string(),
                        }));
                        if let Some(done) = mark_listed(&mut listed) {
                            out.push(Ok(done));
                        }
                        for o in out {
                            let _ = tx.send(o).await;
                        }
                        return;
                    }
                    tracing::debug!(error = %e, "watch error; the watcher backs off and resumes");
                    out.push(Err(PortError::Unavailable {
                        what: format!("watching {}", scope.describe()),
                        reason: e.to_string(),
                    }));
                }
            }
            for o in out {
                if matches!(o, Ok(LiveEvent::Listing { .. })) {
                    // A part of a list waits until the receiver has taken nearly everything sent
                    // before: parts must not pile up in the channel as parsed objects (the receiver
                    // may still be loading its desired state).
                    while tx.max_capacity() - tx.capacity() > 2 {
                        tokio::select! {
                            () = tokio::time::sleep(std::time::Duration::from_millis(2)) => {}
                            _ = tx.closed() => return,
                        }
                    }
                }
                if tx.send(o).await.is_err() {
                    return;
                }
            }
        }
    }
}
