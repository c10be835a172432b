//! [`Analyzer`] backed by Claude, with the deterministic analyzer behind it: a per-minute call budget,
//! a circuit breaker, and a fallback that always answers. The analysis says which analyzer made it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use drift_core::analysis::DeterministicAnalyzer;
use drift_core::ports::{Analysis, AnalysisItem, AnalysisRequest, Analyzer, PortError};
use serde_json::json;

use crate::api::{Client, ClientConfig, MessagesRequest, SystemBlock};
use crate::prompt::{self, PromptPolicy};
use crate::validate;

/// Analyzer settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaudeConfig {
    /// The API client settings (key, base URL, timeout, retries).
    pub client: ClientConfig,
    /// Model id (default [`crate::DEFAULT_MODEL`]).
    pub model: String,
    /// Output limit per request, thinking included (default 32,000: a batch of 50 drifts with adaptive
    /// thinking does not fit in 8,192).
    pub max_tokens: u32,
    /// What may be sent.
    pub prompt: PromptPolicy,
    /// Most requests per minute; beyond it the deterministic analyzer answers (default 20).
    pub calls_per_minute: usize,
    /// Consecutive failed requests that open the circuit (default 3).
    pub breaker_threshold: u32,
    /// How long the circuit stays open (default 60 s).
    pub breaker_cooldown: Duration,
    /// Cache the system prompt (default on).
    pub prompt_caching: bool,
}

impl ClaudeConfig {
    /// Settings for an API key.
    pub fn new(api_key: impl Into<String>) -> Self {
        ClaudeConfig {
            client: ClientConfig::new(api_key),
            model: crate::api::DEFAULT_MODEL.into(),
            max_tokens: 32_000,
            prompt: PromptPolicy::default(),
            calls_per_minute: 20,
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(60),
            prompt_caching: true,
        }
    }
    /// Sets the model.
    #[must_use]
    pub fn model(mut self, m: impl Into<String>) -> Self {
        self.model = m.into();
        self
    }
    /// Sets the client settings.
    #[must_use]
    pub fn client(mut self, c: ClientConfig) -> Self {
        self.client = c;
        self
    }
    /// Sets what may be sent.
    #[must_use]
    pub fn prompt(mut self, p: PromptPolicy) -> Self {
        self.prompt = p;
        self
    }
    /// Sets the call budget.
    #[must_use]
    pub fn calls_per_minute(mut self, n: usize) -> Self {
        self.calls_per_minute = n;
        self
    }
    /// Sets the circuit breaker.
    #[must_use]
    pub fn breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.breaker_threshold = threshold.max(1);
        self.breaker_cooldown = cooldown;
        self
    }
}

/// Counters (for metrics).
#[derive(Debug, Default)]
pub struct ClaudeStats {
    /// Requests sent (after retries, one per chunk).
    pub requests: AtomicU64,
    /// Requests that failed.
    pub failures: AtomicU64,
    /// Chunks answered by the deterministic analyzer instead.
    pub fallbacks: AtomicU64,
    /// Model proposals dropped by validation.
    pub dropped: AtomicU64,
    /// Input tokens read from the prompt cache.
    pub cached_input_tokens: AtomicU64,
}

#[derive(Debug, Default)]
struct Gate {
    calls: VecDeque<Instant>,
    failures: u32,
    open_until: Option<Instant>,
}

/// Claude, validated, with a deterministic fallback.
#[derive(Debug)]
pub struct ClaudeAnalyzer {
    client: Client,
    config: ClaudeConfig,
    name: String,
    gate: Mutex<Gate>,
    stats: ClaudeStats,
}

impl ClaudeAnalyzer {
    /// An analyzer. Nothing is sent until the first analysis (see [`ClaudeAnalyzer::check`]).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(config: ClaudeConfig) -> Result<Self, crate::ClaudeError> {
        let client = Client::new(config.client.clone())?;
        let name = format!("claude:{}", config.model);
        Ok(ClaudeAnalyzer {
            client,
            config,
            name,
            gate: Mutex::new(Gate::default()),
            stats: ClaudeStats::default(),
        })
    }

    /// Checks at start that the model (an id or an alias) is offered to the key (`GET /v1/models/{id}`).
    ///
    /// # Errors
    /// The model is not listed, the key is refused, or the API cannot be reached.
    pub async fn check(&self) -> Result<crate::api::ModelInfo, crate::ClaudeError> {
        self.client.check_model(&self.config.model).await
    }

    /// Counters.
    pub fn stats(&self) -> &ClaudeStats {
        &self.stats
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Why a request may not go out now, if so; otherwise counts it against the budget.
    fn admit(&self) -> Option<String> {
        let mut g = self.gate();
        let now = Instant::now();
        if let Some(until) = g.open_until {
            if now < until {
                return Some(format!("circuit open after {} failed requests", g.failures));
            }
            g.open_until = None; // half-open: let one through
        }
        while g
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            g.calls.pop_front();
        }
        if g.calls.len() >= self.config.calls_per_minute {
            return Some(format!(
                "the budget of {} requests a minute is used up",
                self.config.calls_per_minute
            ));
        }
        g.calls.push_back(now);
        None
    }

    fn record(&self, ok: bool) {
        let mut g = self.gate();
        if ok {
            g.failures = 0;
        } else {
            g.failures += 1;
            if g.failures >= self.config.breaker_threshold {
                g.open_until = Some(Instant::now() + self.config.breaker_cooldown);
            }
        }
    }

    fn request(&self, items: &[&AnalysisItem]) -> MessagesRequest {
        MessagesRequest {
            model: self.config.model.clone(),
            max_tokens: self.config.max_tokens,
            system: vec![SystemBlock {
                r#type: "text".into(),
                text: prompt::SYSTEM_PROMPT.into(),
                cache_control: self.config.prompt_caching.then(|| json!({"type": "ephemeral"})),
            }],
            messages: vec![crate::api::Message {
                role: "user".into(),
                content: prompt::user_message(items, &self.config.prompt),
            }],
            output_config: Some(
                json!({"format": {"type": "json_schema", "schema": prompt::output_schema()}}),
            ),
            tools: Vec::new(),
            metadata: None,
        }
    }

    async fn ask(&self, items: &[&AnalysisItem]) -> Result<validate::Validated, String> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .client
            .messages(&self.request(items))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(n) = resp.usage.cache_read_input_tokens {
            self.stats.cached_input_tokens.fetch_add(n, Ordering::Relaxed);
        }
        let text = resp.text().map_err(|e| e.to_string())?;
        validate::validate(&text, items)
    }

    /// Analyses, always answering: chunks the model cannot answer get the deterministic analysis.
    pub async fn analyze_now(&self, request: &AnalysisRequest) -> Analysis {
        let deterministic = DeterministicAnalyzer;
        let base = deterministic.analyze_now(request);
        if request.items.is_empty() {
            return base;
        }
        let mut risks = Vec::new();
        let mut recommendations = Vec::new();
        let mut summaries = Vec::new();
        let mut fallback_reasons = Vec::new();
        let mut answered = 0usize;
        for chunk in prompt::chunks(&request.items, &self.config.prompt) {
            let result = match self.admit() {
                Some(reason) => Err(reason),
                None => {
                    let r = self.ask(&chunk).await;
                    self.record(r.is_ok());
                    if r.is_err() {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    }
                    r
                }
            };
            match result {
                Ok(v) => {
                    answered += 1;
                    for n in &v.notes {
                        tracing::info!(model = %self.config.model, "analysis: {n}");
                    }
                    self.stats.dropped.fetch_add(
                        v.notes.iter().filter(|n| n.starts_with("dropped")).count() as u64,
                        Ordering::Relaxed,
                    );
                    summaries.push(v.summary);
                    risks.extend(v.risks);
                    recommendations.extend(v.recommendations);
                }
                Err(reason) => {
                    tracing::warn!(model = %self.config.model, %reason, "Claude did not answer; the deterministic analyzer does");
                    self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                    let owned: Vec<AnalysisItem> = chunk.iter().map(|i| (*i).clone()).collect();
                    let d = deterministic.analyze_now(&AnalysisRequest { items: owned });
                    risks.extend(d.risks);
                    recommendations.extend(d.recommendations);
                    fallback_reasons.push(reason);
                }
            }
        }
        let analyzer = match (answered, fallback_reasons.is_empty()) {
            (0, _) => format!(
                "deterministic (fallback: {})",
                fallback_reasons.first().cloned().unwrap_or_default()
            ),
            (_, true) => self.name.clone(),
            (_, false) => format!(
                "{} + deterministic for {} of the batches",
                self.name,
                fallback_reasons.len()
            ),
        };
        let summary = if answered == 0 {
            base.summary.clone()
        } else {
            summaries.join(" ")
        };
        Analysis {
            analyzer,
            summary,
            risks,
            monthly_cost_delta: base.monthly_cost_delta,
            recommendations,
        }
    }
}

#[async_trait]
impl Analyzer for ClaudeAnalyzer {
    fn name(&self) -> &str {
        &self.name
    }

    async fn analyze(&self, request: &AnalysisRequest) -> Result<Analysis, PortError> {
        Ok(self.analyze_now(request).await)
    }
}
