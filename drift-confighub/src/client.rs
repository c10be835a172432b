//! A typed async client for the parts of ConfigHub's REST API (v0.8.5, `confighub-api.md` §2 and the
//! operations of `confighub-routes.tsv`) drift-detector uses.
//!
//! - Base URL `https://hub.confighub.com/api` (override with [`ClientConfig::base_url`]), bearer token.
//! - The server's version is read from `GET /info` ([`ConfigHubClient::check_server`]) and from the
//!   `ConfigHub-Version` header of every answer; a server older than API 0.8 is a clear error.
//! - Unit writes answer `UnitCreateOrUpdateResponse`; configuration data is read and written only through
//!   the data endpoints (raw bytes, `ETag` = `DataHash`): reads send `If-None-Match` to skip unchanged
//!   data, writes send `If-Match` so a lost race is a [`ConfigHubError::Conflict`] to re-read, never a
//!   blind overwrite.
//! - Lists page with `limit` and follow the `ConfigHub-Continue` header until it is absent.
//! - Idempotent calls (`GET`, `PUT`, merge-`PATCH`, `DELETE`) are retried on 429, 5xx and transport
//!   errors with exponential back-off and jitter, honouring `Retry-After`. Calls that create something
//!   (`POST`: create, publish, invoke) are never retried blindly: the `ensure_*` helpers look the entity
//!   up again before trying a second time.
//! - Where-clauses are parsed and checked against the entity's attributes before anything is sent, and
//!   the `include` their joins need is added.
//! - Every error names the route and the entity.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ConfigHubError, Result};
use crate::model::{
    ApiInfo, ChangeSet, ExtendedRevision, ExtendedSpace, ExtendedUnit, Filter, FunctionInvocationsRequest,
    FunctionInvocationsResponse, Labels, MaybeWrapped, Release, ReleasePublishRequest,
    ReleasePublishResponse, Revision, Space, StandardErrorResponse, Target, Unit, UnitCreateOrUpdateResponse,
    UnitData,
};
use crate::where_clause::{Entity, WhereClause, WhereError, and, quote};

/// The oldest API version (the server version's first two numbers) this client speaks: 0.8, the
/// release model with data endpoints, paging and `Release.LiveStatus`.
pub const SUPPORTED_API: (u64, u64) = (0, 8);

/// Items asked for per page of a list.
pub const PAGE_SIZE: u32 = 500;

/// The public ConfigHub API.
pub const DEFAULT_BASE_URL: &str = "https://hub.confighub.com/api";

/// Retry settings for idempotent calls.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 5).
    pub max_attempts: u32,
    /// First back-off (default 200 ms); doubles each time, with jitter.
    pub base_delay: Duration,
    /// Longest back-off, and the longest `Retry-After` honoured (default 10 s).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Sets the number of attempts.
    #[must_use]
    pub fn attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// Sets the first back-off.
    #[must_use]
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }
    /// Sets the longest back-off.
    #[must_use]
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        // Equal jitter: half fixed, half random, so concurrent clients spread out.
        let half = exp / 2;
        let mut b = [0u8; 4];
        let r = if getrandom::fill(&mut b).is_ok() {
            u32::from_le_bytes(b)
        } else {
            0
        };
        half + half.mul_f64(f64::from(r) / f64::from(u32::MAX))
    }
}

/// Client settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Base URL, ending in `/api` (default [`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// Bearer token (`cub auth get-token`).
    pub token: Option<String>,
    /// Per-request timeout (default 30 s).
    pub timeout: Duration,
    /// Retries of idempotent calls.
    pub retry: RetryPolicy,
    /// `User-Agent`.
    pub user_agent: String,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            token: None,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            user_agent: format!("drift-detector/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl ClientConfig {
    /// Sets the base URL (`http://127.0.0.1:port/api` for the fake hub).
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }
    /// Sets the token.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
    /// Sets the per-request timeout.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// Sets the retry policy.
    #[must_use]
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }
}

/// Counters (for metrics, and for tests that count retries).
#[derive(Debug, Default)]
pub struct ClientStats {
    /// HTTP requests sent (every attempt).
    pub requests: AtomicU64,
    /// Attempts that were retries.
    pub retries: AtomicU64,
    /// Calls that failed in the end.
    pub failures: AtomicU64,
}

/// Query parameters of unit lists.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UnitQuery {
    /// Where-clause.
    pub r#where: Option<String>,
    /// A filter id (ANDed with `where`).
    pub filter: Option<String>,
    /// Fields to return (ids and `Slug` always come).
    pub select: Option<String>,
    /// Related entities to include (`UpstreamUnitID`, `SpaceID`, ...); what the where-clause's joins
    /// need is added.
    pub include: Option<String>,
}

impl UnitQuery {
    /// With a where-clause.
    pub fn with_where(w: impl Into<String>) -> Self {
        UnitQuery {
            r#where: Some(w.into()),
            ..UnitQuery::default()
        }
    }
    /// Adds `select`.
    #[must_use]
    pub fn select(mut self, s: impl Into<String>) -> Self {
        self.select = Some(s.into());
        self
    }
    /// Adds `include`.
    #[must_use]
    pub fn include(mut self, s: impl Into<String>) -> Self {
        self.include = Some(s.into());
        self
    }
    /// Adds a filter id.
    #[must_use]
    pub fn filter(mut self, id: impl Into<String>) -> Self {
        self.filter = Some(id.into());
        self
    }
}

/// Query flags of unit updates.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UpdateOptions {
    /// Take the upstream unit's head data (`upgrade=true`).
    pub upgrade: bool,
    /// Set the data back to a revision selector: `LastReleasedRevisionNum`, `Before:LastReleasedRevisionNum`,
    /// `42`, `Tag:<uuid>`, `Revision:<uuid>`, ... (`confighub-api.md` §2.7).
    pub restore: Option<String>,
    /// Restore a revision by id.
    pub revision_id: Option<String>,
    /// Validate only.
    pub dry_run: bool,
    /// Related entities the where-clause of a bulk call refers to (`UpstreamUnitID`).
    pub include: Option<String>,
}

impl UpdateOptions {
    /// `upgrade=true`.
    pub fn upgrade() -> Self {
        UpdateOptions {
            upgrade: true,
            include: Some("UpstreamUnitID".into()),
            ..UpdateOptions::default()
        }
    }
    /// `dry_run=true` when `on`.
    #[must_use]
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }
    /// Restores a revision by id.
    pub fn restore_revision(id: impl Into<String>) -> Self {
        UpdateOptions {
            revision_id: Some(id.into()),
            ..UpdateOptions::default()
        }
    }
    /// Restores the revision a selector names (`Before:LastReleasedRevisionNum`).
    pub fn restore(selector: impl Into<String>) -> Self {
        UpdateOptions {
            restore: Some(selector.into()),
            ..UpdateOptions::default()
        }
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if self.upgrade {
            q.push(("upgrade", "true".to_string()));
        }
        if let Some(r) = &self.restore {
            q.push(("restore", r.clone()));
        }
        if let Some(r) = &self.revision_id {
            q.push(("revision_id", r.clone()));
        }
        if self.dry_run {
            q.push(("dry_run", "true".to_string()));
        }
        if let Some(i) = &self.include {
            q.push(("include", i.clone()));
        }
        q
    }
}

/// The per-item results of a bulk call (HTTP 200: all worked; 207: some did not).
#[derive(Debug, Clone, PartialEq)]
pub struct BulkResult<T> {
    /// HTTP status (200 or 207).
    pub status: u16,
    /// Items, each with its entity or its error.
    pub items: Vec<T>,
}

/// Whether an entity was created, changed or already as wanted (for idempotent setup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// It did not exist.
    Created,
    /// It existed and was changed.
    Updated,
    /// It existed as wanted.
    Unchanged,
}

/// What a data read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataRead {
    /// `304`: the data still has the hash sent in `If-None-Match`.
    NotModified,
    /// The data and its hash (the `ETag`).
    Data {
        /// The bytes.
        bytes: Vec<u8>,
        /// `DataHash`.
        hash: String,
    },
}

/// How a data write is made.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DataWrite {
    /// Write only if the data still has this hash (`If-Match`); otherwise a conflict.
    pub if_match: Option<String>,
    /// The description of the revision the write creates.
    pub description: Option<String>,
    /// Validate only (`dry_run=true`); the answer carries the would-be data (`include=ConfigData`).
    pub dry_run: bool,
}

impl DataWrite {
    /// Conditional on the data read (`If-Match`).
    pub fn if_match(hash: impl Into<String>) -> Self {
        DataWrite {
            if_match: Some(hash.into()),
            ..DataWrite::default()
        }
    }
    /// Sets the revision's description.
    #[must_use]
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }
    /// A dry run when `on`.
    #[must_use]
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }
}

enum Body {
    None,
    Json(Value),
    MergePatch(Value),
    Bytes(Vec<u8>),
}

struct Call {
    method: Method,
    path: String,
    route: &'static str,
    entity: String,
    query: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    body: Body,
    idempotent: bool,
}

struct Answer {
    status: u16,
    body: Vec<u8>,
    continue_token: Option<String>,
    etag: Option<String>,
}

impl Call {
    fn new(method: Method, route: &'static str, path: String, entity: impl Into<String>) -> Call {
        let idempotent = method != Method::POST;
        Call {
            method,
            path,
            route,
            entity: entity.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::None,
            idempotent,
        }
    }
    fn query(mut self, k: &'static str, v: impl Into<String>) -> Call {
        self.query.push((k, v.into()));
        self
    }
    fn query_opt(self, k: &'static str, v: Option<&String>) -> Call {
        match v {
            Some(v) => self.query(k, v.clone()),
            None => self,
        }
    }
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Call {
        self.headers.push((k, v.into()));
        self
    }
    fn json(mut self, v: Value) -> Call {
        self.body = Body::Json(v);
        self
    }
    fn merge_patch(mut self, v: Value) -> Call {
        self.body = Body::MergePatch(v);
        self
    }
    fn bytes(mut self, b: Vec<u8>) -> Call {
        self.body = Body::Bytes(b);
        self
    }
    /// A read-only POST (dry runs) may be retried.
    fn retry_if(mut self, ok: bool) -> Call {
        self.idempotent = self.idempotent || ok;
        self
    }
}

/// The ConfigHub client. Cheap to clone; clones share connections, counters and the server version seen.
#[derive(Clone)]
pub struct ConfigHubClient {
    http: reqwest::Client,
    base: Arc<str>,
    token: Option<Arc<str>>,
    retry: RetryPolicy,
    stats: Arc<ClientStats>,
    version: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for ConfigHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigHubClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Parses and checks a where-clause for an entity, before anything is sent.
fn validate_where(w: &str, entity: Entity) -> Result<WhereClause> {
    let c = WhereClause::parse(w)?;
    crate::where_clause::check(&c, entity).map_err(|reason| {
        ConfigHubError::Where(WhereError {
            clause: w.to_string(),
            position: 0,
            reason,
        })
    })?;
    Ok(c)
}

/// `include` with what a clause's joins need added.
fn with_includes(include: Option<&String>, clause: Option<&WhereClause>) -> Option<String> {
    let mut parts: Vec<String> = include
        .map(|i| {
            i.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(c) = clause {
        for n in crate::where_clause::needed_includes(c) {
            if !parts.iter().any(|p| p == n) {
                parts.push(n.to_string());
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// The API version (first two numbers) of a server version string: `v0.8.5` → (0, 8).
pub fn api_version(version: &str) -> Option<(u64, u64)> {
    let v = version.trim().trim_start_matches(['v', 'V']);
    let mut it = v.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// A weak or strong `ETag` as the plain hash (`W/"ab"` → `ab`).
fn etag_hash(v: &str) -> String {
    v.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

impl ConfigHubClient {
    /// Builds a client.
    ///
    /// # Errors
    /// [`ConfigHubError::Setup`] when the base URL is not an http(s) URL or the HTTP client cannot be
    /// built.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = config.base_url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base)
            .map_err(|e| ConfigHubError::Setup(format!("ConfigHub URL {base:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigHubError::Setup(format!(
                "ConfigHub URL {base:?} is not http(s)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| ConfigHubError::Setup(format!("building the HTTP client: {e}")))?;
        Ok(ConfigHubClient {
            http,
            base: base.into(),
            token: config.token.map(|t| t.trim().to_string().into()),
            retry: config.retry,
            stats: Arc::new(ClientStats::default()),
            version: Arc::new(OnceLock::new()),
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Counters shared by this client and its clones.
    pub fn stats(&self) -> Arc<ClientStats> {
        self.stats.clone()
    }

    /// The server version seen in a `ConfigHub-Version` header or `GET /info`, once one was.
    pub fn server_version(&self) -> Option<&str> {
        self.version.get().map(String::as_str)
    }

    fn saw_version(&self, v: &str) {
        if self.version.get().is_none() && self.version.set(v.to_string()).is_ok() {
            tracing::info!(version = v, url = %self.base, "ConfigHub server version");
        }
    }

    async fn send(&self, call: &Call) -> Result<Answer> {
        let url = format!("{}{}", self.base, call.path);
        let mut attempt = 0u32;
        loop {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            if attempt > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            let mut req = self.http.request(call.method.clone(), &url).query(&call.query);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            for (k, v) in &call.headers {
                req = req.header(*k, v);
            }
            req = match &call.body {
                Body::None => req,
                Body::Json(v) => req.header("Content-Type", "application/json").body(v.to_string()),
                Body::MergePatch(v) => req
                    .header("Content-Type", "application/merge-patch+json")
                    .body(v.to_string()),
                Body::Bytes(b) => req
                    .header("Content-Type", "application/octet-stream")
                    .body(b.clone()),
            };
            let can_retry = call.idempotent && attempt + 1 < self.retry.max_attempts;
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let header = |name: &str| {
                        resp.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    if let Some(v) = header("confighub-version") {
                        self.saw_version(&v);
                    }
                    let retry_after = header("retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let continue_token = header("confighub-continue").filter(|t| !t.is_empty());
                    let etag = header("etag").map(|e| etag_hash(&e));
                    let body = resp.bytes().await;
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    let ok = status.is_success() || status == StatusCode::NOT_MODIFIED;
                    match body {
                        Ok(b) if ok => {
                            return Ok(Answer {
                                status: status.as_u16(),
                                body: b.to_vec(),
                                continue_token,
                                etag,
                            });
                        }
                        Ok(b) if !(retryable && can_retry) => {
                            self.stats.failures.fetch_add(1, Ordering::Relaxed);
                            return Err(self.status_error(call, status, &b));
                        }
                        Ok(_) => {
                            let wait = retry_after
                                .map_or_else(|| self.retry.backoff(attempt), |d| d.min(self.retry.max_delay));
                            tracing::debug!(
                                route = call.route,
                                status = status.as_u16(),
                                ?wait,
                                "ConfigHub asked us to retry"
                            );
                            tokio::time::sleep(wait).await;
                        }
                        Err(e) if !can_retry => {
                            self.stats.failures.fetch_add(1, Ordering::Relaxed);
                            return Err(self.transport_error(call, &e));
                        }
                        Err(e) => {
                            tracing::debug!(route = call.route, error = %e, "ConfigHub response broke off; retrying");
                            tokio::time::sleep(self.retry.backoff(attempt)).await;
                        }
                    }
                }
                Err(e) if !can_retry => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(self.transport_error(call, &e));
                }
                Err(e) => {
                    tracing::debug!(route = call.route, error = %e, "ConfigHub request failed; retrying");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                }
            }
            attempt += 1;
        }
    }

    fn transport_error(&self, call: &Call, e: &reqwest::Error) -> ConfigHubError {
        let reason = if e.is_timeout() {
            "timed out".to_string()
        } else if e.is_connect() {
            format!("cannot connect to {}: {e}", self.base)
        } else {
            format!("the connection failed: {e}")
        };
        ConfigHubError::Transport {
            route: call.route.to_string(),
            entity: call.entity.clone(),
            reason,
        }
    }

    fn status_error(&self, call: &Call, status: StatusCode, body: &[u8]) -> ConfigHubError {
        let message = serde_json::from_slice::<StandardErrorResponse>(body)
            .ok()
            .filter(|e| !e.message.is_empty())
            .map(|e| e.message)
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
        let (route, entity) = (call.route.to_string(), call.entity.clone());
        match status.as_u16() {
            404 => ConfigHubError::NotFound { route, entity },
            // 412 is not declared, but a server (or proxy) answering it for If-Match means the same.
            409 | 412 => ConfigHubError::Conflict {
                route,
                entity,
                message,
            },
            s @ (401 | 403) => ConfigHubError::Unauthorized {
                route,
                entity,
                status: s,
            },
            s => ConfigHubError::Api {
                route,
                entity,
                status: s,
                message,
            },
        }
    }

    fn decode<T: DeserializeOwned>(call: &Call, body: &[u8]) -> Result<T> {
        serde_json::from_slice(body).map_err(|e| ConfigHubError::Decode {
            route: call.route.to_string(),
            entity: call.entity.clone(),
            reason: e.to_string(),
        })
    }

    async fn json<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let a = self.send(&call).await?;
        Self::decode(&call, &a.body)
    }

    async fn json_with_status<T: DeserializeOwned>(&self, call: Call) -> Result<(u16, T)> {
        let a = self.send(&call).await?;
        Ok((a.status, Self::decode(&call, &a.body)?))
    }

    /// A unit write: the unit out of its `UnitCreateOrUpdateResponse`.
    async fn unit_write(&self, call: Call) -> Result<Unit> {
        let r: UnitCreateOrUpdateResponse = self.json_with_status(call).await.map(|(_, r)| r)?;
        Self::written_unit(r, "the write")
    }

    fn written_unit(r: UnitCreateOrUpdateResponse, what: &str) -> Result<Unit> {
        match (r.unit, r.error) {
            (_, Some(e)) if !e.message.is_empty() => Err(ConfigHubError::Api {
                route: what.to_string(),
                entity: String::new(),
                status: e
                    .status
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(400),
                message: e.message,
            }),
            (Some(u), _) => Ok(u),
            (None, _) => Err(ConfigHubError::Decode {
                route: what.to_string(),
                entity: String::new(),
                reason: "the answer has no Unit".into(),
            }),
        }
    }

    /// Every page of a list: `limit` on each request, `continue` from each `ConfigHub-Continue` header,
    /// until an answer has none.
    async fn list_paged<T: DeserializeOwned>(&self, mut call: Call, key: Option<&str>) -> Result<Vec<T>> {
        call.query.push(("limit", PAGE_SIZE.to_string()));
        let mut out = Vec::new();
        for _page in 0..100_000 {
            let a = self.send(&call).await?;
            match key {
                Some(k) => {
                    let items: Vec<MaybeWrapped<T>> = Self::decode(&call, &a.body)?;
                    out.extend(items.into_iter().filter_map(|i| i.into_inner(k)));
                }
                None => out.extend(Self::decode::<Vec<T>>(&call, &a.body)?),
            }
            match a.continue_token {
                Some(t) => {
                    call.query.retain(|(k, _)| *k != "continue");
                    call.query.push(("continue", t));
                }
                None => return Ok(out),
            }
        }
        Err(ConfigHubError::Decode {
            route: call.route.to_string(),
            entity: call.entity.clone(),
            reason: "the list never ended (100,000 pages)".into(),
        })
    }

    // --------------------------------------------------------------------------------------------
    // server

    /// `GET /info`: the server's version, build and OCI registry.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn info(&self) -> Result<ApiInfo> {
        let info: ApiInfo = self
            .json(Call::new(Method::GET, "GET /info", "/info".into(), "the server"))
            .await?;
        if !info.version.is_empty() {
            self.saw_version(&info.version);
        }
        Ok(info)
    }

    /// Reads `GET /info` and refuses a server older than [`SUPPORTED_API`]. A newer one is accepted
    /// with a warning (below 1.0 a new second number may break things).
    ///
    /// # Errors
    /// [`ConfigHubError::Unsupported`] for an older server; API and transport errors.
    pub async fn check_server(&self) -> Result<ApiInfo> {
        let info = self.info().await?;
        match api_version(&info.version) {
            Some(v) if v < SUPPORTED_API => Err(ConfigHubError::Unsupported {
                url: self.base.to_string(),
                version: info.version.clone(),
                api: format!("{}.{}", v.0, v.1),
                needed: format!("{}.{}", SUPPORTED_API.0, SUPPORTED_API.1),
            }),
            Some(v) if v > SUPPORTED_API => {
                tracing::warn!(
                    version = %info.version,
                    "ConfigHub runs a newer API than drift-detector was built for ({}.{}); continuing",
                    SUPPORTED_API.0,
                    SUPPORTED_API.1
                );
                Ok(info)
            }
            Some(_) => Ok(info),
            None => {
                tracing::warn!(version = %info.version, "ConfigHub did not say which version it runs");
                Ok(info)
            }
        }
    }

    // --------------------------------------------------------------------------------------------
    // spaces

    /// `GET /space` (optionally with a where-clause), every page.
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn list_spaces(&self, r#where: Option<&str>) -> Result<Vec<ExtendedSpace>> {
        let mut call = Call::new(Method::GET, "GET /space", "/space".into(), "spaces");
        if let Some(w) = r#where {
            validate_where(w, Entity::Space)?;
            call = call.query("where", w);
        }
        self.list_paged(call, None).await
    }

    /// A space by slug (there is no slug route: a list with `where=Slug = '...'`).
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn space_by_slug(&self, slug: &str) -> Result<Option<Space>> {
        let spaces = self.list_spaces(Some(&format!("Slug = {}", quote(slug)))).await?;
        Ok(spaces.into_iter().map(|s| s.space).find(|s| s.slug == slug))
    }

    /// A space by slug, or [`ConfigHubError::NotFound`].
    ///
    /// # Errors
    /// Not found, API and transport errors.
    pub async fn require_space(&self, slug: &str) -> Result<Space> {
        self.space_by_slug(slug)
            .await?
            .ok_or_else(|| ConfigHubError::NotFound {
                route: "GET /space".into(),
                entity: format!("space {slug}"),
            })
    }

    /// `POST /space`. Not retried; see [`ConfigHubClient::ensure_space`].
    ///
    /// # Errors
    /// API and transport errors (409 when the slug exists).
    pub async fn create_space(&self, space: &Space) -> Result<Space> {
        let body = serde_json::to_value(space).unwrap_or(Value::Null);
        self.json(
            Call::new(
                Method::POST,
                "POST /space",
                "/space".into(),
                format!("space {}", space.slug),
            )
            .json(body),
        )
        .await
    }

    /// `PATCH /space/{space_id}` with a merge patch (`{"ReleaseTargetID": "..."}`).
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn patch_space(&self, space_id: &str, patch: Value) -> Result<Space> {
        self.json(
            Call::new(
                Method::PATCH,
                "PATCH /space/{space_id}",
                format!("/space/{space_id}"),
                format!("space {space_id}"),
            )
            .merge_patch(patch),
        )
        .await
    }

    /// The space with this slug, created with these labels if missing; labels are added to an
    /// existing space when missing there.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn ensure_space(
        &self,
        slug: &str,
        display_name: &str,
        labels: &Labels,
    ) -> Result<(Space, Ensured)> {
        if let Some(s) = self.space_by_slug(slug).await? {
            let missing: Labels = labels
                .iter()
                .filter(|(k, v)| s.labels.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if missing.is_empty() {
                return Ok((s, Ensured::Unchanged));
            }
            let s = self
                .patch_space(&s.space_id, serde_json::json!({"Labels": missing}))
                .await?;
            return Ok((s, Ensured::Updated));
        }
        let want = Space {
            slug: slug.to_string(),
            display_name: display_name.to_string(),
            labels: labels.clone(),
            ..Space::default()
        };
        match self.create_space(&want).await {
            Ok(s) => Ok((s, Ensured::Created)),
            // The create may have happened even though the answer was lost, or a peer created it.
            Err(e) if e.is_retryable() => match self.space_by_slug(slug).await? {
                Some(s) => Ok((s, Ensured::Created)),
                None => Ok((self.create_space(&want).await?, Ensured::Created)),
            },
            Err(e) => Err(e),
        }
    }

    /// `DELETE /space/{space_id}`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn delete_space(&self, space_id: &str) -> Result<()> {
        self.send(&Call::new(
            Method::DELETE,
            "DELETE /space/{space_id}",
            format!("/space/{space_id}"),
            format!("space {space_id}"),
        ))
        .await
        .map(|_| ())
    }

    // --------------------------------------------------------------------------------------------
    // units

    /// `GET /space/{space_id}/unit`, every page.
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn list_units(&self, space_id: &str, q: &UnitQuery) -> Result<Vec<ExtendedUnit>> {
        let call = Call::new(
            Method::GET,
            "GET /space/{space_id}/unit",
            format!("/space/{space_id}/unit"),
            format!("units of space {space_id}"),
        );
        self.list_paged(self.unit_query(call, q)?, None).await
    }

    /// `GET /unit`: units across spaces (scope with `SpaceID = '...'` in the where-clause), every page.
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn list_all_units(&self, q: &UnitQuery) -> Result<Vec<ExtendedUnit>> {
        let call = Call::new(Method::GET, "GET /unit", "/unit".into(), "units");
        self.list_paged(self.unit_query(call, q)?, None).await
    }

    fn unit_query(&self, call: Call, q: &UnitQuery) -> Result<Call> {
        let clause = match &q.r#where {
            Some(w) => Some(validate_where(w, Entity::Unit)?),
            None => None,
        };
        let include = with_includes(q.include.as_ref(), clause.as_ref());
        Ok(call
            .query_opt("where", q.r#where.as_ref())
            .query_opt("filter", q.filter.as_ref())
            .query_opt("select", q.select.as_ref())
            .query_opt("include", include.as_ref()))
    }

    /// A unit by slug in a space.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn unit_by_slug(&self, space_id: &str, slug: &str) -> Result<Option<Unit>> {
        let units = self
            .list_units(
                space_id,
                &UnitQuery::with_where(format!("Slug = {}", quote(slug))),
            )
            .await?;
        Ok(units.into_iter().map(|u| u.unit).find(|u| u.slug == slug))
    }

    /// `GET /space/{space_id}/unit/{unit_id}`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn get_unit(&self, space_id: &str, unit_id: &str) -> Result<ExtendedUnit> {
        self.json(Call::new(
            Method::GET,
            "GET /space/{space_id}/unit/{unit_id}",
            format!("/space/{space_id}/unit/{unit_id}"),
            format!("unit {unit_id}"),
        ))
        .await
    }

    /// `POST /space/{space_id}/unit`: a unit without data (write it with
    /// [`ConfigHubClient::put_unit_data`]). Not retried.
    ///
    /// # Errors
    /// API and transport errors (409 when the slug exists).
    pub async fn create_unit(&self, space_id: &str, unit: &Unit) -> Result<Unit> {
        let body = serde_json::to_value(unit).unwrap_or(Value::Null);
        self.unit_write(
            Call::new(
                Method::POST,
                "POST /space/{space_id}/unit",
                format!("/space/{space_id}/unit"),
                format!("unit {}", unit.slug),
            )
            .json(body),
        )
        .await
    }

    /// Creates a unit and writes its data (two requests: the API has no atomic create with data). When
    /// the create's answer is lost the unit is looked up before trying again; the data write is retried
    /// as any idempotent `PUT`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn create_unit_with_data(&self, space_id: &str, unit: &Unit, data: &[u8]) -> Result<Unit> {
        let created = match self.create_unit(space_id, unit).await {
            Ok(u) => u,
            Err(e) if e.is_retryable() => match self.unit_by_slug(space_id, &unit.slug).await? {
                Some(u) => u,
                None => self.create_unit(space_id, unit).await?,
            },
            Err(e) => return Err(e),
        };
        let mut w = DataWrite::default();
        if !unit.last_change_description.is_empty() {
            w.description = Some(unit.last_change_description.clone());
        }
        self.put_unit_data(space_id, &created.unit_id, data, &w).await
    }

    /// Clones an upstream unit into a space (`POST .../unit?upstream_space_id=&upstream_unit_id=`; the
    /// data is copied server-side). Not retried.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn clone_unit(
        &self,
        space_id: &str,
        upstream: &Unit,
        slug: &str,
        labels: &Labels,
    ) -> Result<Unit> {
        let body =
            serde_json::json!({"Slug": slug, "Labels": labels, "ToolchainType": upstream.toolchain_type});
        self.unit_write(
            Call::new(
                Method::POST,
                "POST /space/{space_id}/unit",
                format!("/space/{space_id}/unit"),
                format!("clone {slug} of unit {}", upstream.slug),
            )
            .query("upstream_space_id", upstream.space_id.clone())
            .query("upstream_unit_id", upstream.unit_id.clone())
            .json(body),
        )
        .await
    }

    /// `PUT /space/{space_id}/unit/{unit_id}`: the unit's metadata, with the `Version` that was read (a
    /// stale one gives [`ConfigHubError::Conflict`]). Data is not part of it.
    ///
    /// # Errors
    /// API and transport errors, conflicts.
    pub async fn update_unit(&self, unit: &Unit, opts: &UpdateOptions) -> Result<Unit> {
        let body = serde_json::to_value(unit).unwrap_or(Value::Null);
        let mut call = Call::new(
            Method::PUT,
            "PUT /space/{space_id}/unit/{unit_id}",
            format!("/space/{}/unit/{}", unit.space_id, unit.unit_id),
            format!("unit {}", unit.slug),
        )
        .json(body);
        call.query = opts.query();
        self.unit_write(call).await
    }

    /// `PATCH /space/{space_id}/unit/{unit_id}` with a merge patch of unit fields (`{"Labels": {"x":
    /// null}}` deletes a label); `null` is a valid body with `upgrade` or `restore`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn patch_unit(
        &self,
        space_id: &str,
        unit_id: &str,
        patch: Value,
        opts: &UpdateOptions,
    ) -> Result<Unit> {
        let mut call = Call::new(
            Method::PATCH,
            "PATCH /space/{space_id}/unit/{unit_id}",
            format!("/space/{space_id}/unit/{unit_id}"),
            format!("unit {unit_id}"),
        )
        .merge_patch(patch);
        call.query = opts.query();
        self.unit_write(call).await
    }

    /// `DELETE /space/{space_id}/unit/{unit_id}`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn delete_unit(&self, space_id: &str, unit_id: &str) -> Result<()> {
        self.send(&Call::new(
            Method::DELETE,
            "DELETE /space/{space_id}/unit/{unit_id}",
            format!("/space/{space_id}/unit/{unit_id}"),
            format!("unit {unit_id}"),
        ))
        .await
        .map(|_| ())
    }

    /// `PATCH /unit?where=...`: a merge patch (or `null`) applied to every unit the clause selects;
    /// with `upgrade` each takes its upstream's head. 200 or 207 with per-unit results.
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn bulk_patch_units(
        &self,
        r#where: &str,
        patch: Value,
        opts: &UpdateOptions,
    ) -> Result<BulkResult<UnitCreateOrUpdateResponse>> {
        let clause = validate_where(r#where, Entity::Unit)?;
        let mut call = Call::new(
            Method::PATCH,
            "PATCH /unit",
            "/unit".into(),
            format!("units where {where}"),
        )
        .merge_patch(patch);
        let mut q = opts.query();
        q.retain(|(k, _)| *k != "include");
        if let Some(i) = with_includes(opts.include.as_ref(), Some(&clause)) {
            q.push(("include", i));
        }
        q.push(("where", r#where.to_string()));
        call.query = q;
        let (status, items) = self.json_with_status(call).await?;
        Ok(BulkResult { status, items })
    }

    // --------------------------------------------------------------------------------------------
    // unit data

    /// `GET /space/{space_id}/unit/{unit_id}/data`: the configuration as raw bytes with its hash; with
    /// `if_none_match` (a `DataHash` read earlier) an unchanged unit answers [`DataRead::NotModified`].
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn unit_data(
        &self,
        space_id: &str,
        unit_id: &str,
        if_none_match: Option<&str>,
    ) -> Result<DataRead> {
        let mut call = Call::new(
            Method::GET,
            "GET /space/{space_id}/unit/{unit_id}/data",
            format!("/space/{space_id}/unit/{unit_id}/data"),
            format!("data of unit {unit_id}"),
        );
        if let Some(h) = if_none_match {
            call = call.header("If-None-Match", format!("\"{h}\""));
        }
        let a = self.send(&call).await?;
        if a.status == 304 {
            return Ok(DataRead::NotModified);
        }
        let hash = a.etag.unwrap_or_else(|| crate::model::data_hash(&a.body));
        Ok(DataRead::Data { bytes: a.body, hash })
    }

    /// The data of a unit as bytes and hash (no cache).
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn read_unit_data(&self, space_id: &str, unit_id: &str) -> Result<(Vec<u8>, String)> {
        match self.unit_data(space_id, unit_id, None).await? {
            DataRead::Data { bytes, hash } => Ok((bytes, hash)),
            DataRead::NotModified => Err(ConfigHubError::Decode {
                route: "GET /space/{space_id}/unit/{unit_id}/data".into(),
                entity: format!("data of unit {unit_id}"),
                reason: "304 without If-None-Match".into(),
            }),
        }
    }

    /// `PUT /space/{space_id}/unit/{unit_id}/data`: writes the configuration (a new revision when it
    /// changes). With [`DataWrite::if_match`] a write that lost a race is a [`ConfigHubError::Conflict`]:
    /// re-read, never overwrite blindly.
    ///
    /// # Errors
    /// API and transport errors, conflicts.
    pub async fn put_unit_data(
        &self,
        space_id: &str,
        unit_id: &str,
        data: &[u8],
        w: &DataWrite,
    ) -> Result<Unit> {
        Self::written_unit(
            self.put_unit_data_full(space_id, unit_id, data, w).await?,
            "PUT /space/{space_id}/unit/{unit_id}/data",
        )
    }

    /// As [`ConfigHubClient::put_unit_data`], with the whole answer (`ConfigData` on dry runs).
    ///
    /// # Errors
    /// API and transport errors, conflicts.
    pub async fn put_unit_data_full(
        &self,
        space_id: &str,
        unit_id: &str,
        data: &[u8],
        w: &DataWrite,
    ) -> Result<UnitCreateOrUpdateResponse> {
        let mut call = Call::new(
            Method::PUT,
            "PUT /space/{space_id}/unit/{unit_id}/data",
            format!("/space/{space_id}/unit/{unit_id}/data"),
            format!("data of unit {unit_id}"),
        )
        .bytes(data.to_vec());
        if let Some(h) = &w.if_match {
            call = call.header("If-Match", format!("\"{h}\""));
        }
        if let Some(d) = &w.description {
            call = call.query("last_change_description", d.clone());
        }
        if w.dry_run {
            call = call.query("dry_run", "true").query("include", "ConfigData");
        }
        self.json(call).await
    }

    /// `GET /unit_data?where=...`: the data of every unit the clause selects (scope it with
    /// `SpaceID = '...'`), every page.
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn search_unit_data(&self, q: &UnitQuery) -> Result<Vec<UnitData>> {
        let call = Call::new(Method::GET, "GET /unit_data", "/unit_data".into(), "unit data");
        self.list_paged(self.unit_query(call, q)?, None).await
    }

    // --------------------------------------------------------------------------------------------
    // revisions

    /// `GET /space/{space_id}/unit/{unit_id}/revision`, oldest first (optionally with a where-clause).
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn revisions(
        &self,
        space_id: &str,
        unit_id: &str,
        r#where: Option<&str>,
    ) -> Result<Vec<Revision>> {
        let mut call = Call::new(
            Method::GET,
            "GET /space/{space_id}/unit/{unit_id}/revision",
            format!("/space/{space_id}/unit/{unit_id}/revision"),
            format!("revisions of unit {unit_id}"),
        );
        if let Some(w) = r#where {
            validate_where(w, Entity::Revision)?;
            call = call.query("where", w);
        }
        let items: Vec<ExtendedRevision> = self.list_paged(call, None).await?;
        let mut revs: Vec<Revision> = items.into_iter().map(|r| r.revision).collect();
        revs.sort_by_key(|r| r.revision_num);
        Ok(revs)
    }

    /// `GET .../revision/{revision_id}/data`: a revision's configuration.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn revision_data(&self, space_id: &str, unit_id: &str, revision_id: &str) -> Result<Vec<u8>> {
        let a = self
            .send(&Call::new(
                Method::GET,
                "GET /space/{space_id}/unit/{unit_id}/revision/{revision_id}/data",
                format!("/space/{space_id}/unit/{unit_id}/revision/{revision_id}/data"),
                format!("data of revision {revision_id} of unit {unit_id}"),
            ))
            .await?;
        Ok(a.body)
    }

    /// The data of revision `num` of a unit (its released revision, say): the revision is found by number,
    /// then its data read.
    ///
    /// # Errors
    /// API and transport errors; [`ConfigHubError::NotFound`] when there is no such revision.
    pub async fn revision_data_by_num(
        &self,
        space_id: &str,
        unit_id: &str,
        num: i64,
    ) -> Result<(Vec<u8>, Revision)> {
        let revs = self
            .revisions(space_id, unit_id, Some(&format!("RevisionNum = {num}")))
            .await?;
        let rev =
            revs.into_iter()
                .find(|r| r.revision_num == num)
                .ok_or_else(|| ConfigHubError::NotFound {
                    route: "GET /space/{space_id}/unit/{unit_id}/revision".into(),
                    entity: format!("revision {num} of unit {unit_id}"),
                })?;
        let data = self.revision_data(space_id, unit_id, &rev.revision_id).await?;
        Ok((data, rev))
    }

    // --------------------------------------------------------------------------------------------
    // releases

    /// `POST /space/{space_id}/release`: publishes a Release of the space (its units assigned to the
    /// space's release Target, at head or at a Tag). When nothing changed since the latest Release the
    /// answer is that Release with a `Message`. Not retried (a lost answer is checked by listing).
    ///
    /// # Errors
    /// API and transport errors (422 when a unit has validation errors).
    pub async fn publish_release(
        &self,
        space_id: &str,
        req: &ReleasePublishRequest,
    ) -> Result<ReleasePublishResponse> {
        let body = serde_json::to_value(req).unwrap_or(Value::Null);
        self.json(
            Call::new(
                Method::POST,
                "POST /space/{space_id}/release",
                format!("/space/{space_id}/release"),
                format!("release of space {space_id}"),
            )
            .json(body),
        )
        .await
    }

    /// `GET /space/{space_id}/release`, every page, highest `ReleaseNum` first.
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn list_releases(&self, space_id: &str, r#where: Option<&str>) -> Result<Vec<Release>> {
        let mut call = Call::new(
            Method::GET,
            "GET /space/{space_id}/release",
            format!("/space/{space_id}/release"),
            format!("releases of space {space_id}"),
        );
        if let Some(w) = r#where {
            validate_where(w, Entity::Release)?;
            call = call.query("where", w);
        }
        let mut rs: Vec<Release> = self.list_paged(call, Some("Release")).await?;
        rs.sort_by_key(|r| std::cmp::Reverse(r.release_num));
        Ok(rs)
    }

    /// The latest published Release of a space, if any.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn latest_release(&self, space_id: &str) -> Result<Option<Release>> {
        Ok(self
            .list_releases(space_id, Some("Published = true"))
            .await?
            .into_iter()
            .next())
    }

    /// `PATCH /space/{space_id}/release/{release_id}`: a merge patch of Labels, Annotations or
    /// `LiveStatus`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn patch_release(&self, space_id: &str, release_id: &str, patch: Value) -> Result<Release> {
        self.json(
            Call::new(
                Method::PATCH,
                "PATCH /space/{space_id}/release/{release_id}",
                format!("/space/{space_id}/release/{release_id}"),
                format!("release {release_id}"),
            )
            .merge_patch(patch),
        )
        .await
    }

    // --------------------------------------------------------------------------------------------
    // filters, change sets, targets, functions

    /// `GET /space/{space_id}/filter`, every page.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn list_filters(&self, space_id: &str) -> Result<Vec<Filter>> {
        self.list_paged(
            Call::new(
                Method::GET,
                "GET /space/{space_id}/filter",
                format!("/space/{space_id}/filter"),
                format!("filters of space {space_id}"),
            ),
            Some("Filter"),
        )
        .await
    }

    /// `POST /space/{space_id}/filter`. Not retried.
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn create_filter(&self, space_id: &str, filter: &Filter) -> Result<Filter> {
        filter_where_ok(filter)?;
        let body = serde_json::to_value(filter).unwrap_or(Value::Null);
        self.json(
            Call::new(
                Method::POST,
                "POST /space/{space_id}/filter",
                format!("/space/{space_id}/filter"),
                format!("filter {}", filter.slug),
            )
            .json(body),
        )
        .await
    }

    /// A filter with this slug and where-clause: created when missing, updated when its clause differs.
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn ensure_filter(
        &self,
        space_id: &str,
        slug: &str,
        from: &str,
        r#where: &str,
    ) -> Result<(Filter, Ensured)> {
        let want = Filter {
            slug: slug.to_string(),
            display_name: slug.to_string(),
            from: from.to_string(),
            r#where: r#where.to_string(),
            ..Filter::default()
        };
        filter_where_ok(&want)?;
        let find = |fs: Vec<Filter>| fs.into_iter().find(|f| f.slug == slug);
        if let Some(mut f) = find(self.list_filters(space_id).await?) {
            if f.r#where == r#where && f.from == from {
                return Ok((f, Ensured::Unchanged));
            }
            f.r#where = r#where.to_string();
            f.from = from.to_string();
            let body = serde_json::to_value(&f).unwrap_or(Value::Null);
            let updated = self
                .json(
                    Call::new(
                        Method::PUT,
                        "PUT /space/{space_id}/filter/{filter_id}",
                        format!("/space/{space_id}/filter/{}", f.filter_id),
                        format!("filter {slug}"),
                    )
                    .json(body),
                )
                .await?;
            return Ok((updated, Ensured::Updated));
        }
        match self.create_filter(space_id, &want).await {
            Ok(f) => Ok((f, Ensured::Created)),
            Err(e) if e.is_retryable() => match find(self.list_filters(space_id).await?) {
                Some(f) => Ok((f, Ensured::Created)),
                None => Ok((self.create_filter(space_id, &want).await?, Ensured::Created)),
            },
            Err(e) => Err(e),
        }
    }

    /// `POST /space/{space_id}/change_set`. Not retried.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn create_change_set(&self, space_id: &str, cs: &ChangeSet) -> Result<ChangeSet> {
        let body = serde_json::to_value(cs).unwrap_or(Value::Null);
        self.json(
            Call::new(
                Method::POST,
                "POST /space/{space_id}/change_set",
                format!("/space/{space_id}/change_set"),
                format!("change set {}", cs.slug),
            )
            .json(body),
        )
        .await
    }

    /// `GET /space/{space_id}/target`, every page.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn list_targets(&self, space_id: &str) -> Result<Vec<Target>> {
        self.list_paged(
            Call::new(
                Method::GET,
                "GET /space/{space_id}/target",
                format!("/space/{space_id}/target"),
                format!("targets of space {space_id}"),
            ),
            Some("Target"),
        )
        .await
    }

    /// The Target with this slug in a space, created when missing (`POST /space/{space_id}/target`).
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn ensure_target(&self, space_id: &str, slug: &str) -> Result<(Target, Ensured)> {
        let find = |ts: Vec<Target>| ts.into_iter().find(|t| t.slug == slug);
        if let Some(t) = find(self.list_targets(space_id).await?) {
            return Ok((t, Ensured::Unchanged));
        }
        let call = || {
            Call::new(
                Method::POST,
                "POST /space/{space_id}/target",
                format!("/space/{space_id}/target"),
                format!("target {slug}"),
            )
            .json(serde_json::json!({"Slug": slug}))
        };
        match self.json(call()).await {
            Ok(t) => Ok((t, Ensured::Created)),
            Err(e) if e.is_retryable() => match find(self.list_targets(space_id).await?) {
                Some(t) => Ok((t, Ensured::Created)),
                None => Ok((self.json(call()).await?, Ensured::Created)),
            },
            Err(e) => Err(e),
        }
    }

    /// `POST /space/{space_id}/function/invoke?where=...`: runs functions on the selected units. A dry
    /// run changes nothing (and may be retried); a real run records a revision with the change
    /// description on each changed unit (and is not retried).
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn invoke_functions(
        &self,
        space_id: &str,
        r#where: &str,
        req: &FunctionInvocationsRequest,
        dry_run: bool,
    ) -> Result<BulkResult<FunctionInvocationsResponse>> {
        validate_where(r#where, Entity::Unit)?;
        let body = serde_json::to_value(req).unwrap_or(Value::Null);
        let mut call = Call::new(
            Method::POST,
            "POST /space/{space_id}/function/invoke",
            format!("/space/{space_id}/function/invoke"),
            format!("units where {where}"),
        )
        .query("where", r#where)
        .json(body)
        .retry_if(dry_run);
        if dry_run {
            call = call.query("dry_run", "true");
        }
        let (status, items) = self.json_with_status(call).await?;
        Ok(BulkResult { status, items })
    }

    /// Units of `space_id` whose upstream has moved on (`UpstreamRevisionNum < UpstreamUnit.HeadRevisionNum`,
    /// sent with `include=UpstreamUnitID` for the join).
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn stale_downstream_units(&self, space_id: &str) -> Result<Vec<Unit>> {
        let w = and([
            format!("SpaceID = {}", quote(space_id)),
            "UpstreamRevisionNum > 0".into(),
            "UpstreamRevisionNum < UpstreamUnit.HeadRevisionNum".into(),
        ]);
        let units = self.list_all_units(&UnitQuery::with_where(w)).await?;
        Ok(units.into_iter().map(|u| u.unit).collect())
    }
}

fn filter_where_ok(f: &Filter) -> Result<()> {
    let entity = match f.from.as_str() {
        "Unit" => Entity::Unit,
        "Space" => Entity::Space,
        "Release" => Entity::Release,
        "Target" => Entity::Target,
        _ => return Ok(()),
    };
    if !f.r#where.trim().is_empty() {
        validate_where(&f.r#where, entity)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy::default();
        for attempt in 0..20 {
            let d = p.backoff(attempt);
            let cap = p.base_delay.saturating_mul(1 << attempt.min(16)).min(p.max_delay);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?} vs {cap:?}");
        }
    }

    #[test]
    fn config_debug_hides_the_token() {
        let c = ClientConfig::default().token("s3cr3t-token");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn api_versions_and_etags() {
        assert_eq!(api_version("v0.8.5"), Some((0, 8)));
        assert_eq!(api_version("v0.8-dev"), Some((0, 8)));
        assert_eq!(api_version("v1.2.3+build"), Some((1, 2)));
        assert_eq!(api_version("dev"), None);
        assert!(api_version("v0.4.21").is_some_and(|v| v < SUPPORTED_API));
        assert_eq!(etag_hash("W/\"abc\""), "abc");
        assert_eq!(etag_hash("\"abc\""), "abc");
    }

    #[test]
    fn removed_attributes_are_refused_before_sending() {
        let e = validate_where("LiveRevisionNum > 0", Entity::Unit).expect_err("removed");
        assert!(e.to_string().contains("LastReleasedRevisionNum"), "{e}");
        assert!(validate_where("HeadRevisionNum > LastReleasedRevisionNum", Entity::Unit).is_ok());
        let c =
            validate_where("UpstreamRevisionNum < UpstreamUnit.HeadRevisionNum", Entity::Unit).expect("ok");
        assert_eq!(with_includes(None, Some(&c)).as_deref(), Some("UpstreamUnitID"));
        assert_eq!(
            with_includes(Some(&"SpaceID".to_string()), Some(&c)).as_deref(),
            Some("SpaceID,UpstreamUnitID")
        );
    }

    #[test]
    fn tokens_are_trimmed() {
        let c = ConfigHubClient::new(ClientConfig::default().token("tok\n")).expect("client");
        assert_eq!(c.token.as_deref(), Some("tok"));
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(ConfigHubClient::new(ClientConfig::default().base_url("ftp://x/api")).is_err());
        assert!(ConfigHubClient::new(ClientConfig::default().base_url("not a url")).is_err());
        assert!(ConfigHubClient::new(ClientConfig::default()).is_ok());
    }
}
