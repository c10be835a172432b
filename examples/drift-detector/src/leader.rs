//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's algorithm:
//!
//! - the holder renews `renewTime` every retry period; every write carries the `resourceVersion` it
//!   read, so two replicas can never both win (the API server answers 409 to the loser);
//! - a lease is expired when **this** replica has seen no change of the record for
//!   `leaseDurationSeconds`, measured on its own monotonic clock from when it observed the record change —
//!   never by comparing the holder's `renewTime` with the local clock, so clock skew (a `renewTime` an
//!   hour in the future, or in the past) neither blocks failover nor causes an early takeover;
//! - every request has a deadline; a leader that has not renewed within the renew deadline (10 s, less
//!   than the 15 s a standby waits) steps down, even while a request hangs, so two leaders never overlap.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

/// Election settings.
#[derive(Debug, Clone)]
pub(crate) struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a lease lasts without renewal (default 15 s).
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long steps down (default 10 s).
    pub renew_deadline: Duration,
    /// How often to try (default 2 s).
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub(crate) fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

pub(crate) fn micro_time(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let base = drift_core::clock::rfc3339(secs * 1000);
    // rfc3339 gives `...:SSZ` or `...:SS.mmmZ`; MicroTime wants six fractional digits.
    let stem = base
        .trim_end_matches('Z')
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    format!("{stem}.{:06}Z", d.subsec_micros())
}

/// Why a lease request failed.
#[derive(Debug)]
pub(crate) enum LeaseError {
    /// Someone else wrote first (409): read again.
    Conflict,
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseError::Conflict => f.write_str("conflict: the lease changed since it was read"),
            LeaseError::Other(e) => f.write_str(e),
        }
    }
}

/// Where the Lease lives: the API server, or memory in tests.
#[async_trait]
pub(crate) trait LeaseStore: Send + Sync {
    /// The Lease object, if any.
    async fn get(&self) -> Result<Option<Value>, LeaseError>;
    /// Creates it (409 when it exists).
    async fn create(&self, lease: Value) -> Result<(), LeaseError>;
    /// Replaces it, conditional on the `metadata.resourceVersion` it carries (409 when stale).
    async fn replace(&self, lease: Value) -> Result<(), LeaseError>;
}

struct KubeLeases {
    api: Api<DynamicObject>,
    name: String,
}

fn kube_err(e: kube::Error) -> LeaseError {
    match e {
        kube::Error::Api(s) if s.code == 409 => LeaseError::Conflict,
        e => LeaseError::Other(e.to_string()),
    }
}

#[async_trait]
impl LeaseStore for KubeLeases {
    async fn get(&self) -> Result<Option<Value>, LeaseError> {
        let got = self.api.get_opt(&self.name).await.map_err(kube_err)?;
        got.map(|o| serde_json::to_value(o).map_err(|e| LeaseError::Other(e.to_string())))
            .transpose()
    }
    async fn create(&self, lease: Value) -> Result<(), LeaseError> {
        let obj: DynamicObject =
            serde_json::from_value(lease).map_err(|e| LeaseError::Other(e.to_string()))?;
        self.api
            .create(&PostParams::default(), &obj)
            .await
            .map(|_| ())
            .map_err(kube_err)
    }
    async fn replace(&self, lease: Value) -> Result<(), LeaseError> {
        let obj: DynamicObject =
            serde_json::from_value(lease).map_err(|e| LeaseError::Other(e.to_string()))?;
        self.api
            .replace(&self.name, &PostParams::default(), &obj)
            .await
            .map(|_| ())
            .map_err(kube_err)
    }
}

fn lease_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
        "leases",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

enum Try {
    Leading,
    Following(String),
}

/// The record as last observed, and when (on this replica's monotonic clock).
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    record: Value,
    at: Instant,
}

/// One round: read the Lease, decide with the observed-time rule, write if ours to take or keep.
async fn try_once(
    store: &dyn LeaseStore,
    cfg: &LeaseConfig,
    observed: &mut Option<Observed>,
) -> Result<Try, LeaseError> {
    let now_wall = std::time::SystemTime::now();
    let now = Instant::now();
    let secs = cfg.lease_duration.as_secs().max(1);
    let Some(mut lease) = store.get().await? else {
        let obj = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": secs,
                     "acquireTime": micro_time(now_wall), "renewTime": micro_time(now_wall), "leaseTransitions": 0}
        });
        store.create(obj).await?;
        *observed = None;
        return Ok(Try::Leading);
    };
    let spec = lease.get("spec").cloned().unwrap_or_default();
    // A change of the record (holder, renewTime, transitions...) restarts its clock; its timestamps are
    // never compared with ours.
    if observed.as_ref().is_none_or(|o| o.record != spec) {
        *observed = Some(Observed {
            record: spec.clone(),
            at: now,
        });
    }
    let holder = spec
        .get("holderIdentity")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let duration = Duration::from_secs(
        spec.get("leaseDurationSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(secs),
    );
    let seen_at = observed.as_ref().map_or(now, |o| o.at);
    let expired = now.duration_since(seen_at) > duration;
    if holder != cfg.identity && !holder.is_empty() && !expired {
        return Ok(Try::Following(holder));
    }
    let transitions = spec.get("leaseTransitions").and_then(Value::as_i64).unwrap_or(0);
    let mut new_spec = json!({"holderIdentity": cfg.identity, "leaseDurationSeconds": secs, "renewTime": micro_time(now_wall),
        "leaseTransitions": if holder == cfg.identity { transitions } else { transitions + 1 }});
    new_spec["acquireTime"] = if holder == cfg.identity {
        spec.get("acquireTime")
            .cloned()
            .unwrap_or_else(|| json!(micro_time(now_wall)))
    } else {
        json!(micro_time(now_wall))
    };
    lease["spec"] = new_spec;
    // The resourceVersion read goes back with the write: a concurrent writer makes this a 409.
    store.replace(lease).await?;
    Ok(Try::Leading)
}

/// Runs the election on the API server until `stop`; publishes whether this replica leads.
pub(crate) fn spawn(
    client: kube::Client,
    cfg: LeaseConfig,
    stop: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    let store = Arc::new(KubeLeases {
        api: lease_api(&client, &cfg.namespace),
        name: cfg.name.clone(),
    });
    spawn_with(store, cfg, stop)
}

/// Runs the election on any store.
pub(crate) fn spawn_with(
    store: Arc<dyn LeaseStore>,
    cfg: LeaseConfig,
    mut stop: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut last_renew: Option<Instant> = None;
        let mut observed: Option<Observed> = None;
        // No request may take longer than this: a hung renewal must not keep a leader leading.
        let attempt_deadline = cfg
            .retry_period
            .max(Duration::from_millis(100))
            .min(cfg.renew_deadline);
        loop {
            let attempt =
                tokio::time::timeout(attempt_deadline, try_once(store.as_ref(), &cfg, &mut observed));
            let result = tokio::select! {
                r = attempt => r.unwrap_or_else(|_| Err(LeaseError::Other(format!("no answer within {attempt_deadline:?}")))),
                _ = stop.changed() => break,
            };
            match result {
                Ok(Try::Leading) => {
                    last_renew = Some(Instant::now());
                    if !*tx.borrow() {
                        tracing::info!(lease = %cfg.name, identity = %cfg.identity, "acquired the lease");
                        let _ = tx.send(true);
                    }
                }
                Ok(Try::Following(holder)) => {
                    if *tx.borrow() {
                        tracing::warn!(lease = %cfg.name, %holder, "the lease is held by another replica");
                        let _ = tx.send(false);
                    }
                    tracing::debug!(%holder, "standing by");
                }
                Err(e) => {
                    if !matches!(e, LeaseError::Conflict) {
                        tracing::warn!(error = %e, "lease request failed");
                    }
                }
            }
            // Step down once the renew deadline has passed without a renewal, whatever the requests do.
            if *tx.borrow() && last_renew.is_none_or(|t| t.elapsed() > cfg.renew_deadline) {
                tracing::warn!("could not renew the lease within the renew deadline: stepping down");
                let _ = tx.send(false);
            }
            let wait = if *tx.borrow() {
                // A leader wakes in time to step down at its deadline even if nothing answers.
                let left =
                    last_renew.map_or(Duration::ZERO, |t| cfg.renew_deadline.saturating_sub(t.elapsed()));
                cfg.retry_period.min(left + Duration::from_millis(1))
            } else {
                cfg.retry_period
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
            }
        }
        // Release: let a standby take over at once instead of waiting for expiry.
        if *tx.borrow() {
            let _ = tx.send(false);
            let release = async {
                if let Ok(Some(mut lease)) = store.get().await
                    && lease["spec"]["holderIdentity"] == cfg.identity.as_str()
                {
                    lease["spec"]["holderIdentity"] = json!("");
                    lease["spec"]["renewTime"] = json!(micro_time(std::time::UNIX_EPOCH));
                    let _ = store.replace(lease).await;
                }
            };
            let _ = tokio::time::timeout(attempt_deadline, release).await;
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// One Lease in memory, shared by the replicas; each sees it through a handle that can hang.
    #[derive(Default)]
    struct Shared {
        lease: Mutex<Option<Value>>,
        rv: Mutex<u64>,
    }

    struct Handle {
        shared: Arc<Shared>,
        hang: AtomicBool,
    }

    impl Handle {
        fn new(shared: &Arc<Shared>) -> Arc<Handle> {
            Arc::new(Handle {
                shared: shared.clone(),
                hang: AtomicBool::new(false),
            })
        }
        async fn maybe_hang(&self) {
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        }
    }

    #[async_trait]
    impl LeaseStore for Handle {
        async fn get(&self) -> Result<Option<Value>, LeaseError> {
            self.maybe_hang().await;
            Ok(self.shared.lease.lock().expect("lock").clone())
        }
        async fn create(&self, mut lease: Value) -> Result<(), LeaseError> {
            self.maybe_hang().await;
            let mut l = self.shared.lease.lock().expect("lock");
            if l.is_some() {
                return Err(LeaseError::Conflict);
            }
            let mut rv = self.shared.rv.lock().expect("lock");
            *rv += 1;
            lease["metadata"]["resourceVersion"] = json!(rv.to_string());
            *l = Some(lease);
            Ok(())
        }
        async fn replace(&self, mut lease: Value) -> Result<(), LeaseError> {
            self.maybe_hang().await;
            let mut l = self.shared.lease.lock().expect("lock");
            let mut rv = self.shared.rv.lock().expect("lock");
            if lease["metadata"]["resourceVersion"] != json!(rv.to_string()) {
                return Err(LeaseError::Conflict);
            }
            *rv += 1;
            lease["metadata"]["resourceVersion"] = json!(rv.to_string());
            *l = Some(lease);
            Ok(())
        }
    }

    fn cfg(who: &str) -> LeaseConfig {
        LeaseConfig::new("ns", "lease", who)
    }

    /// Steps virtual time, checking at every step that at most one replica leads.
    async fn run_for(d: Duration, a: &watch::Receiver<bool>, b: &watch::Receiver<bool>) {
        let step = Duration::from_millis(100);
        let mut t = Duration::ZERO;
        while t < d {
            tokio::time::sleep(step).await;
            t += step;
            assert!(!(*a.borrow() && *b.borrow()), "two leaders at {t:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_renewal_hangs_steps_down_before_a_standby_takes_over() {
        let shared = Arc::new(Shared::default());
        let (ha, hb) = (Handle::new(&shared), Handle::new(&shared));
        let (_stop_tx, stop) = watch::channel(false);
        let a = spawn_with(ha.clone(), cfg("a"), stop.clone());
        run_for(Duration::from_secs(1), &a, &watch::channel(false).1).await;
        let b = spawn_with(hb.clone(), cfg("b"), stop.clone());
        run_for(Duration::from_secs(5), &a, &b).await;
        assert!(*a.borrow() && !*b.borrow(), "a leads, b stands by");
        // a's requests now hang forever (no timeout on the kube client would keep it leading).
        ha.hang.store(true, Ordering::SeqCst);
        run_for(Duration::from_secs(11), &a, &b).await;
        assert!(!*a.borrow(), "a stepped down at its renew deadline (10 s)");
        run_for(Duration::from_secs(10), &a, &b).await;
        assert!(*b.borrow(), "b took over once the lease went unrenewed for 15 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_renew_time_in_the_future_does_not_block_failover() {
        let shared = Arc::new(Shared::default());
        // A holder whose clock runs an hour ahead wrote the lease, then died.
        let future = std::time::SystemTime::now() + Duration::from_secs(3600);
        *shared.lease.lock().expect("lock") = Some(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "lease", "namespace": "ns", "resourceVersion": "0"},
            "spec": {"holderIdentity": "skewed", "leaseDurationSeconds": 15, "renewTime": micro_time(future),
                     "acquireTime": micro_time(future), "leaseTransitions": 3}
        }));
        let hb = Handle::new(&shared);
        let (_stop_tx, stop) = watch::channel(false);
        let b = spawn_with(hb, cfg("b"), stop);
        run_for(Duration::from_secs(10), &b, &watch::channel(false).1).await;
        assert!(!*b.borrow(), "not before the lease duration has passed unchanged");
        run_for(Duration::from_secs(10), &b, &watch::channel(false).1).await;
        assert!(
            *b.borrow(),
            "taken over 15 s after the last observed change, not an hour later"
        );
        let l = shared.lease.lock().expect("lock").clone().expect("lease");
        assert_eq!(l["spec"]["holderIdentity"], "b");
        assert_eq!(l["spec"]["leaseTransitions"], 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_renew_time_in_the_past_does_not_cause_an_early_takeover() {
        let shared = Arc::new(Shared::default());
        let (ha, hb) = (Handle::new(&shared), Handle::new(&shared));
        let (_stop_tx, stop) = watch::channel(false);
        let a = spawn_with(ha, cfg("a"), stop.clone());
        run_for(Duration::from_secs(1), &a, &watch::channel(false).1).await;
        // b's view: the holder's timestamps look an hour old (b's clock is ahead). It must not matter.
        {
            let mut l = shared.lease.lock().expect("lock");
            let lease = l.as_mut().expect("lease");
            let past = std::time::SystemTime::now() - Duration::from_secs(3600);
            lease["spec"]["renewTime"] = json!(micro_time(past));
        }
        let b = spawn_with(hb, cfg("b"), stop);
        run_for(Duration::from_secs(30), &a, &b).await;
        assert!(
            *a.borrow() && !*b.borrow(),
            "a keeps renewing; b never takes over"
        );
    }

    #[test]
    fn micro_time_has_six_fractional_digits() {
        let t = std::time::UNIX_EPOCH + Duration::from_micros(1_764_158_400_123_456);
        assert_eq!(micro_time(t), "2025-11-26T12:00:00.123456Z");
    }
}
