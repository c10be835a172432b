//! [`DesiredStore`] over ConfigHub units: the desired resources of one or more spaces.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use drift_core::parse_documents;
use drift_core::ports::{
    DesiredChange, DesiredResource, DesiredSet, DesiredStore, PortError, Provenance, SourceError,
};
use futures::stream::{BoxStream, StreamExt};

use crate::client::{ConfigHubClient, UnitQuery};
use crate::error::{ConfigHubError, Result};
use crate::model::{KUBERNETES_YAML, Space, Unit};
use crate::where_clause::{and, quote};

/// Which revision of a unit is the desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DesiredRevision {
    /// The head revision: what ConfigHub says should run (unapplied edits show as drift).
    #[default]
    Head,
    /// The revision last applied: what was pushed to the cluster (units never applied are skipped).
    LastApplied,
}

/// What to load.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DesiredStoreConfig {
    /// Space slugs.
    pub spaces: Vec<String>,
    /// An extra where-clause over units (`Labels.monitor = 'true'`).
    pub r#where: Option<String>,
    /// Which revision counts.
    pub revision: DesiredRevision,
    /// How often [`DesiredStore::changes`] asks ConfigHub what changed (default 10 s). Only revision
    /// numbers and hashes are listed; data is fetched for units that changed.
    pub poll_interval: Duration,
    /// The namespace of namespaced objects that name none (default `default`).
    pub default_namespace: String,
    /// The label naming a unit's environment (on the unit or its space; default `environment`).
    pub environment_label: String,
}

impl DesiredStoreConfig {
    /// The units of these spaces.
    pub fn spaces(spaces: impl IntoIterator<Item = impl Into<String>>) -> Self {
        DesiredStoreConfig {
            spaces: spaces.into_iter().map(Into::into).collect(),
            r#where: None,
            revision: DesiredRevision::Head,
            poll_interval: Duration::from_secs(10),
            default_namespace: "default".into(),
            environment_label: "environment".into(),
        }
    }
    /// Adds a where-clause.
    #[must_use]
    pub fn with_where(mut self, w: impl Into<String>) -> Self {
        self.r#where = Some(w.into());
        self
    }
    /// Sets the revision.
    #[must_use]
    pub fn revision(mut self, r: DesiredRevision) -> Self {
        self.revision = r;
        self
    }
    /// Sets the poll interval.
    #[must_use]
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }
}

/// What was last seen of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    source: String,
    revision: i64,
    applied: i64,
    hash: String,
}

/// Desired state from ConfigHub units (`Kubernetes/YAML` toolchain).
#[derive(Clone)]
pub struct ConfigHubDesiredStore {
    client: ConfigHubClient,
    config: Arc<DesiredStoreConfig>,
    seen: Arc<Mutex<BTreeMap<String, Seen>>>,
}

impl std::fmt::Debug for ConfigHubDesiredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigHubDesiredStore")
            .field("spaces", &self.config.spaces)
            .finish_non_exhaustive()
    }
}

/// The provenance `source` of a unit.
pub fn unit_source(space_slug: &str, unit_slug: &str) -> String {
    format!("confighub:{space_slug}/{unit_slug}")
}

impl ConfigHubDesiredStore {
    /// A store over a client.
    pub fn new(client: ConfigHubClient, config: DesiredStoreConfig) -> Self {
        ConfigHubDesiredStore {
            client,
            config: Arc::new(config),
            seen: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    async fn spaces(&self) -> Result<Vec<Space>> {
        let mut out = Vec::new();
        for slug in &self.config.spaces {
            out.push(self.client.require_space(slug).await?);
        }
        Ok(out)
    }

    fn query(&self, select: Option<&str>) -> UnitQuery {
        let w = and([
            format!("ToolchainType = {}", quote(KUBERNETES_YAML)),
            self.config.r#where.clone().unwrap_or_default(),
        ]);
        let q = UnitQuery::with_where(w);
        match select {
            Some(s) => q.select(s),
            None => q,
        }
    }

    /// The data that counts as desired for a unit, or `None` when it has none yet.
    async fn desired_data(&self, unit: &Unit) -> Result<Option<(String, i64)>> {
        match self.config.revision {
            DesiredRevision::Head => Ok(Some((unit.data.clone(), unit.head_revision_num))),
            DesiredRevision::LastApplied => {
                let n = unit.last_applied_revision_num;
                if n == 0 {
                    return Ok(None);
                }
                if n == unit.head_revision_num {
                    return Ok(Some((unit.data.clone(), n)));
                }
                let revs = self.client.revisions(&unit.space_id, &unit.unit_id).await?;
                Ok(revs
                    .into_iter()
                    .find(|r| r.revision_num == n)
                    .map(|r| (r.data, n)))
            }
        }
    }

    /// Decodes one unit: its resources, or why it cannot be used.
    async fn decode(
        &self,
        space: &Space,
        unit: &Unit,
    ) -> std::result::Result<Option<Vec<DesiredResource>>, SourceError> {
        let source = unit_source(&space.slug, &unit.slug);
        let err = |reason: String| SourceError {
            source: source.clone(),
            reason,
        };
        let Some((data, revision)) = self.desired_data(unit).await.map_err(|e| err(e.to_string()))? else {
            return Ok(None);
        };
        let bytes = crate::model::decode_data(&data).map_err(|e| err(format!("Data is not base64: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| err(format!("Data is not UTF-8 text: {e}")))?;
        let loaded = parse_documents(&source, &text);
        if let Some(e) = loaded.errors.first() {
            let more = if loaded.errors.len() > 1 {
                format!(" (and {} more)", loaded.errors.len() - 1)
            } else {
                String::new()
            };
            let text = e.to_string();
            let text = text.strip_prefix(&format!("{source}: ")).unwrap_or(&text);
            return Err(err(format!("{text}{more}")));
        }
        let env_label = &self.config.environment_label;
        let environment = unit
            .labels
            .get(env_label)
            .or_else(|| space.labels.get(env_label))
            .cloned();
        let provenance = Provenance {
            source: source.clone(),
            space: Some(space.slug.clone()),
            unit: Some(unit.slug.clone()),
            unit_id: Some(unit.unit_id.clone()),
            space_id: Some(space.space_id.clone()),
            revision: Some(revision),
            labels: unit.labels.clone(),
            environment,
        };
        Ok(Some(
            loaded
                .resources
                .into_iter()
                .map(|mut r| {
                    r.default_namespace(&self.config.default_namespace);
                    DesiredResource {
                        resource: r,
                        provenance: provenance.clone(),
                    }
                })
                .collect(),
        ))
    }

    async fn load_all(&self) -> Result<DesiredSet> {
        let mut set = DesiredSet::default();
        let mut seen = BTreeMap::new();
        for space in self.spaces().await? {
            let units = self.client.list_units(&space.space_id, &self.query(None)).await?;
            for u in units.into_iter().map(|e| e.unit) {
                seen.insert(
                    u.unit_id.clone(),
                    Seen {
                        source: unit_source(&space.slug, &u.slug),
                        revision: u.head_revision_num,
                        applied: u.last_applied_revision_num,
                        hash: u.data_hash.clone(),
                    },
                );
                match self.decode(&space, &u).await {
                    Ok(Some(rs)) => set.resources.extend(rs),
                    Ok(None) => tracing::debug!(unit = %u.slug, "skipping a unit that was never applied"),
                    Err(e) => {
                        tracing::warn!(source = %e.source, reason = %e.reason, "a unit does not load; the others do");
                        set.errors.push(e);
                    }
                }
            }
        }
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = seen;
        Ok(set)
    }

    /// One poll: the changes since the last look.
    async fn poll(&self) -> Result<Vec<DesiredChange>> {
        let mut out = Vec::new();
        let mut now = BTreeMap::new();
        let mut changed: Vec<(Space, String)> = Vec::new();
        let before = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for space in self.spaces().await? {
            let q = self.query(Some(
                "HeadRevisionNum,LastAppliedRevisionNum,DataHash,Labels,ToolchainType",
            ));
            for u in self
                .client
                .list_units(&space.space_id, &q)
                .await?
                .into_iter()
                .map(|e| e.unit)
            {
                let s = Seen {
                    source: unit_source(&space.slug, &u.slug),
                    revision: u.head_revision_num,
                    applied: u.last_applied_revision_num,
                    hash: u.data_hash.clone(),
                };
                if before.get(&u.unit_id) != Some(&s) {
                    changed.push((space.clone(), u.unit_id.clone()));
                }
                now.insert(u.unit_id.clone(), s);
            }
        }
        for (id, s) in &before {
            if !now.contains_key(id) {
                out.push(DesiredChange::Replaced {
                    source: s.source.clone(),
                    resources: Vec::new(),
                });
            }
        }
        for (space, id) in changed {
            let unit = match self.client.get_unit(&space.space_id, &id).await {
                Ok(u) => u.unit,
                Err(ConfigHubError::NotFound { .. }) => continue, // deleted meanwhile; the next poll says so
                Err(e) => return Err(e),
            };
            match self.decode(&space, &unit).await {
                Ok(Some(resources)) => out.push(DesiredChange::Replaced {
                    source: unit_source(&space.slug, &unit.slug),
                    resources,
                }),
                Ok(None) => {}
                Err(e) => out.push(DesiredChange::Failed(e)),
            }
        }
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
        Ok(out)
    }
}

#[async_trait]
impl DesiredStore for ConfigHubDesiredStore {
    async fn load(&self) -> std::result::Result<DesiredSet, PortError> {
        self.load_all().await.map_err(Into::into)
    }

    fn changes(&self) -> BoxStream<'static, std::result::Result<DesiredChange, PortError>> {
        let this = self.clone();
        let interval = self.config.poll_interval;
        let state = (
            this,
            VecDeque::<std::result::Result<DesiredChange, PortError>>::new(),
        );
        futures::stream::unfold(state, move |(this, mut buf)| async move {
            loop {
                if let Some(item) = buf.pop_front() {
                    return Some((item, (this, buf)));
                }
                tokio::time::sleep(interval).await;
                match this.poll().await {
                    Ok(changes) => buf.extend(changes.into_iter().map(Ok)),
                    Err(e) => buf.push_back(Err(e.into())),
                }
            }
        })
        .boxed()
    }
}
