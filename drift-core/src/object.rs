//! Desired and live objects prepared for comparison.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::compiled::Compiled;
use crate::model::{Resource, ResourceKey};
use crate::ownership::Ownership;
use crate::redact::Redactor;
use crate::tree::Tree;

/// A desired object, normalized once: Secret `stringData` folded into `data` and every Secret value
/// replaced by its redaction token.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    resource: Resource,
}

impl DesiredObject {
    /// Prepares a desired resource with the process-wide [`Redactor`].
    pub fn new(resource: Resource) -> Self {
        Self::with_redactor(resource, Redactor::global())
    }

    /// Prepares a desired resource with a given redactor.
    pub fn with_redactor(mut resource: Resource, redactor: &Redactor) -> Self {
        redactor.redact(&mut resource.object);
        convert_to_compared_version(&mut resource);
        DesiredObject { resource }
    }

    /// The normalized resource.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// Consumes the wrapper.
    pub fn into_resource(self) -> Resource {
        self.resource
    }

    /// Wraps a resource prepared already (the detector's stored form of one), without preparing it
    /// again.
    pub(crate) fn prepared(resource: Resource) -> Self {
        DesiredObject { resource }
    }

    /// Identity.
    pub fn key(&self) -> &ResourceKey {
        &self.resource.key
    }

    /// The normalized object.
    pub fn object(&self) -> &Value {
        &self.resource.object
    }
}

/// Converts a desired object written in an older served version to the version live objects are
/// read in, as the API server converts between the versions it serves, so both sides compare
/// field for field:
///
/// - `autoscaling/v1` HorizontalPodAutoscaler → `autoscaling/v2`
///   (`pkg/apis/autoscaling/v1/conversion.go`): `targetCPUUtilizationPercentage: N` is the metric
///   `{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: N}}}`;
///   without it there is no metric, and the v2 default (80 % CPU) applies.
/// - A pod spec's deprecated `serviceAccount` (`pkg/apis/core/v1/conversion.go`): the identity is
///   `serviceAccountName`, taken from `serviceAccount` when it is not given, and the server writes it
///   back into both. So the desired identity is compared once, at `serviceAccountName` (the field a
///   revert must set); live's mirror is a default of it.
fn convert_to_compared_version(r: &mut Resource) {
    if let Some(spec) = pod_spec_path(&r.key)
        .and_then(|p| crate::value::field_path_mut(&mut r.object, p))
        .and_then(Value::as_object_mut)
        && let Some(sa) = spec.remove("serviceAccount")
    {
        let named = spec
            .get("serviceAccountName")
            .is_some_and(|n| n.as_str().is_some_and(|n| !n.is_empty()));
        if !named {
            spec.insert("serviceAccountName".into(), sa);
        }
    }
    if is_hpa_v1(&r.key) {
        hpa_v1_to_v2(&mut r.object);
        r.key.version = "v2".into();
    }
}

/// Where a kind holds its pod spec, for [`convert_to_compared_version`].
fn pod_spec_path(key: &ResourceKey) -> Option<&'static [&'static str]> {
    match (key.group.as_str(), key.kind.as_str()) {
        ("", "Pod") => Some(&["spec"]),
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job")
        | ("", "ReplicationController" | "PodTemplate") => Some(&["spec", "template", "spec"]),
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

/// Whether preparing a desired object changes the version in its key (see
/// [`convert_to_compared_version`]).
pub(crate) fn converts_version(key: &ResourceKey) -> bool {
    is_hpa_v1(key)
}

fn is_hpa_v1(key: &ResourceKey) -> bool {
    key.group == "autoscaling" && key.kind == "HorizontalPodAutoscaler" && key.version == "v1"
}

/// Whether preparing a desired object ([`DesiredObject::new`]) would change it, in either form:
/// redaction, or a conversion to the version live objects are read in.
pub(crate) fn preparing_changes<'a, T: Tree<'a>>(key: &ResourceKey, object: T, redactor: &Redactor) -> bool {
    if is_hpa_v1(key) || redactor.would_change(object) {
        return true;
    }
    let Some(path) = pod_spec_path(key) else {
        return false;
    };
    let mut at = Some(object);
    for field in path {
        at = at.and_then(|o| Tree::get(o, field));
    }
    at.is_some_and(|spec| Tree::get(spec, "serviceAccount").is_some())
}

/// An `autoscaling/v1` HorizontalPodAutoscaler in `autoscaling/v2` form
/// (`pkg/apis/autoscaling/v1/conversion.go`): `targetCPUUtilizationPercentage: N` becomes the metric
/// `{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: N}}}`.
pub fn hpa_v1_to_v2(obj: &mut Value) {
    let Some(obj) = obj.as_object_mut() else {
        return;
    };
    obj.insert("apiVersion".into(), Value::String("autoscaling/v2".into()));
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(target) = spec.remove("targetCPUUtilizationPercentage")
        && !target.is_null()
    {
        spec.insert(
            "metrics".into(),
            serde_json::json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": target}}}]),
        );
    }
}

/// A live object with Secret values redacted and field ownership parsed on first use.
#[derive(Debug)]
pub struct LiveObject {
    resource: Resource,
    ownership: OnceLock<Ownership>,
}

impl Clone for LiveObject {
    fn clone(&self) -> Self {
        LiveObject {
            resource: self.resource.clone(),
            ownership: OnceLock::new(),
        }
    }
}

impl PartialEq for LiveObject {
    fn eq(&self, other: &Self) -> bool {
        self.resource == other.resource
    }
}

impl LiveObject {
    /// Prepares a live resource with the process-wide [`Redactor`].
    pub fn new(resource: Resource) -> Self {
        Self::with_redactor(resource, Redactor::global())
    }

    /// Prepares a live resource with a given redactor.
    pub fn with_redactor(mut resource: Resource, redactor: &Redactor) -> Self {
        redactor.redact(&mut resource.object);
        LiveObject {
            resource,
            ownership: OnceLock::new(),
        }
    }

    /// A live resource that redaction leaves as it is (the caller asked
    /// [`Redactor::would_change`]), wrapped without looking again.
    pub(crate) fn left_by_redaction(resource: Resource) -> Self {
        LiveObject {
            resource,
            ownership: OnceLock::new(),
        }
    }

    /// The resource.
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// Identity.
    pub fn key(&self) -> &ResourceKey {
        &self.resource.key
    }

    /// The object.
    pub fn object(&self) -> &Value {
        &self.resource.object
    }

    /// Consumes the wrapper.
    pub fn into_resource(self) -> Resource {
        self.resource
    }

    /// Whether a diff has read this object's field ownership (`managedFields`, the last-applied
    /// annotation) so far: a diff that did not, and found no drift, did not depend on them.
    pub fn ownership_read(&self) -> bool {
        self.ownership.get().is_some()
    }

    pub(crate) fn ownership(&self) -> &Ownership {
        self.ownership
            .get_or_init(|| Ownership::from_object(&self.resource.object))
    }
}

/// A live object in compiled form: a prepared [`LiveObject`] compiled ([`CompiledLive::of`], as the
/// detector holds a compacted one), or decoded straight from its text
/// ([`crate::deferred::Deferred::lean_compiled`], only where redaction would change nothing). The
/// diff reads it in place and builds values only for what it reports.
#[derive(Debug)]
pub struct CompiledLive {
    key: ResourceKey,
    object: Compiled,
    ownership: OnceLock<Ownership>,
}

impl CompiledLive {
    /// Wraps a compiled live object, unless [`Redactor`] would change it (then it is given back).
    pub(crate) fn unredacted(
        key: ResourceKey,
        object: Compiled,
        redactor: &Redactor,
    ) -> Result<Self, Compiled> {
        if redactor.would_change(object.root()) {
            return Err(object);
        }
        Ok(Self::prepared(key, object))
    }

    /// A live object compiled from its prepared (redacted) form, as the detector keeps it, with
    /// its key (the live object's own, the version it was read in).
    pub(crate) fn prepared(key: ResourceKey, object: Compiled) -> Self {
        CompiledLive {
            key,
            object,
            ownership: OnceLock::new(),
        }
    }

    /// A prepared live object in compiled form (redacted already, as it is).
    pub fn of(live: &LiveObject) -> Self {
        Self::prepared(live.key().clone(), Compiled::of(live.object()))
    }

    /// Identity.
    pub fn key(&self) -> &ResourceKey {
        &self.key
    }

    /// The compiled object.
    pub fn compiled(&self) -> &Compiled {
        &self.object
    }

    pub(crate) fn root(&self) -> crate::compiled::Node<'_> {
        self.object.root()
    }

    /// As [`LiveObject::ownership_read`].
    pub fn ownership_read(&self) -> bool {
        self.ownership.get().is_some()
    }

    /// Field ownership, read from the object's `metadata` when first asked for.
    pub(crate) fn ownership(&self) -> &Ownership {
        self.ownership
            .get_or_init(|| Ownership::from_metadata(self.root().pointer("/metadata")))
    }
}

/// Workloads whose replica count an autoscaler owns: targets of HorizontalPodAutoscalers and KEDA
/// ScaledObjects in the live set. Their `spec.replicas` is never drift (ARCHITECTURE §3.6).
/// Hash-indexed both ways: a lookup, an autoscaler's update or removal costs the same with ten
/// autoscalers or ten thousand.
#[derive(Debug, Clone, Default)]
pub struct Autoscalers {
    /// Each autoscaler's target, as [`target_id`].
    target_of: HashMap<ResourceKey, String>,
    /// How many autoscalers name each target (usually one; several when they conflict).
    by_target: HashMap<String, usize>,
}

/// A target's identity within the cluster: namespace, kind and name (an autoscaler names its
/// target by kind and name, in its own namespace).
fn target_id(namespace: &str, kind: &str, name: &str) -> String {
    // NUL appears in none of the three (Kubernetes names and kinds are printable).
    format!("{namespace}\0{kind}\0{name}")
}

impl Autoscalers {
    /// Builds the index from live objects.
    pub fn from_live<'a>(live: impl IntoIterator<Item = &'a Resource>) -> Self {
        let mut a = Autoscalers::default();
        for r in live {
            a.observe(r);
        }
        a
    }

    /// Records (or updates) an autoscaler; objects of other kinds are ignored.
    pub fn observe(&mut self, r: &Resource) {
        let is_hpa = r.key.group == "autoscaling" && r.key.kind == "HorizontalPodAutoscaler";
        let is_keda = r.key.group == "keda.sh" && r.key.kind == "ScaledObject";
        if !is_hpa && !is_keda {
            return;
        }
        self.forget(&r.key);
        let Some(target) = r.object.pointer("/spec/scaleTargetRef") else {
            return;
        };
        let Some(name) = target.get("name").and_then(Value::as_str) else {
            return;
        };
        let kind = target.get("kind").and_then(Value::as_str).unwrap_or("Deployment");
        let id = target_id(r.key.namespace.as_deref().unwrap_or_default(), kind, name);
        *self.by_target.entry(id.clone()).or_default() += 1;
        self.target_of.insert(r.key.clone(), id);
    }

    /// Forgets an autoscaler that was deleted.
    pub fn forget(&mut self, autoscaler: &ResourceKey) {
        let Some(id) = self.target_of.remove(autoscaler) else {
            return;
        };
        if let Some(n) = self.by_target.get_mut(&id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_target.remove(&id);
            }
        }
    }

    /// Whether an autoscaler targets this workload.
    pub fn targets(&self, key: &ResourceKey) -> bool {
        !self.by_target.is_empty()
            && self.by_target.contains_key(&target_id(
                key.namespace.as_deref().unwrap_or_default(),
                &key.kind,
                &key.name,
            ))
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.target_of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa(ns: &str, name: &str, target: serde_json::Value) -> Resource {
        Resource::from_value(serde_json::json!({"apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler", "metadata": {"name": name, "namespace": ns},
            "spec": {"scaleTargetRef": target}}))
        .expect("hpa")
    }

    fn workload(ns: &str, kind: &str, name: &str) -> ResourceKey {
        ResourceKey::new("apps/v1", kind, Some(ns), name)
    }

    #[test]
    fn autoscaler_targets_follow_updates_and_removals() {
        let mut a = Autoscalers::default();
        assert!(a.is_empty() && !a.targets(&workload("shop", "Deployment", "web")));
        let one = hpa(
            "shop",
            "one",
            serde_json::json!({"kind": "Deployment", "name": "web"}),
        );
        let two = hpa("shop", "two", serde_json::json!({"name": "web"})); // kind defaults to Deployment
        a.observe(&one);
        a.observe(&two);
        assert!(a.targets(&workload("shop", "Deployment", "web")));
        // Same name, other namespace or kind: not a target.
        assert!(!a.targets(&workload("other", "Deployment", "web")));
        assert!(!a.targets(&workload("shop", "StatefulSet", "web")));
        // One of two conflicting autoscalers goes: still targeted.
        a.forget(&one.key);
        assert!(a.targets(&workload("shop", "Deployment", "web")));
        // An update moves the target.
        a.observe(&hpa(
            "shop",
            "two",
            serde_json::json!({"kind": "StatefulSet", "name": "db"}),
        ));
        assert!(!a.targets(&workload("shop", "Deployment", "web")));
        assert!(a.targets(&workload("shop", "StatefulSet", "db")));
        // An update without a target, then a removal: nothing left.
        a.observe(&hpa("shop", "two", serde_json::json!({})));
        assert!(a.is_empty() && !a.targets(&workload("shop", "StatefulSet", "db")));
        a.forget(&two.key);
        assert!(a.is_empty());
        // Other kinds are not autoscalers.
        let cm = Resource::from_value(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "shop"}, "spec": {"scaleTargetRef": {"name": "web"}}}))
        .expect("cm");
        a.observe(&cm);
        assert!(a.is_empty());
    }
}
