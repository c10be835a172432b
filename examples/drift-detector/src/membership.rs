//! Sharding membership (`watch --sharding`): every replica keeps a `coordination.k8s.io/v1` Lease of
//! its own, labelled with the group, and renews it; every replica lists the group's Leases and counts
//! as members those whose record it has seen change within their `leaseDurationSeconds`, on its own
//! monotonic clock (client-go's observed-time rule: no clock of another replica is ever compared with
//! ours). Namespaces are then assigned to the members by rendezvous hashing
//! ([`drift_core::shard::assign`]).
//!
//! Safety rules:
//! - a replica claims nothing until it has watched the membership for two renew periods (so two
//!   replicas starting together see each other before either claims);
//! - a replica that could not renew its own Lease for two thirds of the lease duration publishes an
//!   empty membership (owns nothing) until it renews again: the others will soon count it gone and
//!   take its namespaces, so it must stop first;
//! - a stopping replica deletes its Lease, so the others take over at once.

use std::collections::HashMap;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

/// The label every membership Lease carries, its value the group's name.
pub(crate) const GROUP_LABEL: &str = "drift-detector.io/shard-group";

/// Membership settings.
#[derive(Debug, Clone)]
pub(crate) struct MembershipConfig {
    pub namespace: String,
    /// The group's name (the Leases are `<group>-member-<identity>`).
    pub group: String,
    pub identity: String,
    pub lease_duration: Duration,
}

impl MembershipConfig {
    fn renew_period(&self) -> Duration {
        (self.lease_duration / 3).max(Duration::from_millis(200))
    }
    /// The Lease's name: the identity made a valid object name (lower case, `[a-z0-9.-]`).
    pub(crate) fn lease_name(&self) -> String {
        let id: String = self
            .identity
            .to_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let mut name = format!(
            "{}-member-{}",
            self.group,
            id.trim_matches(|c| c == '-' || c == '.')
        );
        name.truncate(253);
        name.trim_end_matches(['-', '.']).to_string()
    }
}

fn lease_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
        "leases",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// What this replica has observed of each member's Lease record, and when.
#[derive(Debug, Default)]
pub(crate) struct Observer {
    seen: HashMap<String, (Value, Instant, Duration)>,
}

impl Observer {
    /// Takes one listing (each Lease's `spec`) at `now`; returns the live members, sorted, with
    /// `me` always among them.
    pub(crate) fn observe(
        &mut self,
        me: &str,
        leases: &[Value],
        now: Instant,
        default: Duration,
    ) -> Vec<String> {
        let mut listed = std::collections::HashSet::new();
        for spec in leases {
            let Some(id) = spec.get("holderIdentity").and_then(Value::as_str) else {
                continue;
            };
            if id.is_empty() {
                continue;
            }
            listed.insert(id.to_string());
            let duration = spec
                .get("leaseDurationSeconds")
                .and_then(Value::as_u64)
                .map_or(default, Duration::from_secs);
            match self.seen.get_mut(id) {
                Some((record, at, d)) if record == spec => *d = duration,
                _ => {
                    self.seen.insert(id.to_string(), (spec.clone(), now, duration));
                }
            }
        }
        // A deleted Lease is a member gone at once.
        self.seen.retain(|id, _| listed.contains(id));
        let mut members: Vec<String> = self
            .seen
            .iter()
            .filter(|(id, (_, at, d))| *id == me || now.duration_since(*at) <= *d)
            .map(|(id, _)| id.clone())
            .collect();
        if !members.iter().any(|m| m == me) {
            members.push(me.to_string());
        }
        members.sort();
        members
    }
}

/// Renews this replica's Lease (creating it when missing).
async fn renew(api: &Api<DynamicObject>, cfg: &MembershipConfig, name: &str) -> Result<(), kube::Error> {
    let now = crate::leader::micro_time(std::time::SystemTime::now());
    let secs = cfg.lease_duration.as_secs().max(1);
    match api.get_opt(name).await? {
        Some(mut lease) => {
            lease.data["spec"] = json!({"holderIdentity": cfg.identity, "leaseDurationSeconds": secs,
                "renewTime": now, "acquireTime": lease.data["spec"]["acquireTime"].clone()});
            api.replace(name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        None => {
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": cfg.namespace, "labels": {GROUP_LABEL: cfg.group}},
                "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": secs,
                         "acquireTime": now, "renewTime": now}
            }))
            .map_err(kube::Error::SerdeError)?;
            api.create(&PostParams::default(), &obj).await.map(|_| ())
        }
    }
}

/// Keeps this replica's membership until `stop`; publishes the live members (sorted; empty while
/// this replica must own nothing: settling at start, or unable to renew).
pub(crate) fn spawn(
    client: kube::Client,
    cfg: MembershipConfig,
    mut stop: watch::Receiver<bool>,
) -> watch::Receiver<Vec<String>> {
    let (tx, rx) = watch::channel(Vec::new());
    let api = lease_api(&client, &cfg.namespace);
    let name = cfg.lease_name();
    tokio::spawn(async move {
        let period = cfg.renew_period();
        let started = Instant::now();
        let settle = period * 2;
        let renew_deadline = cfg.lease_duration * 2 / 3;
        let mut last_renew: Option<Instant> = None;
        let mut observer = Observer::default();
        let selector = ListParams::default().labels(&format!("{GROUP_LABEL}={}", cfg.group));
        loop {
            let round = async {
                match renew(&api, &cfg, &name).await {
                    Ok(()) => last_renew = Some(Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, lease = %name, "could not renew the membership lease")
                    }
                }
                match api.list(&selector).await {
                    Ok(list) => {
                        let specs: Vec<Value> = list
                            .items
                            .iter()
                            .map(|o| o.data.get("spec").cloned().unwrap_or_default())
                            .collect();
                        Some(observer.observe(&cfg.identity, &specs, Instant::now(), cfg.lease_duration))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not list the membership leases");
                        None
                    }
                }
            };
            let listed = tokio::select! {
                r = tokio::time::timeout(period.max(Duration::from_secs(1)), round) => r.ok().flatten(),
                _ = stop.changed() => break,
            };
            let renewed = last_renew.is_some_and(|t| t.elapsed() <= renew_deadline);
            let members = if started.elapsed() < settle || !renewed {
                Vec::new()
            } else if let Some(m) = listed {
                m
            } else {
                tx.borrow().clone() // listing failed: keep the last view while our lease holds
            };
            if *tx.borrow() != members {
                tracing::info!(?members, "shard membership changed");
                let _ = tx.send(members);
            }
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                _ = stop.changed() => break,
            }
        }
        let _ = tx.send(Vec::new());
        // Leave at once: the others take this replica's namespaces without waiting for expiry.
        let _ = tokio::time::timeout(period, api.delete(&name, &DeleteParams::default())).await;
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, renew: &str) -> Value {
        json!({"holderIdentity": id, "leaseDurationSeconds": 10, "renewTime": renew})
    }

    #[test]
    fn a_member_is_live_while_its_record_changes_on_our_clock() {
        let mut o = Observer::default();
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        // A renewTime far in the future or the past says nothing: only observed changes count.
        let m = o.observe(
            "a",
            &[spec("a", "1"), spec("b", "2099-01-01T00:00:00.000000Z")],
            t0,
            d,
        );
        assert_eq!(m, ["a", "b"]);
        let m = o.observe(
            "a",
            &[spec("a", "2"), spec("b", "2099-01-01T00:00:00.000000Z")],
            t0 + Duration::from_secs(9),
            d,
        );
        assert_eq!(m, ["a", "b"]);
        // b stopped renewing 11 s ago (by our clock): gone. a is always a member of its own view.
        let m = o.observe(
            "a",
            &[spec("a", "2"), spec("b", "2099-01-01T00:00:00.000000Z")],
            t0 + Duration::from_secs(11),
            d,
        );
        assert_eq!(m, ["a"]);
        // b renews again: back.
        let m = o.observe(
            "a",
            &[spec("a", "3"), spec("b", "x")],
            t0 + Duration::from_secs(12),
            d,
        );
        assert_eq!(m, ["a", "b"]);
        // b's Lease deleted (a clean stop): gone at once.
        let m = o.observe("a", &[spec("a", "3")], t0 + Duration::from_secs(13), d);
        assert_eq!(m, ["a"]);
    }

    #[test]
    fn lease_names_are_valid_object_names() {
        let cfg = |id: &str| MembershipConfig {
            namespace: "x".into(),
            group: "drift-detector".into(),
            identity: id.into(),
            lease_duration: Duration::from_secs(15),
        };
        assert_eq!(cfg("Pod_7").lease_name(), "drift-detector-member-pod-7");
        assert_eq!(cfg("host:42/").lease_name(), "drift-detector-member-host-42");
    }
}
