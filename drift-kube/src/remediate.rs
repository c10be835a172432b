//! [`Remediator`] for a cluster: guarded JSON Patches, dry run supported, and server-side apply with
//! field manager `drift-detector` to re-create missing objects.

use async_trait::async_trait;
use drift_core::kinds;
use drift_core::ports::{
    RemediationAction, RemediationMode, RemediationOutcome, RemediationPlan, RemediationStatus, Remediator,
};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};

/// The field manager drift-detector writes with.
pub const FIELD_MANAGER: &str = "drift-detector";

/// Fixes drift in the cluster directly.
///
/// - `Revert` sends the plan's JSON Patch (`application/json-patch+json`). Its `test` operations make
///   the API server refuse the whole patch if live moved on since the plan: that comes back as
///   [`RemediationStatus::Conflict`], and the caller re-reads and re-plans. Nothing is forced.
/// - `Reapply` server-side applies the desired object with field manager `drift-detector` (Secrets
///   are skipped: their values are redacted here; re-apply them from the source of truth).
/// - `Adopt` and `Track` are not cluster operations and are skipped.
///
/// [`RemediationMode::DryRun`] sends the request with `dryRun=All` only. [`RemediationMode::Apply`]
/// sends it with `dryRun=All` first and for real only when the server accepted the dry run, so a
/// refused fix never half-happens.
#[derive(Clone)]
pub struct KubeRemediator {
    client: kube::Client,
}

impl std::fmt::Debug for KubeRemediator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeRemediator")
    }
}

impl KubeRemediator {
    /// A remediator on a client.
    pub fn new(client: kube::Client) -> Self {
        KubeRemediator { client }
    }

    fn api(&self, plan: &RemediationPlan) -> Option<Api<DynamicObject>> {
        let k = &plan.key;
        let info = kinds::lookup(&k.group, &k.kind);
        let plural = info
            .map(|i| i.plural.to_string())
            .unwrap_or_else(|| format!("{}s", k.kind.to_lowercase()));
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&k.group, &k.version, &k.kind), &plural);
        Some(match &k.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        })
    }
}

fn classify(e: &kube::Error) -> RemediationStatus {
    match e {
        // 422 naming invalid field values (`FieldValueInvalid`, `FieldValueForbidden`...): the server
        // refuses the change itself, an immutable field. No patch fixes that; never retried.
        kube::Error::Api(s) if s.code == 422 && is_invalid_value(s) => RemediationStatus::Rejected,
        // 409: a conflicting write; 422 otherwise: a `test` guard failed (live changed, the
        // server's handlers/patch.go answers a failed JSON Patch so); 404: the object is gone.
        kube::Error::Api(s) if matches!(s.code, 404 | 409 | 422) => RemediationStatus::Conflict,
        _ => RemediationStatus::Failed,
    }
}

fn is_invalid_value(s: &kube::core::Status) -> bool {
    s.details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason.starts_with("FieldValue")))
}

#[async_trait]
impl Remediator for KubeRemediator {
    fn name(&self) -> &str {
        "cluster"
    }

    async fn remediate(&self, plan: &RemediationPlan, mode: RemediationMode) -> RemediationOutcome {
        if mode == RemediationMode::Apply {
            let dry = self.send(plan, RemediationMode::DryRun).await;
            match dry.status {
                RemediationStatus::DryRunOk => {}
                RemediationStatus::Skipped => return RemediationOutcome { mode, ..dry },
                _ => {
                    return RemediationOutcome {
                        mode,
                        message: format!("the dry run was refused: {}", dry.message),
                        ..dry
                    };
                }
            }
        }
        self.send(plan, mode).await
    }
}

impl KubeRemediator {
    async fn send(&self, plan: &RemediationPlan, mode: RemediationMode) -> RemediationOutcome {
        let out = |status, message: String| RemediationOutcome {
            key: plan.key.clone(),
            status,
            message,
            mode,
        };
        let Some(api) = self.api(plan) else {
            return out(RemediationStatus::Failed, "unknown kind".into());
        };
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            dry_run: mode == RemediationMode::DryRun,
            ..Default::default()
        };
        let ok_status = if params.dry_run {
            RemediationStatus::DryRunOk
        } else {
            RemediationStatus::Applied
        };
        let span = tracing::info_span!("remediate", kind = %plan.key.kind, namespace = plan.key.namespace.as_deref().unwrap_or(""),
            name = %plan.key.name, action = plan.action.name(), dry_run = params.dry_run);
        let _e = span.enter();
        match &plan.action {
            RemediationAction::Revert { patch } => {
                if patch.0.is_empty() {
                    return out(ok_status, "nothing to change".into());
                }
                let result = api
                    .patch(&plan.key.name, &params, &Patch::Json::<()>(patch.clone()))
                    .await;
                match result {
                    Ok(_) => out(
                        ok_status,
                        format!(
                            "{} patch operations {}",
                            patch.0.len(),
                            if params.dry_run { "validated" } else { "applied" }
                        ),
                    ),
                    Err(e) => {
                        let status = classify(&e);
                        tracing::info!(error = %e, ?status, "patch refused");
                        out(status, e.to_string())
                    }
                }
            }
            RemediationAction::Reapply => {
                let Some(desired) = &plan.desired else {
                    return out(RemediationStatus::Skipped, "no desired object to re-apply".into());
                };
                if drift_core::redact::is_secret(&desired.object) {
                    return out(
                        RemediationStatus::Skipped,
                        "Secret values are redacted here; re-apply the Secret from the source of truth"
                            .into(),
                    );
                }
                // A create, not a forced apply: if someone re-created the object meanwhile, this is a
                // 409 (a conflict to re-plan), never an overwrite of their object.
                let obj: kube::api::DynamicObject = match serde_json::from_value(desired.object.clone()) {
                    Ok(o) => o,
                    Err(e) => return out(RemediationStatus::Failed, format!("the desired object: {e}")),
                };
                let params = kube::api::PostParams {
                    dry_run: mode == RemediationMode::DryRun,
                    field_manager: Some(FIELD_MANAGER.to_string()),
                };
                match api.create(&params, &obj).await {
                    Ok(_) => out(ok_status, "desired object re-created".into()),
                    Err(e) => out(classify(&e), e.to_string()),
                }
            }
            other => out(
                RemediationStatus::Skipped,
                format!(
                    "the cluster remediator does not {}; use the source of truth",
                    other.name()
                ),
            ),
        }
    }
}
