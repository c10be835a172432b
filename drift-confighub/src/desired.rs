//! [`DesiredStore`] over ConfigHub units: the desired resources of one or more spaces.
//!
//! By default a unit's desired configuration is its **released** revision (`LastReleasedRevisionNum`):
//! what the cluster is supposed to run, since configuration reaches a cluster only through a Release.
//! A head ahead of it is "unreleased changes" ([`ConfigHubDesiredStore::unreleased`]), never drift;
//! once a Release carries it, it becomes the desired state. A unit never released is not desired yet.
//!
//! Data is read in bulk (`GET /unit_data` for every unit whose released revision is its head), the rest
//! per unit from `.../revision/{id}/data`; polling lists only revision numbers and hashes, and re-reads
//! data only for units that changed. One unit that does not load is reported by name; the others load.

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
use crate::model::{KUBERNETES_YAML, Space, Unit, data_hash};
use crate::where_clause::{and, quote};

/// Which revision of a unit is the desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DesiredRevision {
    /// The revision last published in a Release (`LastReleasedRevisionNum`): what the cluster is supposed
    /// to run. Units never released are skipped; a head ahead of it is "unreleased changes".
    #[default]
    Released,
    /// The head revision, released or not (unreleased edits then show as drift).
    Head,
}

impl std::str::FromStr for DesiredRevision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "released" => Ok(DesiredRevision::Released),
            "head" => Ok(DesiredRevision::Head),
            other => Err(format!("--desired-revision is released or head, not {other:?}")),
        }
    }
}

/// A unit whose head has changes no Release carries yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unreleased {
    /// `confighub:<space>/<unit>`.
    pub source: String,
    /// Head revision.
    pub head: i64,
    /// Released revision (0: never released).
    pub released: i64,
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
            revision: DesiredRevision::Released,
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
    released: i64,
    hash: String,
}

/// Data read, by (unit id, revision number).
type DataCache = BTreeMap<(String, i64), Arc<[u8]>>;

/// Desired state from ConfigHub units (`Kubernetes/YAML` toolchain).
#[derive(Clone)]
pub struct ConfigHubDesiredStore {
    client: ConfigHubClient,
    config: Arc<DesiredStoreConfig>,
    seen: Arc<Mutex<BTreeMap<String, Seen>>>,
    /// Data read, by unit id and revision number: a revision's data never changes.
    cache: Arc<Mutex<DataCache>>,
    unreleased: Arc<Mutex<Vec<Unreleased>>>,
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
            cache: Arc::new(Mutex::new(BTreeMap::new())),
            unreleased: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Units whose head has changes no Release carries yet, as of the last load or poll (sorted by
    /// source). With [`DesiredRevision::Released`] they are not drift: the cluster runs the release.
    pub fn unreleased(&self) -> Vec<Unreleased> {
        self.unreleased
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn cached(&self, unit_id: &str, rev: i64) -> Option<Arc<[u8]>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(unit_id.to_string(), rev))
            .cloned()
    }

    fn remember(&self, unit_id: &str, rev: i64, data: Arc<[u8]>) {
        let mut c = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.retain(|(u, r), _| u != unit_id || *r == rev);
        c.insert((unit_id.to_string(), rev), data);
    }

    /// Reads the head data of every unit of a space in one paged `/unit_data` call into the cache (only
    /// the units that need it: not cached yet at their head).
    async fn prefetch_heads(&self, space: &Space, units: &[Unit]) -> Result<()> {
        let need: Vec<&Unit> = units
            .iter()
            .filter(|u| self.wanted_revision(u) == Some(u.head_revision_num))
            .filter(|u| self.cached(&u.unit_id, u.head_revision_num).is_none())
            .collect();
        if need.is_empty() {
            return Ok(());
        }
        let w = and([
            format!("SpaceID = {}", quote(&space.space_id)),
            format!("ToolchainType = {}", quote(KUBERNETES_YAML)),
            self.config.r#where.clone().unwrap_or_default(),
        ]);
        for d in self.client.search_unit_data(&UnitQuery::with_where(w)).await? {
            if let Some(u) = need.iter().find(|u| u.unit_id == d.unit_id) {
                let bytes: Arc<[u8]> = d.data.into_bytes().into();
                // Written between the list and this read? Then the hash differs: read it later, per unit.
                if data_hash(&bytes) == u.data_hash {
                    self.remember(&u.unit_id, u.head_revision_num, bytes);
                }
            }
        }
        Ok(())
    }

    /// The revision that counts as desired, or `None` when the unit has none yet.
    fn wanted_revision(&self, unit: &Unit) -> Option<i64> {
        match self.config.revision {
            DesiredRevision::Head => Some(unit.head_revision_num),
            DesiredRevision::Released => {
                (unit.last_released_revision_num > 0).then_some(unit.last_released_revision_num)
            }
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
    async fn desired_data(&self, unit: &Unit) -> Result<Option<(Arc<[u8]>, i64)>> {
        let Some(n) = self.wanted_revision(unit) else {
            return Ok(None);
        };
        if let Some(d) = self.cached(&unit.unit_id, n) {
            return Ok(Some((d, n)));
        }
        let bytes: Arc<[u8]> = if n == unit.head_revision_num {
            self.client
                .read_unit_data(&unit.space_id, &unit.unit_id)
                .await?
                .0
                .into()
        } else {
            self.client
                .revision_data_by_num(&unit.space_id, &unit.unit_id, n)
                .await?
                .0
                .into()
        };
        self.remember(&unit.unit_id, n, bytes.clone());
        Ok(Some((bytes, n)))
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
        let text = std::str::from_utf8(&data).map_err(|e| err(format!("the data is not UTF-8 text: {e}")))?;
        let loaded = parse_documents(&source, text);
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

    fn seen_of(space: &Space, u: &Unit) -> Seen {
        Seen {
            source: unit_source(&space.slug, &u.slug),
            revision: u.head_revision_num,
            released: u.last_released_revision_num,
            hash: u.data_hash.clone(),
        }
    }

    fn note_unreleased(&self, all: &[(Space, Unit)]) {
        let mut list: Vec<Unreleased> = all
            .iter()
            .filter(|(_, u)| u.has_unreleased_changes())
            .map(|(s, u)| Unreleased {
                source: unit_source(&s.slug, &u.slug),
                head: u.head_revision_num,
                released: u.last_released_revision_num,
            })
            .collect();
        list.sort_by(|a, b| a.source.cmp(&b.source));
        if self.config.revision == DesiredRevision::Released {
            for u in &list {
                tracing::info!(
                    unit = %u.source,
                    head = u.head,
                    released = u.released,
                    "unreleased changes in ConfigHub (not drift: the cluster runs the released revision)"
                );
            }
        }
        *self
            .unreleased
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = list;
    }

    async fn load_all(&self) -> Result<DesiredSet> {
        let mut set = DesiredSet::default();
        let mut seen = BTreeMap::new();
        let mut all = Vec::new();
        for space in self.spaces().await? {
            let units: Vec<Unit> = self
                .client
                .list_units(&space.space_id, &self.query(None))
                .await?
                .into_iter()
                .map(|e| e.unit)
                .collect();
            if let Err(e) = self.prefetch_heads(&space, &units).await {
                tracing::debug!(error = %e, "bulk data read failed; reading unit by unit");
            }
            for u in units {
                seen.insert(u.unit_id.clone(), Self::seen_of(&space, &u));
                match self.decode(&space, &u).await {
                    Ok(Some(rs)) => set.resources.extend(rs),
                    Ok(None) => tracing::debug!(unit = %u.slug, "skipping a unit that was never released"),
                    Err(e) => {
                        tracing::warn!(source = %e.source, reason = %e.reason, "a unit does not load; the others do");
                        set.errors.push(e);
                    }
                }
                all.push((space.clone(), u));
            }
        }
        self.note_unreleased(&all);
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
        let mut changed: Vec<(Space, Unit)> = Vec::new();
        let mut all = Vec::new();
        let before = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for space in self.spaces().await? {
            let q = self.query(Some(
                "HeadRevisionNum,LastReleasedRevisionNum,DataHash,Labels,ToolchainType",
            ));
            for u in self
                .client
                .list_units(&space.space_id, &q)
                .await?
                .into_iter()
                .map(|e| e.unit)
            {
                let s = Self::seen_of(&space, &u);
                let prev = before.get(&u.unit_id);
                // What matters depends on the mode: a head edit changes nothing released.
                let relevant = match (self.config.revision, prev) {
                    (_, None) => true,
                    (DesiredRevision::Head, Some(p)) => p.revision != s.revision || p.hash != s.hash,
                    (DesiredRevision::Released, Some(p)) => p.released != s.released || p.source != s.source,
                };
                if relevant {
                    changed.push((space.clone(), u.clone()));
                }
                now.insert(u.unit_id.clone(), s);
                all.push((space.clone(), u));
            }
        }
        self.note_unreleased(&all);
        for (id, s) in &before {
            if !now.contains_key(id) {
                out.push(DesiredChange::Replaced {
                    source: s.source.clone(),
                    resources: Vec::new(),
                });
            }
        }
        for (space, listed) in changed {
            // The list was narrowed by `select`: read the whole unit before decoding it.
            let unit = match self.client.get_unit(&space.space_id, &listed.unit_id).await {
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
