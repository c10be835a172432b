//! # drift-claude
//!
//! Claude as drift-detector's analyst: a summary, per-drift risk (availability, security, cost), the
//! monthly cost impact, and a recommendation per drift — which the engine checks before anything uses
//! it. The model proposes; the engine disposes (ARCHITECTURE §8).
//!
//! - [`ClaudeAnalyzer`]: the [`drift_core::ports::Analyzer`] over the Anthropic Messages API, with
//!   structured output (`output_config.format` = `json_schema`), validation of every proposal
//!   ([`validate`]), redaction and a size budget ([`prompt`]), retries, a per-minute budget, a circuit
//!   breaker, and the deterministic analyzer as the fallback that always answers.
//! - [`AnalysisBatcher`]: one request for a burst of drifts.
//! - [`api`]: the thin Messages API client (no SDK: the workspace's reqwest).
//! - [`fake`] (feature `fake`): an in-process fake of the Messages API.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use drift_claude::{ClaudeAnalyzer, ClaudeConfig};
//! let analyzer = ClaudeAnalyzer::new(ClaudeConfig::new(std::env::var("CLAUDE_API_KEY")?).model("claude-haiku-5-5"))?;
//! analyzer.check().await?; // the model is offered to this key
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod analyzer;
pub mod api;
mod batch;
pub mod prompt;
pub mod validate;

#[cfg(feature = "fake")]
pub mod fake;

pub use analyzer::{ClaudeAnalyzer, ClaudeConfig, ClaudeStats};
pub use api::{ClaudeError, DEFAULT_MODEL};
pub use batch::AnalysisBatcher;
