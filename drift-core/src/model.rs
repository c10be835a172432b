//! Resource identity and the resource model.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kinds;

/// Identity of a Kubernetes object.
///
/// The API version is carried (it selects the server-defaults table) but is **not** part of identity:
/// `apps/v1beta1` and `apps/v1` name the same Deployment. Equality, hashing and ordering use
/// group, kind, namespace and name only. Cluster-scoped kinds have no namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceKey {
    /// API group; empty for the core group.
    pub group: String,
    /// API version within the group, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

impl ResourceKey {
    /// Builds a key from an `apiVersion` (`apps/v1` or `v1`), kind, namespace and name.
    ///
    /// ```
    /// use drift_core::ResourceKey;
    /// let k = ResourceKey::new("apps/v1", "Deployment", Some("shop"), "web");
    /// assert_eq!(k.group, "apps");
    /// assert_eq!(k.to_string(), "apps/Deployment shop/web");
    /// ```
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        let (group, version) = split_api_version(api_version);
        ResourceKey {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// The `apiVersion` string (`apps/v1`, or `v1` for the core group).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether `self` and `other` have the same group and kind.
    pub fn same_kind(&self, other: &ResourceKey) -> bool {
        self.group == other.group && self.kind == other.kind
    }

    fn identity(&self) -> (&str, &str, Option<&str>, &str) {
        (&self.group, &self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

impl PartialEq for ResourceKey {
    fn eq(&self, other: &Self) -> bool {
        // A key looked up by itself (a shared key taken out of a set) is not read at all.
        std::ptr::eq(self, other) || self.identity() == other.identity()
    }
}
impl Eq for ResourceKey {}
impl Hash for ResourceKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}
impl PartialOrd for ResourceKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ResourceKey {
    fn cmp(&self, other: &Self) -> Ordering {
        // Namespace first, then kind and name: the order people read reports in.
        (self.namespace.as_deref(), &self.group, &self.kind, &self.name).cmp(&(
            other.namespace.as_deref(),
            &other.group,
            &other.kind,
            &other.name,
        ))
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gk = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}/{}", self.group, self.kind)
        };
        match &self.namespace {
            Some(ns) => write!(f, "{gk} {ns}/{}", self.name),
            None => write!(f, "{gk} {}", self.name),
        }
    }
}

/// A Kubernetes object: its identity and its JSON body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Identity, derived from `apiVersion`, `kind`, `metadata.namespace` and `metadata.name`.
    pub key: ResourceKey,
    /// The object as JSON.
    pub object: Value,
}

/// Why a JSON value is not a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The document is not a JSON/YAML mapping.
    #[error("not an object (found {found})")]
    NotAnObject {
        /// The JSON type that was found instead.
        found: &'static str,
    },
    /// A required field is missing or is not a string.
    #[error("missing or non-string field `{field}`")]
    MissingField {
        /// Dotted path of the field.
        field: &'static str,
    },
    /// `apiVersion` is not one an API server could serve (`V1`, `" v1"`, `/v1`, `v1beta1` for the
    /// core group): an error, never guessed at (a misspelt Secret must not slip past redaction or be
    /// compared as some other kind).
    #[error("apiVersion `{api_version}` is not valid: {reason}")]
    InvalidApiVersion {
        /// As written.
        api_version: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Checks an `apiVersion`'s spelling: `v1` for the core group, else `group/version` with a lower-case
/// DNS group and a version such as `v1`, `v2beta1`.
pub fn check_api_version(api_version: &str) -> Result<(), ObjectError> {
    let bad = |reason| {
        Err(ObjectError::InvalidApiVersion {
            api_version: api_version.to_string(),
            reason,
        })
    };
    let version_ok = |v: &str| {
        let Some(rest) = v.strip_prefix('v') else {
            return false;
        };
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || rest.starts_with('0') {
            return false;
        }
        let tail = &rest[digits..];
        tail.is_empty()
            || ["alpha", "beta"].iter().any(|s| {
                tail.strip_prefix(s)
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            })
    };
    match api_version.split_once('/') {
        None if api_version == "v1" => Ok(()),
        None if version_ok(api_version) => bad("the core group serves only v1"),
        None => bad("expected `v1` or `group/version`"),
        Some((group, version)) => {
            let group_ok = !group.is_empty()
                && group.split('.').all(|l| {
                    !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                });
            if !group_ok {
                bad("the group must be a lower-case DNS name")
            } else if !version_ok(version) {
                bad("the version must look like v1, v2beta1 or v1alpha2")
            } else {
                Ok(())
            }
        }
    }
}

impl Resource {
    /// Reads identity from an object. Cluster-scoped kinds drop a namespace given in the manifest
    /// (ARCHITECTURE §3.8).
    ///
    /// # Errors
    /// [`ObjectError`] when `apiVersion`, `kind` or `metadata.name` is missing.
    pub fn from_value(mut object: Value) -> Result<Self, ObjectError> {
        let key = identity_of(&object)?;
        if key.namespace.is_none()
            && kinds::is_cluster_scoped(&key.group, &key.kind)
            && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            // Only a namespace the key dropped is taken out (an empty one stays, as given).
            if meta
                .get("namespace")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            {
                meta.remove("namespace");
            }
        }
        Ok(Resource { key, object })
    }

    /// Gives a namespaced object without a namespace the namespace `ns` (as kubectl does with
    /// `--namespace`). Cluster-scoped kinds are left alone.
    pub fn default_namespace(&mut self, ns: &str) {
        if self.key.namespace.is_none() && !kinds::is_cluster_scoped(&self.key.group, &self.key.kind) {
            self.key.namespace = Some(ns.to_string());
            if let Some(meta) = self.object.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("namespace".into(), Value::String(ns.to_string()));
            }
        }
    }

    /// `metadata.labels` as a map (empty when absent).
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
    }
}

/// The identity [`Resource::from_value`] reads from an object, in either form: `apiVersion`,
/// `kind`, `metadata.name` and `metadata.namespace` (dropped for cluster-scoped kinds).
pub(crate) fn identity_of<'a, T: crate::tree::Tree<'a>>(object: T) -> Result<ResourceKey, ObjectError> {
    use crate::tree::{Shape, Tree};
    if !matches!(object.shape(), Shape::Obj(_)) {
        return Err(ObjectError::NotAnObject {
            found: json_type(&object.to_value()),
        });
    }
    let field = |m: T, f: &str| Tree::get(m, f).and_then(Tree::as_str).filter(|s| !s.is_empty());
    let api_version = field(object, "apiVersion").ok_or(ObjectError::MissingField { field: "apiVersion" })?;
    check_api_version(api_version)?;
    let kind = field(object, "kind").ok_or(ObjectError::MissingField { field: "kind" })?;
    let metadata = Tree::get(object, "metadata");
    let name = metadata
        .and_then(|m| field(m, "name"))
        .ok_or(ObjectError::MissingField {
            field: "metadata.name",
        })?;
    let namespace = metadata.and_then(|m| field(m, "namespace"));
    let mut key = ResourceKey::new(api_version, kind, namespace, name);
    if key.namespace.is_some() && kinds::is_cluster_scoped(&key.group, &key.kind) {
        key.namespace = None;
    }
    Ok(key)
}

/// The JSON type name of a value, for error messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_versions_are_spelt_as_a_server_serves_them() {
        for ok in [
            "v1",
            "apps/v1",
            "autoscaling/v2",
            "batch/v1beta1",
            "cert-manager.io/v1",
            "x.k8s.io/v1alpha2",
        ] {
            assert!(super::check_api_version(ok).is_ok(), "{ok}");
        }
        for bad in [
            "V1",
            "v1 ",
            " v1",
            "/v1",
            "v1beta1",
            "Apps/v1",
            "apps/V1",
            "apps/",
            "apps/1",
            "apps/v0",
            "apps/v1beta",
        ] {
            assert!(super::check_api_version(bad).is_err(), "{bad}");
        }
        let e = super::Resource::from_value(serde_json::json!({"apiVersion": "V1", "kind": "Secret",
            "metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg=="}}))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "apiVersion `V1` is not valid: expected `v1` or `group/version`"
        );
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn version_is_not_identity() {
        let a = ResourceKey::new("apps/v1", "Deployment", Some("a"), "x");
        let b = ResourceKey::new("apps/v1beta1", "Deployment", Some("a"), "x");
        assert_eq!(a, b);
        let mut set = std::collections::HashSet::new();
        set.insert(a);
        assert!(set.contains(&b));
    }

    #[test]
    fn cluster_scoped_drops_namespace() {
        let r = Resource::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "x", "namespace": "oops"}
        }))
        .unwrap();
        assert_eq!(r.key.namespace, None);
        assert!(r.object.pointer("/metadata/namespace").is_none());
    }

    #[test]
    fn missing_fields_are_named() {
        let e = Resource::from_value(json!({"apiVersion": "v1", "metadata": {"name": "x"}})).unwrap_err();
        assert_eq!(e.to_string(), "missing or non-string field `kind`");
        let e = Resource::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap"})).unwrap_err();
        assert_eq!(e.to_string(), "missing or non-string field `metadata.name`");
        let e = Resource::from_value(json!([1])).unwrap_err();
        assert_eq!(e.to_string(), "not an object (found list)");
    }

    #[test]
    fn default_namespace_only_for_namespaced() {
        let mut r =
            Resource::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}))
                .unwrap();
        r.default_namespace("shop");
        assert_eq!(r.key.namespace.as_deref(), Some("shop"));
        let mut n = Resource::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        )
        .unwrap();
        n.default_namespace("shop");
        assert_eq!(n.key.namespace, None);
    }
}
