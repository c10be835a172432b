//! [`Remediator`] through ConfigHub, in today's release model (`confighub-api.md` §2.13, §3): ConfigHub
//! does not apply anything; configuration reaches a cluster only by a Release its GitOps agent pulls.
//!
//! | plan | what happens |
//! |---|---|
//! | `Revert`, `Reapply` ("ConfigHub wins") | the engine's guarded per-field patch goes to the cluster through the cluster remediator given with [`ConfigHubRemediator::with_cluster`] (never a whole unit); the audit line and the outcome are then recorded on the unit (annotation `drift-detector/last-remediation`, a metadata write: no configuration revision) |
//! | `Adopt` ("cluster wins") | the live values at the drifted paths are written into the unit's data (`PUT .../data` with `If-Match`, the audit line as the revision's description); when no other unit of the space has unreleased changes, a Release is published so the cluster's value is the released one |
//! | `Track` | nothing |
//!
//! A plan made from a revision that is no longer the unit's desired one is a
//! [`RemediationStatus::Conflict`] (re-read and re-plan), as is a lost `If-Match` race.
//! [`ConfigHubRemediator::rollback`] restores `Before:LastReleasedRevisionNum` and publishes;
//! [`ConfigHubRemediator::revert_filter`] reverts what a named filter selects, one guarded patch per drift,
//! dry run first.

use std::sync::Arc;

use async_trait::async_trait;
use drift_core::ports::{
    RemediationAction, RemediationMode, RemediationOutcome, RemediationPlan, RemediationStatus, Remediator,
};
use drift_core::redact::Redactor;
use drift_core::{Change, Drift};
use serde_json::{Value, json};

use crate::client::{ConfigHubClient, DataWrite, UnitQuery, UpdateOptions};
use crate::desired::DesiredRevision;
use crate::error::{ConfigHubError, Result};
use crate::model::{Release, ReleasePublishRequest, Unit};
use crate::where_clause::{and, quote};

/// The annotation carrying the audit line and outcome of the last fix.
pub const AUDIT_ANNOTATION: &str = "drift-detector/last-remediation";

/// Remediator settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RemediatorConfig {
    /// Which revision the plans were made from (default released).
    pub desired: DesiredRevision,
    /// Publish a Release after adopting live values, when nothing else in the space is unreleased
    /// (default on).
    pub publish_on_adopt: bool,
}

impl Default for RemediatorConfig {
    fn default() -> Self {
        RemediatorConfig {
            desired: DesiredRevision::Released,
            publish_on_adopt: true,
        }
    }
}

impl RemediatorConfig {
    /// Sets which revision counts as desired.
    #[must_use]
    pub fn desired(mut self, d: DesiredRevision) -> Self {
        self.desired = d;
        self
    }
}

/// The result of one drift in a bulk revert.
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

/// What a rollback did.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    /// The unit after the restore.
    pub unit: Unit,
    /// The Release published for it, if one was.
    pub release: Option<Release>,
    /// Why none was, if none was.
    pub note: String,
}

/// Fixes drift through ConfigHub.
#[derive(Clone)]
pub struct ConfigHubRemediator {
    client: ConfigHubClient,
    config: RemediatorConfig,
    cluster: Option<Arc<dyn Remediator>>,
}

impl std::fmt::Debug for ConfigHubRemediator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigHubRemediator")
            .field("config", &self.config)
            .field("cluster", &self.cluster.as_ref().map(|c| c.name().to_string()))
            .finish_non_exhaustive()
    }
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
    if matches!(
        e,
        ConfigHubError::Conflict { .. } | ConfigHubError::NotFound { .. }
    ) {
        RemediationStatus::Conflict
    } else {
        RemediationStatus::Failed
    }
}

fn status_word(s: RemediationStatus) -> &'static str {
    match s {
        RemediationStatus::Applied => "applied",
        RemediationStatus::DryRunOk => "dry run ok",
        RemediationStatus::Conflict => "conflict",
        RemediationStatus::Failed => "failed",
        RemediationStatus::Skipped => "skipped",
        _ => "done",
    }
}

/// The guarded RFC 6902 operations that put one drift back, from the record alone: a `test` of the live
/// value before every `replace` and `remove`. `None` when the drift cannot be reverted this way (a
/// hashed Secret value, no pointer).
pub fn drift_revert_ops(d: &Drift) -> Option<Vec<Value>> {
    let ptr = d.path.pointer();
    if ptr.is_empty() || ptr.contains("/-") {
        return None;
    }
    let redacted = |v: &Option<Value>| {
        v.as_ref()
            .is_some_and(|v| v.as_str().is_some_and(Redactor::is_token))
    };
    if redacted(&d.expected) || redacted(&d.actual) {
        return None;
    }
    match d.change {
        Change::Changed => Some(vec![
            json!({"op": "test", "path": ptr, "value": d.actual.clone()?}),
            json!({"op": "replace", "path": ptr, "value": d.expected.clone()?}),
        ]),
        Change::Extra => Some(vec![
            json!({"op": "test", "path": ptr, "value": d.actual.clone()?}),
            json!({"op": "remove", "path": ptr}),
        ]),
        Change::Missing => Some(vec![
            json!({"op": "add", "path": ptr, "value": d.expected.clone()?}),
        ]),
    }
}

impl ConfigHubRemediator {
    /// A remediator. Without [`ConfigHubRemediator::with_cluster`] "ConfigHub wins" is skipped (there is
    /// no apply in ConfigHub); adopt and rollback work.
    pub fn new(client: ConfigHubClient, config: RemediatorConfig) -> Self {
        ConfigHubRemediator {
            client,
            config,
            cluster: None,
        }
    }

    /// The remediator that sends the engine's guarded patches to the cluster ("ConfigHub wins").
    #[must_use]
    pub fn with_cluster(mut self, cluster: Arc<dyn Remediator>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The unit a plan is about, checked to still have the revision the plan was made from.
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
        let now = match self.config.desired {
            DesiredRevision::Released => unit.last_released_revision_num,
            DesiredRevision::Head => unit.head_revision_num,
        };
        if let Some(planned) = p.and_then(|p| p.revision)
            && planned != now
        {
            return Err((
                RemediationStatus::Conflict,
                format!(
                    "unit {} moved from revision {planned} to {now} since the plan; re-plan",
                    unit.slug
                ),
            ));
        }
        Ok(unit)
    }

    /// Records the audit line and the outcome on the unit (after the fix, so a failed fix says so).
    async fn record_audit(&self, unit: &Unit, plan: &RemediationPlan, o: &RemediationOutcome) -> Result<()> {
        let line: String = format!(
            "{} at {}: {}{}{}",
            plan.audit(),
            now(),
            status_word(o.status),
            if o.message.is_empty() { "" } else { ": " },
            o.message
        )
        .chars()
        .take(1024)
        .collect();
        self.client
            .patch_unit(
                &unit.space_id,
                &unit.unit_id,
                json!({"Annotations": {AUDIT_ANNOTATION: line}}),
                &UpdateOptions::default(),
            )
            .await
            .map(|_| ())
    }

    async fn confighub_wins(
        &self,
        plan: &RemediationPlan,
        mode: RemediationMode,
        unit: Unit,
    ) -> RemediationOutcome {
        let Some(cluster) = &self.cluster else {
            return out(
                plan,
                mode,
                RemediationStatus::Skipped,
                "ConfigHub applies nothing itself (a Release reaches the cluster through its GitOps agent); \
                 give the detector cluster access to send the guarded patch",
            );
        };
        let mut o = cluster.remediate(plan, mode).await;
        if mode == RemediationMode::Apply
            && !matches!(o.status, RemediationStatus::Skipped)
            && let Err(e) = self.record_audit(&unit, plan, &o).await
        {
            tracing::warn!(unit = %unit.slug, error = %e, "the fix is done; its audit line could not be recorded");
            o.message = format!(
                "{}; the audit line could not be recorded in ConfigHub: {e}",
                o.message
            );
        }
        o
    }

    /// Other units of the space with unreleased changes (a Release would carry them too).
    async fn others_unreleased(&self, unit: &Unit) -> Result<Vec<String>> {
        let w = and([
            format!("SpaceID = {}", quote(&unit.space_id)),
            "HeadRevisionNum > LastReleasedRevisionNum".to_string(),
            format!("UnitID != {}", quote(&unit.unit_id)),
        ]);
        Ok(self
            .client
            .list_all_units(&UnitQuery::with_where(w).select("Slug"))
            .await?
            .into_iter()
            .map(|u| u.unit.slug)
            .collect())
    }

    /// Publishes a Release of the unit's space when nothing but this unit is unreleased there.
    async fn publish_if_alone(&self, unit: &Unit, why: &str) -> Result<(Option<Release>, String)> {
        let others = self.others_unreleased(unit).await?;
        if !others.is_empty() {
            return Ok((
                None,
                format!(
                    "not released: {} other unit(s) of the space have unreleased changes ({}); publish when they are ready",
                    others.len(),
                    others.join(", ")
                ),
            ));
        }
        let req = ReleasePublishRequest {
            annotations: [(AUDIT_ANNOTATION.to_string(), why.chars().take(1024).collect())].into(),
            ..ReleasePublishRequest::default()
        };
        let r = self.client.publish_release(&unit.space_id, &req).await?;
        let note = if r.message.is_empty() {
            format!("release {} published", r.release.release_num)
        } else {
            r.message.clone()
        };
        Ok((Some(r.release), note))
    }

    async fn adopt(
        &self,
        plan: &RemediationPlan,
        mode: RemediationMode,
        unit: Unit,
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
        let failed = |m: String| {
            out(
                plan,
                mode,
                RemediationStatus::Failed,
                format!("unit {}: {m}", unit.slug),
            )
        };
        let (bytes, hash) = match self.client.read_unit_data(&unit.space_id, &unit.unit_id).await {
            Ok(d) => d,
            Err(e) => return out(plan, mode, conflict_or_failed(&e), e.to_string()),
        };
        // The values are written into the head; when the head moved past what was released, the plan was
        // made against other data: that is the revision check of `unit_for` (released mode) or here.
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => return failed(format!("the data is not UTF-8: {e}")),
        };
        let mut docs = match crate::yaml::documents(&text) {
            Ok(d) => d,
            Err(e) => return failed(e),
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
                return failed(e);
            }
        }
        let rendered = match crate::yaml::render(&docs) {
            Ok(r) => r,
            Err(e) => return failed(e),
        };
        let audit = format!("{} at {}", plan.audit(), now());
        let dry = mode == RemediationMode::DryRun;
        let w = DataWrite::if_match(hash).description(audit.clone()).dry_run(dry);
        let written = match self
            .client
            .put_unit_data(&unit.space_id, &unit.unit_id, rendered.as_bytes(), &w)
            .await
        {
            Ok(u) => u,
            Err(e) => return out(plan, mode, conflict_or_failed(&e), e.to_string()),
        };
        if dry {
            return out(
                plan,
                mode,
                RemediationStatus::DryRunOk,
                format!("unit {} would take {} live value(s)", written.slug, values.len()),
            );
        }
        let mut message = format!(
            "unit {} took {} live value(s): revision {}",
            written.slug,
            values.len(),
            written.head_revision_num
        );
        if self.config.publish_on_adopt && unit.last_released_revision_num > 0 {
            match self.publish_if_alone(&written, &audit).await {
                Ok((_, note)) => message = format!("{message}; {note}"),
                Err(e) => message = format!("{message}; the Release could not be published: {e}"),
            }
        }
        out(plan, mode, RemediationStatus::Applied, message)
    }

    /// Rolls a unit back to the revision before its last release (`restore=Before:LastReleasedRevisionNum`,
    /// the reason as the revision's description), then publishes a Release when nothing else in the space
    /// is unreleased. A dry run restores nothing and publishes nothing.
    ///
    /// # Errors
    /// ConfigHub errors; [`ConfigHubError::Setup`] when the unit was never released.
    pub async fn rollback(
        &self,
        space_id: &str,
        unit_id: &str,
        reason: &str,
        dry_run: bool,
    ) -> Result<Rollback> {
        let current = self.client.get_unit(space_id, unit_id).await?.unit;
        if current.last_released_revision_num < 2 {
            return Err(ConfigHubError::Setup(format!(
                "unit {} has no released revision with one before it to roll back to",
                current.slug
            )));
        }
        let mut opts = UpdateOptions::restore("Before:LastReleasedRevisionNum");
        opts.dry_run = dry_run;
        let description = format!("drift-detector rollback: {reason}");
        let restored = self
            .client
            .patch_unit(
                space_id,
                unit_id,
                json!({"LastChangeDescription": description}),
                &opts,
            )
            .await?;
        if dry_run {
            return Ok(Rollback {
                unit: restored,
                release: None,
                note: "dry run: nothing restored or published".into(),
            });
        }
        let (release, note) = self.publish_if_alone(&restored, &description).await?;
        Ok(Rollback {
            unit: restored,
            release,
            note,
        })
    }

    /// Reverts every open drift a named filter selects (e.g. `replica-drifts`, across every environment
    /// the records cover): one guarded patch per drift through the cluster remediator, each dry-run
    /// first, with a result per drift. Drifts that cannot be reverted from the record (a hashed Secret
    /// value), or without a ConfigHub unit, are reported as skipped.
    ///
    /// # Errors
    /// Reading the records failed; per-drift failures are outcomes.
    pub async fn revert_filter(
        &self,
        log: &crate::records::ConfigHubDriftLog,
        filter: drift_core::policy::NamedFilter,
        mode: RemediationMode,
        actor: &str,
    ) -> Result<Vec<UnitOutcome>> {
        let records = log.records_in(filter, true).await?;
        let mut outcomes = Vec::new();
        for r in records {
            let prov = r.provenance.clone();
            let outcome = |status, message: String| UnitOutcome {
                space_id: prov.as_ref().and_then(|p| p.space_id.clone()).unwrap_or_default(),
                unit_id: prov.as_ref().and_then(|p| p.unit_id.clone()).unwrap_or_default(),
                unit: prov.as_ref().and_then(|p| p.unit.clone()).unwrap_or_default(),
                drift_ids: vec![r.drift.id.0.clone()],
                status,
                message,
            };
            let Some(ops) = drift_revert_ops(&r.drift) else {
                outcomes.push(outcome(
                    RemediationStatus::Skipped,
                    format!(
                        "{} cannot be reverted from its record (hashed value or list position)",
                        r.drift.describe()
                    ),
                ));
                continue;
            };
            let patch: json_patch::Patch = match serde_json::from_value(Value::Array(ops)) {
                Ok(p) => p,
                Err(e) => {
                    outcomes.push(outcome(RemediationStatus::Failed, format!("internal: {e}")));
                    continue;
                }
            };
            let plan = RemediationPlan {
                key: r.drift.key.clone(),
                drifts: vec![r.drift.clone()],
                action: RemediationAction::Revert { patch },
                provenance: r.provenance.clone(),
                desired: None,
                actor: actor.to_string(),
                reason: format!("bulk revert of {}", filter.slug()),
            };
            let dry = self.remediate(&plan, RemediationMode::DryRun).await;
            let o = if dry.status == RemediationStatus::DryRunOk && mode == RemediationMode::Apply {
                self.remediate(&plan, RemediationMode::Apply).await
            } else {
                dry
            };
            outcomes.push(outcome(o.status, o.message));
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
            RemediationAction::Adopt { values } => self.adopt(plan, mode, unit, values).await,
            _ => out(
                plan,
                mode,
                RemediationStatus::Skipped,
                format!("the ConfigHub remediator does not {}", plan.action.name()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drift_core::{DesiredObject, DiffEngine, LiveObject, Resource};

    fn deployment(replicas: i64, image: &str) -> Resource {
        let v = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}});
        Resource::from_value(v).expect("resource")
    }

    fn drifts(live_replicas: i64, live_image: &str) -> Vec<Drift> {
        DiffEngine::default()
            .diff(
                &DesiredObject::new(deployment(3, "app:1")),
                Some(&LiveObject::new(deployment(live_replicas, live_image))),
            )
            .drifts
    }

    #[test]
    fn a_record_reverts_with_a_guard_on_what_it_overwrites() {
        let d = drifts(5, "app:1");
        let ops = drift_revert_ops(&d[0]).expect("ops");
        assert_eq!(
            ops,
            [
                json!({"op": "test", "path": "/spec/replicas", "value": 5}),
                json!({"op": "replace", "path": "/spec/replicas", "value": 3})
            ]
        );
    }

    #[test]
    fn hashed_values_are_never_put_in_a_patch() {
        let mut d = drifts(5, "app:1").remove(0);
        d.expected = Some(json!(Redactor::with_key([7; 32]).token(b"secret")));
        assert!(drift_revert_ops(&d).is_none());
    }
}
