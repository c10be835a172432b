//! Drifts and drift reports.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::ResourceKey;
use crate::path::FieldPath;
use crate::rules::{DriftSet, Severity};

/// How live differs from desired at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Both sides have the field, with different values.
    Changed,
    /// Desired has the field, live does not.
    Missing,
    /// Live has a field that desired does not, and it is ours to remove (ARCHITECTURE §3.2).
    Extra,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Changed => "changed",
            Change::Missing => "missing",
            Change::Extra => "extra",
        })
    }
}

/// Who made a change, from the live object's `metadata.managedFields`: the field manager that owns
/// the drifted field now, the operation it used and when it last wrote.
///
/// Only a changed or an extra field has an owner to read; a removed field has none, so a
/// [`Change::Missing`] drift carries no actor rather than a guess.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The field manager (`kubectl-scale`, `kubectl-edit`, `kube-controller-manager`, ...).
    pub manager: String,
    /// `Update` or `Apply`.
    pub operation: String,
    /// When that manager last wrote the object (RFC 3339), if the server recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The subresource it wrote through (`scale`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.manager)?;
        if let Some(s) = &self.subresource {
            write!(f, " ({s})")?;
        }
        if let Some(t) = &self.time {
            write!(f, " at {t}")?;
        }
        Ok(())
    }
}

/// A stable drift identifier: the same resource and field always give the same id, so a drift that
/// re-opens, or a retried write, is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DriftId(pub String);

impl DriftId {
    /// The id of the drift at `field` (readable form) of `key`.
    pub fn of(key: &ResourceKey, field: &str) -> DriftId {
        let ident = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            key.group,
            key.kind,
            key.namespace.as_deref().unwrap_or(""),
            key.name,
            field
        );
        DriftId(format!(
            "d-{}",
            &crate::redact::sha256_hex(ident.as_bytes())[..16]
        ))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DriftId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One field-level difference between desired and live.
///
/// `expected` and `actual` never hold a Secret value: Secrets are redacted before comparison
/// (see [`crate::redact`]), so they show tokens such as `sha256:1a2b3c4d5e6f7a8b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "DriftRepr", try_from = "DriftRepr")]
pub struct Drift {
    /// Stable id.
    pub id: DriftId,
    /// The resource.
    pub key: ResourceKey,
    /// Where, in the live object.
    pub path: FieldPath,
    /// What kind of difference.
    pub change: Change,
    /// The desired value (`None` for [`Change::Extra`]).
    pub expected: Option<Value>,
    /// The live value (`None` for [`Change::Missing`]).
    pub actual: Option<Value>,
    /// Name of the rule that classified it.
    pub rule: String,
    /// The set it belongs to.
    pub set: DriftSet,
    /// How serious it is.
    pub severity: Severity,
    /// JSON Pointer of the expected value in the (normalized) desired object, for building patches.
    pub desired_pointer: Option<String>,
    /// Who made the change, when the live object's field ownership says so.
    pub actor: Option<Actor>,
}

impl Drift {
    /// A one-line description, e.g. `spec.replicas expected=3, actual=5`.
    pub fn describe(&self) -> String {
        let show = |v: &Option<Value>| match v {
            None => "<absent>".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                let s = v.to_string();
                if s.chars().count() > 60 {
                    format!("{}…", s.chars().take(59).collect::<String>())
                } else {
                    s
                }
            }
        };
        format!(
            "{} expected={}, actual={}",
            self.path.readable(),
            show(&self.expected),
            show(&self.actual)
        )
    }
}

#[derive(Serialize, Deserialize)]
struct DriftRepr {
    id: DriftId,
    resource: ResourceKey,
    path: String,
    field: String,
    change: Change,
    expected: Option<Value>,
    actual: Option<Value>,
    rule: String,
    set: DriftSet,
    severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "desiredPointer")]
    desired_pointer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actor: Option<Actor>,
}

impl From<Drift> for DriftRepr {
    fn from(d: Drift) -> Self {
        DriftRepr {
            id: d.id,
            resource: d.key,
            path: d.path.pointer(),
            field: d.path.readable(),
            change: d.change,
            expected: d.expected,
            actual: d.actual,
            rule: d.rule,
            set: d.set,
            severity: d.severity,
            desired_pointer: d.desired_pointer,
            actor: d.actor,
        }
    }
}

impl TryFrom<DriftRepr> for Drift {
    type Error = String;
    fn try_from(r: DriftRepr) -> Result<Self, String> {
        Ok(Drift {
            id: r.id,
            key: r.resource,
            path: FieldPath::parse_readable(&r.field, &r.path).map_err(|e| e.to_string())?,
            change: r.change,
            expected: r.expected,
            actual: r.actual,
            rule: r.rule,
            set: r.set,
            severity: r.severity,
            desired_pointer: r.desired_pointer,
            actor: r.actor,
        })
    }
}

/// A live field the desired state does not mention and that is not ours: informational only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnmanagedField {
    /// JSON Pointer into live.
    pub path: String,
    /// Readable form.
    pub field: String,
    /// The live value (redacted for Secrets).
    pub actual: Value,
}

/// The verdict for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DriftStatus {
    /// Live matches desired.
    InSync,
    /// At least one drift.
    Drifted,
    /// Desired has the object, live does not.
    MissingLive,
    /// Live has the object, desired does not (listed only on request).
    Unmanaged,
}

impl fmt::Display for DriftStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriftStatus::InSync => "in-sync",
            DriftStatus::Drifted => "drifted",
            DriftStatus::MissingLive => "missing-live",
            DriftStatus::Unmanaged => "unmanaged",
        })
    }
}

/// The result of comparing one desired object with its live counterpart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// The resource.
    pub key: ResourceKey,
    /// The verdict.
    pub status: DriftStatus,
    /// Field-level drifts, in path order.
    pub drifts: Vec<Drift>,
    /// Live fields nobody in the desired state owns.
    pub unmanaged: Vec<UnmanagedField>,
}

impl DriftReport {
    /// Whether the resource counts as drifted (drifts, or missing from live).
    pub fn is_drifted(&self) -> bool {
        matches!(self.status, DriftStatus::Drifted | DriftStatus::MissingLive)
    }
}
