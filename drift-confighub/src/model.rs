//! ConfigHub's JSON, as the API sends it: PascalCase field names, UUID strings, base64 `Data`, list
//! results wrapped in `Extended*` objects, and 200/207 bulk results with per-item errors.
//!
//! Entities keep every field this crate does not model in `extra`, so a read-modify-write (`PUT` with
//! `Version`) never drops what a newer API added.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Labels and annotations.
pub type Labels = BTreeMap<String, String>;

/// The toolchain of Kubernetes units.
pub const KUBERNETES_YAML: &str = "Kubernetes/YAML";
/// The toolchain of drift-record units: structured YAML that is not a Kubernetes object.
pub const APP_CONFIG_YAML: &str = "AppConfig/YAML";

/// Encodes config bytes as `Data` (standard base64).
pub fn encode_data(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes `Data` (standard base64).
///
/// # Errors
/// The text is not base64.
pub fn decode_data(data: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(data.trim())
}

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
    /// The config, base64. Use [`Unit::data`] and [`Unit::set_data`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
    /// `Kubernetes/YAML`, `AppConfig/YAML`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub toolchain_type: String,
    /// Where it is applied.
    #[serde(rename = "TargetID", default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// The unit it was cloned from.
    #[serde(rename = "UpstreamUnitID", default, skip_serializing_if = "Option::is_none")]
    pub upstream_unit_id: Option<String>,
    /// The space of the upstream unit.
    #[serde(rename = "UpstreamSpaceID", default, skip_serializing_if = "Option::is_none")]
    pub upstream_space_id: Option<String>,
    /// The upstream revision this unit last took.
    #[serde(default)]
    pub upstream_revision_num: i64,
    /// The latest revision.
    #[serde(default)]
    pub head_revision_num: i64,
    /// The revision running (0: never applied).
    #[serde(default)]
    pub live_revision_num: i64,
    /// The revision last applied.
    #[serde(default)]
    pub last_applied_revision_num: i64,
    /// The revision live before the last apply.
    #[serde(default)]
    pub previous_live_revision_num: i64,
    /// The message of the latest change; set it on an update to describe the change.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_change_description: String,
    /// SHA-256 of the data, hex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_hash: String,
    /// Optimistic-concurrency version: send back the value read.
    #[serde(default)]
    pub version: i64,
    /// Fields not modelled here (`LiveState`, `ApplyGates`, `CreatedAt`, ...), kept for round trips.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Unit {
    /// The decoded config bytes.
    ///
    /// # Errors
    /// `Data` is not base64.
    pub fn data(&self) -> Result<Vec<u8>, base64::DecodeError> {
        decode_data(&self.data)
    }

    /// The decoded config as text.
    ///
    /// # Errors
    /// `Data` is not base64 or not UTF-8, as a sentence.
    pub fn data_text(&self) -> Result<String, String> {
        let bytes = self.data().map_err(|e| format!("Data is not base64: {e}"))?;
        String::from_utf8(bytes).map_err(|e| format!("Data is not UTF-8 text: {e}"))
    }

    /// Sets the config (encodes it).
    pub fn set_data(&mut self, bytes: &[u8]) {
        self.data = encode_data(bytes);
    }

    /// A string field of `extra` (`CreatedAt`, `UpdatedAt`, ...).
    pub fn extra_str(&self, field: &str) -> Option<&str> {
        self.extra.get(field).and_then(Value::as_str)
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
    /// Its upstream unit, when included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_unit: Option<Unit>,
    /// The latest event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_unit_event: Option<UnitEvent>,
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

/// A queued apply, refresh or destroy. These run asynchronously; completion shows in unit events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueuedOperation {
    /// Id.
    #[serde(rename = "QueuedOperationID")]
    pub queued_operation_id: String,
    /// Unit.
    #[serde(rename = "UnitID", default)]
    pub unit_id: String,
    /// Space.
    #[serde(rename = "SpaceID", default)]
    pub space_id: String,
    /// `Apply`, `Refresh`, ...
    #[serde(default)]
    pub action: String,
    /// The revision acted on.
    #[serde(default)]
    pub revision_num: i64,
    /// Queue status.
    #[serde(default)]
    pub status: String,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One step of a unit's operations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnitEvent {
    /// Id.
    #[serde(rename = "UnitEventID", default)]
    pub unit_event_id: String,
    /// Unit.
    #[serde(rename = "UnitID", default)]
    pub unit_id: String,
    /// The operation it belongs to.
    #[serde(rename = "QueuedOperationID", default)]
    pub queued_operation_id: String,
    /// `Apply`, `Refresh`, ...
    #[serde(default)]
    pub action: String,
    /// `ApplyCompleted`, `ApplyFailed`, `RefreshAndDrifted`, `RefreshAndNoDrift`, ...
    #[serde(default)]
    pub result: String,
    /// `None`, `Pending`, `Submitted`, `Progressing`, `Completed`, `Failed`, `Canceled`.
    #[serde(default)]
    pub status: String,
    /// Details.
    #[serde(default)]
    pub message: String,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl UnitEvent {
    /// Whether the operation has finished (completed, failed or canceled).
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "Completed" | "Failed" | "Canceled")
    }
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
    /// Data (base64).
    #[serde(default)]
    pub data: String,
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

/// A target: where units are applied (created by a bridge worker).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    /// Id.
    #[serde(rename = "TargetID", default, skip_serializing_if = "String::is_empty")]
    pub target_id: String,
    /// Slug.
    pub slug: String,
    /// The worker behind it.
    #[serde(rename = "BridgeWorkerID", default)]
    pub bridge_worker_id: String,
    /// `Kubernetes`.
    #[serde(default)]
    pub provider_type: String,
    /// `Kubernetes/YAML`.
    #[serde(default)]
    pub toolchain_type: String,
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
    /// The resulting config (base64).
    #[serde(default)]
    pub config_data: String,
    /// Output of read functions (a JSON string).
    #[serde(default)]
    pub output: String,
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

/// `PATCH /unit` (bulk patch, upgrade) and bulk create items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnitCreateOrUpdateResponse {
    /// The unit, when it worked.
    #[serde(default)]
    pub unit: Option<Unit>,
    /// The error, when it did not.
    #[serde(default)]
    pub error: Option<ItemError>,
}

/// `POST /unit/apply` (bulk apply) items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnitActionResponse {
    /// The queued operation, when it worked.
    #[serde(default)]
    pub action: Option<QueuedOperation>,
    /// The error, when it did not.
    #[serde(default)]
    pub error: Option<ItemError>,
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
        let v = json!({"UnitID": "u1", "SpaceID": "s1", "Slug": "web", "Data": encode_data(b"kind: X\n"),
            "ToolchainType": "Kubernetes/YAML", "HeadRevisionNum": 3, "Version": 7, "ApplyGates": {"x": true},
            "UpstreamUnitID": null});
        let u: Unit = serde_json::from_value(v).expect("unit");
        assert_eq!(u.unit_id, "u1");
        assert_eq!(u.head_revision_num, 3);
        assert_eq!(u.data_text().expect("text"), "kind: X\n");
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
