//! An in-process ConfigHub on 127.0.0.1 that behaves as ConfigHub v0.8.5 does (`confighub-api.md` §2),
//! for tests and the offline demo.
//!
//! It can only drift from the real API where the reference itself is inferred: every request first
//! passes a contract gate built from `confighub-routes.tsv` (kept beside this file), so a route that is
//! not an operation of v0.8.5 answers 404 as the server does, an unknown query parameter is a 400 and a
//! body of the wrong content type a 415; each is also recorded ([`FakeHub::contract_violations`]).
//!
//! What it does: `GET /info` and a `ConfigHub-Version` header on every answer; spaces (with
//! `ReleaseTargetID`), targets, units without data (writes answer `UnitCreateOrUpdateResponse`), unit
//! data only through `GET|PUT .../data` (raw bytes, `ETag` = `DataHash`, `If-None-Match` → 304,
//! `If-Match` → 409 when stale) and `GET /unit_data`, revisions and revision data, clone and upgrade
//! (a three-way merge that keeps the downstream's edits), `restore` with the revision selectors
//! (`Before:LastReleasedRevisionNum`, numbers, `Revision:`, `Tag:`), bulk patch with 200/207 per-item
//! results, paging (`limit`, `continue`, `ConfigHub-Continue`), Releases (publish bundles the units
//! assigned to the space's release Target, advances `LastReleasedRevisionNum`, answers the latest
//! Release with a message when nothing changed; `LiveStatus` by merge patch, 1,024-character messages),
//! a GitOps agent that syncs each new Release into a cluster through [`FakeHub::on_release`] and, when
//! configured, reports `LiveStatus` as argobot would, filters, change sets, and the functions
//! `set-replicas`, `get-replicas`, `set-container-image` (and its deprecated alias `set-image`),
//! `set-int-path`, `set-string-path`, `set-bool-path`. Where-clauses are parsed with the documented
//! grammar and checked against each entity's attributes: removed attributes (`LiveRevisionNum`,
//! `LastAppliedRevisionNum`, `SetID`, ...), `OR` or a wrong operator are a 400, and joins such as
//! `UpstreamUnit.HeadRevisionNum` need their `include`. A body carrying a removed field (`Data`) is a
//! 400 too (\[I\]: the real decoder may ignore it; refusing it keeps our client honest). Every request but
//! `/info` needs the bearer token.
//!
//! Fault injection ([`Faults`]): latency, 429 with `Retry-After`, 500 before anything happens, and
//! failures *after* a write committed (the connection dropped, or the answer delayed past the client's
//! timeout) — the cases that make naive retries duplicate things.
//!
//! What it does not do: organizations and users, triggers and validation, links, views, tags as
//! entities (a Release's auto-created Tag works as a restore selector), mutations, `where_data`,
//! change orders, withdraw, and the release tarball.

mod routes;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::client::ClientConfig;
use crate::model::{Release, Space, Unit};

pub use routes::{Operation, ROUTES_TSV, SIMULATED_VERSION, check_request, operations, served_operations};
pub use state::{DeliveredUnit, Delivery, ReleaseHook};

/// Faults to inject. Rates are probabilities per request (0.0–1.0), drawn from a seeded generator so a
/// run is reproducible.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Faults {
    /// Added to every request.
    pub latency: Duration,
    /// Answer 500 before doing anything.
    pub error_500: f64,
    /// Answer 429 with `Retry-After` before doing anything.
    pub rate_limit_429: f64,
    /// `Retry-After` seconds of injected 429s.
    pub retry_after_secs: u64,
    /// Do the request, then drop the connection without answering.
    pub drop_after_commit: f64,
    /// Do the request, then hold the answer for `slow_delay` (longer than the client's timeout).
    pub slow_after_commit: f64,
    /// How long a slow answer is held.
    pub slow_delay: Duration,
    /// Only inject into writes (anything but `GET`).
    pub writes_only: bool,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency: Duration::ZERO,
            error_500: 0.0,
            rate_limit_429: 0.0,
            retry_after_secs: 1,
            drop_after_commit: 0.0,
            slow_after_commit: 0.0,
            slow_delay: Duration::from_secs(2),
            writes_only: false,
            seed: 0x5eed,
        }
    }
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Faults::default()
    }
    /// Sets the 500 rate.
    #[must_use]
    pub fn error_500(mut self, rate: f64) -> Self {
        self.error_500 = rate;
        self
    }
    /// Sets the 429 rate.
    #[must_use]
    pub fn rate_limit_429(mut self, rate: f64, retry_after_secs: u64) -> Self {
        self.rate_limit_429 = rate;
        self.retry_after_secs = retry_after_secs;
        self
    }
    /// Sets the rate of writes whose connection is dropped after they committed.
    #[must_use]
    pub fn drop_after_commit(mut self, rate: f64) -> Self {
        self.drop_after_commit = rate;
        self
    }
    /// Sets the rate of answers held for `delay` after the write committed.
    #[must_use]
    pub fn slow_after_commit(mut self, rate: f64, delay: Duration) -> Self {
        self.slow_after_commit = rate;
        self.slow_delay = delay;
        self
    }
    /// Adds latency to every request.
    #[must_use]
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }
    /// Injects into writes only.
    #[must_use]
    pub fn writes_only(mut self, on: bool) -> Self {
        self.writes_only = on;
        self
    }
    /// Sets the seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// What the fault injector did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests seen.
    pub requests: u64,
    /// 500s injected before the request ran.
    pub injected_500: u64,
    /// 429s injected.
    pub injected_429: u64,
    /// Connections dropped after the request committed.
    pub dropped_after_commit: u64,
    /// Answers held past the client's timeout after the request committed.
    pub slow_after_commit: u64,
}

/// Fake hub settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FakeHubConfig {
    /// Port on 127.0.0.1 (0 picks a free one).
    pub port: u16,
    /// The bearer token every request must carry.
    pub token: String,
    /// How long after a publish the simulated GitOps agent syncs the Release (default 20 ms).
    pub sync_delay: Duration,
    /// The version to report (default [`SIMULATED_VERSION`]); an older one simulates an old server.
    pub version: Option<String>,
    /// When set, the simulated GitOps agent reports `Release.LiveStatus` under this name after each
    /// sync, as argobot does for Argo CD. Unset: nothing reports (a Flux setup, or no agent reporting).
    pub agent_reporter: Option<String>,
    /// Faults.
    pub faults: Faults,
    /// Give every new space a Target with this slug and make it the space's release Target, as an
    /// operator connecting the space to a cluster would.
    pub auto_target: Option<String>,
}

impl Default for FakeHubConfig {
    fn default() -> Self {
        FakeHubConfig {
            port: 0,
            token: "fake-confighub-token".into(),
            sync_delay: Duration::from_millis(20),
            version: None,
            agent_reporter: None,
            faults: Faults::default(),
            auto_target: None,
        }
    }
}

impl FakeHubConfig {
    /// Sets the port.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// Sets the faults.
    #[must_use]
    pub fn faults(mut self, f: Faults) -> Self {
        self.faults = f;
        self
    }
    /// Sets how long after a publish the GitOps agent syncs.
    #[must_use]
    pub fn sync_delay(mut self, d: Duration) -> Self {
        self.sync_delay = d;
        self
    }
    /// Reports this version (an older one simulates a server this client refuses).
    #[must_use]
    pub fn version(mut self, v: impl Into<String>) -> Self {
        self.version = Some(v.into());
        self
    }
    /// Makes the GitOps agent report `Release.LiveStatus` under this name.
    #[must_use]
    pub fn agent_reporter(mut self, name: impl Into<String>) -> Self {
        self.agent_reporter = Some(name.into());
        self
    }
    /// Gives every new space a target with this slug.
    #[must_use]
    pub fn auto_target(mut self, slug: impl Into<String>) -> Self {
        self.auto_target = Some(slug.into());
        self
    }
}

/// A running fake hub. Dropping it stops the server.
pub struct FakeHub {
    addr: SocketAddr,
    shared: Arc<state::Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for FakeHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHub")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeHub {
    /// Starts a fake hub.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(config: FakeHubConfig) -> std::io::Result<FakeHub> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(state::Shared::new(config));
        let app = routes::router(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake ConfigHub stopped");
            }
        });
        tracing::info!(%addr, "fake ConfigHub listening");
        Ok(FakeHub {
            addr,
            shared,
            shutdown: Some(tx),
        })
    }

    /// The base URL (`http://127.0.0.1:<port>/api`).
    pub fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The token it expects.
    pub fn token(&self) -> String {
        self.shared.config.token.clone()
    }

    /// A client configuration pointing at this hub, with its token.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::default().base_url(self.url()).token(self.token())
    }

    /// Changes the faults from now on (counts are kept).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// What the fault injector did so far.
    pub fn fault_counts(&self) -> FaultCounts {
        self.shared.fault_counts()
    }

    /// Adds a Target to a space and makes it the space's release Target (as an operator connecting
    /// the space to a cluster would); returns its id.
    ///
    /// # Errors
    /// The space does not exist.
    pub fn add_target(&self, space_slug: &str, target_slug: &str) -> Result<String, String> {
        self.shared.add_target(space_slug, target_slug)
    }

    /// The GitOps agent: called with each newly published Release (not for dry runs) a moment after
    /// the publish, as Argo CD or Flux pulls it; an `Err` is a failed sync. The demo uses it to write the
    /// bundled objects into the sandbox cluster.
    pub fn on_release(&self, hook: ReleaseHook) {
        self.shared.set_release_hook(hook);
    }

    /// Releases the agent has synced so far: id, and the error when the sync failed.
    pub fn deliveries(&self) -> Vec<(String, Option<String>)> {
        self.shared.state().delivered.clone()
    }

    /// Waits (up to `timeout`) until the agent has synced this Release; its error if the sync failed.
    ///
    /// # Errors
    /// The sync failed, or did not happen in time.
    pub async fn wait_delivered(&self, release_id: &str, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((_, e)) = self.deliveries().into_iter().find(|(id, _)| id == release_id) {
                return e.map_or(Ok(()), Err);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("release {release_id} was not synced within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Requests that broke the contract (not an operation of v0.8.5, an unknown query parameter, a
    /// wrong content type), as `METHOD /path?query: why`.
    pub fn contract_violations(&self) -> Vec<String> {
        self.shared
            .violations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The data of a unit by space and unit slug (for test assertions; bypasses HTTP).
    pub fn unit_data(&self, space_slug: &str, unit_slug: &str) -> Option<Vec<u8>> {
        self.shared.unit_data(space_slug, unit_slug)
    }

    /// The Releases of a space, oldest first (for test assertions; bypasses HTTP).
    pub fn releases(&self, space_slug: &str) -> Vec<Release> {
        self.shared.releases(space_slug)
    }

    /// The spaces (for test assertions; bypasses HTTP).
    pub fn spaces(&self) -> Vec<Space> {
        self.shared.spaces()
    }

    /// The units of a space by slug (for test assertions; bypasses HTTP).
    pub fn units(&self, space_slug: &str) -> Vec<Unit> {
        self.shared.units(space_slug)
    }

    /// Requests served so far (`METHOD /path?query -> status`).
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The whole state as JSON (for debugging a failing test).
    pub fn dump(&self) -> Value {
        self.shared.dump()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        for v in self.contract_violations() {
            tracing::error!(violation = %v, "a request broke ConfigHub v0.8.5's contract");
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A tiny deterministic generator for fault draws.
#[derive(Debug)]
pub(crate) struct Rng(Mutex<u64>);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(Mutex::new(seed.max(1)))
    }
    pub(crate) fn reseed(&self, seed: u64) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = seed.max(1);
    }
    /// A float in [0, 1).
    pub(crate) fn next(&self) -> f64 {
        let mut s = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // xorshift64*
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        let v = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64
    }
}
