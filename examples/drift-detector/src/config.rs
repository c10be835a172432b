//! The optional YAML config file (`--config FILE`): ignore rules, policy, prices, field managers,
//! safety limits. Flags and environment variables win over it.
//!
//! ```yaml
//! appliers: [kubectl-client-side-apply]      # managedFields of these managers count as applied
//! ignoreManagers: [hpa-controller]           # fields these managers own are never drift
//! handManagers: [kubectl-edit, kubectl-set, kubectl-patch, kubectl-scale, k9s]  # what they add is drift
//! ignore:                                    # the `diff --ignore` format
//!   ignore:
//!     - paths: [/spec/replicas]
//!       target: {kind: Deployment, namespace: shop}
//! policy:
//!   autoFix: false                           # AUTO_FIX / --auto-fix override it
//!   rules:
//!     - when: {sets: [replica], environments: [dev]}
//!       action: auto-fix
//! prices: {vcpuHour: 0.021811, gibHour: 0.002923, hoursPerMonth: 730}
//! rateLimit: {perResource: 3, perResourceWindowMs: 600000, global: 20, globalWindowMs: 60000}
//! flapGuard: {threshold: 3, windowMs: 600000}
//! webhook: https://hooks.example.com/drift   # alerts as JSON POSTs
//! sensitiveNames: [password, secret, token, apikey, pin]   # env/ConfigMap names whose values are hashed
//! ```

use std::path::Path;

use anyhow::Context as _;
use drift_core::cost::PriceTable;
use drift_core::ignore::IgnoreSet;
use drift_core::policy::Policy;
use drift_core::safety::{FlapGuardConfig, RateLimitConfig};
use drift_core::{DiffEngine, DiffOptions};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub appliers: Vec<String>,
    pub ignore_managers: Vec<String>,
    /// Field managers of people's tools (default: drift_core::HAND_MANAGERS; `[]` turns it off).
    pub hand_managers: Option<Vec<String>>,
    pub ignore: Option<Value>,
    pub policy: Option<Policy>,
    pub prices: Option<PriceTable>,
    pub rate_limit: Option<RateLimitConfig>,
    pub flap_guard: Option<FlapGuardConfig>,
    pub webhook: Option<String>,
    /// Name fragments marking env values and ConfigMap keys as secret (default: the built-in list).
    pub sensitive_names: Option<Vec<String>>,
}

impl FileConfig {
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The diff engine the file describes.
    pub(crate) fn engine(&self, source: &str) -> anyhow::Result<DiffEngine> {
        let ignore = match &self.ignore {
            Some(v) => {
                let text =
                    serde_saphyr::to_string(v).map_err(|e| anyhow::anyhow!("{source}: ignore: {e}"))?;
                IgnoreSet::from_yaml(&format!("{source} (ignore)"), &text)?
            }
            None => IgnoreSet::default(),
        };
        let opts = self
            .appliers
            .iter()
            .fold(DiffOptions::default().ignore(ignore), |o, m| o.applier(m));
        let opts = self.ignore_managers.iter().fold(opts, |o, m| o.ignore_manager(m));
        let opts = match &self.hand_managers {
            Some(list) => opts.hand_managers(list),
            None => opts,
        };
        Ok(DiffEngine::new(opts, Default::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_loads() {
        let doc = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```yaml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let c: FileConfig = serde_saphyr::from_str(&doc).expect("the example parses");
        assert_eq!(c.appliers, ["kubectl-client-side-apply"]);
        assert!(c.policy.is_some() && c.prices.is_some() && c.webhook.is_some());
        c.engine("example").expect("engine");
        assert!(
            serde_saphyr::from_str::<FileConfig>("unknownKey: 1").is_err(),
            "typos are errors"
        );
    }
}
