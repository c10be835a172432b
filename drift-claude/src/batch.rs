//! Batching and debounce: drifts that arrive in a burst are analysed in one request. The caller gets
//! the analysis of its own drifts; detection never waits on it (callers submit and move on).

use std::sync::Arc;
use std::time::Duration;

use drift_core::ports::{Analysis, AnalysisItem, AnalysisRequest, Analyzer};
use tokio::sync::{mpsc, oneshot};

struct Job {
    items: Vec<AnalysisItem>,
    reply: oneshot::Sender<Analysis>,
}

/// Collects analysis requests for `debounce` after the first one of a burst (or until `max_items`),
/// then runs the analyzer once on all of them.
#[derive(Clone)]
pub struct AnalysisBatcher {
    tx: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for AnalysisBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnalysisBatcher")
    }
}

fn only(analysis: &Analysis, items: &[AnalysisItem]) -> Analysis {
    let ids: Vec<&str> = items.iter().map(|i| i.drift.id.as_str()).collect();
    Analysis {
        analyzer: analysis.analyzer.clone(),
        summary: analysis.summary.clone(),
        risks: analysis
            .risks
            .iter()
            .filter(|r| ids.contains(&r.drift_id.as_str()))
            .cloned()
            .collect(),
        monthly_cost_delta: items.iter().filter_map(|i| i.monthly_cost_delta).sum(),
        recommendations: analysis
            .recommendations
            .iter()
            .filter(|r| ids.contains(&r.drift_id.as_str()))
            .cloned()
            .collect(),
    }
}

impl AnalysisBatcher {
    /// Starts the batching task on the current tokio runtime.
    pub fn spawn(analyzer: Arc<dyn Analyzer>, debounce: Duration, max_items: usize) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                let deadline = tokio::time::Instant::now() + debounce;
                while jobs.iter().map(|j| j.items.len()).sum::<usize>() < max_items {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(j)) => jobs.push(j),
                        Ok(None) | Err(_) => break,
                    }
                }
                let mut items: Vec<AnalysisItem> = Vec::new();
                for j in &jobs {
                    for i in &j.items {
                        if !items.iter().any(|x| x.drift.id == i.drift.id) {
                            items.push(i.clone());
                        }
                    }
                }
                let analysis = match analyzer.analyze(&AnalysisRequest { items: items.clone() }).await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "analysis failed; the deterministic analyzer answers");
                        drift_core::analysis::DeterministicAnalyzer.analyze_now(&AnalysisRequest { items })
                    }
                };
                for j in jobs {
                    let _ = j.reply.send(only(&analysis, &j.items));
                }
            }
        });
        AnalysisBatcher { tx }
    }

    /// Queues drifts for analysis and waits for the batch they end up in.
    ///
    /// # Errors
    /// The batching task is gone (the runtime is shutting down).
    pub async fn analyze(&self, items: Vec<AnalysisItem>) -> Result<Analysis, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { items, reply })
            .map_err(|_| "the analysis task has stopped".to_string())?;
        rx.await.map_err(|_| "the analysis task has stopped".to_string())
    }
}
