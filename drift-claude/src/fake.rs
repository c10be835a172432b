//! An in-process fake of the Anthropic Messages API on 127.0.0.1 (`POST /v1/messages`,
//! `GET /v1/models`) with the documented request checks, answer shapes (thinking before text) and
//! error bodies (`{"type":"error","error":{"type","message"},"request_id"}`), for tests and demos.
//!
//! By default it answers every request with a valid analysis of the drifts it was sent (risk `low`,
//! the first allowed action). [`FakeClaude::script`] queues exact answers instead: an analysis JSON,
//! an error status with `retry-after` and `x-should-retry`, a raw body, or an answer that takes its
//! time. Every request body is kept for inspection.
//!
//! Like the real API: thinking blocks of the 5.x models come first and carry no readable text by
//! default; `GET /v1/models` lists dated ids while `GET /v1/models/{id}` also resolves aliases
//! (`claude-haiku-4-5` → `claude-haiku-4-5-20251001`); a spend-limit 429 has no `retry-after`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// A scripted answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Scripted {
    /// A message whose text block is this JSON (after a thinking block).
    Analysis(Value),
    /// A message whose text block is this text.
    Text(String),
    /// An API error: status, `error.type`, optional `retry-after` seconds.
    Error(u16, &'static str, Option<u64>),
    /// A 429 for a spent budget (`error.details.error_code = enforced_spend_limit_reached`).
    SpendLimit,
    /// An API error with raw headers: status, `error.type`, `retry-after` as sent (any text),
    /// `x-should-retry`.
    ErrorWith {
        /// HTTP status.
        status: u16,
        /// `error.type`.
        kind: &'static str,
        /// `retry-after`, verbatim.
        retry_after: Option<String>,
        /// `x-should-retry`.
        should_retry: Option<bool>,
    },
    /// A good analysis that arrives only after this long (a long generation).
    Slow(std::time::Duration),
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Scripted>,
    requests: Vec<Value>,
    model_list_calls: usize,
}

struct Shared {
    key: String,
    models: Vec<String>,
    inner: Mutex<Inner>,
}

/// A running fake. Dropping it stops the server.
pub struct FakeClaude {
    url: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for FakeClaude {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeClaude")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The key the fake accepts.
pub const FAKE_KEY: &str = "sk-ant-fake-key";

impl FakeClaude {
    /// Starts the fake; it accepts [`FAKE_KEY`] and offers the current models.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start() -> std::io::Result<FakeClaude> {
        let shared = Arc::new(Shared {
            key: FAKE_KEY.into(),
            models: [
                "claude-opus-5-5",
                "claude-sonnet-5-5",
                "claude-haiku-5-5",
                "claude-haiku-4-5-20251001",
            ]
            .map(String::from)
            .to_vec(),
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/models", get(models))
            .route("/v1/models/{id}", get(model_by_id))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(FakeClaude {
            url,
            shared,
            shutdown: Some(tx),
        })
    }

    /// The base URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Queues answers for the next requests, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.lock().script.extend(answers);
    }

    /// Every `POST /v1/messages` body received.
    pub fn requests(&self) -> Vec<Value> {
        self.lock().requests.clone()
    }

    /// How many times `GET /v1/models` was called.
    pub fn model_list_calls(&self) -> usize {
        self.lock().model_list_calls
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for FakeClaude {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn error(
    status: u16,
    kind: &str,
    message: &str,
    retry_after: Option<u64>,
    details: Option<Value>,
) -> Response {
    let mut body =
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake_error"});
    if let Some(d) = details {
        body["error"]["details"] = d;
    }
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from(s));
    }
    r.headers_mut().insert(
        "request-id",
        axum::http::HeaderValue::from_static("req_fake_error"),
    );
    r
}

fn message(model: &str, text: String) -> Response {
    let body = json!({
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": [
            {"type": "thinking", "thinking": "", "signature": "EqQBCgIYAhIM"},
            {"type": "text", "text": text}
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 1200, "output_tokens": 300, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 900}
    });
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert("request-id", axum::http::HeaderValue::from_static("req_fake"));
    r
}

fn check_auth(sh: &Shared, headers: &HeaderMap) -> Option<Response> {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(sh.key.as_str()) {
        return Some(error(
            401,
            "authentication_error",
            "invalid x-api-key",
            None,
            None,
        ));
    }
    if headers.get("anthropic-version").is_none() {
        return Some(error(
            400,
            "invalid_request_error",
            "anthropic-version header is required",
            None,
            None,
        ));
    }
    None
}

/// The default answer: a valid analysis of the drifts in the request.
fn analysis_for(req: &Value) -> Value {
    let text = req["messages"][0]["content"].as_str().unwrap_or_default();
    let data: Value = text
        .split_once('\n')
        .and_then(|(_, j)| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    let drifts = data["drifts"].as_array().cloned().unwrap_or_default();
    let risks: Vec<Value> = drifts
        .iter()
        .map(|d| json!({"driftId": d["driftId"], "availability": "low", "security": "low", "cost": "low", "note": "looks routine"}))
        .collect();
    let recs: Vec<Value> = drifts
        .iter()
        .map(|d| json!({"driftId": d["driftId"], "action": d["allowedActions"][0].as_str().unwrap_or("track"), "reason": "restore the reviewed state"}))
        .collect();
    json!({"summary": format!("{} drift(s) analysed.", drifts.len()), "risks": risks, "monthlyCostImpact": 0.0, "recommendations": recs})
}

async fn messages(State(sh): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = check_auth(&sh, &headers) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid_request_error", "the body is not JSON", None, None);
    };
    sh.inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .requests
        .push(req.clone());
    let model = req["model"].as_str().unwrap_or_default().to_string();
    if !sh.models.contains(&model) {
        return error(404, "not_found_error", &format!("model: {model}"), None, None);
    }
    if req.get("max_tokens").and_then(Value::as_u64).is_none() {
        return error(
            400,
            "invalid_request_error",
            "max_tokens: Field required",
            None,
            None,
        );
    }
    if req["messages"].as_array().is_none_or(Vec::is_empty) {
        return error(
            400,
            "invalid_request_error",
            "messages: at least one message is required",
            None,
            None,
        );
    }
    if matches!(req["tool_choice"]["type"].as_str(), Some("tool" | "any")) {
        return error(
            400,
            "invalid_request_error",
            "this model does not support a forced tool_choice; use output_config.format",
            None,
            None,
        );
    }
    let format = &req["output_config"]["format"];
    if format.get("type").is_some()
        && (format["type"] != "json_schema" || format["schema"]["additionalProperties"] != false)
    {
        return error(
            400,
            "invalid_request_error",
            "output_config.format: a json_schema with additionalProperties: false is required",
            None,
            None,
        );
    }
    let next = sh
        .inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .script
        .pop_front();
    match next {
        None => message(&model, analysis_for(&req).to_string()),
        Some(Scripted::Analysis(v)) => message(&model, v.to_string()),
        Some(Scripted::Text(t)) => message(&model, t),
        Some(Scripted::Error(status, kind, retry_after)) => {
            error(status, kind, "scripted error", retry_after, None)
        }
        Some(Scripted::SpendLimit) => error(
            429,
            "rate_limit_error",
            "spend limit reached",
            None,
            Some(json!({"error_code": "enforced_spend_limit_reached"})),
        ),
        Some(Scripted::ErrorWith {
            status,
            kind,
            retry_after,
            should_retry,
        }) => {
            let mut r = error(status, kind, "scripted error", None, None);
            if let Some(v) = retry_after.and_then(|v| axum::http::HeaderValue::from_str(&v).ok()) {
                r.headers_mut().insert("retry-after", v);
            }
            if let Some(b) = should_retry {
                r.headers_mut().insert(
                    "x-should-retry",
                    axum::http::HeaderValue::from_static(if b { "true" } else { "false" }),
                );
            }
            r
        }
        Some(Scripted::Slow(d)) => {
            tokio::time::sleep(d).await;
            message(&model, analysis_for(&req).to_string())
        }
    }
}

/// `GET /v1/models/{id}`: an id or an alias (a dated id without its date).
async fn model_by_id(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if let Some(r) = check_auth(&sh, &headers) {
        return r;
    }
    let found = sh.models.iter().find(|m| {
        *m == &id
            || m.strip_prefix(id.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|date| date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()))
    });
    match found {
        Some(m) => axum::Json(
            json!({"type": "model", "id": m, "display_name": m, "created_at": "2026-10-01T00:00:00Z"}),
        )
        .into_response(),
        None => error(404, "not_found_error", &format!("model: {id}"), None, None),
    }
}

async fn models(State(sh): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = check_auth(&sh, &headers) {
        return r;
    }
    sh.inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .model_list_calls += 1;
    let data: Vec<Value> = sh
        .models
        .iter()
        .map(|m| json!({"type": "model", "id": m, "display_name": m, "created_at": "2026-10-01T00:00:00Z"}))
        .collect();
    axum::Json(
        json!({"data": data, "has_more": false, "first_id": sh.models.first(), "last_id": sh.models.last()}),
    )
    .into_response()
}
