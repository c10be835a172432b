//! What to do about a drift: fix it, alert, or track it (ARCHITECTURE §6.4), and the named filters of
//! §4 (`security-drift`, `production-drift`, `auto-correctable`, `manual-review`, and one per set).
//!
//! Policy rules are asked in order; the first that matches decides. Without a match the default
//! applies: critical drifts alert, everything else is fixed when auto-fix is on and alerted otherwise.
//! Auto-fix is off unless [`Policy::auto_fix`] is set, and a critical drift is never fixed without a
//! person's approval, whatever a rule says.
//!
//! ```
//! use drift_core::policy::{Action, Policy};
//! # use drift_core::{Drift, DriftId, Change, ResourceKey, path::FieldPath, rules::{DriftSet, Severity}};
//! # let drift = |set, severity| Drift { id: DriftId("d-1".into()), key: ResourceKey::new("apps/v1", "Deployment", Some("x"), "y"),
//! #     path: FieldPath::fields(["spec", "replicas"]), change: Change::Changed, expected: None, actual: None,
//! #     rule: "replicas".into(), set, severity, desired_pointer: None, actor: None };
//! let policy = Policy { auto_fix: true, ..Policy::default() };
//! assert_eq!(policy.decide(&drift(DriftSet::Replica, Severity::Warning), None, &Default::default()), Action::AutoFix);
//! assert_eq!(policy.decide(&drift(DriftSet::Critical, Severity::Critical), None, &Default::default()), Action::Alert);
//! assert_eq!(Policy::default().decide(&drift(DriftSet::Replica, Severity::Warning), None, &Default::default()), Action::Alert);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::drift::Drift;
use crate::rules::{DriftSet, Severity};

/// The decision for one drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Fix it without waiting for a person (still dry-run first, rate-limited and flap-guarded).
    AutoFix,
    /// Tell people; fix on approval.
    Alert,
    /// Record it only.
    Track,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::AutoFix => "auto-fix",
            Action::Alert => "alert",
            Action::Track => "track",
        })
    }
}

/// What a policy rule matches. Empty lists match anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicyMatch {
    /// Drift sets.
    pub sets: Vec<DriftSet>,
    /// Severities.
    pub severities: Vec<Severity>,
    /// Environments (from the desired object's provenance).
    pub environments: Vec<String>,
    /// Rule names.
    pub rules: Vec<String>,
    /// Kinds.
    pub kinds: Vec<String>,
    /// Namespaces.
    pub namespaces: Vec<String>,
    /// Labels the desired object's provenance (e.g. unit labels) must carry.
    pub labels: BTreeMap<String, String>,
}

/// A policy rule: a match and the action it gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// What it matches.
    #[serde(default)]
    pub when: PolicyMatch,
    /// What to do.
    pub action: Action,
}

/// The remediation policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[derive(Default)]
pub struct Policy {
    /// Whether unattended fixes are allowed at all (`AUTO_FIX`). Off by default.
    pub auto_fix: bool,
    /// Rules, first match wins.
    pub rules: Vec<PolicyRule>,
}

impl Policy {
    /// The action the policy asks for, before safety gates. `labels` are the provenance labels.
    pub fn requested(
        &self,
        drift: &Drift,
        environment: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Action {
        for r in &self.rules {
            let w = &r.when;
            let ok = (w.sets.is_empty() || w.sets.contains(&drift.set))
                && (w.severities.is_empty() || w.severities.contains(&drift.severity))
                && (w.environments.is_empty()
                    || environment.is_some_and(|e| w.environments.iter().any(|x| x == e)))
                && (w.rules.is_empty() || w.rules.contains(&drift.rule))
                && (w.kinds.is_empty() || w.kinds.contains(&drift.key.kind))
                && (w.namespaces.is_empty()
                    || drift
                        .key
                        .namespace
                        .as_ref()
                        .is_some_and(|n| w.namespaces.contains(n)))
                && w.labels.iter().all(|(k, v)| labels.get(k) == Some(v));
            if ok {
                return r.action;
            }
        }
        match drift.set {
            DriftSet::Critical => Action::Alert,
            DriftSet::Corrected => Action::Track,
            _ if drift.severity == Severity::Critical => Action::Alert,
            _ if drift.severity == Severity::Info => Action::Track,
            _ => Action::AutoFix,
        }
    }

    /// The action after the global switches: auto-fix needs [`Policy::auto_fix`], and critical drifts
    /// always wait for approval.
    pub fn decide(
        &self,
        drift: &Drift,
        environment: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Action {
        match self.requested(drift, environment, labels) {
            Action::AutoFix if !self.auto_fix || is_critical(drift) => Action::Alert,
            a => a,
        }
    }

    /// Whether the policy allows an unattended fix: the `auto-correctable` filter.
    pub fn auto_correctable(
        &self,
        drift: &Drift,
        environment: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        self.requested(drift, environment, labels) == Action::AutoFix && !is_critical(drift)
    }
}

/// Critical drifts are never fixed unattended.
pub fn is_critical(drift: &Drift) -> bool {
    drift.set == DriftSet::Critical || drift.severity == Severity::Critical
}

/// The named filters of ARCHITECTURE §4; each is also a ConfigHub where-clause over drift records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamedFilter {
    /// Drifts in the `critical` set.
    CriticalDrifts,
    /// Drifts in the `resource` set.
    ResourceDrifts,
    /// Drifts in the `replica` set.
    ReplicaDrifts,
    /// Drifts that were corrected.
    CorrectedDrifts,
    /// Security drifts (RBAC, Secrets, securityContext, service accounts, host access).
    SecurityDrift,
    /// Drifts in production (environment `prod`).
    ProductionDrift,
    /// Drifts the policy would fix unattended.
    AutoCorrectable,
    /// Everything else: needs a person.
    ManualReview,
}

impl NamedFilter {
    /// All filters.
    pub const ALL: [NamedFilter; 8] = [
        NamedFilter::CriticalDrifts,
        NamedFilter::ResourceDrifts,
        NamedFilter::ReplicaDrifts,
        NamedFilter::CorrectedDrifts,
        NamedFilter::SecurityDrift,
        NamedFilter::ProductionDrift,
        NamedFilter::AutoCorrectable,
        NamedFilter::ManualReview,
    ];

    /// The slug (`critical-drifts`, ...).
    pub fn slug(&self) -> &'static str {
        match self {
            NamedFilter::CriticalDrifts => "critical-drifts",
            NamedFilter::ResourceDrifts => "resource-drifts",
            NamedFilter::ReplicaDrifts => "replica-drifts",
            NamedFilter::CorrectedDrifts => "corrected-drifts",
            NamedFilter::SecurityDrift => "security-drift",
            NamedFilter::ProductionDrift => "production-drift",
            NamedFilter::AutoCorrectable => "auto-correctable",
            NamedFilter::ManualReview => "manual-review",
        }
    }

    /// Parses a slug.
    pub fn from_slug(s: &str) -> Option<Self> {
        NamedFilter::ALL.into_iter().find(|f| f.slug() == s)
    }

    /// A ConfigHub where-clause over drift record labels (see drift-confighub's `DriftLog`).
    pub fn where_clause(&self) -> &'static str {
        match self {
            NamedFilter::CriticalDrifts => "Labels.drift-set = 'critical'",
            NamedFilter::ResourceDrifts => "Labels.drift-set = 'resource'",
            NamedFilter::ReplicaDrifts => "Labels.drift-set = 'replica'",
            NamedFilter::CorrectedDrifts => "Labels.drift-state = 'corrected'",
            NamedFilter::SecurityDrift => "Labels.drift-rule = 'security'",
            NamedFilter::ProductionDrift => "Labels.environment = 'prod'",
            NamedFilter::AutoCorrectable => "Labels.auto-correctable = 'true'",
            NamedFilter::ManualReview => "Labels.auto-correctable = 'false'",
        }
    }

    /// Whether a drift passes the filter. `corrected` is the drift's lifecycle state.
    pub fn matches(
        &self,
        drift: &Drift,
        environment: Option<&str>,
        auto_correctable: bool,
        corrected: bool,
    ) -> bool {
        match self {
            NamedFilter::CriticalDrifts => drift.set == DriftSet::Critical,
            NamedFilter::ResourceDrifts => drift.set == DriftSet::Resource,
            NamedFilter::ReplicaDrifts => drift.set == DriftSet::Replica,
            NamedFilter::CorrectedDrifts => corrected,
            NamedFilter::SecurityDrift => drift.rule == "security",
            NamedFilter::ProductionDrift => matches!(environment, Some("prod" | "production")),
            NamedFilter::AutoCorrectable => auto_correctable,
            NamedFilter::ManualReview => !auto_correctable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{Change, DriftId};
    use crate::model::ResourceKey;
    use crate::path::FieldPath;

    fn drift(set: DriftSet, severity: Severity, rule: &str) -> Drift {
        Drift {
            id: DriftId("d".into()),
            key: ResourceKey::new("apps/v1", "Deployment", Some("shop"), "web"),
            path: FieldPath::fields(["spec", "replicas"]),
            change: Change::Changed,
            expected: None,
            actual: None,
            rule: rule.into(),
            set,
            severity,
            desired_pointer: None,
            actor: None,
        }
    }

    #[test]
    fn rules_first_then_defaults_then_gates() {
        let policy = Policy {
            auto_fix: true,
            rules: vec![
                PolicyRule {
                    when: PolicyMatch {
                        environments: vec!["prod".into()],
                        ..Default::default()
                    },
                    action: Action::Alert,
                },
                PolicyRule {
                    when: PolicyMatch {
                        sets: vec![DriftSet::Critical],
                        ..Default::default()
                    },
                    action: Action::AutoFix,
                },
            ],
        };
        let none = BTreeMap::new();
        let r = drift(DriftSet::Replica, Severity::Warning, "replicas");
        assert_eq!(policy.decide(&r, Some("prod"), &none), Action::Alert);
        assert_eq!(policy.decide(&r, Some("dev"), &none), Action::AutoFix);
        // A rule asking to auto-fix a critical drift is overruled.
        let c = drift(DriftSet::Critical, Severity::Critical, "images");
        assert_eq!(policy.requested(&c, None, &none), Action::AutoFix);
        assert_eq!(policy.decide(&c, None, &none), Action::Alert);
        assert!(!policy.auto_correctable(&c, None, &none));
        assert!(policy.auto_correctable(&r, Some("dev"), &none));
        let info = drift(DriftSet::Config, Severity::Info, "generic");
        assert_eq!(policy.decide(&info, None, &none), Action::Track);
    }

    #[test]
    fn named_filters() {
        let r = drift(DriftSet::Replica, Severity::Warning, "replicas");
        assert!(NamedFilter::ReplicaDrifts.matches(&r, None, true, false));
        assert!(NamedFilter::ProductionDrift.matches(&r, Some("prod"), true, false));
        assert!(!NamedFilter::SecurityDrift.matches(&r, None, true, false));
        assert!(NamedFilter::ManualReview.matches(&r, None, false, false));
        for f in NamedFilter::ALL {
            assert_eq!(NamedFilter::from_slug(f.slug()), Some(f));
        }
    }
}
