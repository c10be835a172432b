//! The HTTP side, on one port: `/health`, `/ready`, `/metrics`, the dashboard at `/`, and the JSON API
//! (`/api/drifts`, `/api/history`, `/api/events` as server-sent events, `POST /api/drifts/{id}/fix`,
//! `/approve`, `/ignore`). Reads are open; every change needs `Authorization: Bearer <token>`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use drift_core::ports::{DriftLog, HistoryQuery};
use futures::Stream;
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
}

type S = State<Arc<App>>;

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/drifts", get(drifts))
        .route("/api/history", get(history))
        .route("/api/events", get(events))
        .route("/api/drifts/{id}/{action}", post(act))
        .with_state(app)
}

/// Serves until `stop` fires.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router(app))
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "the HTTP server stopped");
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
    let q = HistoryQuery {
        environment: p.environment,
        open_only: p.open_only,
        limit: None,
        ..HistoryQuery::default()
    };
    let records = match app.log.records(&q).await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": e.to_string()})),
            )
                .into_response();
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
    axum::Json(json!({"records": rows, "total": records.len(), "perDay": per_day, "recurring": recurring}))
        .into_response()
}

async fn events(State(app): S) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = app.engine.ui.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let data = match rx.recv().await {
            Ok(ev) => serde_json::to_string(&ev).unwrap_or_default(),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                json!({"type": "lagged", "missed": n}).to_string()
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(Event::default().event("update").data(data)), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn authorized(app: &App, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
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
