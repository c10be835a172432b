//! Safety gates for unattended fixes (ARCHITECTURE §6.5): a rate limit per resource and overall, and a
//! flap guard that stops fixing a field when something else keeps undoing the fix.
//!
//! Both take the current time as an argument, so they are tested by moving time by hand.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::drift::DriftId;
use crate::model::ResourceKey;

/// Rate limits for fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitConfig {
    /// Fixes per resource per window (default 3).
    pub per_resource: u32,
    /// The per-resource window (default 10 minutes).
    pub per_resource_window_ms: u64,
    /// Fixes overall per window (default 20).
    pub global: u32,
    /// The global window (default 1 minute).
    pub global_window_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_resource: 3,
            per_resource_window_ms: 600_000,
            global: 20,
            global_window_ms: 60_000,
        }
    }
}

/// Why a fix was held back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{scope} fix rate limit reached ({limit} per {window_s} s); next fix allowed in {retry_after_ms} ms")]
pub struct RateLimited {
    /// `per-resource` or `global`.
    pub scope: &'static str,
    /// The limit.
    pub limit: u32,
    /// The window, in seconds.
    pub window_s: u64,
    /// When a fix will be allowed again.
    pub retry_after_ms: u64,
}

/// A sliding-window limiter.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    config: RateLimitConfig,
    per_resource: HashMap<ResourceKey, VecDeque<Millis>>,
    global: VecDeque<Millis>,
}

fn prune(q: &mut VecDeque<Millis>, now: Millis, window: u64) {
    while q.front().is_some_and(|t| now.saturating_sub(*t) >= window) {
        q.pop_front();
    }
}

impl RateLimiter {
    /// A limiter with these limits.
    pub fn new(config: RateLimitConfig) -> Self {
        RateLimiter {
            config,
            ..RateLimiter::default()
        }
    }

    /// Whether a fix of `key` is allowed at `now`.
    ///
    /// # Errors
    /// [`RateLimited`] when a limit is reached.
    pub fn check(&mut self, key: &ResourceKey, now: Millis) -> Result<(), RateLimited> {
        let c = self.config;
        prune(&mut self.global, now, c.global_window_ms);
        if self.global.len() >= c.global as usize {
            let oldest = self.global.front().copied().unwrap_or(now);
            return Err(RateLimited {
                scope: "global",
                limit: c.global,
                window_s: c.global_window_ms / 1000,
                retry_after_ms: (oldest + c.global_window_ms).saturating_sub(now),
            });
        }
        if let Some(q) = self.per_resource.get_mut(key) {
            prune(q, now, c.per_resource_window_ms);
            if q.len() >= c.per_resource as usize {
                let oldest = q.front().copied().unwrap_or(now);
                return Err(RateLimited {
                    scope: "per-resource",
                    limit: c.per_resource,
                    window_s: c.per_resource_window_ms / 1000,
                    retry_after_ms: (oldest + c.per_resource_window_ms).saturating_sub(now),
                });
            }
        }
        Ok(())
    }

    /// Records a fix.
    pub fn record(&mut self, key: &ResourceKey, now: Millis) {
        self.global.push_back(now);
        self.per_resource.entry(key.clone()).or_default().push_back(now);
    }

    /// Forgets resources with no fix in their window (call now and then to bound memory).
    pub fn compact(&mut self, now: Millis) {
        let w = self.config.per_resource_window_ms;
        self.per_resource.retain(|_, q| {
            prune(q, now, w);
            !q.is_empty()
        });
    }
}

/// Flap guard settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FlapGuardConfig {
    /// Re-openings after a fix within the window that mean another controller owns the field (default 3).
    pub threshold: u32,
    /// The window (default 10 minutes).
    pub window_ms: u64,
}

impl Default for FlapGuardConfig {
    fn default() -> Self {
        FlapGuardConfig {
            threshold: 3,
            window_ms: 600_000,
        }
    }
}

/// Counts drifts that come back after being fixed.
#[derive(Debug, Clone, Default)]
pub struct FlapGuard {
    config: FlapGuardConfig,
    fixed: HashSet<DriftId>,
    reopened: HashMap<DriftId, VecDeque<Millis>>,
    escalated: HashSet<DriftId>,
}

impl FlapGuard {
    /// A guard with these settings.
    pub fn new(config: FlapGuardConfig) -> Self {
        FlapGuard {
            config,
            ..FlapGuard::default()
        }
    }

    /// Our fix of `id` was applied.
    pub fn fixed(&mut self, id: &DriftId) {
        self.fixed.insert(id.clone());
    }

    /// The drift `id` opened. Returns `true` when this re-opening after a fix crosses the threshold:
    /// stop fixing and escalate.
    pub fn opened(&mut self, id: &DriftId, now: Millis) -> bool {
        if !self.fixed.remove(id) {
            return false;
        }
        let q = self.reopened.entry(id.clone()).or_default();
        prune(q, now, self.config.window_ms);
        q.push_back(now);
        if q.len() >= self.config.threshold as usize && self.escalated.insert(id.clone()) {
            return true;
        }
        false
    }

    /// Whether fixing `id` has been stopped.
    pub fn is_escalated(&self, id: &DriftId) -> bool {
        self.escalated.contains(id)
    }

    /// Re-openings counted for `id` in the current window.
    pub fn reopen_count(&self, id: &DriftId) -> usize {
        self.reopened.get(id).map_or(0, VecDeque::len)
    }

    /// A person took responsibility again (approved a fix): start counting afresh.
    pub fn reset(&mut self, id: &DriftId) {
        self.escalated.remove(id);
        self.reopened.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_resource_and_global_limits() {
        let mut r = RateLimiter::new(RateLimitConfig {
            per_resource: 2,
            per_resource_window_ms: 1000,
            global: 3,
            global_window_ms: 100,
        });
        let a = ResourceKey::new("v1", "ConfigMap", Some("x"), "a");
        let b = ResourceKey::new("v1", "ConfigMap", Some("x"), "b");
        r.check(&a, 0).unwrap();
        r.record(&a, 0);
        r.record(&a, 10);
        let e = r.check(&a, 20).unwrap_err();
        assert_eq!((e.scope, e.retry_after_ms), ("per-resource", 980));
        r.check(&b, 20).unwrap();
        r.record(&b, 20);
        assert_eq!(r.check(&b, 30).unwrap_err().scope, "global");
        r.check(&b, 120).unwrap();
        r.check(&a, 999).unwrap_err();
        r.check(&a, 1000).unwrap();
        r.compact(5000);
        assert!(r.per_resource.is_empty());
    }

    #[test]
    fn flap_guard_escalates_after_repeated_reopen() {
        let mut g = FlapGuard::new(FlapGuardConfig {
            threshold: 3,
            window_ms: 1000,
        });
        let id = DriftId("d-1".into());
        assert!(!g.opened(&id, 0), "first opening is not a flap");
        for (i, t) in [10, 20].into_iter().enumerate() {
            g.fixed(&id);
            assert!(!g.opened(&id, t), "reopen {i}");
        }
        g.fixed(&id);
        assert!(g.opened(&id, 30));
        assert!(g.is_escalated(&id));
        g.reset(&id);
        assert!(!g.is_escalated(&id));
        // re-openings spread over more than the window do not escalate
        let other = DriftId("d-2".into());
        for t in [0, 2000, 4000, 6000] {
            g.fixed(&other);
            assert!(!g.opened(&other, t));
        }
    }
}
