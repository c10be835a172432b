//! Environment hierarchies: `<project>-base` → `-dev` → `-staging` → `-prod`, each space holding clones
//! of the units of the one before (ConfigHub's upstream/downstream), so a change is made once upstream
//! and promoted down the chain: an upgrade of the downstream space's stale units, then a Release of that
//! space (the only way configuration reaches its cluster).

use crate::client::{BulkResult, ConfigHubClient, Ensured, UnitQuery, UpdateOptions};
use crate::error::{ConfigHubError, Result};
use crate::model::{Labels, Release, ReleasePublishRequest, Space, Unit, UnitCreateOrUpdateResponse};
use crate::where_clause::{and, quote};

/// The default chain below the base space.
pub const DEFAULT_ENVIRONMENTS: &[&str] = &["dev", "staging", "prod"];

/// A project's environment chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The project prefix of every space slug.
    pub project: String,
    /// Environments in order, `base` first.
    pub environments: Vec<String>,
}

impl Chain {
    /// `base` followed by `environments`.
    pub fn new(
        project: impl Into<String>,
        environments: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let mut envs = vec!["base".to_string()];
        envs.extend(environments.into_iter().map(Into::into));
        Chain {
            project: project.into(),
            environments: envs,
        }
    }

    /// The standard chain: base → dev → staging → prod.
    pub fn standard(project: impl Into<String>) -> Self {
        Chain::new(project, DEFAULT_ENVIRONMENTS.iter().copied())
    }

    /// The space slug of an environment.
    pub fn space_slug(&self, env: &str) -> String {
        format!("{}-{env}", self.project)
    }

    /// The environment before `env`, if any.
    pub fn upstream_of(&self, env: &str) -> Option<&str> {
        let i = self.environments.iter().position(|e| e == env)?;
        i.checked_sub(1).map(|j| self.environments[j].as_str())
    }
}

/// One entity touched by a setup step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What (`space shop-dev`, `unit backend-api in shop-dev`).
    pub entity: String,
    /// What happened.
    pub result: Ensured,
}

/// What a setup step did: running it again on the same input changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupReport {
    /// Every entity looked at.
    pub steps: Vec<Step>,
}

impl SetupReport {
    pub(crate) fn push(&mut self, entity: impl Into<String>, result: Ensured) {
        self.steps.push(Step {
            entity: entity.into(),
            result,
        });
    }
    /// Adds another report's steps.
    pub fn extend(&mut self, other: SetupReport) {
        self.steps.extend(other.steps);
    }
    /// Entities created or updated.
    pub fn changed(&self) -> Vec<&Step> {
        self.steps
            .iter()
            .filter(|s| s.result != Ensured::Unchanged)
            .collect()
    }
    /// Whether nothing changed.
    pub fn is_unchanged(&self) -> bool {
        self.changed().is_empty()
    }
}

impl std::fmt::Display for SetupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.steps {
            let what = match s.result {
                Ensured::Created => "created",
                Ensured::Updated => "updated",
                Ensured::Unchanged => "unchanged",
            };
            writeln!(f, "{what:>9}  {}", s.entity)?;
        }
        Ok(())
    }
}

/// Creates the environment spaces after `base` and clones every unit of each space into the next,
/// labelled with the environment. Units already cloned are left alone (promotion updates them).
///
/// # Errors
/// ConfigHub errors; [`ConfigHubError::NotFound`] when the base space does not exist.
pub async fn create_chain(client: &ConfigHubClient, chain: &Chain) -> Result<SetupReport> {
    let mut report = SetupReport::default();
    let mut upstream = client.require_space(&chain.space_slug("base")).await?;
    for env in chain.environments.iter().skip(1) {
        let slug = chain.space_slug(env);
        let labels: Labels = [
            ("project".to_string(), chain.project.clone()),
            ("environment".to_string(), env.clone()),
        ]
        .into();
        let (space, how) = client
            .ensure_space(&slug, &format!("{} {env}", chain.project), &labels)
            .await?;
        report.push(format!("space {slug}"), how);
        let existing: Vec<Unit> = client
            .list_units(&space.space_id, &UnitQuery::default())
            .await?
            .into_iter()
            .map(|u| u.unit)
            .collect();
        for up in client
            .list_units(&upstream.space_id, &UnitQuery::default())
            .await?
            .into_iter()
            .map(|u| u.unit)
        {
            if existing.iter().any(|u| u.slug == up.slug) {
                report.push(format!("unit {} in {slug}", up.slug), Ensured::Unchanged);
                continue;
            }
            let mut l = up.labels.clone();
            l.insert("environment".into(), env.clone());
            match client.clone_unit(&space.space_id, &up, &up.slug, &l).await {
                Ok(_) => {}
                // The clone may have happened although its answer was lost.
                Err(e)
                    if e.is_retryable()
                        && client.unit_by_slug(&space.space_id, &up.slug).await?.is_some() => {}
                Err(e) => return Err(e),
            }
            report.push(format!("unit {} in {slug}", up.slug), Ensured::Created);
        }
        upstream = space;
    }
    Ok(report)
}

/// Units of a space whose upstream unit has changed since they last took it.
///
/// # Errors
/// ConfigHub errors.
pub async fn needs_upgrade(client: &ConfigHubClient, space: &Space) -> Result<Vec<Unit>> {
    client.stale_downstream_units(&space.space_id).await
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    /// The upgrade of the stale units, one item per unit.
    pub upgraded: BulkResult<UnitCreateOrUpdateResponse>,
    /// The Release of the downstream space, when one was published (not on a dry run, nor when the
    /// upgrade failed for some unit, nor when nothing was stale).
    pub release: Option<Release>,
    /// What happened to the Release, in words.
    pub note: String,
}

/// Promotes `from` to `to`: every unit of `to` whose upstream in `from` has moved on takes the upstream
/// changes (a three-way merge that keeps `to`'s own edits), in one bulk call with a per-unit result;
/// then, when every upgrade went through, a Release of `to` is published so its cluster gets them.
/// Nothing else is touched.
///
/// # Errors
/// ConfigHub errors; [`ConfigHubError::Setup`] when `to` is not downstream of `from` in the chain.
pub async fn promote(
    client: &ConfigHubClient,
    chain: &Chain,
    from: &str,
    to: &str,
    dry_run: bool,
) -> Result<Promotion> {
    if chain.upstream_of(to) != Some(from) {
        return Err(ConfigHubError::Setup(format!(
            "{to} is not the environment after {from} (the chain is {})",
            chain.environments.join(" → ")
        )));
    }
    let from_space = client.require_space(&chain.space_slug(from)).await?;
    let to_space = client.require_space(&chain.space_slug(to)).await?;
    // The join on UpstreamUnit needs include=UpstreamUnitID; the client adds it.
    let w = and([
        format!("SpaceID = {}", quote(&to_space.space_id)),
        format!("UpstreamSpaceID = {}", quote(&from_space.space_id)),
        "UpstreamRevisionNum < UpstreamUnit.HeadRevisionNum".to_string(),
    ]);
    if client
        .list_all_units(&UnitQuery::with_where(w.clone()))
        .await?
        .is_empty()
    {
        return Ok(Promotion {
            upgraded: BulkResult {
                status: 200,
                items: Vec::new(),
            },
            release: None,
            note: format!("{to} is up to date with {from}: nothing to promote"),
        });
    }
    let mut opts = UpdateOptions::upgrade();
    opts.dry_run = dry_run;
    let upgraded = client
        .bulk_patch_units(&w, serde_json::Value::Null, &opts)
        .await?;
    if dry_run {
        return Ok(Promotion {
            upgraded,
            release: None,
            note: "dry run: nothing upgraded or released".into(),
        });
    }
    let failed = upgraded.items.iter().filter(|i| i.error.is_some()).count();
    if failed > 0 {
        return Ok(Promotion {
            upgraded,
            release: None,
            note: format!("not released: {failed} unit(s) did not upgrade; fix them and promote again"),
        });
    }
    if to_space.release_target_id.is_none() {
        return Ok(Promotion {
            upgraded,
            release: None,
            note: format!(
                "upgraded; not released: {} has no release Target (connect it to a cluster first)",
                to_space.slug
            ),
        });
    }
    let req = ReleasePublishRequest {
        annotations: [(
            "drift-detector/promotion".to_string(),
            format!("promoted from {}", from_space.slug),
        )]
        .into(),
        ..ReleasePublishRequest::default()
    };
    let published = client.publish_release(&to_space.space_id, &req).await?;
    let note = if published.message.is_empty() {
        format!(
            "release {} of {} published",
            published.release.release_num, to_space.slug
        )
    } else {
        published.message.clone()
    };
    Ok(Promotion {
        upgraded,
        release: Some(published.release),
        note,
    })
}

/// Pushes an upstream unit's head to every downstream unit that has not taken it yet (`cub unit
/// push-upgrade`).
///
/// # Errors
/// ConfigHub errors.
pub async fn push_upgrade(
    client: &ConfigHubClient,
    upstream: &Unit,
) -> Result<BulkResult<UnitCreateOrUpdateResponse>> {
    let w = and([
        format!("Unit.UpstreamUnitID = {}", quote(&upstream.unit_id)),
        "Unit.UpstreamRevisionNum < UpstreamUnit.HeadRevisionNum".to_string(),
    ]);
    client
        .bulk_patch_units(&w, serde_json::Value::Null, &UpdateOptions::upgrade())
        .await
}
