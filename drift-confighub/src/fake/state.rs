//! The simulator's data and the rules it enforces (ConfigHub v0.8.5, `confighub-api.md` §2).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{FakeHubConfig, FaultCounts, Faults, Rng};
use crate::model::{ChangeSet, Filter, Release, ReleaseLiveStatus, Revision, Space, Target, Unit, data_hash};
use crate::where_clause::{self, Entity, WhereClause, eval};

/// One unit of a Release as the GitOps agent receives it.
#[derive(Debug, Clone)]
pub struct DeliveredUnit {
    /// Unit slug.
    pub slug: String,
    /// The bundled revision.
    pub revision_num: i64,
    /// Its configuration.
    pub data: Vec<u8>,
}

/// A Release as a GitOps agent pulls it from the registry.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Space slug.
    pub space: String,
    /// The Release.
    pub release: Release,
    /// The bundled units, namespaces first.
    pub units: Vec<DeliveredUnit>,
}

/// The GitOps agent: syncs a published Release into a cluster; `Err` is a failed sync with that message.
pub type ReleaseHook = Arc<dyn Fn(Delivery) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// An error answered as ConfigHub's `StandardErrorResponse`.
#[derive(Debug, Clone)]
pub(crate) struct ApiErr {
    pub(crate) status: u16,
    pub(crate) message: String,
}

impl ApiErr {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> ApiErr {
        ApiErr {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad(message: impl Into<String>) -> ApiErr {
        ApiErr::new(400, message)
    }
    pub(crate) fn not_found(what: impl Into<String>) -> ApiErr {
        ApiErr::new(404, format!("{} not found", what.into()))
    }
    /// `Code` is the HTTP status as a string (`StandardErrorResponse`).
    pub(crate) fn code(&self) -> String {
        self.status.to_string()
    }
}

pub(crate) type R<T> = Result<T, ApiErr>;

pub(crate) struct StoredRevision {
    pub(crate) rev: Revision,
    pub(crate) data: Vec<u8>,
}

pub(crate) struct StoredUnit {
    pub(crate) unit: Unit,
    pub(crate) data: Vec<u8>,
    pub(crate) revisions: Vec<StoredRevision>,
}

impl StoredUnit {
    fn revision(&self, num: i64) -> Option<&StoredRevision> {
        self.revisions.iter().find(|r| r.rev.revision_num == num)
    }
}

pub(crate) struct StoredRelease {
    pub(crate) release: Release,
    /// Unit id → bundled revision number.
    pub(crate) units: BTreeMap<String, i64>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) org: String,
    next: u64,
    pub(crate) spaces: BTreeMap<String, Space>,
    pub(crate) units: BTreeMap<String, StoredUnit>,
    pub(crate) filters: BTreeMap<String, Filter>,
    pub(crate) change_sets: BTreeMap<String, (String, ChangeSet)>,
    pub(crate) targets: BTreeMap<String, Target>,
    pub(crate) releases: BTreeMap<String, StoredRelease>,
    /// Releases the simulated GitOps agent synced: id, and the error if the sync failed.
    pub(crate) delivered: Vec<(String, Option<String>)>,
}

pub(crate) struct Shared {
    pub(crate) config: FakeHubConfig,
    state: Mutex<State>,
    faults: Mutex<Faults>,
    pub(crate) rng: Rng,
    counts: Mutex<FaultCounts>,
    pub(crate) log: Mutex<Vec<String>>,
    pub(crate) violations: Mutex<Vec<String>>,
    release_hook: Mutex<Option<ReleaseHook>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    drift_core::clock::rfc3339(ms)
}

/// `^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$`, at most 128 characters (MODELS `Space.Slug`).
fn valid_slug(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(ok)
        && s.ends_with(ok)
        && s.chars().all(|c| ok(c) || matches!(c, '-' | '_' | '.'))
}

/// Fields the API no longer has: a body carrying them is refused (400) so a client built for the
/// older API fails loudly here. \[I\] The real server's decoder may ignore unknown fields instead.
const REMOVED_UNIT_FIELDS: &[&str] = &[
    "Data",
    "LiveState",
    "LiveData",
    "LiveRevisionNum",
    "PreviousLiveRevisionNum",
    "LastAppliedRevisionNum",
    "BridgeWorkerID",
    "TargetOptions",
    "SetID",
];

fn refuse_removed(body: &Value, entity: &str) -> R<()> {
    if let Some(m) = body.as_object()
        && let Some(f) = REMOVED_UNIT_FIELDS.iter().find(|f| m.contains_key(**f))
    {
        let hint = if *f == "Data" {
            ": configuration is written with PUT /space/{space_id}/unit/{unit_id}/data"
        } else {
            ""
        };
        return Err(ApiErr::bad(format!("{entity} has no field {f}{hint}")));
    }
    Ok(())
}

impl Shared {
    pub(crate) fn new(config: FakeHubConfig) -> Shared {
        let rng = Rng::new(config.faults.seed);
        let faults = config.faults.clone();
        let mut st = State::default();
        st.org = st.id(0xc0);
        Shared {
            config,
            state: Mutex::new(st),
            faults: Mutex::new(faults),
            rng,
            counts: Mutex::new(FaultCounts::default()),
            log: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            release_hook: Mutex::new(None),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
    pub(crate) fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }
    pub(crate) fn set_faults(&self, f: Faults) {
        self.rng.reseed(f.seed);
        *lock(&self.faults) = f;
    }
    pub(crate) fn count(&self, f: impl FnOnce(&mut FaultCounts)) {
        f(&mut lock(&self.counts));
    }
    pub(crate) fn fault_counts(&self) -> FaultCounts {
        *lock(&self.counts)
    }
    pub(crate) fn set_release_hook(&self, h: ReleaseHook) {
        *lock(&self.release_hook) = Some(h);
    }
    pub(crate) fn release_hook(&self) -> Option<ReleaseHook> {
        lock(&self.release_hook).clone()
    }
    pub(crate) fn violation(&self, v: String) {
        lock(&self.violations).push(v);
    }

    /// A Target in a space (created if missing) made the space's release Target, as an operator
    /// installing a GitOps agent for the cluster would; returns its id.
    pub(crate) fn add_target(&self, space_slug: &str, target_slug: &str) -> Result<String, String> {
        let mut st = self.state();
        let space_id = st
            .spaces
            .values()
            .find(|s| s.slug == space_slug)
            .map(|s| s.space_id.clone())
            .ok_or_else(|| format!("space {space_slug} does not exist"))?;
        let id = match st
            .targets
            .values()
            .find(|t| t.space_id == space_id && t.slug == target_slug)
        {
            Some(t) => t.target_id.clone(),
            None => {
                st.create_target(&space_id, &json!({"Slug": target_slug}))
                    .map_err(|e| e.message)?
                    .target_id
            }
        };
        if let Some(s) = st.spaces.get_mut(&space_id)
            && s.release_target_id.is_none()
        {
            s.release_target_id = Some(id.clone());
            s.version += 1;
        }
        Ok(id)
    }

    pub(crate) fn spaces(&self) -> Vec<Space> {
        self.state().spaces.values().cloned().collect()
    }

    pub(crate) fn units(&self, space_slug: &str) -> Vec<Unit> {
        let st = self.state();
        let Some(sid) = st.space_id_of(space_slug) else {
            return Vec::new();
        };
        st.units
            .values()
            .filter(|u| u.unit.space_id == sid)
            .map(|u| u.unit.clone())
            .collect()
    }

    pub(crate) fn unit_data(&self, space_slug: &str, unit_slug: &str) -> Option<Vec<u8>> {
        let st = self.state();
        let sid = st.space_id_of(space_slug)?;
        st.units
            .values()
            .find(|u| u.unit.space_id == sid && u.unit.slug == unit_slug)
            .map(|u| u.data.clone())
    }

    pub(crate) fn releases(&self, space_slug: &str) -> Vec<Release> {
        let st = self.state();
        let Some(sid) = st.space_id_of(space_slug) else {
            return Vec::new();
        };
        let mut rs: Vec<Release> = st
            .releases
            .values()
            .filter(|r| r.release.space_id == sid)
            .map(|r| r.release.clone())
            .collect();
        rs.sort_by_key(|r| r.release_num);
        rs
    }

    pub(crate) fn dump(&self) -> Value {
        let st = self.state();
        json!({
            "spaces": st.spaces.values().collect::<Vec<_>>(),
            "units": st.units.values().map(|u| &u.unit).collect::<Vec<_>>(),
            "filters": st.filters.values().collect::<Vec<_>>(),
            "releases": st.releases.values().map(|r| &r.release).collect::<Vec<_>>(),
        })
    }
}

/// A where-clause from the query, parsed and checked against an entity's attributes; joins to
/// `UpstreamUnit.` and friends need the matching `include`.
pub(crate) fn parse_where(
    w: Option<&String>,
    entity: Entity,
    include: Option<&String>,
) -> R<Option<WhereClause>> {
    match w.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(w) => {
            let c = WhereClause::parse(w).map_err(|e| ApiErr::bad(e.to_string()))?;
            where_clause::check(&c, entity)
                .map_err(|e| ApiErr::bad(format!("invalid where clause {w:?}: {e}")))?;
            let included: Vec<&str> = include
                .map(|i| i.split(',').map(str::trim).collect())
                .unwrap_or_default();
            for need in where_clause::needed_includes(&c) {
                if !included.contains(&need) {
                    return Err(ApiErr::bad(format!(
                        "invalid where clause {w:?}: the join needs include={need}"
                    )));
                }
            }
            Ok(Some(c))
        }
    }
}

impl State {
    pub(crate) fn id(&mut self, kind: u8) -> String {
        self.next += 1;
        format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            0x5eed_0000u32 | u32::from(kind),
            (self.next >> 48) as u16,
            self.next & 0xffff_ffff_ffff
        )
    }

    fn space_id_of(&self, slug: &str) -> Option<String> {
        self.spaces
            .values()
            .find(|s| s.slug == slug)
            .map(|s| s.space_id.clone())
    }

    pub(crate) fn space(&self, id: &str) -> R<&Space> {
        self.spaces
            .get(id)
            .ok_or_else(|| ApiErr::not_found(format!("space {id}")))
    }

    pub(crate) fn unit_in(&self, space_id: &str, unit_id: &str) -> R<&StoredUnit> {
        self.space(space_id)?;
        self.units
            .get(unit_id)
            .filter(|u| u.unit.space_id == space_id)
            .ok_or_else(|| ApiErr::not_found(format!("unit {unit_id} in space {space_id}")))
    }

    pub(crate) fn space_row(s: &Space) -> Value {
        serde_json::to_value(s).unwrap_or(Value::Null)
    }

    /// A unit as JSON with its related entities, for where-clauses.
    pub(crate) fn unit_row(&self, u: &Unit) -> Value {
        let mut row = serde_json::to_value(u).unwrap_or(Value::Null);
        if let Some(m) = row.as_object_mut() {
            if let Some(s) = self.spaces.get(&u.space_id) {
                m.insert("Space".into(), Self::space_row(s));
            }
            if let Some(up) = u.upstream_unit_id.as_ref().and_then(|id| self.units.get(id)) {
                m.insert(
                    "UpstreamUnit".into(),
                    serde_json::to_value(&up.unit).unwrap_or(Value::Null),
                );
                if let Some(s) = self.spaces.get(&up.unit.space_id) {
                    m.insert("UpstreamSpace".into(), Self::space_row(s));
                }
            }
            if let Some(t) = u.target_id.as_ref().and_then(|id| self.targets.get(id)) {
                m.insert("Target".into(), serde_json::to_value(t).unwrap_or(Value::Null));
            }
        }
        row
    }

    /// `ExtendedUnit`: the unit, and the related entities `include` names.
    pub(crate) fn extended_unit(&self, su: &StoredUnit, include: Option<&String>) -> Value {
        let u = &su.unit;
        let inc: Vec<&str> = include
            .map(|i| i.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let mut out = json!({"Unit": u});
        if inc.contains(&"SpaceID")
            && let Some(s) = self.spaces.get(&u.space_id)
        {
            out["Space"] = Self::space_row(s);
        }
        if inc.contains(&"UpstreamUnitID")
            && let Some(up) = u.upstream_unit_id.as_ref().and_then(|id| self.units.get(id))
        {
            out["UpstreamUnit"] = serde_json::to_value(&up.unit).unwrap_or(Value::Null);
        }
        if inc.contains(&"TargetID")
            && let Some(t) = u.target_id.as_ref().and_then(|id| self.targets.get(id))
        {
            out["Target"] = serde_json::to_value(t).unwrap_or(Value::Null);
        }
        if inc.contains(&"LastReleasedRevisionNum")
            && let Some(r) = su.revision(u.last_released_revision_num)
        {
            out["LastReleasedRevision"] = serde_json::to_value(&r.rev).unwrap_or(Value::Null);
        }
        if inc.contains(&"HeadRevisionNum")
            && let Some(r) = su.revision(u.head_revision_num)
        {
            out["HeadRevision"] = serde_json::to_value(&r.rev).unwrap_or(Value::Null);
        }
        out
    }

    // --------------------------------------------------------------------------------------------
    // spaces

    pub(crate) fn create_space(&mut self, body: &Value) -> R<Space> {
        let mut s: Space =
            serde_json::from_value(body.clone()).map_err(|e| ApiErr::bad(format!("invalid Space: {e}")))?;
        if !valid_slug(&s.slug) {
            return Err(ApiErr::bad(format!(
                "Slug {:?} is invalid: letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
                s.slug
            )));
        }
        if self.spaces.values().any(|x| x.slug == s.slug) {
            return Err(ApiErr::new(
                409,
                format!("a space with slug {} already exists", s.slug),
            ));
        }
        if let Some(t) = &s.release_target_id
            && !self.targets.contains_key(t)
        {
            return Err(ApiErr::bad(format!("ReleaseTargetID {t} does not exist")));
        }
        s.space_id = self.id(0x5a);
        s.organization_id.clone_from(&self.org);
        s.version = 1;
        if s.display_name.is_empty() {
            s.display_name.clone_from(&s.slug);
        }
        let t = now();
        s.extra.insert("CreatedAt".into(), json!(t));
        s.extra.insert("UpdatedAt".into(), json!(t));
        s.extra.insert("EntityType".into(), json!("Space"));
        self.spaces.insert(s.space_id.clone(), s.clone());
        Ok(s)
    }

    pub(crate) fn patch_space(&mut self, id: &str, patch: &Value) -> R<Space> {
        if let Some(t) = patch.get("ReleaseTargetID").and_then(Value::as_str)
            && !self.targets.contains_key(t)
        {
            return Err(ApiErr::bad(format!("ReleaseTargetID {t} does not exist")));
        }
        let s = self
            .spaces
            .get_mut(id)
            .ok_or_else(|| ApiErr::not_found(format!("space {id}")))?;
        let mut v = serde_json::to_value(&*s).unwrap_or(Value::Null);
        let mut p = patch.clone();
        if let Some(m) = p.as_object_mut() {
            for k in ["SpaceID", "OrganizationID", "Slug", "Version"] {
                m.remove(k);
            }
        }
        json_patch::merge(&mut v, &p);
        let mut next: Space =
            serde_json::from_value(v).map_err(|e| ApiErr::bad(format!("invalid Space patch: {e}")))?;
        next.version = s.version + 1;
        next.extra.insert("UpdatedAt".into(), json!(now()));
        *s = next.clone();
        Ok(next)
    }

    pub(crate) fn delete_space(&mut self, id: &str) -> R<()> {
        self.space(id)?;
        if self.units.values().any(|u| u.unit.space_id == id) {
            return Err(ApiErr::bad("the space still has units; delete them first"));
        }
        self.spaces.remove(id);
        self.filters.retain(|_, f| f.space_id != id);
        Ok(())
    }

    // --------------------------------------------------------------------------------------------
    // targets

    pub(crate) fn create_target(&mut self, space_id: &str, body: &Value) -> R<Target> {
        self.space(space_id)?;
        for gone in [
            "BridgeWorkerID",
            "ProviderType",
            "ToolchainType",
            "Parameters",
            "LiveStateType",
        ] {
            if body.get(gone).is_some() {
                return Err(ApiErr::bad(format!(
                    "Target has no field {gone} (removed in v0.7.0)"
                )));
            }
        }
        let mut t: Target =
            serde_json::from_value(body.clone()).map_err(|e| ApiErr::bad(format!("invalid Target: {e}")))?;
        if !valid_slug(&t.slug) {
            return Err(ApiErr::bad(format!("Slug {:?} is invalid", t.slug)));
        }
        if self
            .targets
            .values()
            .any(|x| x.space_id == space_id && x.slug == t.slug)
        {
            return Err(ApiErr::new(
                409,
                format!("a target with slug {} already exists", t.slug),
            ));
        }
        t.target_id = self.id(0x7a);
        t.space_id = space_id.to_string();
        t.extra.insert("Version".into(), json!(1));
        self.targets.insert(t.target_id.clone(), t.clone());
        Ok(t)
    }

    // --------------------------------------------------------------------------------------------
    // units

    /// A new head revision with this data (the unit's `LastChangeDescription` as its description).
    fn store_revision(&mut self, unit_id: &str, data: Vec<u8>, description: String) {
        let rid = self.id(0x4e);
        let Some(su) = self.units.get_mut(unit_id) else {
            return;
        };
        su.unit.head_revision_num += 1;
        su.unit.data_hash = data_hash(&data);
        su.unit.data_size = data.len() as i64;
        su.unit.last_change_description.clone_from(&description);
        su.unit.extra.insert("HeadRevisionID".into(), json!(rid));
        let mut extra = Map::new();
        extra.insert("CreatedAt".into(), json!(now()));
        extra.insert("UnitID".into(), json!(unit_id));
        extra.insert("SpaceID".into(), json!(su.unit.space_id));
        su.revisions.push(StoredRevision {
            rev: Revision {
                revision_id: rid,
                revision_num: su.unit.head_revision_num,
                data_hash: su.unit.data_hash.clone(),
                description,
                extra,
            },
            data: data.clone(),
        });
        su.data = data;
    }

    fn touch(&mut self, unit_id: &str) {
        if let Some(su) = self.units.get_mut(unit_id) {
            su.unit.version += 1;
            su.unit.extra.insert("UpdatedAt".into(), json!(now()));
        }
    }

    pub(crate) fn create_unit(
        &mut self,
        space_id: &str,
        body: &Value,
        upstream: Option<(&str, &str)>,
        dry_run: bool,
    ) -> R<Unit> {
        let space = self.space(space_id)?.clone();
        refuse_removed(body, "Unit")?;
        let mut u: Unit =
            serde_json::from_value(body.clone()).map_err(|e| ApiErr::bad(format!("invalid Unit: {e}")))?;
        if !valid_slug(&u.slug) {
            return Err(ApiErr::bad(format!("Slug {:?} is invalid", u.slug)));
        }
        if self
            .units
            .values()
            .any(|x| x.unit.space_id == space_id && x.unit.slug == u.slug)
        {
            return Err(ApiErr::new(
                409,
                format!("a unit with slug {} already exists in the space", u.slug),
            ));
        }
        let data = match upstream {
            Some((usid, uuid)) => {
                let up = self
                    .units
                    .get(uuid)
                    .filter(|x| x.unit.space_id == usid)
                    .ok_or_else(|| {
                        ApiErr::bad(format!("upstream unit {uuid} in space {usid} does not exist"))
                    })?;
                u.upstream_unit_id = Some(uuid.to_string());
                u.upstream_space_id = Some(usid.to_string());
                u.upstream_revision_num = up.unit.head_revision_num;
                if u.toolchain_type.is_empty() {
                    u.toolchain_type.clone_from(&up.unit.toolchain_type);
                }
                up.data.clone()
            }
            None => {
                u.upstream_unit_id = None;
                u.upstream_space_id = None;
                u.upstream_revision_num = 0;
                Vec::new()
            }
        };
        if u.toolchain_type.is_empty() {
            return Err(ApiErr::bad("ToolchainType is required"));
        }
        if u.target_id.is_none() {
            u.target_id.clone_from(&space.release_target_id);
        }
        if let Some(t) = &u.target_id
            && !self.targets.contains_key(t)
        {
            return Err(ApiErr::bad(format!("target {t} does not exist")));
        }
        u.unit_id = self.id(0x11);
        u.space_id = space_id.to_string();
        u.extra.insert("OrganizationID".into(), json!(self.org));
        u.extra.insert("SpaceSlug".into(), json!(space.slug));
        u.head_revision_num = 0;
        u.last_released_revision_num = 0;
        u.version = 0;
        let description = if u.last_change_description.is_empty() {
            "Created".to_string()
        } else {
            u.last_change_description.clone()
        };
        u.extra.insert("CreatedAt".into(), json!(now()));
        let id = u.unit_id.clone();
        if dry_run {
            u.data_hash = data_hash(&data);
            u.data_size = data.len() as i64;
            u.head_revision_num = 1;
            return Ok(u);
        }
        self.units.insert(
            id.clone(),
            StoredUnit {
                unit: u,
                data: Vec::new(),
                revisions: Vec::new(),
            },
        );
        self.store_revision(&id, data, description);
        self.touch(&id);
        Ok(self.units[&id].unit.clone())
    }

    /// The data an upgrade gives: the upstream changes since the last upgrade, merged onto the unit.
    fn upgraded_data(&self, su: &StoredUnit) -> R<(Vec<u8>, i64)> {
        let up_id = su
            .unit
            .upstream_unit_id
            .as_ref()
            .ok_or_else(|| ApiErr::bad(format!("unit {} has no upstream unit", su.unit.slug)))?;
        let up = self
            .units
            .get(up_id)
            .ok_or_else(|| ApiErr::bad(format!("the upstream unit {up_id} no longer exists")))?;
        let theirs = up.data.clone();
        let base = up.revision(su.unit.upstream_revision_num).map(|r| r.data.clone());
        let merged = match base {
            Some(base) if base != su.data => three_way(&base, &su.data, &theirs).map_err(ApiErr::bad)?,
            _ => theirs,
        };
        Ok((merged, up.unit.head_revision_num))
    }

    /// A revision selector (`confighub-api.md` §2.7) as a revision number of this unit.
    fn resolve_selector(&self, su: &StoredUnit, selector: &str) -> R<i64> {
        if let Some(inner) = selector.strip_prefix("Before:") {
            let n = self.resolve_selector(su, inner)?;
            return if n > 1 {
                Ok(n - 1)
            } else {
                Err(ApiErr::bad(format!("there is no revision before {inner} ({n})")))
            };
        }
        let n = match selector {
            "HeadRevisionNum" => su.unit.head_revision_num,
            "LastReleasedRevisionNum" => su.unit.last_released_revision_num,
            s if s.parse::<i64>().is_ok() => s.parse::<i64>().unwrap_or_default(),
            s => {
                if let Some(rid) = s.strip_prefix("Revision:") {
                    su.revisions
                        .iter()
                        .find(|r| r.rev.revision_id == rid)
                        .map(|r| r.rev.revision_num)
                        .ok_or_else(|| {
                            ApiErr::bad(format!("revision {rid} is not a revision of this unit"))
                        })?
                } else if let Some(tag) = s.strip_prefix("Tag:") {
                    self.releases
                        .values()
                        .filter(|r| r.release.tag_id.as_deref() == Some(tag))
                        .find_map(|r| r.units.get(&su.unit.unit_id).copied())
                        .ok_or_else(|| ApiErr::bad(format!("no revision of this unit carries tag {tag}")))?
                } else {
                    return Err(ApiErr::bad(format!(
                        "restore selector {s:?} is not one of HeadRevisionNum, LastReleasedRevisionNum, a number, \
                         Revision:, Tag:, ChangeSet:, ChangeOrder:, optionally after Before:"
                    )));
                }
            }
        };
        if su.revision(n).is_none() {
            return Err(ApiErr::bad(format!(
                "unit {} has no revision {n} ({selector})",
                su.unit.slug
            )));
        }
        Ok(n)
    }

    /// Metadata writes (`PUT`, `PATCH`, bulk `PATCH`): `next` is the wanted unit; data changes only through
    /// `upgrade`, `restore` or `revision_id`.
    pub(crate) fn update_unit(
        &mut self,
        space_id: &str,
        unit_id: &str,
        next: Unit,
        q: &UpdateQuery,
        check_version: bool,
    ) -> R<Unit> {
        let current = self.unit_in(space_id, unit_id)?;
        if check_version && next.version != current.unit.version {
            return Err(ApiErr::new(
                409,
                format!(
                    "data conflict. Data has changed since last read (unit {}: sent Version {}, current is {})",
                    current.unit.slug, next.version, current.unit.version
                ),
            ));
        }
        let mut data = current.data.clone();
        let mut description = next.last_change_description.clone();
        let mut upstream_num = current.unit.upstream_revision_num;
        if q.upgrade {
            let (d, n) = self.upgraded_data(current)?;
            data = d;
            upstream_num = n;
            if description.is_empty() || description == current.unit.last_change_description {
                description = format!("Upgraded from upstream revision {n}");
            }
        }
        if let Some(sel) = &q.restore {
            let num = self.resolve_selector(current, sel)?;
            data = current.revision(num).map(|r| r.data.clone()).unwrap_or_default();
            if description.is_empty() || description == current.unit.last_change_description {
                description = format!("Restored revision {num} ({sel})");
            }
        }
        if let Some(rid) = &q.revision_id {
            let rev = current
                .revisions
                .iter()
                .find(|r| r.rev.revision_id == *rid)
                .ok_or_else(|| ApiErr::bad(format!("revision {rid} is not a revision of this unit")))?;
            if description.is_empty() || description == current.unit.last_change_description {
                description = format!("Restored revision {}", rev.rev.revision_num);
            }
            data = rev.data.clone();
        }
        if let Some(t) = &next.target_id
            && !self.targets.contains_key(t)
        {
            return Err(ApiErr::bad(format!("target {t} does not exist")));
        }
        // What the caller may change; ids, revision numbers and hashes stay the server's.
        let mut out = current.unit.clone();
        out.display_name = next.display_name;
        out.labels = next.labels;
        out.annotations = next.annotations;
        out.target_id = next.target_id;
        out.upstream_revision_num = upstream_num;
        if !description.is_empty() {
            out.last_change_description.clone_from(&description);
        }
        for (k, v) in next.extra {
            if !matches!(
                k.as_str(),
                "CreatedAt" | "UpdatedAt" | "OrganizationID" | "HeadRevisionID" | "SpaceSlug"
            ) {
                out.extra.insert(k, v);
            }
        }
        let data_changed = data != current.data;
        if q.dry_run {
            let mut preview = out;
            if data_changed {
                preview.data_hash = data_hash(&data);
                preview.head_revision_num += 1;
            }
            return Ok(preview);
        }
        let meta_changed = serde_json::to_value(&out).ok() != serde_json::to_value(&current.unit).ok();
        if !data_changed && !meta_changed {
            return Ok(current.unit.clone());
        }
        if let Some(su) = self.units.get_mut(unit_id) {
            su.unit = out;
        }
        if data_changed {
            let d = if description.is_empty() {
                "Updated".to_string()
            } else {
                description
            };
            self.store_revision(unit_id, data, d);
        }
        self.touch(unit_id);
        Ok(self.units[unit_id].unit.clone())
    }

    pub(crate) fn patch_unit(
        &mut self,
        space_id: &str,
        unit_id: &str,
        patch: &Value,
        q: &UpdateQuery,
    ) -> R<Unit> {
        refuse_removed(patch, "Unit")?;
        let current = self.unit_in(space_id, unit_id)?;
        let mut v = serde_json::to_value(&current.unit).unwrap_or(Value::Null);
        if !patch.is_null() {
            if !patch.is_object() {
                return Err(ApiErr::bad(
                    "the body must be a JSON merge patch object (or null)",
                ));
            }
            json_patch::merge(&mut v, patch);
        }
        // `LastChangeDescription` only describes this change when the patch sets it.
        if patch.get("LastChangeDescription").is_none() {
            v["LastChangeDescription"] = json!("");
        }
        let next: Unit =
            serde_json::from_value(v).map_err(|e| ApiErr::bad(format!("invalid Unit patch: {e}")))?;
        let check = patch.get("Version").is_some();
        self.update_unit(space_id, unit_id, next, q, check)
    }

    /// `PUT .../data`: the configuration replaced (a new revision when it changed).
    pub(crate) fn put_data(
        &mut self,
        space_id: &str,
        unit_id: &str,
        data: Vec<u8>,
        if_match: Option<&str>,
        description: Option<&str>,
        dry_run: bool,
    ) -> R<Unit> {
        let current = self.unit_in(space_id, unit_id)?;
        if let Some(h) = if_match
            && h != "*"
            && h != current.unit.data_hash
        {
            return Err(ApiErr::new(
                409,
                format!(
                    "Unit data conflict. Data has changed since last read (unit {}: If-Match {h}, current {})",
                    current.unit.slug, current.unit.data_hash
                ),
            ));
        }
        let changed = data != current.data;
        if dry_run {
            let mut preview = current.unit.clone();
            if changed {
                preview.data_hash = data_hash(&data);
                preview.data_size = data.len() as i64;
                preview.head_revision_num += 1;
            }
            return Ok(preview);
        }
        if !changed {
            return Ok(current.unit.clone());
        }
        let d = description
            .filter(|d| !d.is_empty())
            .map_or_else(|| "Updated data".to_string(), str::to_string);
        self.store_revision(unit_id, data, d);
        self.touch(unit_id);
        Ok(self.units[unit_id].unit.clone())
    }

    pub(crate) fn delete_unit(&mut self, space_id: &str, unit_id: &str) -> R<()> {
        self.unit_in(space_id, unit_id)?;
        if self
            .units
            .values()
            .any(|u| u.unit.upstream_unit_id.as_deref() == Some(unit_id))
        {
            return Err(ApiErr::new(
                409,
                "the unit has downstream units; delete them first",
            ));
        }
        self.units.remove(unit_id);
        Ok(())
    }

    pub(crate) fn select_units(
        &self,
        space_id: Option<&str>,
        clause: Option<&WhereClause>,
    ) -> Vec<&StoredUnit> {
        self.units
            .values()
            .filter(|u| space_id.is_none_or(|s| u.unit.space_id == s))
            .filter(|u| clause.is_none_or(|c| eval::matches(c, &self.unit_row(&u.unit))))
            .collect()
    }

    // --------------------------------------------------------------------------------------------
    // releases

    /// `POST /space/{space_id}/release`: bundles the space's units assigned to its release Target at
    /// their heads; nothing new since the latest Release → that Release and a message.
    pub(crate) fn publish(&mut self, space_id: &str, body: &Value) -> R<(Release, String, Option<Delivery>)> {
        let space = self.space(space_id)?.clone();
        let target = space.release_target_id.clone().ok_or_else(|| {
            ApiErr::bad(format!(
                "space {} has no ReleaseTargetID: set the Target its Releases are for",
                space.slug
            ))
        })?;
        let tag = body.get("TagID").and_then(Value::as_str).map(str::to_string);
        let mut bundle: BTreeMap<String, i64> = BTreeMap::new();
        for su in self.units.values().filter(|u| {
            u.unit.space_id == space_id
                && u.unit.target_id.as_deref() == Some(target.as_str())
                && u.unit.extra.get("ProviderType").and_then(Value::as_str) != Some("None")
        }) {
            let num = match &tag {
                Some(t) => self
                    .releases
                    .values()
                    .filter(|r| r.release.tag_id.as_deref() == Some(t.as_str()))
                    .find_map(|r| r.units.get(&su.unit.unit_id).copied())
                    .unwrap_or(su.unit.head_revision_num),
                None => su.unit.head_revision_num,
            };
            bundle.insert(su.unit.unit_id.clone(), num);
        }
        let latest = self
            .releases
            .values()
            .filter(|r| r.release.target_id.as_deref() == Some(target.as_str()) && r.release.published)
            .max_by_key(|r| r.release.release_num);
        if let Some(l) = latest
            && l.units == bundle
        {
            return Ok((
                l.release.clone(),
                format!("nothing changed since release {}", l.release.release_num),
                None,
            ));
        }
        let num = self
            .releases
            .values()
            .filter(|r| r.release.target_id.as_deref() == Some(target.as_str()))
            .map(|r| r.release.release_num)
            .max()
            .unwrap_or(0)
            + 1;
        let mut bundled = Vec::new();
        let mut all = Vec::new();
        for (uid, n) in &bundle {
            let su = &self.units[uid];
            let data = su.revision(*n).map(|r| r.data.clone()).unwrap_or_default();
            all.extend_from_slice(su.unit.slug.as_bytes());
            all.extend_from_slice(&data);
            bundled.push(DeliveredUnit {
                slug: su.unit.slug.clone(),
                revision_num: *n,
                data,
            });
        }
        let digest = format!("sha256:{}", data_hash(&all));
        let id = self.id(0x4f);
        let tag_id = tag.unwrap_or_else(|| self.id(0x79));
        let mut extra = Map::new();
        extra.insert("CreatedAt".into(), json!(now()));
        extra.insert("SpaceSlug".into(), json!(space.slug));
        extra.insert("BundleBaseName".into(), json!(format!("{}-{num}", space.slug)));
        for (k, v) in ["Labels", "Annotations"]
            .iter()
            .filter_map(|k| body.get(*k).map(|v| (*k, v)))
        {
            extra.insert(k.into(), v.clone());
        }
        let release = Release {
            release_id: id.clone(),
            space_id: space_id.to_string(),
            target_id: Some(target),
            release_num: num,
            tag_id: Some(tag_id),
            manifest_digest: format!("sha256:{}", data_hash(digest.as_bytes())),
            digest,
            unit_count: bundle.len() as i64,
            published: true,
            live_status: None,
            version: 1,
            extra,
        };
        for (uid, n) in &bundle {
            if let Some(su) = self.units.get_mut(uid) {
                su.unit.last_released_revision_num = *n;
                if let Some(r) = su.revisions.iter_mut().find(|r| r.rev.revision_num == *n) {
                    let mut m = r.rev.extra.get("Releases").cloned().unwrap_or_else(|| json!({}));
                    m[&id] = json!("");
                    r.rev.extra.insert("Releases".into(), m);
                }
            }
            self.touch(uid);
        }
        self.releases.insert(
            id,
            StoredRelease {
                release: release.clone(),
                units: bundle,
            },
        );
        // Namespaces first, as a GitOps agent orders a sync (sync waves by kind).
        bundled.sort_by_key(|u| !is_namespaces(&u.data));
        let delivery = Delivery {
            space: space.slug,
            release: release.clone(),
            units: bundled,
        };
        Ok((release, String::new(), Some(delivery)))
    }

    pub(crate) fn release_in(&self, space_id: &str, release_id: &str) -> R<&StoredRelease> {
        self.space(space_id)?;
        self.releases
            .get(release_id)
            .filter(|r| r.release.space_id == space_id)
            .ok_or_else(|| ApiErr::not_found(format!("release {release_id}")))
    }

    /// `PATCH .../release/{id}`: only Labels, Annotations, DeleteGates and LiveStatus change.
    pub(crate) fn patch_release(&mut self, space_id: &str, release_id: &str, patch: &Value) -> R<Release> {
        self.release_in(space_id, release_id)?;
        let Some(m) = patch.as_object() else {
            return Err(ApiErr::bad("the body must be a JSON merge patch object"));
        };
        if let Some(k) = m.keys().find(|k| {
            !matches!(
                k.as_str(),
                "Labels" | "Annotations" | "DeleteGates" | "LiveStatus" | "Version"
            )
        }) {
            return Err(ApiErr::bad(format!(
                "{k} of a Release cannot change: only Labels, Annotations, DeleteGates and LiveStatus can"
            )));
        }
        if let Some(msg) = patch.pointer("/LiveStatus/Message").and_then(Value::as_str)
            && msg.chars().count() > 1024
        {
            return Err(ApiErr::bad("LiveStatus.Message is longer than 1024 characters"));
        }
        let stored = self
            .releases
            .get_mut(release_id)
            .ok_or_else(|| ApiErr::not_found(format!("release {release_id}")))?;
        let mut v = serde_json::to_value(&stored.release).unwrap_or(Value::Null);
        let mut p = patch.clone();
        if let Some(pm) = p.as_object_mut() {
            pm.remove("Version");
        }
        json_patch::merge(&mut v, &p);
        let mut next: Release =
            serde_json::from_value(v).map_err(|e| ApiErr::bad(format!("invalid Release patch: {e}")))?;
        next.version = stored.release.version + 1;
        stored.release = next.clone();
        Ok(next)
    }

    /// What the simulated GitOps agent reports after a sync.
    pub(crate) fn report_live_status(
        &mut self,
        release_id: &str,
        reporter: &str,
        result: &Result<(), String>,
    ) {
        let Some(r) = self.releases.get_mut(release_id) else {
            return;
        };
        let (sync, health, op, msg) = match result {
            Ok(()) => ("Synced", "Healthy", "Succeeded", String::new()),
            Err(m) => ("Unknown", "Degraded", "Failed", m.chars().take(1024).collect()),
        };
        r.release.live_status = Some(ReleaseLiveStatus {
            sync: Some(sync.into()),
            health: Some(health.into()),
            operation: Some(op.into()),
            reporter_sync: Some(sync.into()),
            reporter_health: Some(health.into()),
            reporter_operation: Some(op.into()),
            reporter: Some(reporter.into()),
            data_source: Some(format!("simulated-application/{}", r.release.space_id)),
            message: (!msg.is_empty()).then_some(msg),
            observed_at: Some(now()),
        });
        r.release.version += 1;
    }

    // --------------------------------------------------------------------------------------------
    // filters

    pub(crate) fn create_filter(&mut self, space_id: &str, body: &Value) -> R<Filter> {
        self.space(space_id)?;
        let mut f: Filter =
            serde_json::from_value(body.clone()).map_err(|e| ApiErr::bad(format!("invalid Filter: {e}")))?;
        if !valid_slug(&f.slug) {
            return Err(ApiErr::bad(format!("Slug {:?} is invalid", f.slug)));
        }
        check_filter(&f)?;
        if self
            .filters
            .values()
            .any(|x| x.space_id == space_id && x.slug == f.slug)
        {
            return Err(ApiErr::new(
                409,
                format!("a filter with slug {} already exists in the space", f.slug),
            ));
        }
        f.filter_id = self.id(0xf1);
        f.space_id = space_id.to_string();
        f.version = 1;
        self.filters.insert(f.filter_id.clone(), f.clone());
        Ok(f)
    }

    pub(crate) fn update_filter(&mut self, space_id: &str, filter_id: &str, body: &Value) -> R<Filter> {
        let current = self
            .filters
            .get(filter_id)
            .filter(|f| f.space_id == space_id)
            .ok_or_else(|| ApiErr::not_found(format!("filter {filter_id}")))?;
        let mut f: Filter =
            serde_json::from_value(body.clone()).map_err(|e| ApiErr::bad(format!("invalid Filter: {e}")))?;
        if f.version != current.version {
            return Err(ApiErr::new(
                409,
                format!(
                    "data conflict. Data has changed since last read (filter {})",
                    current.slug
                ),
            ));
        }
        check_filter(&f)?;
        f.filter_id = filter_id.to_string();
        f.space_id = space_id.to_string();
        f.slug.clone_from(&current.slug);
        f.version = current.version + 1;
        self.filters.insert(filter_id.to_string(), f.clone());
        Ok(f)
    }
}

fn check_filter(f: &Filter) -> R<()> {
    let entity = match f.from.as_str() {
        "Unit" => Entity::Unit,
        "Space" => Entity::Space,
        "Release" => Entity::Release,
        "Target" => Entity::Target,
        "Filter" => Entity::Filter,
        "Trigger" | "Mutation" | "ChangeSet" | "Tag" => return Ok(()),
        other => {
            return Err(ApiErr::bad(format!(
                "From must be an entity type such as Unit or Space, not {other:?}"
            )));
        }
    };
    // A filter's joins are resolved when it is used; its clause is checked for attributes here.
    if !f.r#where.trim().is_empty() {
        let c = WhereClause::parse(&f.r#where).map_err(|e| ApiErr::bad(e.to_string()))?;
        where_clause::check(&c, entity)
            .map_err(|e| ApiErr::bad(format!("invalid Where {:?}: {e}", f.r#where)))?;
    }
    Ok(())
}

/// Query flags of unit writes.
#[derive(Debug, Default)]
pub(crate) struct UpdateQuery {
    pub(crate) upgrade: bool,
    pub(crate) restore: Option<String>,
    pub(crate) revision_id: Option<String>,
    pub(crate) dry_run: bool,
}

fn is_namespaces(data: &[u8]) -> bool {
    crate::yaml::documents(&String::from_utf8_lossy(data))
        .is_ok_and(|docs| !docs.is_empty() && docs.iter().all(|d| d["kind"] == "Namespace"))
}

fn doc_key(d: &Value) -> String {
    let s = |p: &str| {
        d.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    format!(
        "{}|{}|{}|{}",
        s("/apiVersion"),
        s("/kind"),
        s("/metadata/namespace"),
        s("/metadata/name")
    )
}

/// RFC 7396: the merge patch that turns `a` into `b`.
fn merge_diff(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(am), Value::Object(bm)) => {
            let mut p = Map::new();
            for (k, bv) in bm {
                match am.get(k) {
                    Some(av) if av == bv => {}
                    Some(av) => {
                        p.insert(k.clone(), merge_diff(av, bv));
                    }
                    None => {
                        p.insert(k.clone(), bv.clone());
                    }
                }
            }
            for k in am.keys() {
                if !bm.contains_key(k) {
                    p.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(p)
        }
        _ => b.clone(),
    }
}

/// Upgrade as a three-way merge of documents: what upstream changed since `base` lands on `ours`.
fn three_way(base: &[u8], ours: &[u8], theirs: &[u8]) -> Result<Vec<u8>, String> {
    let docs = |b: &[u8]| crate::yaml::documents(&String::from_utf8_lossy(b));
    let (base, ours, theirs) = (docs(base)?, docs(ours)?, docs(theirs)?);
    let find = |list: &[Value], k: &str| list.iter().find(|d| doc_key(d) == k).cloned();
    let mut out = Vec::new();
    for o in &ours {
        let k = doc_key(o);
        match (find(&base, &k), find(&theirs, &k)) {
            (Some(b), Some(t)) => {
                let mut merged = o.clone();
                json_patch::merge(&mut merged, &merge_diff(&b, &t));
                out.push(merged);
            }
            (Some(_), None) => {}             // upstream removed it
            (None, _) => out.push(o.clone()), // ours alone (or added on both sides: ours wins)
        }
    }
    for t in &theirs {
        let k = doc_key(t);
        if find(&ours, &k).is_none() && find(&base, &k).is_none() {
            out.push(t.clone()); // new upstream
        }
    }
    Ok(crate::yaml::render(&out)?.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_keeps_downstream_edits_and_takes_upstream_changes() {
        let base = b"kind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1, image: v1}\n";
        let ours = b"kind: Deployment\nmetadata: {name: web}\nspec: {replicas: 5, image: v1}\n";
        let theirs = b"kind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1, image: v2}\n---\nkind: Service\nmetadata: {name: web}\n";
        let merged = three_way(base, ours, theirs).expect("merge");
        let docs = crate::yaml::documents(&String::from_utf8(merged).expect("utf8")).expect("yaml");
        assert_eq!(docs[0]["spec"], json!({"replicas": 5, "image": "v2"}));
        assert_eq!(docs[1]["kind"], "Service");
    }

    #[test]
    fn ids_look_like_uuids_and_are_unique() {
        let mut st = State::default();
        let a = st.id(1);
        let b = st.id(1);
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn slugs_follow_the_documented_pattern() {
        assert!(valid_slug("shop-prod"));
        assert!(valid_slug("Shop.v2_x"));
        assert!(!valid_slug("-shop"));
        assert!(!valid_slug("shop-"));
        assert!(!valid_slug("shop prod"));
    }
}
