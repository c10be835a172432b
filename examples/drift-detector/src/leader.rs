//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does: the holder
//! renews `renewTime` every retry period; another replica takes the lease over once it has not been
//! renewed for `leaseDurationSeconds`; every write carries the `resourceVersion` it read, so two
//! replicas can never both win (the API server answers 409 to the loser). A leader that cannot renew
//! within the renew deadline steps down before anyone else can take over.

use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use tokio::sync::watch;

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

fn micro_time(t: std::time::SystemTime) -> String {
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

fn parse_micro_time(s: &str) -> Option<std::time::SystemTime> {
    // YYYY-MM-DDTHH:MM:SS(.ffffff)Z
    let (date, time) = s.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let micros: i64 = format!("{frac:0<6}")
        .chars()
        .take(6)
        .collect::<String>()
        .parse()
        .ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let secs = u64::try_from(secs).ok()?;
    Some(
        std::time::UNIX_EPOCH
            + Duration::from_secs(secs)
            + Duration::from_micros(u64::try_from(micros).ok()?),
    )
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

async fn try_once(api: &Api<DynamicObject>, cfg: &LeaseConfig) -> Result<Try, kube::Error> {
    let now = std::time::SystemTime::now();
    let secs = cfg.lease_duration.as_secs().max(1);
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": secs,
                     "acquireTime": micro_time(now), "renewTime": micro_time(now), "leaseTransitions": 0}
        }))
        .map_err(kube::Error::SerdeError)?;
        api.create(&PostParams::default(), &obj).await?;
        return Ok(Try::Leading);
    };
    let spec = lease.data.get("spec").cloned().unwrap_or_default();
    let holder = spec
        .get("holderIdentity")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let renewed = spec
        .get("renewTime")
        .and_then(|v| v.as_str())
        .and_then(parse_micro_time);
    let duration = Duration::from_secs(
        spec.get("leaseDurationSeconds")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(secs),
    );
    let expired = renewed.is_none_or(|r| now.duration_since(r).unwrap_or_default() > duration);
    if holder != cfg.identity && !holder.is_empty() && !expired {
        return Ok(Try::Following(holder));
    }
    let transitions = spec
        .get("leaseTransitions")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let mut new_spec = json!({"holderIdentity": cfg.identity, "leaseDurationSeconds": secs, "renewTime": micro_time(now),
        "leaseTransitions": if holder == cfg.identity { transitions } else { transitions + 1 }});
    new_spec["acquireTime"] = if holder == cfg.identity {
        spec.get("acquireTime")
            .cloned()
            .unwrap_or_else(|| json!(micro_time(now)))
    } else {
        json!(micro_time(now))
    };
    lease.data["spec"] = new_spec;
    // `replace` sends the resourceVersion read: a concurrent writer makes this a 409.
    api.replace(&cfg.name, &PostParams::default(), &lease).await?;
    Ok(Try::Leading)
}

/// Runs the election until `stop`; publishes whether this replica leads.
pub(crate) fn spawn(
    client: kube::Client,
    cfg: LeaseConfig,
    mut stop: watch::Receiver<bool>,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let api = lease_api(&client, &cfg.namespace);
        let mut last_renew: Option<tokio::time::Instant> = None;
        loop {
            match try_once(&api, &cfg).await {
                Ok(Try::Leading) => {
                    last_renew = Some(tokio::time::Instant::now());
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
                    let conflict = matches!(&e, kube::Error::Api(s) if s.code == 409);
                    if !conflict {
                        tracing::warn!(error = %e, "lease request failed");
                    }
                    if *tx.borrow() && last_renew.is_none_or(|t| t.elapsed() > cfg.renew_deadline) {
                        tracing::warn!("could not renew the lease in time: stepping down");
                        let _ = tx.send(false);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(cfg.retry_period) => {}
                _ = stop.changed() => break,
            }
        }
        // Release: let a standby take over at once instead of waiting for expiry.
        if *tx.borrow() {
            if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
                && lease.data["spec"]["holderIdentity"] == cfg.identity.as_str()
            {
                lease.data["spec"]["holderIdentity"] = json!("");
                lease.data["spec"]["renewTime"] = json!(micro_time(std::time::UNIX_EPOCH));
                let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
            }
            let _ = tx.send(false);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_round_trips() {
        let t = std::time::UNIX_EPOCH + Duration::from_micros(1_764_158_400_123_456);
        let s = micro_time(t);
        assert!(s.ends_with(".123456Z"), "{s}");
        assert_eq!(parse_micro_time(&s), Some(t));
        assert_eq!(
            parse_micro_time("2026-11-26T10:00:00Z"),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(1_795_687_200))
        );
        assert!(parse_micro_time("garbage").is_none());
    }
}
