//! [`DriftLog`] in ConfigHub: one record unit per drift in a drift-records space, so the history
//! survives restarts, is shared by every cluster's detector, and is queried with where-clauses.
//!
//! A record unit (toolchain `AppConfig/YAML`) holds the [`DriftRecord`] — the latest drift snapshot, its
//! state and the whole timeline — and carries labels for filtering:
//!
//! | label | value |
//! |---|---|
//! | `drift-detector` | `record` |
//! | `drift-set` | `critical`, `resource`, `replica`, `config` (the set it was classified in) |
//! | `severity` | `critical`, `warning`, `info` |
//! | `drift-rule` | the rule that classified it (`security`, `images`, `replicas`, ...) |
//! | `drift-state` | `open`, `remediating`, `escalated`, `ignored`, `corrected`, `resolved` |
//! | `drift-open` | `true` / `false` |
//! | `environment` | from the desired unit (`dev`, `prod`, ...) |
//! | `auto-correctable` | `true` when the policy allows an unattended fix |
//! | `kind`, `namespace`, `resource-name`, `unit` | the resource and the unit it came from |
//! | `changed-by` | the field manager that made the change (`kubectl-scale`, `kubectl-edit`), when managedFields say |
//! | `cluster` | the cluster the detector watches ([`ConfigHubDriftLog::with_cluster`]), so one records space is the fleet view |
//!
//! The record's YAML is the unit's data, read and written through the data endpoints; every update is
//! conditional on the data read (`If-Match`), so two writers never overwrite each other.
//!
//! The desired unit a drift is about is marked too, with a metadata write (labels and annotations create
//! no configuration revision: revisions are made only when data changes, `confighub-api.md` §2.4/§2.6):
//! label `drift-detector-drifted` is `true` while it has an open drift, and annotation
//! `drift-detector/last-drift` says what the latest one is. ConfigHub's own filters find drifted units
//! with `Labels.drift-detector-drifted = 'true'`.
//!
//! And where no deploying agent reports the space's latest Release, the detector reports it:
//! `Release.LiveStatus` with `Sync` `OutOfSync` while the space has open drifts and `Synced` once it has
//! none, `Reporter` `drift-detector`, a message of at most 1,024 characters. A status another reporter
//! wrote (argobot for Argo CD) is never overwritten.
//!
//! The named filters (`critical-drifts`, `replica-drifts`, `auto-correctable`, ...) are ConfigHub
//! filters over these labels, created idempotently by [`ConfigHubDriftLog::connect`].
//!
//! Appends are idempotent by event id and safe under lost answers: a write whose answer never came is
//! never blindly repeated; the record is read again and the event added only if it is not there yet.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use drift_core::policy::{NamedFilter, Policy};
use drift_core::ports::{DriftEvent, DriftLog, DriftRecord, HistoryQuery, PortError};
use drift_core::rules::Severity;

use crate::client::{ConfigHubClient, DataWrite, Ensured, UnitQuery, UpdateOptions};
use crate::error::{ConfigHubError, Result};
use crate::model::{APP_CONFIG_YAML, Labels, Space, Unit};
use serde_json::{Value, json};

/// The label marking a desired unit that has an open drift.
pub const DRIFTED_LABEL: &str = "drift-detector-drifted";
/// The annotation on a desired unit describing its latest drift.
pub const LAST_DRIFT_ANNOTATION: &str = "drift-detector/last-drift";
/// The `Reporter` of the `Release.LiveStatus` the detector writes.
pub const LIVE_STATUS_REPORTER: &str = "drift-detector";
use crate::where_clause::{and, quote};

/// Decides the `auto-correctable` label of a record.
pub type AutoCorrectable = Arc<dyn Fn(&DriftRecord) -> bool + Send + Sync>;

/// How many times an append re-reads and retries after a conflict or a lost answer.
const APPEND_ATTEMPTS: usize = 8;

/// Drift history in a ConfigHub space.
#[derive(Clone)]
pub struct ConfigHubDriftLog {
    client: ConfigHubClient,
    space: Space,
    auto_correctable: AutoCorrectable,
    cluster: Option<String>,
    mark_units: bool,
}

impl std::fmt::Debug for ConfigHubDriftLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigHubDriftLog")
            .field("space", &self.space.slug)
            .finish_non_exhaustive()
    }
}

/// The slug of a drift's record unit.
pub fn record_slug(drift_id: &str) -> String {
    let s: String = drift_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.starts_with("drift-") {
        s
    } else {
        format!("drift-{s}")
    }
}

/// The slug of a drift's record unit in a space a fleet shares: the same drift id in two clusters
/// (one app deployed to both) is two records.
pub fn cluster_record_slug(cluster: Option<&str>, drift_id: &str) -> String {
    match cluster {
        Some(c) => record_slug(&format!("{}-{drift_id}", label_value(c))),
        None => record_slug(drift_id),
    }
}

fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

fn severity_name(s: Severity) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn set_name(r: &DriftRecord) -> String {
    serde_json::to_value(r.drift.set)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl ConfigHubDriftLog {
    /// Uses (creating if needed) the drift-records space `space_slug` and its named filters.
    ///
    /// # Errors
    /// ConfigHub errors.
    pub async fn connect(client: ConfigHubClient, space_slug: &str) -> Result<Self> {
        let labels: Labels = [("drift-detector".to_string(), "records".to_string())].into();
        let (space, _) = client.ensure_space(space_slug, "Drift records", &labels).await?;
        ensure_named_filters(&client, &space).await?;
        let policy = Policy::default();
        let auto_correctable: AutoCorrectable = Arc::new(move |r: &DriftRecord| {
            let labels = r
                .provenance
                .as_ref()
                .map(|p| p.labels.clone())
                .unwrap_or_default();
            policy.auto_correctable(&r.drift, r.environment.as_deref(), &labels)
        });
        Ok(ConfigHubDriftLog {
            client,
            space,
            auto_correctable,
            cluster: None,
            mark_units: true,
        })
    }

    /// Labels every record with the cluster's name (`cluster`), for a fleet view across detectors.
    #[must_use]
    pub fn with_cluster(mut self, name: impl Into<String>) -> Self {
        let n = name.into();
        self.cluster = (!n.trim().is_empty()).then_some(n);
        self
    }

    /// Whether desired units are marked with [`DRIFTED_LABEL`] (default on).
    #[must_use]
    pub fn mark_units(mut self, on: bool) -> Self {
        self.mark_units = on;
        self
    }

    /// Uses the daemon's policy for the `auto-correctable` label.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.auto_correctable = Arc::new(move |r: &DriftRecord| {
            let labels = r
                .provenance
                .as_ref()
                .map(|p| p.labels.clone())
                .unwrap_or_default();
            policy.auto_correctable(&r.drift, r.environment.as_deref(), &labels)
        });
        self
    }

    /// The records space.
    pub fn space(&self) -> &Space {
        &self.space
    }

    fn labels(&self, r: &DriftRecord) -> Labels {
        let mut l = Labels::new();
        let mut put = |k: &str, v: String| {
            let v = label_value(&v);
            if !v.is_empty() {
                l.insert(k.to_string(), v);
            }
        };
        put("drift-detector", "record".into());
        put("drift-set", set_name(r));
        put("severity", severity_name(r.drift.severity));
        put("drift-rule", r.drift.rule.clone());
        put("drift-state", r.state.as_str().into());
        put("drift-open", r.state.is_open().to_string());
        put(
            "auto-correctable",
            (r.state.is_open() && (self.auto_correctable)(r)).to_string(),
        );
        put("kind", r.drift.key.kind.clone());
        if let Some(ns) = &r.drift.key.namespace {
            put("namespace", ns.clone());
        }
        put("resource-name", r.drift.key.name.clone());
        if let Some(a) = &r.drift.actor {
            put("changed-by", a.manager.clone());
        }
        if let Some(e) = &r.environment {
            put("environment", e.clone());
        }
        if let Some(u) = r.provenance.as_ref().and_then(|p| p.unit.clone()) {
            put("unit", u);
        }
        if let Some(c) = &self.cluster {
            put("cluster", c.clone());
        }
        if let Some(s) = r.provenance.as_ref().and_then(|p| p.space.clone()) {
            put("space", s);
        }
        l
    }

    fn encode(&self, r: &DriftRecord) -> Result<String> {
        serde_saphyr::to_string(r).map_err(|e| ConfigHubError::Data {
            entity: format!("drift record {}", r.drift.id),
            reason: e.to_string(),
        })
    }

    fn decode(slug: &str, data: &[u8]) -> Result<DriftRecord> {
        let entity = format!("drift record unit {slug}");
        let text = std::str::from_utf8(data).map_err(|e| ConfigHubError::Data {
            entity: entity.clone(),
            reason: format!("the data is not UTF-8: {e}"),
        })?;
        serde_saphyr::from_str(text).map_err(|e| ConfigHubError::Data {
            entity,
            reason: format!("not a drift record: {e}"),
        })
    }

    /// The merge patch that makes a unit's labels exactly `want` (`null` removes a key).
    fn labels_patch(have: &Labels, want: &Labels) -> Option<Value> {
        if have == want {
            return None;
        }
        let mut m = serde_json::Map::new();
        for (k, v) in want {
            if have.get(k) != Some(v) {
                m.insert(k.clone(), json!(v));
            }
        }
        for k in have.keys().filter(|k| !want.contains_key(*k)) {
            m.insert(k.clone(), Value::Null);
        }
        Some(json!({"Labels": m}))
    }

    async fn find(&self, slug: &str) -> Result<Option<Unit>> {
        self.client.unit_by_slug(&self.space.space_id, slug).await
    }

    fn describe(e: &DriftEvent) -> String {
        format!("{} {} by {}: {}", e.kind.as_str(), e.drift.key, e.actor, e.reason)
    }

    async fn append_once(&self, event: &DriftEvent, slug: &str) -> Result<bool> {
        let sid = &self.space.space_id;
        let Some(unit) = self.find(slug).await? else {
            let record = DriftRecord::from_event(event);
            let u = Unit {
                slug: slug.to_string(),
                display_name: format!("{} {}", record.drift.key, record.drift.path),
                toolchain_type: APP_CONFIG_YAML.into(),
                labels: self.labels(&record),
                last_change_description: Self::describe(event),
                ..Unit::default()
            };
            self.client
                .create_unit_with_data(sid, &u, self.encode(&record)?.as_bytes())
                .await?;
            return Ok(true);
        };
        let (data, hash) = self.client.read_unit_data(sid, &unit.unit_id).await?;
        // A unit without data: created, then its data write was lost. Start the record here.
        let (mut record, fresh) = if data.is_empty() {
            (DriftRecord::from_event(event), true)
        } else {
            (Self::decode(&unit.slug, &data)?, false)
        };
        if fresh || record.apply(event) {
            let w = DataWrite::if_match(hash).description(Self::describe(event));
            self.client
                .put_unit_data(sid, &unit.unit_id, self.encode(&record)?.as_bytes(), &w)
                .await?;
        }
        // Already recorded (a replay, or our earlier answer was lost): the labels may still lag.
        if let Some(p) = Self::labels_patch(&unit.labels, &self.labels(&record)) {
            self.client
                .patch_unit(sid, &unit.unit_id, p, &UpdateOptions::default())
                .await?;
        }
        Ok(true)
    }

    /// Marks the desired unit a drift is about: drifted while any of its drifts is open.
    async fn mark_desired_unit(&self, event: &DriftEvent) -> Result<()> {
        let Some(p) = &event.provenance else { return Ok(()) };
        let (Some(space_id), Some(unit_id)) = (&p.space_id, &p.unit_id) else {
            return Ok(());
        };
        let open_now = matches!(
            event.kind,
            drift_core::ports::DriftEventKind::Opened | drift_core::ports::DriftEventKind::Updated
        );
        let drifted = if open_now {
            true
        } else {
            let unit = p.unit.clone().unwrap_or_default();
            let w = and([
                format!("Labels.unit = {}", quote(&label_value(&unit))),
                "Labels.drift-open = 'true'".to_string(),
            ]);
            !self.records_where(&w).await?.is_empty()
        };
        let mut summary: String = event.drift.describe().chars().take(900).collect();
        summary = format!("{} {}: {summary}", event.kind.as_str(), event.drift.key);
        let patch = json!({
            "Labels": {DRIFTED_LABEL: drifted.to_string()},
            "Annotations": {LAST_DRIFT_ANNOTATION: summary.chars().take(1024).collect::<String>()},
        });
        self.client
            .patch_unit(space_id, unit_id, patch, &UpdateOptions::default())
            .await?;
        if let Some(space) = &p.space {
            self.report_live_status(space_id, space, &summary).await?;
        }
        Ok(())
    }

    /// `Release.LiveStatus` of the space's latest Release, unless another reporter owns it.
    async fn report_live_status(&self, space_id: &str, space: &str, latest: &str) -> Result<()> {
        let Some(release) = self.client.latest_release(space_id).await? else {
            return Ok(()); // nothing released: nothing runs that could be out of sync
        };
        if let Some(other) = release
            .live_status
            .as_ref()
            .and_then(|l| l.reporter.as_deref())
            .filter(|r| !r.is_empty() && *r != LIVE_STATUS_REPORTER)
        {
            tracing::debug!(
                reporter = other,
                space,
                "the release's live status is another reporter's"
            );
            return Ok(());
        }
        let w = and([
            format!("Labels.space = {}", quote(&label_value(space))),
            "Labels.drift-open = 'true'".to_string(),
        ]);
        let open = self.records_where(&w).await?.len();
        let sync = if open > 0 { "OutOfSync" } else { "Synced" };
        let message: String = if open > 0 {
            format!("{open} open drift(s) in {space}; latest: {latest}")
        } else {
            format!("no open drift in {space}")
        }
        .chars()
        .take(1024)
        .collect();
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Every field, `null` for the empty ones, so a stale value never lingers (as argobot writes it).
        let patch = json!({"LiveStatus": {
            "Sync": sync, "Health": null, "Operation": null,
            "ReporterSync": sync, "ReporterHealth": null, "ReporterOperation": null,
            "Reporter": LIVE_STATUS_REPORTER,
            "DataSource": self.cluster.clone().unwrap_or_else(|| "drift-detector".into()),
            "Message": message,
            "ObservedAt": drift_core::clock::rfc3339(ms),
        }});
        self.client
            .patch_release(space_id, &release.release_id, patch)
            .await?;
        Ok(())
    }

    /// Records matching a where-clause over record labels (plus `drift-detector = 'record'`).
    ///
    /// # Errors
    /// ConfigHub errors. Record units whose data does not decode are skipped with a warning.
    pub async fn records_where(&self, clause: &str) -> Result<Vec<DriftRecord>> {
        // With a cluster's name, this detector reads its own cluster's records only: the space may
        // hold a fleet's.
        let own = self
            .cluster
            .as_ref()
            .map(|c| format!("Labels.cluster = {}", quote(&label_value(c))))
            .unwrap_or_default();
        let w = and([
            format!("SpaceID = {}", quote(&self.space.space_id)),
            "Labels.drift-detector = 'record'".to_string(),
            own,
            clause.to_string(),
        ]);
        // One paged `/unit_data` call: the records' YAML with their units' slugs.
        let rows = self.client.search_unit_data(&UnitQuery::with_where(w)).await?;
        let mut out = Vec::new();
        for row in rows {
            if row.data.is_empty() {
                continue; // created, data not written yet: the writer retries
            }
            match Self::decode(&row.slug, row.data.as_bytes()) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(error = %e, "skipping a drift record that does not decode"),
            }
        }
        Ok(out)
    }

    /// The records a named filter selects, optionally open ones only.
    ///
    /// # Errors
    /// ConfigHub errors.
    pub async fn records_in(&self, filter: NamedFilter, open_only: bool) -> Result<Vec<DriftRecord>> {
        let open = if open_only {
            "Labels.drift-open = 'true'"
        } else {
            ""
        };
        self.records_where(&and([filter.where_clause(), open])).await
    }
}

/// Creates (or corrects) the named drift filters in a records space.
///
/// # Errors
/// ConfigHub errors.
pub async fn ensure_named_filters(client: &ConfigHubClient, space: &Space) -> Result<Vec<(String, Ensured)>> {
    let mut out = Vec::new();
    for f in NamedFilter::ALL {
        let (_, how) = client
            .ensure_filter(&space.space_id, f.slug(), "Unit", f.where_clause())
            .await?;
        out.push((f.slug().to_string(), how));
    }
    Ok(out)
}

fn query_clause(q: &HistoryQuery, cluster: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(id) = &q.drift_id {
        parts.push(format!(
            "Slug = {}",
            quote(&cluster_record_slug(cluster, id.as_str()))
        ));
    }
    if let Some(s) = q.set {
        let name = serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if name == "corrected" {
            parts.push("Labels.drift-state = 'corrected'".into());
        } else {
            parts.push(format!("Labels.drift-set = {}", quote(&name)));
        }
    }
    if let Some(min) = q.min_severity {
        let allowed: Vec<String> = [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .filter(|s| *s >= min)
            .map(|s| quote(&severity_name(s)))
            .collect();
        parts.push(format!("Labels.severity IN ({})", allowed.join(", ")));
    }
    if let Some(e) = &q.environment {
        parts.push(format!("Labels.environment = {}", quote(&label_value(e))));
    }
    if q.open_only {
        parts.push("Labels.drift-open = 'true'".into());
    }
    and(parts)
}

#[async_trait]
impl DriftLog for ConfigHubDriftLog {
    async fn append(&self, event: &DriftEvent) -> std::result::Result<(), PortError> {
        let slug = cluster_record_slug(self.cluster.as_deref(), event.drift.id.as_str());
        let mut last: Option<ConfigHubError> = None;
        for attempt in 0..APPEND_ATTEMPTS {
            match self.append_once(event, &slug).await {
                Ok(_) => {
                    if self.mark_units
                        && let Err(e) = self.mark_desired_unit(event).await
                    {
                        // The record is written; the mark is a convenience and catches up on the next event.
                        tracing::warn!(error = %e, drift = %event.drift.id, "could not mark the drifted unit in ConfigHub");
                    }
                    return Ok(());
                }
                // Lost the race, or the answer: read again; the event is added only if absent.
                Err(e) if e.is_retryable() => {
                    tracing::debug!(error = %e, attempt, event = %event.event_id, "drift record write to re-check");
                    tokio::time::sleep(std::time::Duration::from_millis(20 * (attempt as u64 + 1))).await;
                    last = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(
            || PortError::Unavailable {
                what: "ConfigHub".into(),
                reason: "giving up".into(),
            },
            |e| PortError::Unavailable {
                what: format!("drift record {slug}"),
                reason: format!(
                    "not written after {APPEND_ATTEMPTS} attempts (the caller keeps it to retry): {e}"
                ),
            },
        ))
    }

    async fn records(&self, query: &HistoryQuery) -> std::result::Result<Vec<DriftRecord>, PortError> {
        let all = self
            .records_where(&query_clause(query, self.cluster.as_deref()))
            .await?;
        Ok(drift_core::memory::select_records(all, query))
    }
}

/// A summary of records by state and set (for `hub status`-like output).
pub fn summarize(records: &[DriftRecord]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in records {
        *m.entry(format!("state:{}", r.state.as_str())).or_insert(0) += 1;
        *m.entry(format!("set:{}", set_name(r))).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_label_values_are_safe() {
        assert_eq!(record_slug("d-A8bc71dcaeeab039"), "drift-d-a8bc71dcaeeab039");
        assert_eq!(record_slug("drift-x"), "drift-x");
        assert_eq!(label_value("kube-system/x y"), "kube-system-x-y");
        assert_eq!(label_value("-weird-"), "weird");
    }

    #[test]
    fn history_queries_become_where_clauses_that_parse() {
        let q = HistoryQuery {
            drift_id: Some(drift_core::DriftId("d-1".into())),
            set: Some(drift_core::rules::DriftSet::Replica),
            min_severity: Some(Severity::Warning),
            environment: Some("prod".into()),
            open_only: true,
            ..HistoryQuery::default()
        };
        let c = query_clause(&q, None);
        assert!(crate::where_clause::WhereClause::parse(&c).is_ok(), "{c}");
        assert!(c.contains("Labels.severity IN ('warning', 'critical')"), "{c}");
        assert!(c.contains("Slug = 'drift-d-1'"), "{c}");
        assert_eq!(query_clause(&HistoryQuery::default(), None), "");
        let c = query_clause(&q, Some("EU West"));
        assert!(c.contains("Slug = 'drift-eu-west-d-1'"), "{c}");
    }
}
