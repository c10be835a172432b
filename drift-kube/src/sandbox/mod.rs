//! An in-process Kubernetes API server on 127.0.0.1 that speaks the real wire protocol, so the real
//! `kube` client and the real `kubectl` work against it through the kubeconfig it writes.
//!
//! What it does: discovery (`/version`, `/api`, `/apis`, resource lists) for the kinds drift-core knows
//! (workloads, Services, ConfigMaps, Secrets, ServiceAccounts, RBAC, HPAs, namespaces, Leases, ...);
//! list with `resourceVersion`, `limit`/`continue`, label and field selectors; watch with chunked
//! JSON events, bookmarks, resumption from a `resourceVersion` and `410 Gone` once it has expired;
//! get, create, update (optimistic concurrency: `409` on a stale `resourceVersion`), delete
//! (namespaces cascade), merge / JSON / strategic-merge patches and server-side apply; the `scale`
//! and `status` subresources; `dryRun=All`; server-side defaulting from drift-core's defaults table,
//! Secret `stringData` folding, canonical quantities, allocated cluster IPs and node ports;
//! `metadata.generation` bumped on spec changes only; `managedFields` per field manager; a controller
//! that writes workload status after spec changes; Kubernetes-shaped `Status` errors.
//!
//! What it does not do: authentication or authorization (every request is allowed), admission
//! webhooks, validation beyond object identity, OpenAPI schemas (the v3 documents list operations
//! only, enough for `kubectl apply`; OpenAPI v2 is not served), Table responses (kubectl falls back to lists), protobuf, real controllers
//! (no Pods or ReplicaSets are created), finalizers, garbage collection of owned objects, and server-side
//! apply's full conflict semantics (conflicts are detected on changed values only).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let sandbox = drift_kube::sandbox::Sandbox::start(Default::default()).await?;
//! sandbox.write_kubeconfig("sandbox.kubeconfig")?;   // kubectl --kubeconfig sandbox.kubeconfig get ns
//! let client = sandbox.client()?;                     // a real kube::Client over HTTP
//! # Ok(()) }
//! ```

mod convert;
mod crd;
mod fields;
mod openapi;
mod protobuf;
mod server;
mod smp;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use store::{EventType, ObjKey, Store};

/// Sandbox settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// Port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// Watch events kept for resuming watches; older resourceVersions get `410 Gone` (default 100,000).
    pub history: usize,
    /// How often watches with bookmarks get a BOOKMARK event (default 2 s).
    pub bookmark_interval: Duration,
    /// Write workload `status` after spec changes, as controllers would (default on).
    pub simulate_controllers: bool,
    /// Keep a log of requests (`METHOD path?query`) for tests (default off).
    pub log_requests: bool,
    /// API groups whose resources answer `404`, as on a cluster without them (default none).
    pub unserved_groups: Vec<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            port: 0,
            history: 100_000,
            bookmark_interval: Duration::from_secs(2),
            simulate_controllers: true,
            log_requests: false,
            unserved_groups: Vec::new(),
        }
    }
}

impl SandboxConfig {
    /// Sets the port.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// Sets the watch history length.
    #[must_use]
    pub fn history(mut self, events: usize) -> Self {
        self.history = events;
        self
    }
    /// Sets the bookmark interval.
    #[must_use]
    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.bookmark_interval = d;
        self
    }
    /// Turns the request log on.
    #[must_use]
    pub fn log_requests(mut self, on: bool) -> Self {
        self.log_requests = on;
        self
    }
    /// Makes an API group's resources answer `404 Not Found`, as on a cluster that lacks them.
    #[must_use]
    pub fn unserved_group(mut self, group: impl Into<String>) -> Self {
        self.unserved_groups.push(group.into());
        self
    }
    /// Turns the status-writing controller on or off.
    #[must_use]
    pub fn simulate_controllers(mut self, on: bool) -> Self {
        self.simulate_controllers = on;
        self
    }
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// Binding the port failed.
    #[error("binding 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Building a client failed.
    #[error("building a client for the sandbox: {0}")]
    Client(String),
}

pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) config: SandboxConfig,
    pub(crate) addr: SocketAddr,
    log: Mutex<Vec<String>>,
}

impl Shared {
    /// Every kind served now: the built-in ones and those the stored CRDs define.
    pub(crate) fn kinds(&self) -> Vec<&'static drift_core::kinds::KindInfo> {
        let g = self.store.lock();
        drift_core::kinds::KNOWN_KINDS
            .iter()
            .chain(g.custom.kinds.iter().copied())
            .chain(std::iter::once(&convert::HPA_V1))
            .collect()
    }

    pub(crate) fn log(&self, line: String) {
        if self.config.log_requests {
            let mut l = self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if l.len() >= 100_000 {
                l.drain(..50_000);
            }
            l.push(line);
        }
    }
}

/// A running sandbox API server. Dropping it stops the server.
pub struct Sandbox {
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("url", &self.url()).finish()
    }
}

const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

impl Sandbox {
    /// Starts the server on 127.0.0.1, with the namespaces every cluster has.
    ///
    /// # Errors
    /// [`SandboxError::Bind`] when the port cannot be bound.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let port = config.port;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| SandboxError::Bind { port, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SandboxError::Bind { port, source })?;
        let shared = Arc::new(Shared {
            store: Store::new(config.history),
            config,
            addr,
            log: Mutex::new(Vec::new()),
        });
        for ns in BUILTIN_NAMESPACES {
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            shared.put_object(obj);
        }
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            use axum::serve::ListenerExt;
            // Small responses and watch events go out at once (no Nagle delay against delayed ACKs).
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "sandbox API server stopped");
            }
        });
        tracing::info!(%addr, "sandbox API server listening");
        Ok(Sandbox {
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The server's URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kubeconfig pointing at the sandbox (context `drift-sandbox`, namespace `default`).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: drift-sandbox\n  cluster:\n    server: {url}\ncontexts:\n- name: drift-sandbox\n  context:\n    cluster: drift-sandbox\n    user: drift-sandbox\n    namespace: default\ncurrent-context: drift-sandbox\nusers:\n- name: drift-sandbox\n  user:\n    token: sandbox\n",
            url = self.url()
        )
    }

    /// Writes the kubeconfig to a file.
    ///
    /// # Errors
    /// The I/O error.
    pub fn write_kubeconfig(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// A real `kube::Client` talking HTTP to the sandbox.
    ///
    /// # Errors
    /// [`SandboxError::Client`] if the client cannot be built.
    pub fn client(&self) -> Result<kube::Client, SandboxError> {
        crate::install_crypto_provider();
        let url: http::Uri = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| SandboxError::Client(e.to_string()))?;
        let mut cfg = kube::Config::new(url);
        cfg.default_namespace = "default".into();
        kube::Client::try_from(cfg).map_err(|e| SandboxError::Client(e.to_string()))
    }

    /// Ends every open watch, keeping the event history: watchers resume where they were.
    pub fn drop_watches(&self) {
        self.shared.store.break_watches(false);
    }

    /// Ends every open watch and forgets the event history, like an etcd compaction: watchers that
    /// resume from their last resourceVersion get `410 Gone` and must re-list.
    pub fn expire_watches(&self) {
        self.shared.store.break_watches(true);
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().rv
    }

    /// The requests served so far (`METHOD path?query`), when logging is on.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Number of stored objects.
    pub fn object_count(&self) -> usize {
        self.shared.store.lock().objects.len()
    }

    /// Reads an object directly (bypassing HTTP), by group, plural resource name, namespace and name.
    pub fn object(&self, group: &str, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = ObjKey {
            group: group.into(),
            plural: plural.into(),
            namespace: namespace.unwrap_or("").into(),
            name: name.into(),
        };
        self.shared.store.lock().objects.get(&key).map(|o| (**o).clone())
    }

    /// Changes a stored object in process, without HTTP, through the same path as an update over the
    /// wire (defaults, `generation`, `managedFields` for `manager`, a watch event): for benchmarks and
    /// demos that need more writes per second than a client can send. Returns the stored object.
    ///
    /// # Errors
    /// The kind is unknown, or the object does not exist (`404`), or the change makes it invalid.
    pub fn modify(
        &self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        manager: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<Value, String> {
        let info =
            drift_core::kinds::lookup(group, kind).ok_or_else(|| format!("unknown kind {group}/{kind}"))?;
        server::modify_direct(&self.shared, info, namespace, name, manager, change)
            .map_err(|e| e.message().to_string())
    }

    /// Creates an object in process, without HTTP, through the same path as a create over the wire
    /// (defaults, `uid`, `generation`, `managedFields` for `manager`, a watch event): the bulk seeding
    /// path for benchmarks that start with tens of thousands of objects. Returns the stored object.
    ///
    /// # Errors
    /// The kind is unknown, the namespace does not exist, the object exists already, or it is invalid.
    pub fn create(&self, object: Value, manager: &str) -> Result<Value, String> {
        let api = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
        let (group, _) = drift_core::split_api_version(api);
        let info =
            drift_core::kinds::lookup(group, kind).ok_or_else(|| format!("unknown kind {group}/{kind}"))?;
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        server::create_direct(&self.shared, info, namespace.as_deref(), object, manager)
            .map_err(|e| e.message().to_string())
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(mut t) = self.task.take() {
            // The graceful stop waits for requests in flight: a watch a client opened after the
            // watches were broken (a reconnect in between) would hold it open for ever, so they are
            // broken again until the server is down.
            loop {
                tokio::select! {
                    _ = &mut t => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => self.shared.store.break_watches(false),
                }
            }
        }
    }

    fn stop(&mut self) {
        self.shared.store.break_watches(false);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    /// Stores an object as is (after the namespace and metadata a real server would add); used for the
    /// built-in namespaces.
    fn put_object(&self, mut obj: Value) {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut g = self.store.lock();
        let uid = Store::new_uid(&mut g);
        obj["metadata"]["uid"] = Value::String(uid);
        obj["metadata"]["creationTimestamp"] = Value::String(server::now_rfc3339());
        drift_core::fill_server_defaults(&mut obj);
        obj["status"] = serde_json::json!({"phase": "Active"});
        let key = ObjKey {
            group: String::new(),
            plural: "namespaces".into(),
            namespace: String::new(),
            name,
        };
        self.store.commit(&mut g, key, EventType::Added, obj);
    }
}
