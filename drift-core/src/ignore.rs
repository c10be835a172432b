//! Ignore rules: paths the engine never reports, selected by kind, namespace, name and labels
//! (as Flux's `.spec.ignore` and Argo CD's `ignoreDifferences` do), plus built-in presets.
//!
//! An ignore file (`--ignore FILE`) is YAML:
//!
//! ```yaml
//! ignore:
//!   - paths: ["/spec/replicas"]            # JSON Pointer; `*`, `**` and `[name=x]` allowed
//!     target: {group: apps, kind: Deployment, namespace: shop, labelSelector: "tier=web"}
//!   - managers: [janitor]                  # fields owned by these field managers (any kind)
//! presets: [webhook-ca-bundle, aggregated-cluster-roles, rollout-restart]   # the default
//! ```
//!
//! Ignored fields are not drift, and revert patches leave them at their live values.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::ResourceKey;
use crate::path::{PathPattern, PatternError};

/// Selects resources. Empty fields match everything; `group` and `kind` accept `*` globs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// API group glob (`""` is the core group; omit for any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Exact namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Kubernetes label selector (`a=b,c!=d,e in (f,g),!h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
}

impl Target {
    /// Whether the target selects a resource with these labels.
    pub fn selects<'a>(&self, key: &ResourceKey, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.group.as_deref().is_none_or(|g| glob(g, &key.group))
            && self.kind.as_deref().is_none_or(|k| glob(k, &key.kind))
            && self
                .namespace
                .as_deref()
                .is_none_or(|n| key.namespace.as_deref() == Some(n))
            && self.name.as_deref().is_none_or(|n| glob(n, &key.name))
            && self.label_selector.as_ref().is_none_or(|s| s.matches(labels))
    }
}

/// `*` matches any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == text;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A Kubernetes label selector in string form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector {
    source: String,
    reqs: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
    ///
    /// # Errors
    /// A message naming the offending part.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        let mut parts = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("invalid label selector term `{part}` in `{s}`");
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set_values(rest).ok_or_else(bad)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement::In(k.trim().into(), set_values(rest).ok_or_else(bad)?)
            } else if part.chars().all(|c| c.is_alphanumeric() || "-_./".contains(c)) {
                Requirement::Exists(part.into())
            } else {
                return Err(bad());
            };
            reqs.push(req);
        }
        Ok(LabelSelector {
            source: s.to_string(),
            reqs,
        })
    }

    /// Whether labels satisfy every requirement.
    pub fn matches<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.reqs.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => labels(k) != Some(v.as_str()),
            Requirement::In(k, vs) => labels(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => labels(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => labels(k).is_some(),
            Requirement::NotExists(k) => labels(k).is_none(),
        })
    }
}

fn set_values(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl Serialize for LabelSelector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}
impl<'de> Deserialize<'de> for LabelSelector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LabelSelector::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One ignore rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IgnoreRule {
    /// Which resources (all when omitted).
    #[serde(default)]
    pub target: Target,
    /// Paths to ignore.
    #[serde(default)]
    pub paths: Vec<PathPattern>,
    /// Ignore changed fields owned by these field managers (Argo CD's `managedFieldsManagers`).
    #[serde(default)]
    pub managers: Vec<String>,
    /// Apply only when the object has a value at this JSON Pointer (e.g. `/aggregationRule`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_present: Option<String>,
}

/// Built-in ignore presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// `caBundle` injected into webhook configurations, CRD conversion webhooks and APIServices.
    WebhookCaBundle,
    /// `rules` of aggregated ClusterRoles (filled in by the aggregation controller).
    AggregatedClusterRoles,
    /// The `kubectl.kubernetes.io/restartedAt` pod-template annotation `kubectl rollout restart`
    /// writes (a restart, not a configuration change).
    RolloutRestart,
}

impl Preset {
    /// The rules of the preset, compiled once.
    pub fn compiled(self) -> &'static [IgnoreRule] {
        static WEBHOOK: std::sync::OnceLock<Vec<IgnoreRule>> = std::sync::OnceLock::new();
        static AGGREGATED: std::sync::OnceLock<Vec<IgnoreRule>> = std::sync::OnceLock::new();
        static RESTART: std::sync::OnceLock<Vec<IgnoreRule>> = std::sync::OnceLock::new();
        match self {
            Preset::WebhookCaBundle => WEBHOOK.get_or_init(|| self.rules()),
            Preset::AggregatedClusterRoles => AGGREGATED.get_or_init(|| self.rules()),
            Preset::RolloutRestart => RESTART.get_or_init(|| self.rules()),
        }
    }

    /// The rules of the preset.
    pub fn rules(self) -> Vec<IgnoreRule> {
        let rule = |group: &str, kind: &str, paths: &[&str], when: Option<&str>| IgnoreRule {
            target: Target {
                group: Some(group.into()),
                kind: Some(kind.into()),
                ..Target::default()
            },
            paths: paths.iter().filter_map(|p| PathPattern::parse(p).ok()).collect(),
            managers: Vec::new(),
            when_present: when.map(str::to_string),
        };
        match self {
            Preset::WebhookCaBundle => vec![
                rule(
                    "admissionregistration.k8s.io",
                    "*WebhookConfiguration",
                    &["/webhooks/*/clientConfig/caBundle"],
                    None,
                ),
                rule(
                    "apiextensions.k8s.io",
                    "CustomResourceDefinition",
                    &["/spec/conversion/webhook/clientConfig/caBundle"],
                    None,
                ),
                rule("apiregistration.k8s.io", "APIService", &["/spec/caBundle"], None),
            ],
            Preset::AggregatedClusterRoles => {
                vec![rule(
                    "rbac.authorization.k8s.io",
                    "ClusterRole",
                    &["/rules"],
                    Some("/aggregationRule"),
                )]
            }
            Preset::RolloutRestart => ["Deployment", "StatefulSet", "DaemonSet"]
                .into_iter()
                .map(|kind| {
                    rule(
                        "apps",
                        kind,
                        &["/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt"],
                        None,
                    )
                })
                .collect(),
        }
    }
}

fn default_presets() -> Vec<Preset> {
    vec![
        Preset::WebhookCaBundle,
        Preset::AggregatedClusterRoles,
        Preset::RolloutRestart,
    ]
}

/// The ignore configuration: rules plus presets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoreSet {
    /// User rules.
    #[serde(default)]
    pub ignore: Vec<IgnoreRule>,
    /// Presets in force (all by default; `[]` turns them off).
    #[serde(default = "default_presets")]
    pub presets: Vec<Preset>,
}

impl Default for IgnoreSet {
    fn default() -> Self {
        IgnoreSet {
            ignore: Vec::new(),
            presets: default_presets(),
        }
    }
}

/// Why an ignore file is not valid.
#[derive(Debug, thiserror::Error)]
#[error("ignore rules in {source_name}: {reason}")]
pub struct IgnoreFileError {
    /// The file.
    pub source_name: String,
    /// What is wrong.
    pub reason: String,
}

impl IgnoreSet {
    /// Parses an ignore file (YAML or JSON).
    ///
    /// # Errors
    /// [`IgnoreFileError`] naming the file and the problem.
    pub fn from_yaml(source_name: &str, text: &str) -> Result<Self, IgnoreFileError> {
        let err = |reason: String| IgnoreFileError {
            source_name: source_name.to_string(),
            reason,
        };
        let value: Value = serde_saphyr::from_str(text)
            .map_err(|e| err(e.to_string().lines().next().unwrap_or("").to_string()))?;
        serde_json::from_value(value).map_err(|e| err(e.to_string()))
    }

    /// Adds a rule.
    #[must_use]
    pub fn with_rule(mut self, rule: IgnoreRule) -> Self {
        self.ignore.push(rule);
        self
    }

    /// The rules that apply to one resource: path patterns and field managers. Allocates nothing when
    /// no rule selects the resource.
    pub fn for_resource<'s>(&'s self, key: &ResourceKey, object: &Value) -> ResourceIgnores<'s> {
        self.for_tree(key, object)
    }

    /// [`IgnoreSet::for_resource`] of an object in either form.
    pub(crate) fn for_tree<'s, 'a, T: crate::tree::Tree<'a>>(
        &'s self,
        key: &ResourceKey,
        object: T,
    ) -> ResourceIgnores<'s> {
        // Looked up only for a rule with a label selector (the presets have none).
        use crate::tree::Tree;
        let label = |k: &str| {
            Tree::get(object, "metadata")
                .and_then(|m| Tree::get(m, "labels"))
                .and_then(|l| Tree::get(l, k))
                .and_then(Tree::as_str)
        };
        let mut out = ResourceIgnores::default();
        let presets = self.presets.iter().flat_map(|p| p.compiled().iter());
        for rule in self.ignore.iter().chain(presets) {
            if !rule.target.selects(key, label) {
                continue;
            }
            if let Some(ptr) = &rule.when_present
                && object.pointer(ptr).is_none_or(Tree::is_null)
            {
                continue;
            }
            out.paths.extend(rule.paths.iter());
            out.managers.extend(rule.managers.iter().map(String::as_str));
        }
        out
    }
}

/// The ignore rules in force for one resource.
#[derive(Debug, Clone, Default)]
pub struct ResourceIgnores<'a> {
    /// Ignored paths.
    pub paths: Vec<&'a PathPattern>,
    /// Ignored field managers.
    pub managers: Vec<&'a str>,
}

impl ResourceIgnores<'_> {
    /// Whether a path is ignored.
    pub fn covers(&self, path: &crate::path::FieldPath) -> bool {
        self.paths.iter().any(|p| p.covers(path))
    }
}

/// Parses one pattern (convenience for callers building rules in code).
///
/// # Errors
/// [`PatternError`] for a malformed pattern.
pub fn pattern(p: &str) -> Result<PathPattern, PatternError> {
    PathPattern::parse(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("*WebhookConfiguration", "MutatingWebhookConfiguration"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abde"));
        assert!(glob("apps", "apps") && !glob("apps", "apps2"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn label_selectors() {
        let s = LabelSelector::parse("tier=web, env in (prod,staging),!legacy,team,zone notin (x)").unwrap();
        let labels = [("tier", "web"), ("env", "prod"), ("team", "a")];
        let get = |k: &str| labels.iter().find(|(l, _)| *l == k).map(|(_, v)| *v);
        assert!(s.matches(get));
        let other = [("tier", "web"), ("env", "dev"), ("team", "a")];
        assert!(!s.matches(|k: &str| other.iter().find(|(l, _)| *l == k).map(|(_, v)| *v)));
        assert!(LabelSelector::parse("a in b").is_err());
    }

    #[test]
    fn file_format_and_presets() {
        let set = IgnoreSet::from_yaml(
            "ignore.yaml",
            "ignore:\n- paths: ['/spec/replicas']\n  target: {kind: Deploy*, labelSelector: 'app=web'}\n- managers: [janitor]\n",
        )
        .unwrap();
        let key = ResourceKey::new("apps/v1", "Deployment", Some("x"), "web");
        let obj = json!({"metadata": {"labels": {"app": "web"}}});
        let r = set.for_resource(&key, &obj);
        // the user's rule and the rollout-restart preset
        assert_eq!(r.paths.len(), 2);
        assert_eq!(r.managers, ["janitor"]);
        let r = set.for_resource(&key, &json!({"metadata": {"labels": {"app": "db"}}}));
        assert_eq!(r.paths.len(), 1);
        let svc = ResourceKey::new("v1", "Service", Some("x"), "web");
        assert!(set.for_resource(&svc, &obj).paths.is_empty());

        let role = ResourceKey::new("rbac.authorization.k8s.io/v1", "ClusterRole", None, "admin");
        assert_eq!(
            set.for_resource(&role, &json!({"aggregationRule": {}}))
                .paths
                .len(),
            1
        );
        assert!(set.for_resource(&role, &json!({})).paths.is_empty());

        let err = IgnoreSet::from_yaml("bad.yaml", "ignore:\n- paths: ['spec/replicas']\n").unwrap_err();
        assert!(err.to_string().contains("bad.yaml"), "{err}");
        assert!(err.to_string().contains("starts with `/`"), "{err}");
        let err = IgnoreSet::from_yaml("bad.yaml", "ignroe: []\n").unwrap_err();
        assert!(err.to_string().contains("ignroe"), "{err}");
    }
}
