//! [`Remediator`] through ConfigHub: the unit is the source of truth, so fixes go through it and leave
//! an audit trail there.
//!
//! | plan | what happens |
//! |---|---|
//! | `Revert`, `Reapply` ("ConfigHub wins") | the unit is applied (`POST .../apply`), after checking it is still the revision the plan was made from; the audit line goes into the unit's `drift-detector/last-remediation` annotation |
//! | `Adopt` ("cluster wins", targeted) | the live values are written into the unit's data (`PUT` with `Version`, the audit line as `LastChangeDescription`); or, with [`ClusterWins::Refresh`], the unit is refreshed from live |
//! | `Track` | nothing |
//!
//! Dry runs use the API's `dry_run`. A unit that moved on since the plan, or a `Version` conflict, is
//! [`RemediationStatus::Conflict`]: re-read and re-plan. [`ConfigHubRemediator::rollback`] restores the
//! revision that was live before the last apply and applies it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use drift_core::ports::{
    RemediationAction, RemediationMode, RemediationOutcome, RemediationPlan, RemediationStatus, Remediator,
};
use drift_core::redact::Redactor;
use serde_json::{Value, json};

use crate::client::{ConfigHubClient, UpdateOptions};
use crate::error::{ConfigHubError, Result};
use crate::model::Unit;
use crate::where_clause::quote;

/// The annotation carrying the audit line of the last fix.
pub const AUDIT_ANNOTATION: &str = "drift-detector/last-remediation";

/// How "cluster wins" is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClusterWins {
    /// Write exactly the drifted live values into the unit's data.
    #[default]
    WriteLiveValues,
    /// Refresh the whole unit from live (`POST .../refresh`).
    Refresh,
}

/// Remediator settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RemediatorConfig {
    /// How long to wait for an apply or refresh to complete (default 60 s).
    pub wait: Duration,
    /// How "cluster wins" is done.
    pub cluster_wins: ClusterWins,
}

impl Default for RemediatorConfig {
    fn default() -> Self {
        RemediatorConfig {
            wait: Duration::from_secs(60),
            cluster_wins: ClusterWins::default(),
        }
    }
}

/// The result of one unit in a bulk correction.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitOutcome {
    /// Space id.
    pub space_id: String,
    /// Unit id.
    pub unit_id: String,
    /// Unit slug, when known.
    pub unit: String,
    /// The drifts it covers.
    pub drift_ids: Vec<String>,
    /// How it went.
    pub status: RemediationStatus,
    /// Details.
    pub message: String,
}

/// Fixes drift through ConfigHub.
#[derive(Debug, Clone)]
pub struct ConfigHubRemediator {
    client: ConfigHubClient,
    config: RemediatorConfig,
}

fn out(
    plan: &RemediationPlan,
    mode: RemediationMode,
    status: RemediationStatus,
    message: impl Into<String>,
) -> RemediationOutcome {
    RemediationOutcome {
        key: plan.key.clone(),
        status,
        message: message.into(),
        mode,
    }
}

fn conflict_or_failed(e: &ConfigHubError) -> RemediationStatus {
    if matches!(e, ConfigHubError::Conflict { .. }) {
        RemediationStatus::Conflict
    } else {
        RemediationStatus::Failed
    }
}

impl ConfigHubRemediator {
    /// A remediator.
    pub fn new(client: ConfigHubClient, config: RemediatorConfig) -> Self {
        ConfigHubRemediator { client, config }
    }

    /// The unit a plan is about, checked to be the revision the plan was made from.
    async fn unit_for(
        &self,
        plan: &RemediationPlan,
    ) -> std::result::Result<Unit, (RemediationStatus, String)> {
        let p = plan.provenance.as_ref();
        let (Some(space_id), Some(unit_id)) = (
            p.and_then(|p| p.space_id.clone()),
            p.and_then(|p| p.unit_id.clone()),
        ) else {
            return Err((
                RemediationStatus::Skipped,
                "the desired object does not come from a ConfigHub unit".into(),
            ));
        };
        let unit = match self.client.get_unit(&space_id, &unit_id).await {
            Ok(u) => u.unit,
            Err(e @ ConfigHubError::NotFound { .. }) => {
                return Err((RemediationStatus::Conflict, format!("the unit is gone: {e}")));
            }
            Err(e) => return Err((RemediationStatus::Failed, e.to_string())),
        };
        if let Some(planned) = p.and_then(|p| p.revision)
            && planned != unit.head_revision_num
        {
            return Err((
                RemediationStatus::Conflict,
                format!(
                    "unit {} moved from revision {planned} to {} since the plan; re-plan",
                    unit.slug, unit.head_revision_num
                ),
            ));
        }
        Ok(unit)
    }

    async fn run_and_wait(&self, op: crate::model::QueuedOperation) -> Result<crate::model::UnitEvent> {
        self.client.wait_for_operation(&op, self.config.wait).await
    }

    async fn confighub_wins(
        &self,
        plan: &RemediationPlan,
        mode: RemediationMode,
        unit: Unit,
    ) -> RemediationOutcome {
        let dry = mode == RemediationMode::DryRun;
        if !dry {
            let audit = format!("{} at {}", plan.audit(), now());
            let patch = json!({"Annotations": {AUDIT_ANNOTATION: audit}});
            if let Err(e) = self
                .client
                .patch_unit(&unit.space_id, &unit.unit_id, patch, &UpdateOptions::default())
                .await
            {
                return out(
                    plan,
                    mode,
                    conflict_or_failed(&e),
                    format!("recording the audit line: {e}"),
                );
            }
        }
        let op = match self.client.apply_unit(&unit.space_id, &unit.unit_id, dry).await {
            Ok(op) => op,
            Err(e) => return out(plan, mode, RemediationStatus::Failed, e.to_string()),
        };
        match self.run_and_wait(op).await {
            Ok(_) if dry => out(
                plan,
                mode,
                RemediationStatus::DryRunOk,
                format!(
                    "unit {} would be applied (revision {})",
                    unit.slug, unit.head_revision_num
                ),
            ),
            Ok(_) => out(
                plan,
                mode,
                RemediationStatus::Applied,
                format!("unit {} applied (revision {})", unit.slug, unit.head_revision_num),
            ),
            Err(e) => out(plan, mode, RemediationStatus::Failed, e.to_string()),
        }
    }

    async fn write_live_values(
        &self,
        plan: &RemediationPlan,
        mode: RemediationMode,
        mut unit: Unit,
        values: &serde_json::Map<String, Value>,
    ) -> RemediationOutcome {
        if values
            .values()
            .any(|v| v.as_str().is_some_and(Redactor::is_token))
        {
            return out(
                plan,
                mode,
                RemediationStatus::Skipped,
                "live Secret values are hashed here and cannot be written to ConfigHub",
            );
        }
        let text = match unit.data_text() {
            Ok(t) => t,
            Err(e) => {
                return out(
                    plan,
                    mode,
                    RemediationStatus::Failed,
                    format!("unit {}: {e}", unit.slug),
                );
            }
        };
        let mut docs = match crate::yaml::documents(&text) {
            Ok(d) => d,
            Err(e) => {
                return out(
                    plan,
                    mode,
                    RemediationStatus::Failed,
                    format!("unit {}: {e}", unit.slug),
                );
            }
        };
        let Some(doc) = docs.iter_mut().find(|d| crate::yaml::is_object(d, &plan.key)) else {
            return out(
                plan,
                mode,
                RemediationStatus::Conflict,
                format!("unit {} no longer holds {}", unit.slug, plan.key),
            );
        };
        for (pointer, v) in values {
            if let Err(e) = crate::yaml::set_pointer(doc, pointer, v.clone()) {
                return out(
                    plan,
                    mode,
                    RemediationStatus::Failed,
                    format!("unit {}: {e}", unit.slug),
                );
            }
        }
        let rendered = match crate::yaml::render(&docs) {
            Ok(r) => r,
            Err(e) => return out(plan, mode, RemediationStatus::Failed, e),
        };
        unit.set_data(rendered.as_bytes());
        unit.last_change_description = format!("{} at {}", plan.audit(), now());
        match self
            .client
            .update_unit(
                &unit,
                &UpdateOptions::default().dry_run(mode == RemediationMode::DryRun),
            )
            .await
        {
            Ok(u) if mode == RemediationMode::DryRun => out(
                plan,
                mode,
                RemediationStatus::DryRunOk,
                format!("unit {} would take {} live value(s)", u.slug, values.len()),
            ),
            Ok(u) => out(
                plan,
                mode,
                RemediationStatus::Applied,
                format!(
                    "unit {} took {} live value(s): revision {}",
                    u.slug,
                    values.len(),
                    u.head_revision_num
                ),
            ),
            Err(e) => out(plan, mode, conflict_or_failed(&e), e.to_string()),
        }
    }

    async fn refresh(&self, plan: &RemediationPlan, mode: RemediationMode, unit: Unit) -> RemediationOutcome {
        let op = match self
            .client
            .refresh_unit(&unit.space_id, &unit.unit_id, mode == RemediationMode::DryRun)
            .await
        {
            Ok(op) => op,
            Err(e) => return out(plan, mode, RemediationStatus::Failed, e.to_string()),
        };
        match self.run_and_wait(op).await {
            Ok(ev) if mode == RemediationMode::DryRun => out(
                plan,
                mode,
                RemediationStatus::DryRunOk,
                format!("refresh dry run: {}", ev.result),
            ),
            Ok(ev) => out(
                plan,
                mode,
                RemediationStatus::Applied,
                format!("unit {} refreshed from live: {}", unit.slug, ev.result),
            ),
            Err(e) => out(plan, mode, RemediationStatus::Failed, e.to_string()),
        }
    }

    /// Rolls a unit back: restores the revision live before the last apply, then applies it.
    ///
    /// # Errors
    /// ConfigHub errors; [`ConfigHubError::OperationFailed`] if the apply fails.
    pub async fn rollback(&self, space_id: &str, unit_id: &str, reason: &str) -> Result<Unit> {
        let current = self.client.get_unit(space_id, unit_id).await?.unit;
        if current.previous_live_revision_num == 0 {
            return Err(ConfigHubError::Setup(format!(
                "unit {} has no earlier live revision to roll back to",
                current.slug
            )));
        }
        let opts = UpdateOptions {
            restore: Some("PreviousLiveRevisionNum".into()),
            ..UpdateOptions::default()
        };
        let mut want = current.clone();
        want.last_change_description = format!("drift-detector rollback: {reason}");
        let restored = self.client.update_unit(&want, &opts).await?;
        let op = self.client.apply_unit(space_id, unit_id, false).await?;
        self.run_and_wait(op).await?;
        Ok(restored)
    }

    /// Reverts every open drift a named filter selects (e.g. `replica-drifts`, across every
    /// environment the records cover) in one bulk apply of the units they came from, with a result per
    /// unit. Drifts whose record has no ConfigHub unit are reported as skipped.
    ///
    /// # Errors
    /// Reading the records or the bulk call failed; per-unit failures are outcomes.
    pub async fn revert_filter(
        &self,
        log: &crate::records::ConfigHubDriftLog,
        filter: drift_core::policy::NamedFilter,
        mode: RemediationMode,
        actor: &str,
    ) -> Result<Vec<UnitOutcome>> {
        let records = log.records_in(filter, true).await?;
        let plans: Vec<RemediationPlan> = records
            .into_iter()
            .map(|r| RemediationPlan {
                key: r.drift.key.clone(),
                drifts: vec![r.drift],
                action: RemediationAction::Reapply,
                provenance: r.provenance,
                desired: None,
                actor: actor.to_string(),
                reason: format!("bulk revert of {}", filter.slug()),
            })
            .collect();
        self.bulk_apply(&plans, mode).await
    }

    /// "ConfigHub wins" for many units in one call: one bulk apply of every unit the plans come from,
    /// with a per-unit result. Plans without a ConfigHub unit are reported as skipped.
    ///
    /// # Errors
    /// Only when the bulk call itself fails; per-unit failures are outcomes.
    pub async fn bulk_apply(
        &self,
        plans: &[RemediationPlan],
        mode: RemediationMode,
    ) -> Result<Vec<UnitOutcome>> {
        let mut by_unit: BTreeMap<(String, String), (String, Vec<String>)> = BTreeMap::new();
        let mut outcomes = Vec::new();
        for p in plans {
            let prov = p.provenance.as_ref();
            match (
                prov.and_then(|p| p.space_id.clone()),
                prov.and_then(|p| p.unit_id.clone()),
            ) {
                (Some(s), Some(u)) => {
                    let e = by_unit.entry((s, u)).or_insert_with(|| {
                        (prov.and_then(|p| p.unit.clone()).unwrap_or_default(), Vec::new())
                    });
                    e.1.extend(p.drift_ids().into_iter().map(|d| d.0));
                }
                _ => outcomes.push(UnitOutcome {
                    space_id: String::new(),
                    unit_id: String::new(),
                    unit: p.key.to_string(),
                    drift_ids: p.drift_ids().into_iter().map(|d| d.0).collect(),
                    status: RemediationStatus::Skipped,
                    message: "the desired object does not come from a ConfigHub unit".into(),
                }),
            }
        }
        if by_unit.is_empty() {
            return Ok(outcomes);
        }
        let ids: Vec<String> = by_unit.keys().map(|(_, u)| quote(u)).collect();
        let clause = format!("UnitID IN ({})", ids.join(", "));
        let dry = mode == RemediationMode::DryRun;
        let result = self.client.bulk_apply(&clause, dry).await?;
        let mut seen = std::collections::BTreeSet::new();
        let mut errors = Vec::new();
        for item in result.items {
            match (item.action, item.error) {
                (Some(op), _) => {
                    let key = (op.space_id.clone(), op.unit_id.clone());
                    let (slug, drifts) = by_unit.get(&key).cloned().unwrap_or_default();
                    seen.insert(key.clone());
                    let (status, message) = match self.run_and_wait(op).await {
                        Ok(_) if dry => (RemediationStatus::DryRunOk, "would be applied".to_string()),
                        Ok(_) => (RemediationStatus::Applied, "applied".to_string()),
                        Err(e) => (RemediationStatus::Failed, e.to_string()),
                    };
                    outcomes.push(UnitOutcome {
                        space_id: key.0,
                        unit_id: key.1,
                        unit: slug,
                        drift_ids: drifts,
                        status,
                        message,
                    });
                }
                (None, Some(err)) => errors.push(err.message),
                (None, None) => {}
            }
        }
        // Units that were not queued: the per-item errors say why (or the unit is gone).
        let why = if errors.is_empty() {
            "not applied: the unit was not found".to_string()
        } else {
            errors.join("; ")
        };
        for ((s, u), (slug, drifts)) in by_unit {
            if !seen.contains(&(s.clone(), u.clone())) {
                outcomes.push(UnitOutcome {
                    space_id: s,
                    unit_id: u,
                    unit: slug,
                    drift_ids: drifts,
                    status: RemediationStatus::Failed,
                    message: why.clone(),
                });
            }
        }
        Ok(outcomes)
    }
}

fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    drift_core::clock::rfc3339(ms)
}

#[async_trait]
impl Remediator for ConfigHubRemediator {
    fn name(&self) -> &str {
        "confighub"
    }

    async fn remediate(&self, plan: &RemediationPlan, mode: RemediationMode) -> RemediationOutcome {
        if matches!(plan.action, RemediationAction::Track) {
            return out(plan, mode, RemediationStatus::Skipped, "track only");
        }
        let unit = match self.unit_for(plan).await {
            Ok(u) => u,
            Err((status, message)) => return out(plan, mode, status, message),
        };
        match &plan.action {
            RemediationAction::Revert { .. } | RemediationAction::Reapply => {
                self.confighub_wins(plan, mode, unit).await
            }
            RemediationAction::Adopt { values } => match self.config.cluster_wins {
                ClusterWins::WriteLiveValues => self.write_live_values(plan, mode, unit, values).await,
                ClusterWins::Refresh => self.refresh(plan, mode, unit).await,
            },
            _ => out(
                plan,
                mode,
                RemediationStatus::Skipped,
                format!("the ConfigHub remediator does not {}", plan.action.name()),
            ),
        }
    }
}
