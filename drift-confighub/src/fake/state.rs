//! The fake hub's data and the rules it enforces.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{FakeHubConfig, FaultCounts, Faults, Rng};
use crate::model::{
    ChangeSet, Filter, QueuedOperation, Revision, Space, Target, Unit, UnitEvent, data_hash, decode_data,
    encode_data,
};
use crate::where_clause::{WhereClause, eval};

/// What an apply or refresh hook gets.
#[derive(Debug, Clone)]
pub struct HookRequest {
    /// Space slug.
    pub space: String,
    /// The unit as stored.
    pub unit: Unit,
    /// Its decoded data.
    pub data: Vec<u8>,
}

/// Runs when an apply completes; `Err` fails the apply with that message.
pub type ApplyHook = Arc<dyn Fn(HookRequest) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;
/// Reads the live data of a unit for a refresh (`None`: nothing live).
pub type RefreshHook =
    Arc<dyn Fn(HookRequest) -> BoxFuture<'static, Result<Option<Vec<u8>>, String>> + Send + Sync>;

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
    pub(crate) fn code(&self) -> &'static str {
        match self.status {
            400 => "BadRequest",
            401 => "Unauthorized",
            404 => "NotFound",
            409 => "Conflict",
            429 => "TooManyRequests",
            _ => "InternalServerError",
        }
    }
}

pub(crate) type R<T> = Result<T, ApiErr>;

pub(crate) struct StoredUnit {
    pub(crate) unit: Unit,
    pub(crate) revisions: Vec<Revision>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) org: String,
    next: u64,
    pub(crate) spaces: BTreeMap<String, Space>,
    pub(crate) units: BTreeMap<String, StoredUnit>,
    pub(crate) filters: BTreeMap<String, Filter>,
    pub(crate) change_sets: BTreeMap<String, (String, ChangeSet)>,
    pub(crate) targets: BTreeMap<String, (String, Target)>,
    pub(crate) events: Vec<UnitEvent>,
}

pub(crate) struct Shared {
    pub(crate) config: FakeHubConfig,
    state: Mutex<State>,
    faults: Mutex<Faults>,
    pub(crate) rng: Rng,
    counts: Mutex<FaultCounts>,
    pub(crate) log: Mutex<Vec<String>>,
    apply_hook: Mutex<Option<ApplyHook>>,
    refresh_hook: Mutex<Option<RefreshHook>>,
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

fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
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
            apply_hook: Mutex::new(None),
            refresh_hook: Mutex::new(None),
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
    pub(crate) fn set_apply_hook(&self, h: ApplyHook) {
        *lock(&self.apply_hook) = Some(h);
    }
    pub(crate) fn set_refresh_hook(&self, h: RefreshHook) {
        *lock(&self.refresh_hook) = Some(h);
    }
    pub(crate) fn apply_hook(&self) -> Option<ApplyHook> {
        lock(&self.apply_hook).clone()
    }
    pub(crate) fn refresh_hook(&self) -> Option<RefreshHook> {
        lock(&self.refresh_hook).clone()
    }

    pub(crate) fn add_target(&self, space_slug: &str, target_slug: &str) -> Result<String, String> {
        let mut st = self.state();
        let space_id = st
            .spaces
            .values()
            .find(|s| s.slug == space_slug)
            .map(|s| s.space_id.clone())
            .ok_or_else(|| format!("space {space_slug} does not exist"))?;
        if let Some((_, t)) = st
            .targets
            .values()
            .find(|(sid, t)| *sid == space_id && t.slug == target_slug)
        {
            return Ok(t.target_id.clone());
        }
        let id = st.id(0x7a);
        let worker = st.id(0xb0);
        let t = Target {
            target_id: id.clone(),
            slug: target_slug.to_string(),
            bridge_worker_id: worker,
            provider_type: "Kubernetes".into(),
            toolchain_type: crate::model::KUBERNETES_YAML.into(),
            extra: Map::new(),
        };
        st.targets.insert(id.clone(), (space_id, t));
        Ok(id)
    }

    pub(crate) fn spaces(&self) -> Vec<Space> {
        self.state().spaces.values().cloned().collect()
    }

    pub(crate) fn units(&self, space_slug: &str) -> Vec<Unit> {
        let st = self.state();
        let Some(sid) = st
            .spaces
            .values()
            .find(|s| s.slug == space_slug)
            .map(|s| s.space_id.clone())
        else {
            return Vec::new();
        };
        st.units
            .values()
            .filter(|u| u.unit.space_id == sid)
            .map(|u| u.unit.clone())
            .collect()
    }

    pub(crate) fn dump(&self) -> Value {
        let st = self.state();
        json!({
            "spaces": st.spaces.values().collect::<Vec<_>>(),
            "units": st.units.values().map(|u| &u.unit).collect::<Vec<_>>(),
            "filters": st.filters.values().collect::<Vec<_>>(),
            "events": st.events,
        })
    }
}

/// A where-clause from the query, parsed and checked against an entity's attributes.
pub(crate) fn parse_where(w: Option<&String>, schema: eval::Schema) -> R<Option<WhereClause>> {
    match w.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(w) => {
            let c = WhereClause::parse(w).map_err(|e| ApiErr::bad(e.to_string()))?;
            eval::check(&c, schema).map_err(|e| ApiErr::bad(format!("invalid where clause {w:?}: {e}")))?;
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

    /// A unit as JSON with its related entities, for where-clauses and `Extended` answers.
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
        }
        row
    }

    pub(crate) fn extended_unit(&self, u: &Unit) -> Value {
        let mut out = json!({"Unit": u});
        if let Some(s) = self.spaces.get(&u.space_id) {
            out["Space"] = Self::space_row(s);
        }
        if let Some(up) = u.upstream_unit_id.as_ref().and_then(|id| self.units.get(id)) {
            out["UpstreamUnit"] = serde_json::to_value(&up.unit).unwrap_or(Value::Null);
        }
        if let Some(e) = self.events.iter().rev().find(|e| e.unit_id == u.unit_id) {
            out["LatestUnitEvent"] = serde_json::to_value(e).unwrap_or(Value::Null);
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
                "Slug {:?} is invalid: use lower-case letters, digits, '-' and '_'",
                s.slug
            )));
        }
        if self.spaces.values().any(|x| x.slug == s.slug) {
            return Err(ApiErr::new(
                409,
                format!("a space with slug {} already exists", s.slug),
            ));
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
        self.spaces.insert(s.space_id.clone(), s.clone());
        Ok(s)
    }

    pub(crate) fn patch_space(&mut self, id: &str, patch: &Value) -> R<Space> {
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
    // units

    fn store_revision(&mut self, unit_id: &str, data: String, description: String) {
        let rid = self.id(0x4e);
        let Some(su) = self.units.get_mut(unit_id) else {
            return;
        };
        su.unit.head_revision_num += 1;
        su.unit.data_hash = data_hash(&decode_data(&data).unwrap_or_default());
        su.unit.data.clone_from(&data);
        su.unit.last_change_description.clone_from(&description);
        let mut extra = Map::new();
        extra.insert("CreatedAt".into(), json!(now()));
        su.revisions.push(Revision {
            revision_id: rid,
            revision_num: su.unit.head_revision_num,
            data,
            description,
            extra,
        });
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
    ) -> R<Unit> {
        self.space(space_id)?;
        let mut u: Unit =
            serde_json::from_value(body.clone()).map_err(|e| ApiErr::bad(format!("invalid Unit: {e}")))?;
        if !valid_slug(&u.slug) {
            return Err(ApiErr::bad(format!(
                "Slug {:?} is invalid: use lower-case letters, digits, '-' and '_'",
                u.slug
            )));
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
                if !u.data.is_empty() {
                    return Err(ApiErr::bad(
                        "Data must not be given when cloning from an upstream unit",
                    ));
                }
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
                up.unit.data.clone()
            }
            None => {
                decode_data(&u.data).map_err(|e| ApiErr::bad(format!("Data is not base64: {e}")))?;
                u.upstream_unit_id = None;
                u.upstream_space_id = None;
                u.upstream_revision_num = 0;
                std::mem::take(&mut u.data)
            }
        };
        if u.toolchain_type.is_empty() {
            return Err(ApiErr::bad("ToolchainType is required"));
        }
        if let Some(t) = &u.target_id
            && !self.targets.contains_key(t)
        {
            return Err(ApiErr::bad(format!("target {t} does not exist")));
        }
        u.unit_id = self.id(0x11);
        u.space_id = space_id.to_string();
        u.extra.insert("OrganizationID".into(), json!(self.org));
        u.head_revision_num = 0;
        u.live_revision_num = 0;
        u.last_applied_revision_num = 0;
        u.previous_live_revision_num = 0;
        u.version = 0;
        let description = if u.last_change_description.is_empty() {
            "Created".to_string()
        } else {
            u.last_change_description.clone()
        };
        let t = now();
        u.extra.insert("CreatedAt".into(), json!(t));
        let id = u.unit_id.clone();
        self.units.insert(
            id.clone(),
            StoredUnit {
                unit: u,
                revisions: Vec::new(),
            },
        );
        self.store_revision(&id, data, description);
        self.touch(&id);
        Ok(self.units[&id].unit.clone())
    }

    /// The data an upgrade gives: the upstream changes since the last upgrade, merged onto the unit.
    fn upgraded_data(&self, su: &StoredUnit) -> R<(String, i64)> {
        let up_id = su
            .unit
            .upstream_unit_id
            .as_ref()
            .ok_or_else(|| ApiErr::bad(format!("unit {} has no upstream unit", su.unit.slug)))?;
        let up = self
            .units
            .get(up_id)
            .ok_or_else(|| ApiErr::bad(format!("the upstream unit {up_id} no longer exists")))?;
        let theirs = up.unit.data.clone();
        let base = up
            .revisions
            .iter()
            .find(|r| r.revision_num == su.unit.upstream_revision_num)
            .map(|r| r.data.clone());
        let merged = match base {
            Some(base) if base != su.unit.data => {
                three_way(&base, &su.unit.data, &theirs).map_err(ApiErr::bad)?
            }
            _ => theirs,
        };
        Ok((merged, up.unit.head_revision_num))
    }

    /// `PUT` and `PATCH` of one unit: `next` is the full wanted unit.
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
                    "version conflict on unit {}: sent Version {}, current is {}",
                    current.unit.slug, next.version, current.unit.version
                ),
            ));
        }
        let mut data = if next.data.is_empty() {
            current.unit.data.clone()
        } else {
            next.data.clone()
        };
        decode_data(&data).map_err(|e| ApiErr::bad(format!("Data is not base64: {e}")))?;
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
        if let Some(which) = &q.restore {
            let num = match which.as_str() {
                "LiveRevisionNum" => current.unit.live_revision_num,
                "LastAppliedRevisionNum" => current.unit.last_applied_revision_num,
                "PreviousLiveRevisionNum" => current.unit.previous_live_revision_num,
                other => {
                    return Err(ApiErr::bad(format!(
                        "restore must be LiveRevisionNum, LastAppliedRevisionNum or PreviousLiveRevisionNum, not {other}"
                    )));
                }
            };
            let rev = current
                .revisions
                .iter()
                .find(|r| r.revision_num == num)
                .ok_or_else(|| ApiErr::bad(format!("the unit has no revision {num} to restore")))?;
            data = rev.data.clone();
            description = format!("Restored revision {num}");
        }
        if let Some(rid) = &q.revision_id {
            let rev = current
                .revisions
                .iter()
                .find(|r| r.revision_id == *rid)
                .ok_or_else(|| ApiErr::bad(format!("revision {rid} is not a revision of this unit")))?;
            description = format!("Restored revision {}", rev.revision_num);
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
        for (k, v) in next.extra {
            if !matches!(
                k.as_str(),
                "CreatedAt" | "UpdatedAt" | "OrganizationID" | "LiveState"
            ) {
                out.extra.insert(k, v);
            }
        }
        let data_changed = data != current.unit.data;
        let changed =
            data_changed || serde_json::to_value(&out).ok() != serde_json::to_value(&current.unit).ok();
        if q.dry_run {
            let mut preview = out;
            if data_changed {
                preview.data = data;
                preview.head_revision_num += 1;
            }
            return Ok(preview);
        }
        if !changed {
            return Ok(current.unit.clone());
        }
        let keep_revisions = std::mem::take(
            &mut self
                .units
                .get_mut(unit_id)
                .ok_or_else(|| ApiErr::not_found("unit"))?
                .revisions,
        );
        self.units.insert(
            unit_id.to_string(),
            StoredUnit {
                unit: out,
                revisions: keep_revisions,
            },
        );
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
        self.update_unit(space_id, unit_id, next, q, false)
    }

    pub(crate) fn delete_unit(&mut self, space_id: &str, unit_id: &str) -> R<()> {
        self.unit_in(space_id, unit_id)?;
        if self
            .units
            .values()
            .any(|u| u.unit.upstream_unit_id.as_deref() == Some(unit_id))
        {
            return Err(ApiErr::bad("the unit has downstream units; delete them first"));
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
    // operations

    pub(crate) fn queue(
        &mut self,
        space_id: &str,
        unit_id: &str,
        action: &str,
        dry_run: bool,
    ) -> R<QueuedOperation> {
        let su = self.unit_in(space_id, unit_id)?;
        if su.unit.target_id.is_none() {
            return Err(ApiErr::bad(format!(
                "unit {} has no target: set TargetID before {}",
                su.unit.slug,
                action.to_lowercase()
            )));
        }
        let revision = su.unit.head_revision_num;
        let op_id = self.id(0x09);
        let ev_id = self.id(0xe0);
        let mut extra = Map::new();
        extra.insert("CreatedAt".into(), json!(now()));
        extra.insert("DryRun".into(), json!(dry_run));
        let op = QueuedOperation {
            queued_operation_id: op_id.clone(),
            unit_id: unit_id.to_string(),
            space_id: space_id.to_string(),
            action: action.to_string(),
            revision_num: revision,
            status: "Queued".into(),
            extra: extra.clone(),
        };
        self.events.push(UnitEvent {
            unit_event_id: ev_id,
            unit_id: unit_id.to_string(),
            queued_operation_id: op_id,
            action: action.to_string(),
            result: "None".into(),
            status: "Pending".into(),
            message: String::new(),
            extra,
        });
        Ok(op)
    }

    pub(crate) fn finish(&mut self, op: &QueuedOperation, status: &str, result: &str, message: &str) {
        if let Some(e) = self
            .events
            .iter_mut()
            .rev()
            .find(|e| e.queued_operation_id == op.queued_operation_id)
        {
            e.status = status.to_string();
            e.result = result.to_string();
            e.message = message.to_string();
            e.extra.insert("TerminatedAt".into(), json!(now()));
        }
    }

    /// An apply that went through: the revision is live.
    pub(crate) fn mark_applied(&mut self, op: &QueuedOperation) {
        let Some(su) = self.units.get_mut(&op.unit_id) else {
            return;
        };
        let data = su
            .revisions
            .iter()
            .find(|r| r.revision_num == op.revision_num)
            .map(|r| r.data.clone());
        su.unit.previous_live_revision_num = su.unit.live_revision_num;
        su.unit.live_revision_num = op.revision_num;
        su.unit.last_applied_revision_num = op.revision_num;
        if let Some(d) = data {
            su.unit.extra.insert("LiveState".into(), json!(d));
        }
        self.touch(&op.unit_id);
    }

    /// A refresh found live data that differs: it becomes the unit's data ("cluster wins").
    pub(crate) fn mark_refreshed(&mut self, op: &QueuedOperation, live: &[u8], dry_run: bool) -> bool {
        let encoded = encode_data(live);
        let Some(su) = self.units.get_mut(&op.unit_id) else {
            return false;
        };
        su.unit.extra.insert("LiveState".into(), json!(encoded));
        let drifted = su.unit.data != encoded;
        if drifted && !dry_run {
            self.store_revision(&op.unit_id, encoded, "Refreshed from live".into());
            let head = self
                .units
                .get(&op.unit_id)
                .map_or(0, |u| u.unit.head_revision_num);
            if let Some(su) = self.units.get_mut(&op.unit_id) {
                su.unit.live_revision_num = head;
            }
        }
        self.touch(&op.unit_id);
        drifted
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
                format!("version conflict on filter {}", current.slug),
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
    let schema = match f.from.as_str() {
        "Unit" => eval::UNIT,
        "Space" => eval::SPACE,
        "Filter" => eval::FILTER,
        "Trigger" | "Worker" | "Target" | "ChangeSet" | "Tag" => return Ok(()),
        other => {
            return Err(ApiErr::bad(format!(
                "From must be an entity type such as Unit or Space, not {other:?}"
            )));
        }
    };
    parse_where(Some(&f.r#where), schema)?;
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
fn three_way(base: &str, ours: &str, theirs: &str) -> Result<String, String> {
    let docs = |b64: &str| -> Result<Vec<Value>, String> {
        let bytes = decode_data(b64).map_err(|e| e.to_string())?;
        crate::yaml::documents(&String::from_utf8_lossy(&bytes))
    };
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
    Ok(encode_data(crate::yaml::render(&out)?.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_keeps_downstream_edits_and_takes_upstream_changes() {
        let b = |s: &str| encode_data(s.as_bytes());
        let base = b("kind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1, image: v1}\n");
        let ours = b("kind: Deployment\nmetadata: {name: web}\nspec: {replicas: 5, image: v1}\n");
        let theirs = b(
            "kind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1, image: v2}\n---\nkind: Service\nmetadata: {name: web}\n",
        );
        let merged = three_way(&base, &ours, &theirs).expect("merge");
        let docs =
            crate::yaml::documents(&String::from_utf8(decode_data(&merged).expect("b64")).expect("utf8"))
                .expect("yaml");
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
}
