//! The HTTP side, on one port: `/health`, `/ready`, `/metrics`, the dashboard at `/`, and the JSON API
//! (`/api/drifts`, `/api/history`, `/api/events` as server-sent events, `POST /api/drifts/{id}/fix`,
//! `/approve`, `/ignore`). Every change needs `Authorization: Bearer <token>`; so do the API's reads
//! when the port is bound beyond loopback (`/health`, `/ready`, `/metrics` and the page stay open).
//!
//! It holds under hostile clients ([`Limits`]): a client has 5 s to send its request headers and 30 s
//! for the rest of a request; at most 512 connections and 32 event streams are served at once (more
//! get a 503); request bodies are capped. On shutdown the event streams end, the server waits at most
//! 5 s for connections to finish and drops the rest.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use drift_core::ports::{DriftLog, HistoryQuery};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::Handle;

const DASHBOARD: &str = include_str!("dashboard.html");

/// What the handlers share.
pub(crate) struct App {
    pub engine: Arc<Handle>,
    pub log: Arc<dyn DriftLog>,
    pub token: String,
    /// Shown on the dashboard (`sandbox cluster + in-process ConfigHub`, `cluster ... via ConfigHub ...`).
    pub mode: String,
    /// Whether the API's reads need the token too (the port is bound beyond loopback).
    pub private_reads: bool,
    pub limits: Limits,
    /// Cancelled at shutdown: ends the event streams.
    pub closing: tokio_util::sync::CancellationToken,
    streams: AtomicUsize,
    /// `/api/history` answers by query, kept for [`HISTORY_TTL`]: however many clients poll, the
    /// history is read at most once per query per TTL, one read at a time.
    history_cache: TtlCache,
}

/// Answers by key, each computed at most once per TTL, one computation at a time.
#[derive(Default)]
pub(crate) struct TtlCache {
    inner: tokio::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Value)>>,
}

impl TtlCache {
    /// The cached answer for `key` if younger than `ttl`, else `compute`'s (cached when it is `Ok`).
    /// Callers arriving during a computation wait for it and get its answer.
    pub(crate) async fn get_or_compute<E, F, Fut>(
        &self,
        key: String,
        ttl: std::time::Duration,
        compute: F,
    ) -> Result<Value, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Value, E>>,
    {
        let mut cache = self.inner.lock().await;
        if let Some((at, v)) = cache.get(&key)
            && at.elapsed() < ttl
        {
            return Ok(v.clone());
        }
        cache.retain(|_, (at, _)| at.elapsed() < ttl);
        let v = compute().await?;
        cache.insert(key, (std::time::Instant::now(), v.clone()));
        Ok(v)
    }
}

/// How long an `/api/history` answer is reused.
const HISTORY_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl App {
    pub(crate) fn new(engine: Arc<Handle>, log: Arc<dyn DriftLog>, token: String, mode: String) -> App {
        App {
            engine,
            log,
            token,
            mode,
            private_reads: false,
            limits: Limits::default(),
            closing: tokio_util::sync::CancellationToken::new(),
            streams: AtomicUsize::new(0),
            history_cache: TtlCache::default(),
        }
    }

    /// Reads need the token unless the address is loopback.
    #[must_use]
    pub(crate) fn bound_to(mut self, addr: std::net::SocketAddr) -> App {
        self.private_reads = !addr.ip().is_loopback();
        self
    }

    #[must_use]
    pub(crate) fn limits(mut self, l: Limits) -> App {
        self.limits = l;
        self
    }
}

/// What one client may take of the server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Time to send the request line and headers.
    pub header_read: Duration,
    /// Time for a whole request (event streams excepted).
    pub request: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub connections: usize,
    /// Event streams at once; more are answered 503.
    pub streams: usize,
    /// Request body bytes.
    pub body: usize,
    /// How long shutdown waits for connections.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read: Duration::from_secs(5),
            request: Duration::from_secs(30),
            connections: 512,
            streams: 32,
            body: 64 * 1024,
            drain: Duration::from_secs(5),
        }
    }
}

type S = State<Arc<App>>;

pub(crate) fn router(app: Arc<App>) -> Router {
    let request_timeout = app.limits.request;
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/drifts", get(drifts))
        .route("/api/history", get(history))
        .route("/api/drifts/{id}/{action}", post(act))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                match tokio::time::timeout(request_timeout, next.run(req)).await {
                    Ok(r) => r,
                    Err(_) => (StatusCode::REQUEST_TIMEOUT, "the request took too long").into_response(),
                }
            },
        ))
        // Event streams run as long as the client stays; they are bounded by count instead.
        .route("/api/events", get(events))
        .layer(axum::middleware::from_fn_with_state(app.clone(), read_gate))
        .layer(axum::extract::DefaultBodyLimit::max(app.limits.body))
        .with_state(app)
}

/// The API's reads need the token when the port is reachable from other hosts.
async fn read_gate(State(app): S, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if app.private_reads
        && req.method() == axum::http::Method::GET
        && req.uri().path().starts_with("/api/")
        && !authorized(&app, req.headers())
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(
                json!({"error": "this port is reachable from other hosts: reads need the bearer token too"}),
            ),
        )
            .into_response();
    }
    next.run(req).await
}

/// Serves until `stop` fires, within [`Limits`]; then ends the event streams, waits at most
/// `Limits::drain` for connections and drops what is left.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tokio::io::AsyncWriteExt as _;
    let limits = app.limits;
    let closing = app.closing.clone();
    let service = router(app);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            a = listener.accept() => a,
        };
        let (mut tcp, _) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, most likely: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = tcp
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\nretry-after: 1\r\n\r\n")
                    .await;
            });
            continue;
        };
        let svc = hyper_util::service::TowerToHyperService::new(service.clone());
        let closing = closing.clone();
        conns.spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .serve_connection(TokioIo::new(tcp), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = closing.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        // Reap finished connections as we go.
        while conns.try_join_next().is_some() {}
    }
    closing.cancel();
    if tokio::time::timeout(limits.drain, async { while conns.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!(
            left = conns.len(),
            "connections still open after the drain: dropped"
        );
        conns.abort_all();
    }
}

async fn dashboard(State(app): S) -> Response {
    let page = DASHBOARD.replace("{{MODE}}", &html_escape(&app.mode));
    ([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response()
}

pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn health(State(app): S) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let beat = app.engine.status.heartbeat.load(Ordering::Relaxed);
    let age = now.saturating_sub(beat);
    if beat > 0 && age < 30_000 {
        (
            StatusCode::OK,
            axum::Json(json!({"status": "ok", "lastTurnMsAgo": age})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "stalled", "lastTurnMsAgo": age})),
        )
            .into_response()
    }
}

async fn ready(State(app): S) -> Response {
    let ready = app.engine.status.ready.load(Ordering::Relaxed);
    let leader = app.engine.status.leader.load(Ordering::Relaxed);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(json!({"ready": ready, "leader": leader}))).into_response()
}

async fn metrics(State(app): S) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.engine.metrics.encode(),
    )
        .into_response()
}

async fn drifts(State(app): S) -> Response {
    match app.engine.snapshot().await {
        Some(s) => axum::Json(s).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "the pipeline has stopped").into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct HistoryParams {
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default, rename = "openOnly")]
    open_only: bool,
}

/// The history with its patterns: drifts per environment per day, and what drifts again and again.
async fn history(State(app): S, Query(p): Query<HistoryParams>) -> Response {
    let key = format!("{:?}|{}|{:?}", p.environment, p.open_only, p.limit);
    match app
        .history_cache
        .get_or_compute(key, HISTORY_TTL, || history_answer(&app, &p))
        .await
    {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

async fn history_answer(app: &App, p: &HistoryParams) -> Result<Value, Response> {
    let q = HistoryQuery {
        environment: p.environment.clone(),
        open_only: p.open_only,
        limit: None,
        ..HistoryQuery::default()
    };
    let records = match app.log.records(&q).await {
        Ok(r) => r,
        Err(e) => {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": e.to_string()})),
            )
                .into_response());
        }
    };
    let mut per_day: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut repeat: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for r in &records {
        for t in r
            .timeline
            .iter()
            .filter(|t| t.kind == drift_core::ports::DriftEventKind::Opened)
        {
            let day = drift_core::clock::rfc3339(t.at)
                .chars()
                .take(10)
                .collect::<String>();
            let env = r.environment.clone().unwrap_or_else(|| "-".into());
            *per_day.entry(day).or_default().entry(env).or_default() += 1;
            let e = repeat
                .entry((r.drift.key.to_string(), r.drift.path.readable()))
                .or_default();
            e.0 += 1;
        }
        let e = repeat
            .entry((r.drift.key.to_string(), r.drift.path.readable()))
            .or_default();
        e.1 += 1;
    }
    let mut recurring: Vec<Value> = repeat
        .into_iter()
        .filter(|(_, (opened, _))| *opened > 1)
        .map(|((resource, field), (opened, records))| json!({"resource": resource, "field": field, "opened": opened, "records": records}))
        .collect();
    recurring.sort_by(|a, b| b["opened"].as_u64().cmp(&a["opened"].as_u64()));
    let limit = p.limit.unwrap_or(200);
    let rows: Vec<Value> = records
        .iter()
        .take(limit)
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    Ok(json!({"records": rows, "total": records.len(), "perDay": per_day, "recurring": recurring}))
}

/// Counts an open event stream; the count drops with the stream.
struct StreamSlot(Arc<App>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn events(State(app): S) -> Response {
    let open = app.streams.fetch_add(1, Ordering::Relaxed);
    let slot = StreamSlot(app.clone());
    if open >= app.limits.streams {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            axum::Json(json!({"error": format!("{} event streams are open: the most this server serves", app.limits.streams)})),
        )
            .into_response();
    }
    let rx = app.engine.ui.subscribe();
    let closing = app.closing.clone();
    let stream = futures::stream::unfold((rx, slot, closing), |(mut rx, slot, closing)| async move {
        let got = tokio::select! {
            () = closing.cancelled() => return None,
            r = rx.recv() => r,
        };
        let data = match got {
            Ok(ev) => serde_json::to_string(&ev).unwrap_or_default(),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                json!({"type": "lagged", "missed": n}).to_string()
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((
            Ok::<_, Infallible>(Event::default().event("update").data(data)),
            (rx, slot, closing),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

fn authorized(app: &App, headers: &HeaderMap) -> bool {
    // The scheme is case-insensitive (RFC 9110 §11.1): `Bearer`, `bearer`, `BEARER`.
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
    else {
        return false;
    };
    // Constant-time comparison.
    let (a, b) = (given.as_bytes(), app.token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn act(State(app): S, Path((id, action)): Path<(String, String)>, headers: HeaderMap) -> Response {
    if !authorized(&app, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(json!({"error": "a bearer token is required to change anything"})),
        )
            .into_response();
    }
    let actor = headers.get("x-actor").and_then(|v| v.to_str().ok()).map_or_else(
        || "dashboard".to_string(),
        |a| format!("dashboard:{}", a.chars().take(40).collect::<String>()),
    );
    let result = match action.as_str() {
        "fix" | "approve" => app.engine.approve(&id, &actor).await,
        "ignore" => app.engine.ignore(&id, &actor).await,
        other => {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": format!("no action {other}: use fix, approve or ignore")})),
            )
                .into_response();
        }
    };
    match result {
        Ok(msg) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"ok": true, "message": msg})),
        )
            .into_response(),
        Err(e) if e.contains("no open drift") => {
            (StatusCode::NOT_FOUND, axum::Json(json!({"error": e}))).into_response()
        }
        Err(e) => (StatusCode::CONFLICT, axum::Json(json!({"error": e}))).into_response(),
    }
}

/// A random token (hex, 128 bits).
pub(crate) fn random_token() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b.copy_from_slice(&t.to_le_bytes()[..16]);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// However many clients poll the history at once, it is read once per TTL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_history_reads_share_one_computation() {
        let cache = Arc::new(TtlCache::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (cache, reads) = (cache.clone(), reads.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute("all".into(), std::time::Duration::from_secs(60), || async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, ()>(json!({"records": []}))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("task"), Ok(json!({"records": []})));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // A failed read is not cached.
        let failed = cache
            .get_or_compute("other".into(), std::time::Duration::from_secs(60), || async {
                Err::<Value, _>("down")
            })
            .await;
        assert_eq!(failed, Err("down"));
        let again = cache
            .get_or_compute("other".into(), std::time::Duration::from_secs(60), || async {
                Ok::<_, &str>(json!(1))
            })
            .await;
        assert_eq!(again, Ok(json!(1)));
        // Expired answers are computed again.
        let fresh = cache
            .get_or_compute("all".into(), std::time::Duration::ZERO, || async {
                Ok::<_, ()>(json!(2))
            })
            .await;
        assert_eq!(fresh, Ok(json!(2)));
    }
}
