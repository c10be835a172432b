//! The model proposes; the engine disposes. The answer is parsed item by item: a risk or a
//! recommendation about a drift that was not asked about, an action the engine cannot build for that
//! drift, or anything the schema does not allow (a patch, a value) is dropped with a reason. Free text
//! is untrusted: control characters are removed and lengths are bounded. Drifts the model said nothing
//! (valid) about get the deterministic analyzer's answer.

use std::collections::BTreeMap;

use drift_core::DriftId;
use drift_core::analysis::{assess, recommend};
use drift_core::ports::{AnalysisItem, DriftRisk, Recommendation, RecommendedAction, RiskLevel};
use serde::Deserialize;
use serde_json::Value;

/// Longest summary kept, in characters.
pub const MAX_SUMMARY: usize = 1_500;
/// Longest note or reason kept, in characters.
pub const MAX_NOTE: usize = 400;

/// Untrusted text made safe to store and show: no control characters (newlines kept), bounded.
pub fn clean_text(s: &str, max: usize) -> String {
    let t: String = s.chars().filter(|c| !c.is_control() || *c == '\n').collect();
    let t = t.trim();
    if t.chars().count() <= max {
        t.to_string()
    } else {
        let mut cut: String = t.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RiskOut {
    drift_id: String,
    availability: RiskLevel,
    security: RiskLevel,
    cost: RiskLevel,
    note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecommendationOut {
    drift_id: String,
    action: RecommendedAction,
    reason: String,
}

/// The validated part of an answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validated {
    /// The summary (cleaned).
    pub summary: String,
    /// Risks, one per drift asked about.
    pub risks: Vec<DriftRisk>,
    /// Recommendations, one per drift asked about, each allowed for its drift.
    pub recommendations: Vec<Recommendation>,
    /// What was dropped or filled in, and why.
    pub notes: Vec<String>,
    /// How many drifts got the deterministic answer because the model's was missing or rejected.
    pub filled: usize,
}

/// Validates a model answer (the JSON text) against the drifts asked about.
///
/// # Errors
/// The text is not a JSON object with a summary: the whole answer is unusable.
pub fn validate(text: &str, items: &[&AnalysisItem]) -> Result<Validated, String> {
    let v: Value = serde_json::from_str(text.trim()).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the answer is not a JSON object")?;
    let summary = obj
        .get("summary")
        .and_then(Value::as_str)
        .ok_or("the answer has no summary")?;
    let known: BTreeMap<&str, &AnalysisItem> = items.iter().map(|i| (i.drift.id.as_str(), *i)).collect();
    let mut out = Validated {
        summary: clean_text(summary, MAX_SUMMARY),
        ..Validated::default()
    };
    for k in obj.keys().filter(|k| {
        !matches!(
            k.as_str(),
            "summary" | "risks" | "recommendations" | "monthlyCostImpact"
        )
    }) {
        out.notes.push(format!(
            "ignored the field {k:?}, which the schema does not allow"
        ));
    }

    let mut risks: BTreeMap<String, DriftRisk> = BTreeMap::new();
    for (n, r) in obj
        .get("risks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match serde_json::from_value::<RiskOut>(r.clone()) {
            Err(e) => out.notes.push(format!("dropped risk #{n}: {e}")),
            Ok(r) if !known.contains_key(r.drift_id.as_str()) => out.notes.push(format!(
                "dropped a risk about unknown drift {:?}",
                clean_text(&r.drift_id, 80)
            )),
            Ok(r) => {
                risks.entry(r.drift_id.clone()).or_insert(DriftRisk {
                    drift_id: DriftId(r.drift_id),
                    availability: r.availability,
                    security: r.security,
                    cost: r.cost,
                    note: clean_text(&r.note, MAX_NOTE),
                });
            }
        }
    }
    let mut recs: BTreeMap<String, Recommendation> = BTreeMap::new();
    for (n, r) in obj
        .get("recommendations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match serde_json::from_value::<RecommendationOut>(r.clone()) {
            Err(e) => out.notes.push(format!("dropped recommendation #{n}: {e}")),
            Ok(r) => match known.get(r.drift_id.as_str()) {
                None => out.notes.push(format!(
                    "dropped a recommendation about unknown drift {:?}",
                    clean_text(&r.drift_id, 80)
                )),
                Some(item) if !item.allowed_actions.contains(&r.action) => out.notes.push(format!(
                    "dropped the recommendation {:?} for drift {}: the engine cannot build that fix for it",
                    r.action, r.drift_id
                )),
                Some(_) => {
                    recs.entry(r.drift_id.clone()).or_insert(Recommendation {
                        drift_id: DriftId(r.drift_id),
                        action: r.action,
                        reason: clean_text(&r.reason, MAX_NOTE),
                    });
                }
            },
        }
    }
    for item in items {
        let id = item.drift.id.as_str();
        let mut filled = false;
        match risks.remove(id) {
            Some(r) => out.risks.push(r),
            None => {
                out.risks.push(assess(item));
                filled = true;
            }
        }
        match recs.remove(id) {
            Some(r) => out.recommendations.push(r),
            None => {
                out.recommendations.push(recommend(item));
                filled = true;
            }
        }
        if filled {
            out.filled += 1;
        }
    }
    if out.filled > 0 {
        out.notes.push(format!(
            "{} drift(s) got the deterministic analysis where the model's was missing or rejected",
            out.filled
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cleaned_and_bounded() {
        assert_eq!(clean_text("a\u{1b}[31mb\nc", 100), "a[31mb\nc");
        assert_eq!(clean_text(&"x".repeat(10), 5).chars().count(), 5);
    }

    #[test]
    fn garbage_is_rejected_whole() {
        assert!(validate("not json", &[]).is_err());
        assert!(validate("[1,2]", &[]).is_err());
        assert!(validate("{\"risks\": []}", &[]).is_err());
    }
}
