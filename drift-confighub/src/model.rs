//! ConfigHub's JSON as the API sends it today (v0.8.5, `confighub-api.md` §2): PascalCase field names,
//! UUID strings, list results wrapped in `Extended*` objects, writes answered with
//! `UnitCreateOrUpdateResponse` wrappers, and 200/207 bulk results with per-item errors. Configuration
//! data is not part of any entity: it is read and written as raw bytes through the data endpoints
//! (`ETag` = `DataHash`).
//!
//! Entities keep every field this crate does not model in `extra`, so a read-modify-write (`PUT` with
//! `Version`) never drops what a newer API added.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Labels and annotations.
pub type Labels = BTreeMap<String, String>;

/// The toolchain of Kubernetes units.
pub const KUBERNETES_YAML: &str = "Kubernetes/YAML";
/// The toolchain of drift-record units: structured YAML that is not a Kubernetes object.
pub const APP_CONFIG_YAML: &str = "AppConfig/YAML";

/// The SHA-256 of config bytes in lower-case hex: ConfigHub's `DataHash`.
pub fn data_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A space.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Space {
    /// Id.
    #[serde(rename = "SpaceID", default, skip_serializing_if = "String::is_empty")]
    pub space_id: String,
    /// Organization id.
    #[serde(rename = "OrganizationID", default, skip_serializing_if = "String::is_empty")]
    pub organization_id: String,
    /// Slug (unique in the organization).
    pub slug: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: Labels,
    /// The Target this space's Releases are published for (and the default Target of its units).
    #[serde(rename = "ReleaseTargetID", default, skip_serializing_if = "Option::is_none")]
    pub release_target_id: Option<String>,
    /// The space it was cloned from.
    #[serde(rename = "UpstreamSpaceID", default, skip_serializing_if = "Option::is_none")]
    pub upstream_space_id: Option<String>,
    /// Optimistic-concurrency version.
    #[serde(default)]
    pub version: i64,
    /// Fields not modelled here, kept for round trips.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /space` items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtendedSpace {
    /// The space.
    pub space: Space,
    /// Units in it.
    #[serde(default)]
    pub total_unit_count: i64,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A unit: one piece of configuration (here, Kubernetes YAML) with its revision history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Unit {
    /// Id.
    #[serde(rename = "UnitID", default, skip_serializing_if = "String::is_empty")]
    pub unit_id: String,
    /// Space id.
    #[serde(rename = "SpaceID", default, skip_serializing_if = "String::is_empty")]
    pub space_id: String,
    /// Slug (unique in the space).
    pub slug: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: Labels,
    /// `Kubernetes/YAML`, `AppConfig/YAML`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub toolchain_type: String,
    /// The Target it is assigned to: Releases bundle the units whose Target is the space's release Target.
    #[serde(rename = "TargetID", default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// The unit it was cloned from.
    #[serde(rename = "UpstreamUnitID", default, skip_serializing_if = "Option::is_none")]
    pub upstream_unit_id: Option<String>,
    /// The space of the upstream unit.
    #[serde(rename = "UpstreamSpaceID", default, skip_serializing_if = "Option::is_none")]
    pub upstream_space_id: Option<String>,
    /// The upstream revision this unit last took (0: not a clone).
    #[serde(default)]
    pub upstream_revision_num: i64,
    /// The latest revision.
    #[serde(default)]
    pub head_revision_num: i64,
    /// The last revision published in a Release (0: never released): what the cluster should run.
    #[serde(default)]
    pub last_released_revision_num: i64,
    /// Copied into the description of the next revision a data change creates.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_change_description: String,
    /// SHA-256 of the data, hex; also the `ETag` of the data endpoint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_hash: String,
    /// Size of the data in bytes.
    #[serde(default)]
    pub data_size: i64,
    /// Optimistic-concurrency version: send back the value read.
    #[serde(default)]
    pub version: i64,
    /// Fields not modelled here (`ValidationErrors`, `ProviderType`, `CreatedAt`, ...), kept for round trips.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Unit {
    /// A string field of `extra` (`CreatedAt`, `UpdatedAt`, ...).
    pub fn extra_str(&self, field: &str) -> Option<&str> {
        self.extra.get(field).and_then(Value::as_str)
    }

    /// Whether the head has changes no Release carries yet (`HeadRevisionNum > LastReleasedRevisionNum`).
    pub fn has_unreleased_changes(&self) -> bool {
        self.head_revision_num > self.last_released_revision_num
    }
}

/// `GET .../unit` and `GET .../unit/{id}` items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtendedUnit {
    /// The unit.
    pub unit: Unit,
    /// Its space, when included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<Space>,
    /// Its upstream unit, when included (`include=UpstreamUnitID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_unit: Option<Unit>,
    /// The released revision, when included (`include=LastReleasedRevisionNum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_released_revision: Option<Revision>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A saved query over an entity type: the where-clauses ConfigHub evaluates for lists and bulk calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    /// Id.
    #[serde(rename = "FilterID", default, skip_serializing_if = "String::is_empty")]
    pub filter_id: String,
    /// Space id.
    #[serde(rename = "SpaceID", default, skip_serializing_if = "String::is_empty")]
    pub space_id: String,
    /// Slug.
    pub slug: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Entity type: `Unit`, `Space`, ...
    pub from: String,
    /// Where-clause.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub r#where: String,
    /// Where-clause over config data.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub where_data: String,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Version.
    #[serde(default)]
    pub version: i64,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A revision of a unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Revision {
    /// Id.
    #[serde(rename = "RevisionID")]
    pub revision_id: String,
    /// Number (1, 2, ...).
    pub revision_num: i64,
    /// SHA-256 of its data (read it from `.../revision/{id}/data`).
    #[serde(default)]
    pub data_hash: String,
    /// The change description.
    #[serde(default)]
    pub description: String,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET .../revision` items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtendedRevision {
    /// The revision.
    pub revision: Revision,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A change set: a named group of changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChangeSet {
    /// Id.
    #[serde(rename = "ChangeSetID", default, skip_serializing_if = "String::is_empty")]
    pub change_set_id: String,
    /// Slug (required).
    pub slug: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A Target: where configuration is destined. A space's Releases are published for its release Target
/// and pulled from ConfigHub's OCI registry by a GitOps agent (Argo CD, Flux).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    /// Id.
    #[serde(rename = "TargetID", default, skip_serializing_if = "String::is_empty")]
    pub target_id: String,
    /// Space id.
    #[serde(rename = "SpaceID", default, skip_serializing_if = "String::is_empty")]
    pub space_id: String,
    /// Slug.
    pub slug: String,
    /// Facts about the cluster (`Cluster.KubernetesVersion`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: Labels,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One function call in a `function/invoke` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionInvocation {
    /// `set-replicas`, `set-image`, `set-int-path`, ...
    pub function_name: String,
    /// Arguments by name.
    #[serde(default)]
    pub arguments: Vec<FunctionArgument>,
}

/// A named function argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionArgument {
    /// Name.
    pub parameter_name: String,
    /// Value.
    pub value: Value,
}

impl FunctionInvocation {
    /// A call with `(name, value)` arguments.
    pub fn new(function: &str, args: &[(&str, Value)]) -> Self {
        FunctionInvocation {
            function_name: function.to_string(),
            arguments: args
                .iter()
                .map(|(n, v)| FunctionArgument {
                    parameter_name: (*n).to_string(),
                    value: v.clone(),
                })
                .collect(),
        }
    }
}

/// `POST .../function/invoke` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionInvocationsRequest {
    /// The calls, in order.
    pub function_invocations: Vec<FunctionInvocation>,
    /// The toolchain of the units (must match theirs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub toolchain_type: String,
    /// Recorded on the revision a mutating call creates.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub change_description: String,
    /// Stop at the first failure.
    #[serde(default)]
    pub stop_on_error: bool,
}

/// Per-unit result of a function invocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionInvocationsResponse {
    /// Unit.
    #[serde(rename = "UnitID", default)]
    pub unit_id: String,
    /// Whether every call succeeded.
    #[serde(default)]
    pub success: bool,
    /// SHA-256 of the resulting data (always present).
    #[serde(default)]
    pub data_hash: String,
    /// The resulting configuration as raw text, only when the invocation changed it.
    #[serde(default)]
    pub config_data: Option<String>,
    /// Outputs of read functions: output type → JSON document as a string (`AttributeValueList`, ...).
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// The error, if any.
    #[serde(default)]
    pub error: Option<ItemError>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The error of one item of a bulk call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ItemError {
    /// Message.
    #[serde(default)]
    pub message: String,
    /// HTTP-like status of the item.
    #[serde(default)]
    pub status: Value,
    /// Type.
    #[serde(default)]
    pub r#type: String,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What every unit write answers (create, `PUT`, `PATCH`, data upload; bulk writes answer an array of
/// them): the unit as written, or the item's error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnitCreateOrUpdateResponse {
    /// The unit, when it worked.
    #[serde(default)]
    pub unit: Option<Unit>,
    /// The error, when it did not.
    #[serde(default)]
    pub error: Option<ItemError>,
    /// The configuration the write produced, only when the write named `ConfigData` in `include`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_data: Option<String>,
    /// Everything else (`Links`, `Conflicts`, `MutationSources`, `Diff`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /info`: the server's version and where its OCI registry is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiInfo {
    /// `v0.8.5` (or `v0.8-dev` for a working-tree build): the first two numbers are the API version.
    #[serde(default)]
    pub version: String,
    /// Build id.
    #[serde(default)]
    pub build: String,
    /// The OCI registry GitOps agents pull Releases from.
    #[serde(rename = "OCIHost", default)]
    pub oci_host: String,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One element of `GET /unit_data`: a unit's data with its hash.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnitData {
    /// Unit id.
    #[serde(rename = "UnitID", default)]
    pub unit_id: String,
    /// Unit slug.
    #[serde(default)]
    pub slug: String,
    /// Space id.
    #[serde(rename = "SpaceID", default)]
    pub space_id: String,
    /// SHA-256 of the data (the data endpoint's `ETag`).
    #[serde(default)]
    pub data_hash: String,
    /// The configuration, as raw text.
    #[serde(default)]
    pub data: String,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a deploying agent reports about a Release (since v0.8.2; `confighub-api.md` §2.15).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleaseLiveStatus {
    /// `Synced`, `OutOfSync`, `Unknown`.
    #[serde(default)]
    pub sync: Option<String>,
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing`, `Unknown`.
    #[serde(default)]
    pub health: Option<String>,
    /// `Running`, `Succeeded`, `Failed`.
    #[serde(default)]
    pub operation: Option<String>,
    /// The reporter's own word for the sync state.
    #[serde(default)]
    pub reporter_sync: Option<String>,
    /// The reporter's own word for health.
    #[serde(default)]
    pub reporter_health: Option<String>,
    /// The reporter's own word for the operation.
    #[serde(default)]
    pub reporter_operation: Option<String>,
    /// Who reported (`argobot`, `drift-detector`).
    #[serde(default)]
    pub reporter: Option<String>,
    /// What was read (an Argo CD Application, a cluster).
    #[serde(default)]
    pub data_source: Option<String>,
    /// Short text, at most 1024 characters.
    #[serde(default)]
    pub message: Option<String>,
    /// When it was observed (RFC 3339).
    #[serde(default)]
    pub observed_at: Option<String>,
}

/// A published bundle of the configuration of a space's units assigned to its release Target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Release {
    /// Id.
    #[serde(rename = "ReleaseID", default)]
    pub release_id: String,
    /// Space id.
    #[serde(rename = "SpaceID", default)]
    pub space_id: String,
    /// The consuming Target.
    #[serde(rename = "TargetID", default)]
    pub target_id: Option<String>,
    /// Increases per Target; the highest is the latest.
    #[serde(default)]
    pub release_num: i64,
    /// The Tag marking the bundled revisions.
    #[serde(rename = "TagID", default)]
    pub tag_id: Option<String>,
    /// OCI digest of the bundle.
    #[serde(default)]
    pub digest: String,
    /// OCI manifest digest: what Argo CD reports as the synced revision.
    #[serde(default)]
    pub manifest_digest: String,
    /// Units bundled.
    #[serde(default)]
    pub unit_count: i64,
    /// Served (cleared by withdraw).
    #[serde(default)]
    pub published: bool,
    /// What the deploying agent reported.
    #[serde(default)]
    pub live_status: Option<ReleaseLiveStatus>,
    /// Optimistic-concurrency version.
    #[serde(default)]
    pub version: i64,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /space/{space_id}/release` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleasePublishRequest {
    /// Bundle each unit at the latest revision carrying this Tag (head for units without one).
    #[serde(rename = "TagID", default, skip_serializing_if = "Option::is_none")]
    pub tag_id: Option<String>,
    /// Labels of the Release.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Annotations of the Release.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: Labels,
}

/// `POST /space/{space_id}/release` answer: the Release (the latest one, with a `Message`, when nothing
/// changed since it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleasePublishResponse {
    /// The Release.
    pub release: Release,
    /// Why no new Release was made, if none was.
    #[serde(default)]
    pub message: String,
}

/// ConfigHub's error body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StandardErrorResponse {
    /// Code (a number or a word, depending on the route).
    #[serde(default)]
    pub code: Value,
    /// Message.
    #[serde(default)]
    pub message: String,
}

/// A list item that may or may not come wrapped in its `Extended*` object (`{"Filter": {...}}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub(crate) enum MaybeWrapped<T> {
    Wrapped(BTreeMap<String, T>),
    Plain(T),
}

impl<T> MaybeWrapped<T> {
    pub(crate) fn into_inner(self, key: &str) -> Option<T> {
        match self {
            MaybeWrapped::Plain(t) => Some(t),
            MaybeWrapped::Wrapped(mut m) => m.remove(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pascal_case_round_trip_keeps_unknown_fields() {
        let v = json!({"UnitID": "u1", "SpaceID": "s1", "Slug": "web", "DataHash": "ab",
            "ToolchainType": "Kubernetes/YAML", "HeadRevisionNum": 3, "LastReleasedRevisionNum": 2,
            "Version": 7, "ApplyGates": {"x": true}, "UpstreamUnitID": null});
        let u: Unit = serde_json::from_value(v).expect("unit");
        assert_eq!(u.unit_id, "u1");
        assert_eq!(u.head_revision_num, 3);
        assert!(u.has_unreleased_changes());
        assert_eq!(u.extra["ApplyGates"], json!({"x": true}));
        let back = serde_json::to_value(&u).expect("json");
        assert_eq!(back["ApplyGates"], json!({"x": true}));
        assert_eq!(back["UnitID"], "u1");
    }

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(
            data_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn wrapped_or_plain() {
        let w: MaybeWrapped<Filter> =
            serde_json::from_value(json!({"Filter": {"Slug": "a", "From": "Unit"}})).expect("w");
        assert_eq!(w.into_inner("Filter").map(|f| f.slug), Some("a".into()));
        let p: MaybeWrapped<Filter> =
            serde_json::from_value(json!({"Slug": "b", "From": "Unit"})).expect("p");
        assert_eq!(p.into_inner("Filter").map(|f| f.slug), Some("b".into()));
    }
}
