//! The setup steps, as library functions (the binary's `hub` subcommands). Every step is idempotent:
//! running it twice changes nothing the second time, and each returns a [`SetupReport`] saying what it
//! created, updated or left alone.
//!
//! | step | creates |
//! |---|---|
//! | [`install_base`] | space `<project>-base` (labels `project`, `environment=base`) with the detector's own units (namespace, RBAC, Deployment, Service); space `<project>-drift-records` with the named drift filters |
//! | [`create_environments`] | spaces `<project>-dev`, `-staging`, `-prod`, each unit cloned from the space before |
//! | [`connect_target`] | a Target for the cluster, made the space's release Target and set on every unit of the space |
//! | [`publish_space`] | a Release of the space (its GitOps agent then syncs it into the cluster) |
//! | [`promote`] | the upgrade of every stale unit of the next environment, then a Release of it |
//! | [`deploy_test_workloads`] | units `namespace-drift-test`, `backend-api`, `frontend-web`, `database-postgres` |

use crate::client::{ConfigHubClient, DataWrite, Ensured, UnitQuery, UpdateOptions};
use crate::environments::{Chain, SetupReport};
use crate::error::{ConfigHubError, Result};
use crate::model::{KUBERNETES_YAML, Labels, ReleasePublishRequest, ReleasePublishResponse, Space, Unit};

pub use crate::environments::{Promotion, create_chain as create_environments, promote};

/// A unit to install: slug, YAML and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSpec {
    /// Slug.
    pub slug: String,
    /// Kubernetes YAML (one or more documents).
    pub data: String,
    /// Labels.
    pub labels: Labels,
}

impl UnitSpec {
    /// A unit spec.
    pub fn new(slug: impl Into<String>, data: impl Into<String>, labels: &[(&str, &str)]) -> Self {
        UnitSpec {
            slug: slug.into(),
            data: data.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }
}

/// The slug of a project's drift-records space.
pub fn records_space(project: &str) -> String {
    format!("{project}-drift-records")
}

/// Creates a unit, or brings an existing one to this data and these labels (labels are added, not
/// removed).
///
/// # Errors
/// ConfigHub errors; [`ConfigHubError::Data`] when the YAML does not parse.
pub async fn ensure_unit(
    client: &ConfigHubClient,
    space: &Space,
    spec: &UnitSpec,
) -> Result<(Unit, Ensured)> {
    let entity = format!("unit {} in {}", spec.slug, space.slug);
    crate::yaml::documents(&spec.data).map_err(|reason| ConfigHubError::Data {
        entity: entity.clone(),
        reason,
    })?;
    if let Some(mut u) = client.unit_by_slug(&space.space_id, &spec.slug).await? {
        // The data hash says whether the data is the same without reading it.
        let same_data = u.data_hash == crate::model::data_hash(spec.data.as_bytes());
        let same_labels = spec.labels.iter().all(|(k, v)| u.labels.get(k) == Some(v));
        if same_data && same_labels {
            return Ok((u, Ensured::Unchanged));
        }
        if !same_labels {
            u.labels.extend(spec.labels.clone());
            let patch = serde_json::json!({"Labels": u.labels});
            u = client
                .patch_unit(&space.space_id, &u.unit_id, patch, &UpdateOptions::default())
                .await?;
        }
        if !same_data {
            let w = DataWrite::if_match(u.data_hash.clone())
                .description("drift-detector setup: brought to the installed version");
            u = client
                .put_unit_data(&space.space_id, &u.unit_id, spec.data.as_bytes(), &w)
                .await?;
        }
        return Ok((u, Ensured::Updated));
    }
    let u = Unit {
        slug: spec.slug.clone(),
        toolchain_type: KUBERNETES_YAML.into(),
        labels: spec.labels.clone(),
        last_change_description: "drift-detector setup".into(),
        ..Unit::default()
    };
    let created = client
        .create_unit_with_data(&space.space_id, &u, spec.data.as_bytes())
        .await?;
    Ok((created, Ensured::Created))
}

/// Installs the base space with the detector's own units, and the drift-records space with the named
/// filters.
///
/// # Errors
/// ConfigHub errors.
pub async fn install_base(
    client: &ConfigHubClient,
    project: &str,
    units: &[UnitSpec],
) -> Result<SetupReport> {
    let mut report = SetupReport::default();
    let chain = Chain::standard(project);
    let base_slug = chain.space_slug("base");
    let labels: Labels = [
        ("project".to_string(), project.to_string()),
        ("environment".to_string(), "base".to_string()),
        ("base".to_string(), "true".to_string()),
    ]
    .into();
    let (base, how) = client
        .ensure_space(&base_slug, &format!("{project} base"), &labels)
        .await?;
    report.push(format!("space {base_slug}"), how);
    for spec in units {
        let (_, how) = ensure_unit(client, &base, spec).await?;
        report.push(format!("unit {} in {base_slug}", spec.slug), how);
    }
    let rs = records_space(project);
    let rlabels: Labels = [
        ("project".to_string(), project.to_string()),
        ("drift-detector".to_string(), "records".to_string()),
    ]
    .into();
    let (records, how) = client.ensure_space(&rs, "Drift records", &rlabels).await?;
    report.push(format!("space {rs}"), how);
    for (slug, how) in crate::records::ensure_named_filters(client, &records).await? {
        report.push(format!("filter {slug} in {rs}"), how);
    }
    Ok(report)
}

/// Connects a space to a cluster: a Target with this slug (created if missing) becomes the space's
/// release Target, and every unit of the space is assigned to it, so its Releases bundle them.
///
/// # Errors
/// ConfigHub errors.
pub async fn connect_target(
    client: &ConfigHubClient,
    space_slug: &str,
    target_slug: &str,
) -> Result<SetupReport> {
    let mut report = SetupReport::default();
    let space = client.require_space(space_slug).await?;
    let (target, how) = client.ensure_target(&space.space_id, target_slug).await?;
    report.push(format!("target {target_slug} in {space_slug}"), how);
    if space.release_target_id.as_deref() == Some(target.target_id.as_str()) {
        report.push(format!("release target of {space_slug}"), Ensured::Unchanged);
    } else {
        client
            .patch_space(
                &space.space_id,
                serde_json::json!({"ReleaseTargetID": target.target_id}),
            )
            .await?;
        report.push(format!("release target of {space_slug}"), Ensured::Updated);
    }
    for u in client
        .list_units(&space.space_id, &UnitQuery::default())
        .await?
        .into_iter()
        .map(|e| e.unit)
    {
        if u.target_id.as_deref() == Some(target.target_id.as_str()) {
            report.push(
                format!("target of unit {} in {space_slug}", u.slug),
                Ensured::Unchanged,
            );
            continue;
        }
        let patch = serde_json::json!({"TargetID": target.target_id});
        client
            .patch_unit(&space.space_id, &u.unit_id, patch, &UpdateOptions::default())
            .await?;
        report.push(
            format!("target of unit {} in {space_slug}", u.slug),
            Ensured::Updated,
        );
    }
    Ok(report)
}

/// Publishes a Release of a space (every unit assigned to its release Target, at head). When nothing
/// changed since the latest Release, the answer is that Release with a message.
///
/// # Errors
/// ConfigHub errors (400 when the space has no release Target: run [`connect_target`]).
pub async fn publish_space(
    client: &ConfigHubClient,
    space_slug: &str,
    why: &str,
) -> Result<ReleasePublishResponse> {
    let space = client.require_space(space_slug).await?;
    let req = ReleasePublishRequest {
        annotations: [(
            "drift-detector/reason".to_string(),
            why.chars().take(1024).collect(),
        )]
        .into(),
        ..ReleasePublishRequest::default()
    };
    client.publish_release(&space.space_id, &req).await
}

/// Splits the demo workloads into one unit per application (by the `app` label or the name):
/// `namespace-<name>` for namespaces, and `backend-api`, `frontend-web`, `database-postgres`.
///
/// # Errors
/// [`ConfigHubError::Data`] when the YAML does not parse.
pub fn workload_units(yaml: &str) -> Result<Vec<UnitSpec>> {
    let docs = crate::yaml::documents(yaml).map_err(|reason| ConfigHubError::Data {
        entity: "test workloads".into(),
        reason,
    })?;
    let mut groups: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for d in docs {
        let s = |p: &str| {
            d.pointer(p)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let slug = match s("/kind").as_deref() {
            Some("Namespace") => format!("namespace-{}", s("/metadata/name").unwrap_or_default()),
            _ => s("/metadata/labels/app")
                .or_else(|| s("/metadata/name"))
                .unwrap_or_else(|| "misc".into()),
        };
        match groups.iter_mut().find(|(g, _)| *g == slug) {
            Some((_, v)) => v.push(d),
            None => groups.push((slug, vec![d])),
        }
    }
    groups
        .into_iter()
        .map(|(slug, docs)| {
            let data = crate::yaml::render(&docs).map_err(|reason| ConfigHubError::Data {
                entity: format!("unit {slug}"),
                reason,
            })?;
            // The unit carries its application's tier (`tier: critical` makes it a critical service).
            let tier = docs.iter().find_map(|d| {
                d.pointer("/metadata/labels/tier")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string)
            });
            let mut spec = UnitSpec::new(
                slug.clone(),
                data,
                &[
                    ("app", slug.as_str()),
                    ("part-of", "drift-test"),
                    ("monitor", "true"),
                ],
            );
            if let Some(t) = tier {
                spec.labels.insert("tier".into(), t);
            }
            Ok(spec)
        })
        .collect()
}

/// Deploys the test workloads as units of a space (created if missing, labelled as the project's).
///
/// # Errors
/// ConfigHub errors; [`ConfigHubError::Data`] when the YAML does not parse.
pub async fn deploy_test_workloads(
    client: &ConfigHubClient,
    project: &str,
    space_slug: &str,
    yaml: &str,
) -> Result<SetupReport> {
    let mut report = SetupReport::default();
    let labels: Labels = [("project".to_string(), project.to_string())].into();
    let (space, how) = client.ensure_space(space_slug, space_slug, &labels).await?;
    report.push(format!("space {space_slug}"), how);
    for spec in workload_units(yaml)? {
        let (_, how) = ensure_unit(client, &space, &spec).await?;
        report.push(format!("unit {} in {space_slug}", spec.slug), how);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_split_by_application() {
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: drift-test}\n---\n\
            apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: backend-api, labels: {app: backend-api}}\n---\n\
            apiVersion: v1\nkind: Service\nmetadata: {name: backend-api, labels: {app: backend-api}}\n---\n\
            apiVersion: v1\nkind: Secret\nmetadata: {name: db-credentials, labels: {app: database-postgres}}\n";
        let units = workload_units(yaml).expect("split");
        let slugs: Vec<&str> = units.iter().map(|u| u.slug.as_str()).collect();
        assert_eq!(
            slugs,
            ["namespace-drift-test", "backend-api", "database-postgres"]
        );
        assert_eq!(crate::yaml::documents(&units[1].data).expect("yaml").len(), 2);
    }
}
