//! The deterministic analyzer: summary, risk, cost impact and recommendations from rules alone. It is
//! what answers when no model is configured or the model's API is down (ARCHITECTURE §8).

use async_trait::async_trait;
use serde_json::Value;

use crate::drift::Change;
use crate::ports::{
    Analysis, AnalysisItem, AnalysisRequest, Analyzer, DriftRisk, PortError, Recommendation,
    RecommendedAction, RiskLevel,
};
use crate::rules::DriftSet;

/// Rule-based analysis. Same input, same output.
#[derive(Debug, Clone, Default)]
pub struct DeterministicAnalyzer;

fn replica_numbers(item: &AnalysisItem) -> Option<(f64, f64)> {
    let e = item.drift.expected.as_ref().and_then(Value::as_f64)?;
    let a = item.drift.actual.as_ref().and_then(Value::as_f64)?;
    Some((e, a))
}

/// Risk of one drift.
pub fn assess(item: &AnalysisItem) -> DriftRisk {
    let d = &item.drift;
    let mut notes = Vec::new();
    let availability = match d.set {
        DriftSet::Replica => match replica_numbers(item) {
            Some((e, a)) if a < e => {
                notes.push(format!(
                    "runs {a} of {e} replicas: less headroom for traffic and failures"
                ));
                if a <= 1.0 || a <= e / 2.0 {
                    RiskLevel::High
                } else {
                    RiskLevel::Medium
                }
            }
            Some((e, a)) if a > e => {
                notes.push(format!("runs {a} replicas instead of {e}"));
                RiskLevel::Low
            }
            _ => RiskLevel::Low,
        },
        _ if d.rule == "missing-live" => {
            notes.push("the object is missing from the cluster".to_string());
            RiskLevel::High
        }
        _ if d.rule == "images" => {
            notes.push("a different image runs than the one reviewed".to_string());
            RiskLevel::Medium
        }
        DriftSet::Resource => {
            notes.push(
                "resource requests or limits changed: scheduling and throttling behave differently"
                    .to_string(),
            );
            RiskLevel::Medium
        }
        _ => RiskLevel::Low,
    };
    let security = match (d.set, d.rule.as_str()) {
        (_, "security") => {
            notes.push(
                "security-relevant field (RBAC, Secret, securityContext, service account or host access)"
                    .to_string(),
            );
            RiskLevel::High
        }
        (_, "images") => RiskLevel::Medium,
        (DriftSet::Critical, _) => {
            notes.push("exposure changed (Service type or ports)".to_string());
            RiskLevel::High
        }
        _ => RiskLevel::None,
    };
    let cost = match item.monthly_cost_delta {
        Some(c) if c.abs() >= 100.0 => RiskLevel::High,
        Some(c) if c.abs() >= 10.0 => RiskLevel::Medium,
        Some(c) if c.abs() > 0.0 => RiskLevel::Low,
        _ => RiskLevel::None,
    };
    if let Some(c) = item.monthly_cost_delta
        && c != 0.0
    {
        notes.push(format!("cost {}", crate::cost::format_monthly(c)));
    }
    DriftRisk {
        drift_id: d.id.clone(),
        availability,
        security,
        cost,
        note: notes.join("; "),
    }
}

/// The recommendation for one drift.
pub fn recommend(item: &AnalysisItem) -> Recommendation {
    let d = &item.drift;
    let (action, reason) = if d.severity == crate::rules::Severity::Info {
        (
            RecommendedAction::Track,
            "informational: keep watching".to_string(),
        )
    } else if d.change == Change::Extra && d.set == DriftSet::Config {
        (
            RecommendedAction::Revert,
            "a field was added outside the source of truth; remove it or add it to the source".to_string(),
        )
    } else {
        (
            RecommendedAction::Revert,
            format!("restore {} from the source of truth", d.path.readable()),
        )
    };
    let action = if item.allowed_actions.contains(&action) {
        action
    } else {
        RecommendedAction::Track
    };
    Recommendation {
        drift_id: d.id.clone(),
        action,
        reason,
    }
}

impl DeterministicAnalyzer {
    /// Analyses a batch synchronously.
    pub fn analyze_now(&self, request: &AnalysisRequest) -> Analysis {
        let items = &request.items;
        let risks: Vec<DriftRisk> = items.iter().map(assess).collect();
        let recommendations = items.iter().map(recommend).collect();
        let total: f64 = items.iter().filter_map(|i| i.monthly_cost_delta).sum();
        let mut resources: Vec<String> = items.iter().map(|i| i.drift.key.to_string()).collect();
        resources.sort();
        resources.dedup();
        let mut summary = match items.len() {
            0 => "No drift.".to_string(),
            1 => format!(
                "1 drift on {}: {}.",
                resources.join(", "),
                items[0].drift.describe()
            ),
            n => format!(
                "{n} drifts on {} resource{}: {}.",
                resources.len(),
                if resources.len() == 1 { "" } else { "s" },
                items
                    .iter()
                    .take(5)
                    .map(|i| format!("{} {}", i.drift.key.name, i.drift.describe()))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        let high: Vec<&DriftRisk> = risks
            .iter()
            .filter(|r| r.availability == RiskLevel::High || r.security == RiskLevel::High)
            .collect();
        if !high.is_empty() {
            summary.push_str(&format!(
                " {} with high availability or security risk.",
                high.len()
            ));
        }
        if total != 0.0 {
            summary.push_str(&format!(" Cost impact {}.", crate::cost::format_monthly(total)));
        }
        Analysis {
            analyzer: "deterministic".to_string(),
            summary,
            risks,
            monthly_cost_delta: total,
            recommendations,
        }
    }
}

#[async_trait]
impl Analyzer for DeterministicAnalyzer {
    fn name(&self) -> &str {
        "deterministic"
    }
    async fn analyze(&self, request: &AnalysisRequest) -> Result<Analysis, PortError> {
        Ok(self.analyze_now(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{Drift, DriftId};
    use crate::model::ResourceKey;
    use crate::path::FieldPath;
    use crate::rules::Severity;
    use serde_json::json;

    fn item(name: &str, e: i64, a: i64, cost: f64) -> AnalysisItem {
        let key = ResourceKey::new("apps/v1", "Deployment", Some("drift-test"), name);
        AnalysisItem {
            drift: Drift {
                id: DriftId::of(&key, "spec.replicas"),
                key,
                path: FieldPath::fields(["spec", "replicas"]),
                change: Change::Changed,
                expected: Some(json!(e)),
                actual: Some(json!(a)),
                rule: "replicas".into(),
                set: DriftSet::Replica,
                severity: Severity::Warning,
                desired_pointer: Some("/spec/replicas".into()),
                actor: None,
            },
            environment: None,
            monthly_cost_delta: Some(cost),
            allowed_actions: vec![
                RecommendedAction::Revert,
                RecommendedAction::Adopt,
                RecommendedAction::Track,
            ],
        }
    }

    #[test]
    fn demo_scenario_analysis() {
        let a = DeterministicAnalyzer.analyze_now(&AnalysisRequest {
            items: vec![item("backend-api", 3, 5, 3.45), item("frontend-web", 2, 1, -0.86)],
        });
        assert_eq!(a.risks[0].availability, RiskLevel::Low);
        assert_eq!(a.risks[1].availability, RiskLevel::High);
        assert!((a.monthly_cost_delta - 2.59).abs() < 1e-9);
        assert!(a.summary.starts_with("2 drifts on 2 resources"), "{}", a.summary);
        assert!(a.summary.contains("+$2.59/month"), "{}", a.summary);
        assert!(
            a.recommendations
                .iter()
                .all(|r| r.action == RecommendedAction::Revert)
        );
    }
}
