//! A thin client for the Anthropic Messages API (`POST /v1/messages`, `GET /v1/models`,
//! `GET /v1/models/{id}`) on the workspace's reqwest: typed requests and responses, the documented error
//! shapes, and retries on 408/409/429/5xx/529 that honour `retry-after` and `x-should-retry`.
//!
//! What a retry costs decides when one is made: a generation that timed out may still run and be
//! billed, so a `POST /v1/messages` whose answer did not arrive in time is not sent again; a
//! `retry-after` longer than the longest wait allowed ends the call rather than being shortened; an
//! invalid `retry-after` (negative, not a number) is ignored.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The public API.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API version header value.
pub const API_VERSION: &str = "2023-06-01";
/// The default model: current Claude Sonnet.
pub const DEFAULT_MODEL: &str = "claude-sonnet-5-5";

/// A failure talking to the API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaudeError {
    /// The API answered with an error.
    #[error("Anthropic API HTTP {status} {kind}: {message}{}", request_id.as_ref().map(|r| format!(" (request {r})")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// `error.type` (`rate_limit_error`, `overloaded_error`, ...).
        kind: String,
        /// `error.message`.
        message: String,
        /// `request_id`.
        request_id: Option<String>,
    },
    /// The request did not complete.
    #[error("Anthropic API: {0}")]
    Transport(String),
    /// The response was not the documented JSON.
    #[error("Anthropic API: unexpected response: {0}")]
    Decode(String),
    /// The model declined (`stop_reason: refusal`) or stopped before finishing (`max_tokens`).
    #[error("the model stopped with {0}")]
    Stopped(String),
    /// The answer had no text block.
    #[error("the answer has no text")]
    NoText,
    /// The configured model is not offered.
    #[error("model {model} is not available to this key; available: {available}")]
    UnknownModel {
        /// The configured model.
        model: String,
        /// What the API lists.
        available: String,
    },
}

impl ClaudeError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClaudeError::Transport(_) => true,
            ClaudeError::Api { status, .. } => matches!(status, 408 | 409 | 429) || *status >= 500,
            _ => false,
        }
    }
}

/// A system prompt block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemBlock {
    /// Always `text`.
    pub r#type: String,
    /// The text.
    pub text: String,
    /// `{"type": "ephemeral"}` to cache the prompt up to here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// A conversation message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// `POST /v1/messages` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// Model id.
    pub model: String,
    /// Output limit.
    pub max_tokens: u32,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<SystemBlock>,
    /// Messages.
    pub messages: Vec<Message>,
    /// `{"format": {"type": "json_schema", "schema": ...}}` for structured output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<Value>,
    /// Tools (unused here; kept so new API fields need no crate change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
    /// Request metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// A content block of an answer. Unknown block types are kept as [`ContentBlock::Other`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text (structured output arrives here).
    Text {
        /// The text.
        text: String,
    },
    /// The model's thinking.
    Thinking {
        /// The thinking.
        #[serde(default)]
        thinking: String,
    },
    /// Thinking the API does not show.
    RedactedThinking {
        /// Opaque.
        #[serde(default)]
        data: String,
    },
    /// Anything else (tool use, server tools, future types).
    #[serde(other)]
    Other,
}

/// Token counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Tokens written to the prompt cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    /// Tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

/// `POST /v1/messages` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    /// `msg_...`.
    pub id: String,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// Blocks, in order.
    pub content: Vec<ContentBlock>,
    /// `end_turn`, `max_tokens`, `refusal`, ...
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Usage.
    #[serde(default)]
    pub usage: Usage,
}

impl MessagesResponse {
    /// The text blocks joined: where structured output is.
    ///
    /// # Errors
    /// [`ClaudeError::Stopped`] for a refusal or a cut-off answer; [`ClaudeError::NoText`].
    pub fn text(&self) -> Result<String, ClaudeError> {
        if let Some(r @ ("refusal" | "max_tokens" | "model_context_window_exceeded")) =
            self.stop_reason.as_deref()
        {
            return Err(ClaudeError::Stopped(r.to_string()));
        }
        let text: String = self
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        if text.trim().is_empty() {
            Err(ClaudeError::NoText)
        } else {
            Ok(text)
        }
    }
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
}

#[derive(Debug, Deserialize)]
struct ModelList {
    data: Vec<ModelInfo>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Option<Value>,
}

/// Client settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Base URL (default [`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// The API key.
    pub api_key: String,
    /// Per-request timeout (default 600 s, as the official SDKs: a full answer with adaptive thinking
    /// can take minutes).
    pub timeout: Duration,
    /// Attempts per call, the first included (default 3).
    pub max_attempts: u32,
    /// First back-off (default 500 ms), doubled each time, with jitter.
    pub base_delay: Duration,
    /// Longest wait between attempts (default 30 s); a `retry-after` longer than this ends the call.
    pub max_delay: Duration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Settings for a key (surrounding white space, such as the newline of a key read from a file or
    /// a Secret, is dropped).
    pub fn new(api_key: impl Into<String>) -> Self {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.into(),
            api_key: api_key.into().trim().to_string(),
            timeout: Duration::from_secs(600),
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
    /// Sets the base URL.
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }
    /// Sets the timeout.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// Sets the retries.
    #[must_use]
    pub fn retries(mut self, attempts: u32, base_delay: Duration) -> Self {
        self.max_attempts = attempts.max(1);
        self.base_delay = base_delay;
        self
    }
}

/// The Messages API client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.config).finish()
    }
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 4];
    let r = if getrandom::fill(&mut b).is_ok() {
        u32::from_le_bytes(b)
    } else {
        0
    };
    d / 2 + (d / 2).mul_f64(f64::from(r) / f64::from(u32::MAX))
}

impl Client {
    /// A client.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(config: ClientConfig) -> Result<Self, ClaudeError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(format!("drift-detector/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClaudeError::Transport(format!("building the HTTP client: {e}")))?;
        Ok(Client { http, config })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// Sends with retries. `generation` marks a request whose work is billed even when its answer is
    /// lost (`POST /v1/messages`): a timeout of it is not retried.
    async fn send(
        &self,
        generation: bool,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, ClaudeError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let req = build()
                .header("x-api-key", self.config.api_key.trim())
                .header("anthropic-version", API_VERSION);
            let mut should_retry: Option<bool> = None;
            let result: Result<Vec<u8>, (ClaudeError, Option<Duration>, bool)> = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after =
                        parse_retry_after(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()));
                    should_retry = match resp
                        .headers()
                        .get("x-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(str::trim)
                    {
                        Some("true") => Some(true),
                        Some("false") => Some(false),
                        _ => None,
                    };
                    let header_request_id = resp
                        .headers()
                        .get("request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    match resp.bytes().await {
                        Ok(body) if (200..300).contains(&status) => Ok(body.to_vec()),
                        Ok(body) => {
                            let (kind, message, request_id, no_retry) =
                                match serde_json::from_slice::<ErrorBody>(&body) {
                                    Ok(e) => {
                                        let spend = e
                                            .error
                                            .details
                                            .as_ref()
                                            .and_then(|d| d.get("error_code"))
                                            .and_then(Value::as_str)
                                            == Some("enforced_spend_limit_reached");
                                        (
                                            e.error.kind,
                                            e.error.message,
                                            e.request_id.or(header_request_id),
                                            spend,
                                        )
                                    }
                                    // e.g. a 413 from the proxy in front of the API: not JSON.
                                    Err(_) => (
                                        "http_error".into(),
                                        String::from_utf8_lossy(&body).chars().take(200).collect(),
                                        header_request_id,
                                        false,
                                    ),
                                };
                            let e = ClaudeError::Api {
                                status,
                                kind,
                                message,
                                request_id,
                            };
                            if no_retry {
                                Err((e, None, false))
                            } else {
                                Err((e, retry_after, true))
                            }
                        }
                        Err(e) => Err((
                            ClaudeError::Transport(format!("reading the answer: {e}")),
                            None,
                            true,
                        )),
                    }
                }
                Err(e) if e.is_timeout() && generation => Err((
                    ClaudeError::Transport(format!(
                        "no answer within {} s; not sent again (the generation may still run and be billed)",
                        self.config.timeout.as_secs()
                    )),
                    None,
                    false,
                )),
                Err(e) => Err((
                    ClaudeError::Transport(if e.is_timeout() {
                        "timed out".to_string()
                    } else {
                        e.to_string()
                    }),
                    None,
                    true,
                )),
            };
            let (e, retry_after, may_retry) = match result {
                Ok(body) => return Ok(body),
                Err(x) => x,
            };
            // The API's own word on retrying wins over the status code's.
            let retry = match should_retry {
                Some(s) => may_retry && s,
                None => may_retry && e.is_retryable(),
            };
            if !retry || attempt >= self.config.max_attempts {
                return Err(e);
            }
            if let Some(ra) = retry_after
                && ra > self.config.max_delay
            {
                return Err(ClaudeError::Transport(format!(
                    "{e}; the API asks to wait {} s before retrying, longer than the {} s allowed",
                    ra.as_secs(),
                    self.config.max_delay.as_secs()
                )));
            }
            let backoff = jitter(self.config.base_delay.saturating_mul(1 << (attempt - 1).min(10)));
            let wait = retry_after.unwrap_or(backoff).min(self.config.max_delay);
            tracing::debug!(error = %e, attempt, ?wait, "retrying the Anthropic API");
            tokio::time::sleep(wait).await;
        }
    }

    /// `POST /v1/messages`.
    ///
    /// # Errors
    /// API, transport and decoding errors, after the retries.
    pub async fn messages(&self, req: &MessagesRequest) -> Result<MessagesResponse, ClaudeError> {
        let body = serde_json::to_vec(req).map_err(|e| ClaudeError::Decode(e.to_string()))?;
        let url = self.url("/v1/messages");
        let bytes = self
            .send(true, || {
                self.http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ClaudeError::Decode(e.to_string()))
    }

    /// `GET /v1/models`, every page.
    ///
    /// # Errors
    /// API and transport errors.
    pub async fn models(&self) -> Result<Vec<ModelInfo>, ClaudeError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{}?limit=100", self.url("/v1/models"));
            if let Some(a) = &after {
                url.push_str(&format!("&after_id={a}"));
            }
            let bytes = self.send(false, || self.http.get(&url)).await?;
            let page: ModelList =
                serde_json::from_slice(&bytes).map_err(|e| ClaudeError::Decode(e.to_string()))?;
            out.extend(page.data);
            match (page.has_more, page.last_id) {
                (true, Some(l)) => after = Some(l),
                _ => return Ok(out),
            }
        }
    }

    /// `GET /v1/models/{model_id}`: the model an id or an alias (`claude-haiku-4-5`) names.
    ///
    /// # Errors
    /// API and transport errors (404 for an unknown model).
    pub async fn model(&self, model: &str) -> Result<ModelInfo, ClaudeError> {
        let url = self.url(&format!("/v1/models/{}", urlencode(model)));
        let bytes = self.send(false, || self.http.get(&url)).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClaudeError::Decode(e.to_string()))
    }

    /// Checks that the model (an id or an alias) is offered to this key, asking for it by name; when it
    /// is not, the error lists what is.
    ///
    /// # Errors
    /// [`ClaudeError::UnknownModel`], or the API's error.
    pub async fn check_model(&self, model: &str) -> Result<ModelInfo, ClaudeError> {
        match self.model(model).await {
            Ok(m) => Ok(m),
            Err(ClaudeError::Api { status: 404, .. }) => {
                let available = self
                    .models()
                    .await
                    .map(|ms| ms.into_iter().map(|m| m.id).collect::<Vec<_>>().join(", "))
                    .unwrap_or_else(|e| format!("(the list could not be read: {e})"));
                Err(ClaudeError::UnknownModel {
                    model: model.to_string(),
                    available,
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// A `retry-after` value as a wait: seconds, possibly fractional; anything else (negative, not a
/// number, infinite, a date) is ignored.
fn parse_retry_after(v: Option<&str>) -> Option<Duration> {
    let secs = v?.trim().parse::<f64>().ok()?;
    if secs.is_finite() && secs >= 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

/// Percent-encodes a path segment.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_with_thinking_and_unknown_blocks_parse() {
        let r: MessagesResponse = serde_json::from_value(json!({"id": "msg_1", "type": "message", "role": "assistant",
            "model": "claude-sonnet-5-5", "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 7},
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "x"}, {"type": "redacted_thinking", "data": "zz"},
                        {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}, {"type": "text", "text": "{\"a\":1}"}]}))
        .expect("parses");
        assert_eq!(r.text().expect("text"), "{\"a\":1}");
        assert_eq!(r.content[2], ContentBlock::Other);
        let refused: MessagesResponse =
            serde_json::from_value(json!({"id": "m", "content": [], "stop_reason": "refusal"}))
                .expect("parses");
        assert!(matches!(refused.text(), Err(ClaudeError::Stopped(s)) if s == "refusal"));
    }

    #[test]
    fn retry_after_values_that_are_not_a_wait_are_ignored() {
        assert_eq!(parse_retry_after(Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(Some(" 0.5 ")), Some(Duration::from_millis(500)));
        for bad in ["-1", "NaN", "inf", "1e400", "Wed, 21 Oct 2026 07:28:00 GMT", ""] {
            assert_eq!(parse_retry_after(Some(bad)), None, "{bad}");
        }
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn keys_are_trimmed() {
        assert_eq!(ClientConfig::new("sk-ant-x\n").api_key, "sk-ant-x");
    }

    #[test]
    fn the_key_is_not_in_debug_output() {
        assert!(!format!("{:?}", ClientConfig::new("sk-ant-secret")).contains("sk-ant"));
    }
}
