//! Rules classify drifts into sets and severities (ARCHITECTURE §4).
//!
//! A rule is a small value implementing [`DiffRule`]. Rules are asked in order; the first that claims a
//! drift classifies it. Built-in rules cover replicas, images, resources, ports, ConfigMap data and
//! security; a generic rule takes everything else. Add your own in front of them with
//! [`RuleSet::with_rule`].
//!
//! # Writing a rule
//!
//! The simplest rule is a [`PathRule`]: kinds and path patterns it claims, and the class it gives.
//!
//! ```
//! use drift_core::rules::{DriftSet, PathRule, RuleSet, Severity};
//! use drift_core::{DiffEngine, DiffOptions, DesiredObject, LiveObject, Resource};
//! use serde_json::json;
//!
//! // Istio sidecar annotations are security-relevant in our clusters.
//! let rule = PathRule::new("istio-injection", DriftSet::Critical, Severity::Critical)
//!     .kind("apps", "Deployment")
//!     .path("/spec/template/metadata/annotations/sidecar.istio.io~1inject")
//!     .unwrap();
//! let engine = DiffEngine::new(DiffOptions::default(), RuleSet::builtin().with_rule(rule));
//!
//! let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
//!     "spec": {"template": {"metadata": {"annotations": {"sidecar.istio.io/inject": "true"}}}}});
//! let mut live = desired.clone();
//! live["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] = json!("false");
//! let report = engine.diff(
//!     &DesiredObject::new(Resource::from_value(desired).unwrap()),
//!     Some(&LiveObject::new(Resource::from_value(live).unwrap())),
//! );
//! assert_eq!(report.drifts[0].rule, "istio-injection");
//! assert_eq!(report.drifts[0].set, DriftSet::Critical);
//! ```
//!
//! A rule with custom logic implements [`DiffRule`] directly. Prove it with a property test: for any
//! drift it claims, applying the revert patch to live leaves no drift (see `tests/properties.rs`).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::drift::Change;
use crate::model::ResourceKey;
use crate::path::{FieldPath, PathPattern, PatternError, Segment};

/// Where a drift lands (ARCHITECTURE §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftSet {
    /// Security: RBAC, Secrets, securityContext, images, Service exposure.
    Critical,
    /// CPU and memory requests and limits.
    Resource,
    /// Replica counts.
    Replica,
    /// ConfigMap data and any other field.
    Config,
    /// Drifts that were remediated and verified gone.
    Corrected,
}

impl DriftSet {
    /// The lowercase name (`critical`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            DriftSet::Critical => "critical",
            DriftSet::Resource => "resource",
            DriftSet::Replica => "replica",
            DriftSet::Config => "config",
            DriftSet::Corrected => "corrected",
        }
    }

    /// The default severity of the set.
    pub fn default_severity(&self) -> Severity {
        match self {
            DriftSet::Critical => Severity::Critical,
            DriftSet::Resource | DriftSet::Replica | DriftSet::Config => Severity::Warning,
            DriftSet::Corrected => Severity::Info,
        }
    }
}

impl fmt::Display for DriftSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How serious a drift is. Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Needs attention.
    Warning,
    /// Needs attention now; never fixed unattended.
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// The set.
    pub set: DriftSet,
    /// The severity.
    pub severity: Severity,
}

/// What a rule sees of a drift.
#[derive(Debug, Clone, Copy)]
pub struct DriftSite<'a> {
    /// The resource.
    pub key: &'a ResourceKey,
    /// The path in live.
    pub path: &'a FieldPath,
    /// The kind of difference.
    pub change: Change,
    /// Desired value (redacted for Secrets).
    pub expected: Option<&'a Value>,
    /// Live value (redacted for Secrets).
    pub actual: Option<&'a Value>,
}

/// Classifies drifts. Implement it to add your own rules.
pub trait DiffRule: Send + Sync {
    /// The rule's name, reported with every drift it classifies.
    fn name(&self) -> &str;
    /// The classification, or `None` when the rule does not claim this drift.
    fn classify(&self, site: &DriftSite<'_>) -> Option<Classification>;
}

/// A rule that claims drifts by kind and path pattern.
#[derive(Debug, Clone)]
pub struct PathRule {
    name: String,
    kinds: Vec<(String, String)>,
    paths: Vec<PathPattern>,
    exact: bool,
    class: Classification,
}

impl PathRule {
    /// A rule giving `set`/`severity` to what it claims. With no kinds it claims every kind; with no
    /// paths, every path.
    pub fn new(name: impl Into<String>, set: DriftSet, severity: Severity) -> Self {
        PathRule {
            name: name.into(),
            kinds: Vec::new(),
            paths: Vec::new(),
            exact: false,
            class: Classification { set, severity },
        }
    }

    /// Claims a kind; `*` matches any group or kind.
    #[must_use]
    pub fn kind(mut self, group: &str, kind: &str) -> Self {
        self.kinds.push((group.to_string(), kind.to_string()));
        self
    }

    /// Claims a path pattern (and everything below it).
    ///
    /// # Errors
    /// [`PatternError`] for a malformed pattern.
    pub fn path(mut self, pattern: &str) -> Result<Self, PatternError> {
        self.paths.push(PathPattern::parse(pattern)?);
        Ok(self)
    }

    /// Claims only the exact paths, not what lies below them.
    #[must_use]
    pub fn exact(mut self) -> Self {
        self.exact = true;
        self
    }

    fn claims(&self, site: &DriftSite<'_>) -> bool {
        let kind_ok = self.kinds.is_empty()
            || self
                .kinds
                .iter()
                .any(|(g, k)| (g == "*" || *g == site.key.group) && (k == "*" || *k == site.key.kind));
        let path_ok = self.paths.is_empty()
            || self.paths.iter().any(|p| {
                if self.exact {
                    p.matches(site.path)
                } else {
                    p.covers(site.path)
                }
            });
        kind_ok && path_ok
    }
}

impl DiffRule for PathRule {
    fn name(&self) -> &str {
        &self.name
    }
    fn classify(&self, site: &DriftSite<'_>) -> Option<Classification> {
        self.claims(site).then_some(self.class)
    }
}

/// Security-relevant fields anywhere in a pod template, plus Secrets and RBAC objects.
#[derive(Debug, Default, Clone, Copy)]
pub struct SecurityRule;

const RBAC: &str = "rbac.authorization.k8s.io";
const POD_SECURITY_FIELDS: &[&str] = &[
    "securityContext",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "hostPath",
    "privileged",
];

impl DiffRule for SecurityRule {
    fn name(&self) -> &str {
        "security"
    }
    fn classify(&self, site: &DriftSite<'_>) -> Option<Classification> {
        let critical = Some(Classification {
            set: DriftSet::Critical,
            severity: Severity::Critical,
        });
        let key = site.key;
        let first = match site.path.segments().first() {
            Some(Segment::Field(f)) => f.as_str(),
            _ => "",
        };
        if key.group.is_empty() && key.kind == "Secret" && matches!(first, "data" | "stringData" | "type") {
            return critical;
        }
        if key.group == RBAC && matches!(first, "rules" | "aggregationRule" | "subjects" | "roleRef") {
            return critical;
        }
        // Who may talk to whom, and which admission checks run: a change there opens a door.
        if (key.group == "networking.k8s.io" && key.kind == "NetworkPolicy" && first == "spec")
            || (key.group == "admissionregistration.k8s.io" && first == "webhooks")
        {
            return critical;
        }
        if first == "metadata" {
            return None;
        }
        let hit = site
            .path
            .segments()
            .iter()
            .any(|s| matches!(s, Segment::Field(f) if POD_SECURITY_FIELDS.contains(&f.as_str())));
        if hit { critical } else { None }
    }
}

/// Container images, and whole containers appearing or disappearing.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImageRule;

impl DiffRule for ImageRule {
    fn name(&self) -> &str {
        "images"
    }
    fn classify(&self, site: &DriftSite<'_>) -> Option<Classification> {
        let segs = site.path.segments();
        let n = segs.len();
        let is_container_list = |s: &Segment| matches!(s, Segment::Field(f) if matches!(f.as_str(), "containers" | "initContainers" | "ephemeralContainers"));
        let image = n >= 3
            && matches!(&segs[n - 1], Segment::Field(f) if f == "image")
            && is_container_list(&segs[n - 3]);
        let whole = n >= 2 && matches!(segs[n - 1], Segment::Key { .. }) && is_container_list(&segs[n - 2]);
        (image || whole).then_some(Classification {
            set: DriftSet::Critical,
            severity: Severity::Critical,
        })
    }
}

/// Where container fields of pod templates live, for the rules below.
fn container_field(path: &FieldPath) -> Option<&str> {
    let segs = path.segments();
    let pos = segs.iter().rposition(
        |s| matches!(s, Segment::Field(f) if matches!(f.as_str(), "containers" | "initContainers" | "ephemeralContainers")),
    )?;
    match (segs.get(pos + 1), segs.get(pos + 2)) {
        (Some(Segment::Key { .. } | Segment::Index(_)), Some(Segment::Field(f))) => Some(f),
        _ => None,
    }
}

/// Service exposure (type, ports, external IPs) and container ports.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortsRule;

impl DiffRule for PortsRule {
    fn name(&self) -> &str {
        "ports"
    }
    fn classify(&self, site: &DriftSite<'_>) -> Option<Classification> {
        let key = site.key;
        let segs = site.path.segments();
        if key.group.is_empty()
            && key.kind == "Service"
            && let (Some(Segment::Field(a)), Some(Segment::Field(b))) = (segs.first(), segs.get(1))
            && a == "spec"
            && matches!(
                b.as_str(),
                "type"
                    | "ports"
                    | "externalIPs"
                    | "externalName"
                    | "loadBalancerIP"
                    | "loadBalancerSourceRanges"
            )
        {
            return Some(Classification {
                set: DriftSet::Critical,
                severity: Severity::Critical,
            });
        }
        (container_field(site.path) == Some("ports")).then_some(Classification {
            set: DriftSet::Critical,
            severity: Severity::Warning,
        })
    }
}

/// CPU and memory requests and limits.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResourcesRule;

impl DiffRule for ResourcesRule {
    fn name(&self) -> &str {
        "resources"
    }
    fn classify(&self, site: &DriftSite<'_>) -> Option<Classification> {
        (container_field(site.path) == Some("resources")).then_some(Classification {
            set: DriftSet::Resource,
            severity: Severity::Warning,
        })
    }
}

/// Replica counts of workloads (and an autoscaler's bounds).
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplicasRule;

impl DiffRule for ReplicasRule {
    fn name(&self) -> &str {
        "replicas"
    }
    fn classify(&self, site: &DriftSite<'_>) -> Option<Classification> {
        let segs = site.path.segments();
        let is = |names: &[&str]| {
            segs.len() == 2
                && matches!(&segs[0], Segment::Field(f) if f == "spec")
                && matches!(&segs[1], Segment::Field(f) if names.contains(&f.as_str()))
        };
        let claimed = if site.key.kind == "HorizontalPodAutoscaler" {
            is(&["minReplicas", "maxReplicas"])
        } else {
            is(&["replicas"])
        };
        claimed.then_some(Classification {
            set: DriftSet::Replica,
            severity: Severity::Warning,
        })
    }
}

/// ConfigMap data.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConfigMapDataRule;

impl DiffRule for ConfigMapDataRule {
    fn name(&self) -> &str {
        "configmap-data"
    }
    fn classify(&self, site: &DriftSite<'_>) -> Option<Classification> {
        let first = site.path.segments().first();
        (site.key.group.is_empty()
            && site.key.kind == "ConfigMap"
            && matches!(first, Some(Segment::Field(f)) if f == "data" || f == "binaryData"))
        .then_some(Classification {
            set: DriftSet::Config,
            severity: Severity::Warning,
        })
    }
}

/// Everything else.
#[derive(Debug, Default, Clone, Copy)]
pub struct GenericRule;

impl DiffRule for GenericRule {
    fn name(&self) -> &str {
        "generic"
    }
    fn classify(&self, _site: &DriftSite<'_>) -> Option<Classification> {
        Some(Classification {
            set: DriftSet::Config,
            severity: Severity::Warning,
        })
    }
}

/// An ordered list of rules; the first that claims a drift classifies it.
#[derive(Clone)]
pub struct RuleSet {
    custom: Vec<Arc<dyn DiffRule>>,
    builtin: Vec<Arc<dyn DiffRule>>,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet::builtin()
    }
}

impl RuleSet {
    /// The built-in rules: security, images, ports, resources, replicas, ConfigMap data, generic.
    pub fn builtin() -> Self {
        RuleSet {
            custom: Vec::new(),
            builtin: vec![
                Arc::new(SecurityRule),
                Arc::new(ImageRule),
                Arc::new(PortsRule),
                Arc::new(ResourcesRule),
                Arc::new(ReplicasRule),
                Arc::new(ConfigMapDataRule),
                Arc::new(GenericRule),
            ],
        }
    }

    /// Adds a rule in front of the built-in ones (after rules added earlier).
    #[must_use]
    pub fn with_rule(mut self, rule: impl DiffRule + 'static) -> Self {
        self.custom.push(Arc::new(rule));
        self
    }

    /// Rule names, in the order they are asked.
    pub fn names(&self) -> Vec<&str> {
        self.custom
            .iter()
            .chain(&self.builtin)
            .map(|r| r.name())
            .collect()
    }

    /// Classifies a drift: the first rule that claims it, else the generic class.
    pub fn classify(&self, site: &DriftSite<'_>) -> (String, Classification) {
        for r in self.custom.iter().chain(&self.builtin) {
            if let Some(c) = r.classify(site) {
                return (r.name().to_string(), c);
            }
        }
        (
            "generic".to_string(),
            Classification {
                set: DriftSet::Config,
                severity: Severity::Warning,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn site<'a>(key: &'a ResourceKey, path: &'a FieldPath) -> DriftSite<'a> {
        DriftSite {
            key,
            path,
            change: Change::Changed,
            expected: None,
            actual: None,
        }
    }

    fn container(field: &str) -> FieldPath {
        FieldPath::from_segments(vec![
            Segment::Field("spec".into()),
            Segment::Field("template".into()),
            Segment::Field("spec".into()),
            Segment::Field("containers".into()),
            Segment::Key {
                fields: vec![("name".into(), json!("web"))],
                index: Some(0),
            },
            Segment::Field(field.into()),
        ])
    }

    fn class_of(key: &ResourceKey, path: &FieldPath) -> (String, DriftSet, Severity) {
        let (rule, c) = RuleSet::builtin().classify(&site(key, path));
        (rule, c.set, c.severity)
    }

    #[test]
    fn each_builtin_rule() {
        let deploy = ResourceKey::new("apps/v1", "Deployment", Some("x"), "web");
        assert_eq!(
            class_of(&deploy, &FieldPath::fields(["spec", "replicas"])),
            ("replicas".into(), DriftSet::Replica, Severity::Warning)
        );
        assert_eq!(
            class_of(&deploy, &container("image")),
            ("images".into(), DriftSet::Critical, Severity::Critical)
        );
        assert_eq!(
            class_of(&deploy, &container("resources")),
            ("resources".into(), DriftSet::Resource, Severity::Warning)
        );
        assert_eq!(
            class_of(&deploy, &container("ports")),
            ("ports".into(), DriftSet::Critical, Severity::Warning)
        );
        assert_eq!(
            class_of(&deploy, &container("securityContext")),
            ("security".into(), DriftSet::Critical, Severity::Critical)
        );
        assert_eq!(
            class_of(&deploy, &container("env")),
            ("generic".into(), DriftSet::Config, Severity::Warning)
        );
        let sa = FieldPath::fields(["spec", "template", "spec", "serviceAccountName"]);
        assert_eq!(class_of(&deploy, &sa).0, "security");
        let host = FieldPath::fields(["spec", "template", "spec", "hostNetwork"]);
        assert_eq!(class_of(&deploy, &host).0, "security");

        let svc = ResourceKey::new("v1", "Service", Some("x"), "web");
        assert_eq!(class_of(&svc, &FieldPath::fields(["spec", "type"])).0, "ports");
        assert_eq!(
            class_of(&svc, &FieldPath::fields(["spec", "selector", "app"])).0,
            "generic"
        );

        let cm = ResourceKey::new("v1", "ConfigMap", Some("x"), "c");
        assert_eq!(
            class_of(&cm, &FieldPath::fields(["data", "k"])),
            ("configmap-data".into(), DriftSet::Config, Severity::Warning)
        );
        let secret = ResourceKey::new("v1", "Secret", Some("x"), "s");
        assert_eq!(class_of(&secret, &FieldPath::fields(["data", "k"])).0, "security");
        let role = ResourceKey::new("rbac.authorization.k8s.io/v1", "ClusterRole", None, "r");
        assert_eq!(class_of(&role, &FieldPath::fields(["rules"])).0, "security");
        let np = ResourceKey::new("networking.k8s.io/v1", "NetworkPolicy", Some("x"), "np");
        assert_eq!(
            class_of(&np, &FieldPath::fields(["spec", "policyTypes"])).0,
            "security"
        );
        let hook = ResourceKey::new(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            None,
            "h",
        );
        assert_eq!(class_of(&hook, &FieldPath::fields(["webhooks"])).0, "security");
        let hpa = ResourceKey::new("autoscaling/v2", "HorizontalPodAutoscaler", Some("x"), "h");
        assert_eq!(
            class_of(&hpa, &FieldPath::fields(["spec", "maxReplicas"])).0,
            "replicas"
        );
        // labels on a Deployment are not security even if named like one
        assert_eq!(
            class_of(&deploy, &FieldPath::fields(["metadata", "labels", "hostNetwork"])).0,
            "generic"
        );
    }

    #[test]
    fn custom_rules_go_first() {
        let rules = RuleSet::builtin().with_rule(
            PathRule::new("mine", DriftSet::Config, Severity::Info)
                .kind("apps", "*")
                .path("/spec/replicas")
                .unwrap(),
        );
        let deploy = ResourceKey::new("apps/v1", "Deployment", Some("x"), "web");
        let (rule, c) = rules.classify(&site(&deploy, &FieldPath::fields(["spec", "replicas"])));
        assert_eq!((rule.as_str(), c.severity), ("mine", Severity::Info));
        assert_eq!(rules.names()[0], "mine");
    }

    #[test]
    fn exact_path_rules() {
        let r = PathRule::new("x", DriftSet::Config, Severity::Info)
            .path("/spec")
            .unwrap()
            .exact();
        let k = ResourceKey::new("v1", "ConfigMap", None, "c");
        assert!(r.classify(&site(&k, &FieldPath::fields(["spec"]))).is_some());
        assert!(r.classify(&site(&k, &FieldPath::fields(["spec", "a"]))).is_none());
    }
}
