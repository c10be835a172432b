//! Alerts: always the log; optionally a webhook (a JSON POST per alert, retried with back-off, never
//! blocking detection: a queue drains in the background).

use std::time::Duration;

use drift_core::detector::Alert;
use serde::Serialize;
use tokio::sync::mpsc;

/// An alert as sent and shown.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AlertView {
    pub drift_id: String,
    pub resource: String,
    pub field: String,
    pub expected: Option<serde_json::Value>,
    pub actual: Option<serde_json::Value>,
    pub set: String,
    pub severity: String,
    /// Who made the change (from managedFields), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<drift_core::Actor>,
    pub environment: Option<String>,
    pub reason: String,
    pub escalation: bool,
    pub at: String,
}

impl AlertView {
    pub(crate) fn from(a: &Alert, at: u64) -> AlertView {
        AlertView {
            drift_id: a.drift.id.to_string(),
            resource: a.drift.key.to_string(),
            field: a.drift.path.readable(),
            expected: a.drift.expected.clone(),
            actual: a.drift.actual.clone(),
            set: a.drift.set.to_string(),
            severity: a.drift.severity.to_string(),
            actor: a.drift.actor.clone(),
            environment: a.environment.clone(),
            reason: a.reason.clone(),
            escalation: a.escalation,
            at: drift_core::clock::rfc3339(at),
        }
    }
}

/// Where alerts go.
#[derive(Clone, Debug)]
pub(crate) struct AlertSink {
    tx: Option<mpsc::UnboundedSender<AlertView>>,
}

impl AlertSink {
    /// Log only.
    pub(crate) fn log_only() -> AlertSink {
        AlertSink { tx: None }
    }

    /// The log and a webhook.
    pub(crate) fn webhook(url: String) -> AlertSink {
        let (tx, mut rx) = mpsc::unbounded_channel::<AlertView>();
        tokio::spawn(async move {
            let http = match reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "the alert webhook client cannot be built; alerts go to the log only");
                    return;
                }
            };
            while let Some(alert) = rx.recv().await {
                let mut delay = Duration::from_millis(500);
                for attempt in 1..=5 {
                    match http.post(&url).json(&alert).send().await {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r) => tracing::warn!(
                            status = r.status().as_u16(),
                            attempt,
                            "the alert webhook refused an alert"
                        ),
                        Err(e) => tracing::warn!(error = %e, attempt, "the alert webhook is unreachable"),
                    }
                    if attempt == 5 {
                        tracing::error!(drift = %alert.drift_id, "alert not delivered to the webhook after 5 attempts (it is in the log and on the dashboard)");
                    } else {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        });
        AlertSink { tx: Some(tx) }
    }

    pub(crate) fn send(&self, a: &AlertView) {
        if a.escalation {
            tracing::error!(drift = %a.drift_id, resource = %a.resource, field = %a.field, "escalation: {}", a.reason);
        } else {
            tracing::warn!(drift = %a.drift_id, resource = %a.resource, field = %a.field, set = %a.set, "alert: {}", a.reason);
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(a.clone());
        }
    }
}
