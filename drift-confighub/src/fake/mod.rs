//! An in-process ConfigHub API server on 127.0.0.1 with the routes, JSON and behaviour of the real one
//! (`../reference/confighub-api.md` §2), for tests and the offline demo.
//!
//! What it does: spaces, units (create, clone from upstream, get, list with `where`/`filter`/`select`,
//! `PUT` with `Version` and 409 on a stale one, merge-`PATCH`, delete), revisions with change
//! descriptions, upgrade from upstream as a three-way merge (upstream changes land on top of the
//! downstream's own edits), `restore`, bulk patch (`PATCH /unit`) and bulk apply (`POST /unit/apply`)
//! with 200/207 per-item results, asynchronous apply and refresh (a queued operation that completes
//! through unit events after a short delay; a unit must have a target), live state, filters, change
//! sets, targets, and the functions `set-replicas`, `set-image`, `set-int-path`, `set-string-path`,
//! `get-replicas`. Where-clauses are parsed with the documented grammar and checked against each
//! entity's attributes: an unknown attribute, `SetID`, `OR` or a wrong operator is a 400, as on the real
//! API. Every request needs the bearer token.
//!
//! Fault injection ([`Faults`]): latency, 429 with `Retry-After`, 500 before anything happens, and
//! failures *after* a write committed (the connection dropped, or the answer delayed past the client's
//! timeout) — the cases that make naive retries duplicate things.
//!
//! What it does not do: organizations and users, approvals and apply gates, triggers, workers (targets
//! are added with [`FakeHub::add_target`]), links, views, tags, mutations history, `where_data`, and the
//! real bridge's refresh (a refresh reads live data from [`FakeHub::on_refresh`] if set).

mod routes;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::client::ClientConfig;
use crate::model::{Space, Unit};

pub use state::{ApplyHook, HookRequest, RefreshHook};

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
    /// How long a queued apply or refresh takes (default 30 ms).
    pub operation_delay: Duration,
    /// Serve the older route names (`/live-state`) instead of the newer ones (`/live_state`).
    pub legacy_routes: bool,
    /// Faults.
    pub faults: Faults,
    /// Give every new space a target with this slug, as a bridge worker started for it would.
    pub auto_target: Option<String>,
}

impl Default for FakeHubConfig {
    fn default() -> Self {
        FakeHubConfig {
            port: 0,
            token: "fake-confighub-token".into(),
            operation_delay: Duration::from_millis(30),
            legacy_routes: false,
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
    /// Sets the operation delay.
    #[must_use]
    pub fn operation_delay(mut self, d: Duration) -> Self {
        self.operation_delay = d;
        self
    }
    /// Gives every new space a target with this slug.
    #[must_use]
    pub fn auto_target(mut self, slug: impl Into<String>) -> Self {
        self.auto_target = Some(slug.into());
        self
    }
    /// Serves the older route names.
    #[must_use]
    pub fn legacy_routes(mut self, on: bool) -> Self {
        self.legacy_routes = on;
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

    /// Adds a target to a space, as a bridge worker would when it starts; returns its id.
    ///
    /// # Errors
    /// The space does not exist.
    pub fn add_target(&self, space_slug: &str, target_slug: &str) -> Result<String, String> {
        self.shared.add_target(space_slug, target_slug)
    }

    /// Called when an apply completes (not for dry runs), with the space slug, the unit and its data;
    /// an `Err` makes the apply fail with that message. The demo uses it to write to the sandbox cluster.
    pub fn on_apply(&self, hook: ApplyHook) {
        self.shared.set_apply_hook(hook);
    }

    /// Called by a refresh to read the live data of a unit (YAML); without it a refresh finds no drift.
    pub fn on_refresh(&self, hook: RefreshHook) {
        self.shared.set_refresh_hook(hook);
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
