//! A typed async client for the parts of the ConfigHub REST API drift-detector uses.
//!
//! - Base URL `https://hub.confighub.com/api` (override with [`ClientConfig::base_url`]), bearer token.
//! - Idempotent calls (`GET`, `PUT` with `Version`, merge-`PATCH`, `DELETE`) are retried on 429, 5xx and
//!   transport errors with exponential back-off and jitter, honouring `Retry-After`. Calls that create
//!   something (`POST`: create, apply, refresh, invoke) are never retried blindly: the `ensure_*`
//!   helpers look the entity up again before trying a second time.
//! - Every error names the route and the entity.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ConfigHubError, Result};
use crate::model::{
    ChangeSet, ExtendedRevision, ExtendedSpace, ExtendedUnit, Filter, FunctionInvocationsRequest,
    FunctionInvocationsResponse, Labels, MaybeWrapped, QueuedOperation, Revision, Space,
    StandardErrorResponse, Target, Unit, UnitActionResponse, UnitCreateOrUpdateResponse, UnitEvent,
};
use crate::where_clause::{WhereClause, and, quote};

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
    /// Related entities to include (`UpstreamUnitID`, `SpaceID`, ...).
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
    /// Restore `LiveRevisionNum`, `LastAppliedRevisionNum` or `PreviousLiveRevisionNum`.
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

enum Body {
    None,
    Json(Value),
    MergePatch(Value),
}

struct Call {
    method: Method,
    path: String,
    route: &'static str,
    entity: String,
    query: Vec<(&'static str, String)>,
    body: Body,
    idempotent: bool,
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
    fn json(mut self, v: Value) -> Call {
        self.body = Body::Json(v);
        self
    }
    fn merge_patch(mut self, v: Value) -> Call {
        self.body = Body::MergePatch(v);
        self
    }
    /// A read-only POST (dry runs) may be retried.
    fn retry_if(mut self, ok: bool) -> Call {
        self.idempotent = self.idempotent || ok;
        self
    }
}

/// The ConfigHub client. Cheap to clone; clones share connections and counters.
#[derive(Clone)]
pub struct ConfigHubClient {
    http: reqwest::Client,
    base: Arc<str>,
    token: Option<Arc<str>>,
    retry: RetryPolicy,
    stats: Arc<ClientStats>,
}

impl std::fmt::Debug for ConfigHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigHubClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn validate_where(w: &str) -> Result<()> {
    WhereClause::parse(w)?;
    Ok(())
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
            token: config.token.map(Into::into),
            retry: config.retry,
            stats: Arc::new(ClientStats::default()),
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

    async fn send(&self, call: &Call) -> Result<(u16, Vec<u8>)> {
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
            req = match &call.body {
                Body::None => req,
                Body::Json(v) => req.header("Content-Type", "application/json").body(v.to_string()),
                Body::MergePatch(v) => req
                    .header("Content-Type", "application/merge-patch+json")
                    .body(v.to_string()),
            };
            let can_retry = call.idempotent && attempt + 1 < self.retry.max_attempts;
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = resp.bytes().await;
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    match body {
                        Ok(b) if status.is_success() => return Ok((status.as_u16(), b.to_vec())),
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
            409 => ConfigHubError::Conflict {
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

    async fn json<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let (_, body) = self.send(&call).await?;
        serde_json::from_slice(&body).map_err(|e| ConfigHubError::Decode {
            route: call.route.to_string(),
            entity: call.entity.clone(),
            reason: e.to_string(),
        })
    }

    async fn json_with_status<T: DeserializeOwned>(&self, call: Call) -> Result<(u16, T)> {
        let (status, body) = self.send(&call).await?;
        let v = serde_json::from_slice(&body).map_err(|e| ConfigHubError::Decode {
            route: call.route.to_string(),
            entity: call.entity.clone(),
            reason: e.to_string(),
        })?;
        Ok((status, v))
    }

    async fn list_wrapped<T: DeserializeOwned>(&self, call: Call, key: &str) -> Result<Vec<T>> {
        let items: Vec<MaybeWrapped<T>> = self.json(call).await?;
        Ok(items.into_iter().filter_map(|i| i.into_inner(key)).collect())
    }

    // --------------------------------------------------------------------------------------------
    // spaces

    /// `GET /space` (optionally with a where-clause).
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn list_spaces(&self, r#where: Option<&str>) -> Result<Vec<ExtendedSpace>> {
        let mut call = Call::new(Method::GET, "GET /space", "/space".into(), "spaces");
        if let Some(w) = r#where {
            validate_where(w)?;
            call = call.query("where", w);
        }
        self.json(call).await
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
        if let Some(mut s) = self.space_by_slug(slug).await? {
            let missing: Labels = labels
                .iter()
                .filter(|(k, v)| s.labels.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if missing.is_empty() {
                return Ok((s, Ensured::Unchanged));
            }
            let patch = serde_json::json!({"Labels": missing});
            s = self
                .json(
                    Call::new(
                        Method::PATCH,
                        "PATCH /space/{space_id}",
                        format!("/space/{}", s.space_id),
                        format!("space {slug}"),
                    )
                    .merge_patch(patch),
                )
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

    /// `GET /space/{space_id}/unit`.
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
        self.json(self.unit_query(call, q)?).await
    }

    /// `GET /unit`: units across spaces (scope with `SpaceID = '...'` in the where-clause).
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn list_all_units(&self, q: &UnitQuery) -> Result<Vec<ExtendedUnit>> {
        let call = Call::new(Method::GET, "GET /unit", "/unit".into(), "units");
        self.json(self.unit_query(call, q)?).await
    }

    fn unit_query(&self, call: Call, q: &UnitQuery) -> Result<Call> {
        if let Some(w) = &q.r#where {
            validate_where(w)?;
        }
        Ok(call
            .query_opt("where", q.r#where.as_ref())
            .query_opt("filter", q.filter.as_ref())
            .query_opt("select", q.select.as_ref())
            .query_opt("include", q.include.as_ref()))
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

    /// `POST /space/{space_id}/unit`. Not retried.
    ///
    /// # Errors
    /// API and transport errors (409 when the slug exists).
    pub async fn create_unit(&self, space_id: &str, unit: &Unit) -> Result<Unit> {
        let body = serde_json::to_value(unit).unwrap_or(Value::Null);
        self.json(
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

    /// Clones an upstream unit into a space (`POST .../unit?upstream_space_id=&upstream_unit_id=`, no
    /// data: it comes from upstream). Not retried.
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
        self.json(
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

    /// `PUT /space/{space_id}/unit/{unit_id}`: the whole unit, with the `Version` that was read (a
    /// stale one gives [`ConfigHubError::Conflict`]). Set `LastChangeDescription` to describe the change.
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
        self.json(call).await
    }

    /// `PATCH /space/{space_id}/unit/{unit_id}` with a merge patch of unit fields (`{"Labels": {"x":
    /// null}}` deletes a label); `null` is a valid body with `upgrade`.
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
        self.json(call).await
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
    /// with `upgrade` each takes its upstream's head. 200 or 207 with per-unit errors.
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn bulk_patch_units(
        &self,
        r#where: &str,
        patch: Value,
        opts: &UpdateOptions,
    ) -> Result<BulkResult<UnitCreateOrUpdateResponse>> {
        validate_where(r#where)?;
        let mut call = Call::new(
            Method::PATCH,
            "PATCH /unit",
            "/unit".into(),
            format!("units where {where}"),
        )
        .merge_patch(patch);
        call.query = opts.query();
        call.query.push(("where", r#where.to_string()));
        let (status, items) = self.json_with_status(call).await?;
        Ok(BulkResult { status, items })
    }

    /// `POST /unit/apply?where=...`: queues an apply of every unit the clause selects. Not retried.
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn bulk_apply(&self, r#where: &str, dry_run: bool) -> Result<BulkResult<UnitActionResponse>> {
        validate_where(r#where)?;
        let mut call = Call::new(
            Method::POST,
            "POST /unit/apply",
            "/unit/apply".into(),
            format!("units where {where}"),
        )
        .query("where", r#where)
        .retry_if(dry_run);
        if dry_run {
            call = call.query("dry_run", "true");
        }
        let (status, items) = self.json_with_status(call).await?;
        Ok(BulkResult { status, items })
    }

    /// `POST /space/{space_id}/unit/{unit_id}/apply`: queues an apply (asynchronous; see
    /// [`ConfigHubClient::wait_for_operation`]). Not retried.
    ///
    /// # Errors
    /// API and transport errors (400 when the unit has no target).
    pub async fn apply_unit(&self, space_id: &str, unit_id: &str, dry_run: bool) -> Result<QueuedOperation> {
        self.unit_action(
            "apply",
            "POST /space/{space_id}/unit/{unit_id}/apply",
            space_id,
            unit_id,
            dry_run,
        )
        .await
    }

    /// `POST /space/{space_id}/unit/{unit_id}/refresh`: queues a refresh (live into the unit: "cluster
    /// wins"). Not retried.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn refresh_unit(
        &self,
        space_id: &str,
        unit_id: &str,
        dry_run: bool,
    ) -> Result<QueuedOperation> {
        self.unit_action(
            "refresh",
            "POST /space/{space_id}/unit/{unit_id}/refresh",
            space_id,
            unit_id,
            dry_run,
        )
        .await
    }

    async fn unit_action(
        &self,
        action: &str,
        route: &'static str,
        space_id: &str,
        unit_id: &str,
        dry_run: bool,
    ) -> Result<QueuedOperation> {
        let mut call = Call::new(
            Method::POST,
            route,
            format!("/space/{space_id}/unit/{unit_id}/{action}"),
            format!("unit {unit_id}"),
        );
        if dry_run {
            call = call.query("dry_run", "true");
        }
        self.json(call).await
    }

    /// `GET /space/{space_id}/unit/{unit_id}/unit_event`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn unit_events(
        &self,
        space_id: &str,
        unit_id: &str,
        r#where: Option<&str>,
    ) -> Result<Vec<UnitEvent>> {
        let mut call = Call::new(
            Method::GET,
            "GET /space/{space_id}/unit/{unit_id}/unit_event",
            format!("/space/{space_id}/unit/{unit_id}/unit_event"),
            format!("events of unit {unit_id}"),
        );
        if let Some(w) = r#where {
            validate_where(w)?;
            call = call.query("where", w);
        }
        self.list_wrapped(call, "UnitEvent").await
    }

    /// Polls a queued operation's unit events until it completes, fails or is canceled (200 ms back-off,
    /// doubling to 6.4 s), as `cub unit apply --wait` does.
    ///
    /// # Errors
    /// [`ConfigHubError::Timeout`] after `timeout`; [`ConfigHubError::OperationFailed`] when it ends
    /// badly; API and transport errors.
    pub async fn wait_for_operation(&self, op: &QueuedOperation, timeout: Duration) -> Result<UnitEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        let what = format!(
            "{} of unit {} (operation {})",
            op.action, op.unit_id, op.queued_operation_id
        );
        let clause = format!("QueuedOperationID = {}", quote(&op.queued_operation_id));
        let mut delay = Duration::from_millis(200);
        let mut last = String::from("Queued");
        loop {
            let events = self.unit_events(&op.space_id, &op.unit_id, Some(&clause)).await?;
            if let Some(e) = events.iter().find(|e| e.is_terminal()).or_else(|| events.last()) {
                last.clone_from(&e.status);
                if e.is_terminal() {
                    if e.status == "Completed" {
                        return Ok(e.clone());
                    }
                    return Err(ConfigHubError::OperationFailed {
                        what,
                        status: e.status.clone(),
                        result: e.result.clone(),
                        message: e.message.clone(),
                    });
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ConfigHubError::Timeout {
                    what,
                    seconds: timeout.as_secs(),
                    last_status: last,
                });
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(Duration::from_millis(6400));
        }
    }

    /// `GET /space/{space_id}/unit/{unit_id}/revision`, oldest first.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn revisions(&self, space_id: &str, unit_id: &str) -> Result<Vec<Revision>> {
        let items: Vec<ExtendedRevision> = self
            .json(Call::new(
                Method::GET,
                "GET /space/{space_id}/unit/{unit_id}/revision",
                format!("/space/{space_id}/unit/{unit_id}/revision"),
                format!("revisions of unit {unit_id}"),
            ))
            .await?;
        let mut revs: Vec<Revision> = items.into_iter().map(|r| r.revision).collect();
        revs.sort_by_key(|r| r.revision_num);
        Ok(revs)
    }

    /// `GET /space/{space_id}/unit/{unit_id}/live_state` (the raw live YAML), falling back to the older
    /// `/live-state` route when the newer one is not served. `None` when the unit has no live state.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn live_state(&self, space_id: &str, unit_id: &str) -> Result<Option<Vec<u8>>> {
        for (route, seg) in [
            ("GET /space/{space_id}/unit/{unit_id}/live_state", "live_state"),
            ("GET /space/{space_id}/unit/{unit_id}/live-state", "live-state"),
        ] {
            let call = Call::new(
                Method::GET,
                route,
                format!("/space/{space_id}/unit/{unit_id}/{seg}"),
                format!("live state of unit {unit_id}"),
            );
            match self.send(&call).await {
                Ok((_, body)) => return Ok(Some(body)),
                Err(ConfigHubError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    // --------------------------------------------------------------------------------------------
    // filters, change sets, targets, functions

    /// `GET /space/{space_id}/filter`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn list_filters(&self, space_id: &str) -> Result<Vec<Filter>> {
        self.list_wrapped(
            Call::new(
                Method::GET,
                "GET /space/{space_id}/filter",
                format!("/space/{space_id}/filter"),
                format!("filters of space {space_id}"),
            ),
            "Filter",
        )
        .await
    }

    /// `POST /space/{space_id}/filter`. Not retried.
    ///
    /// # Errors
    /// API and transport errors; an invalid where-clause.
    pub async fn create_filter(&self, space_id: &str, filter: &Filter) -> Result<Filter> {
        validate_where(&filter.r#where)?;
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
        validate_where(r#where)?;
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
        let want = Filter {
            slug: slug.to_string(),
            display_name: slug.to_string(),
            from: from.to_string(),
            r#where: r#where.to_string(),
            ..Filter::default()
        };
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

    /// `GET /space/{space_id}/target`.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn list_targets(&self, space_id: &str) -> Result<Vec<Target>> {
        self.list_wrapped(
            Call::new(
                Method::GET,
                "GET /space/{space_id}/target",
                format!("/space/{space_id}/target"),
                format!("targets of space {space_id}"),
            ),
            "Target",
        )
        .await
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
        validate_where(r#where)?;
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

    /// Units of `space_id` whose upstream has moved on (`UpstreamRevisionNum < UpstreamUnit.HeadRevisionNum`).
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn stale_downstream_units(&self, space_id: &str) -> Result<Vec<Unit>> {
        let w = and([
            format!("SpaceID = {}", quote(space_id)),
            "UpstreamRevisionNum > 0".into(),
            "UpstreamRevisionNum < UpstreamUnit.HeadRevisionNum".into(),
        ]);
        let units = self
            .list_all_units(&UnitQuery::with_where(w).include("UpstreamUnitID"))
            .await?;
        Ok(units.into_iter().map(|u| u.unit).collect())
    }
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
    fn bad_urls_are_refused() {
        assert!(ConfigHubClient::new(ClientConfig::default().base_url("ftp://x/api")).is_err());
        assert!(ConfigHubClient::new(ClientConfig::default().base_url("not a url")).is_err());
        assert!(ConfigHubClient::new(ClientConfig::default()).is_ok());
    }
}
