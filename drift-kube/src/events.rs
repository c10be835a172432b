//! Kubernetes Events for drift transitions, as controllers emit them: `kubectl describe` and `kubectl
//! get events` show that a field drifted, was corrected or escalated, next to the object's other
//! events.
//!
//! Each [`DriftEvent`] becomes one `core/v1` Event on the drifted object (`involvedObject` with its
//! `uid`, so `kubectl describe` finds it), reason `DriftDetected`, `DriftCorrected`... and a message
//! that names the field and the values exactly as the drift record does (Secret values are hashes
//! already; nothing else is read). Events are best effort in Kubernetes; a failed one is an error
//! the caller reports, never a reason to stop detecting.

use drift_core::ports::{DriftEvent, DriftEventKind};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// The `source.component` and `reportingComponent` of every Event.
pub const COMPONENT: &str = "drift-detector";

/// Longest Event message (the API server's limit is 1 KiB on `message` for events.k8s.io; kept for
/// core/v1 too so both views agree).
const MAX_MESSAGE: usize = 1024;

/// Why an Event was not written.
#[derive(Debug, thiserror::Error)]
#[error("Kubernetes Event for {object}: {reason}")]
pub struct EventError {
    /// The object the Event is about.
    pub object: String,
    /// What went wrong.
    pub reason: String,
}

/// Writes drift transitions as Kubernetes Events.
#[derive(Clone)]
pub struct KubeEventRecorder {
    client: kube::Client,
    instance: String,
}

impl std::fmt::Debug for KubeEventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEventRecorder")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// The Event `reason` and `type` for a drift transition, or `None` for transitions that are not
/// worth an Event (approvals and ignores are people's actions, recorded in the history).
pub fn reason_for(kind: DriftEventKind) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        DriftEventKind::Opened => ("DriftDetected", "Warning"),
        DriftEventKind::Updated => ("DriftChanged", "Warning"),
        DriftEventKind::Remediated => ("DriftFixApplied", "Normal"),
        DriftEventKind::FixFailed => ("DriftFixFailed", "Warning"),
        DriftEventKind::Corrected => ("DriftCorrected", "Normal"),
        DriftEventKind::Resolved => ("DriftResolved", "Normal"),
        DriftEventKind::Escalated => ("DriftEscalated", "Warning"),
        _ => return None,
    })
}

impl KubeEventRecorder {
    /// A recorder writing through `client`; `instance` is the `reportingInstance` (the pod name).
    pub fn new(client: kube::Client, instance: impl Into<String>) -> Self {
        KubeEventRecorder {
            client,
            instance: instance.into(),
        }
    }

    /// The Event object for a drift transition (`None` when the transition gets no Event). `uid` is
    /// the drifted object's, when known; `now` is RFC 3339; `nanos` makes the name unique.
    pub fn event_object(&self, e: &DriftEvent, uid: Option<&str>, now: &str, nanos: u128) -> Option<Value> {
        event_object(&self.instance, e, uid, now, nanos)
    }

    /// Writes the Event for one drift transition (nothing for transitions without one).
    ///
    /// # Errors
    /// [`EventError`] when the API server refuses or cannot be reached.
    pub async fn record(&self, e: &DriftEvent) -> Result<(), EventError> {
        if reason_for(e.kind).is_none() {
            return Ok(());
        }
        let key = &e.drift.key;
        let err = |reason: String| EventError {
            object: key.to_string(),
            reason,
        };
        // The object's uid, so `kubectl describe` lists the Event (it selects on involvedObject.uid).
        let api_version = key.api_version();
        let (group, version) = drift_core::split_api_version(&api_version);
        let gvk = GroupVersionKind::gvk(group, version, &key.kind);
        let plural = drift_core::kinds::lookup(group, &key.kind)
            .map(|k| k.plural.to_string())
            .unwrap_or_else(|| format!("{}s", key.kind.to_ascii_lowercase()));
        let ar = ApiResource::from_gvk_with_plural(&gvk, &plural);
        let objects: Api<DynamicObject> = match &key.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let uid = match objects.get_metadata_opt(&key.name).await {
            Ok(m) => m.and_then(|m| m.metadata.uid),
            Err(_) => None, // still worth an Event; `kubectl get events` shows it
        };
        let events_ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Event"), "events");
        let namespace = key.namespace.clone().unwrap_or_else(|| "default".into());
        let events: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &namespace, &events_ar);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let now_text = drift_core::clock::rfc3339_seconds(u64::try_from(now.as_millis()).unwrap_or(0));
        for attempt in 0..3u128 {
            let Some(body) = self.event_object(e, uid.as_deref(), &now_text, now.as_nanos() + attempt) else {
                return Ok(());
            };
            let obj: DynamicObject = serde_json::from_value(body).map_err(|x| err(x.to_string()))?;
            match events.create(&PostParams::default(), &obj).await {
                Ok(_) => return Ok(()),
                // Two Events in the same nanosecond: the name is taken, try the next one.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(x) => return Err(err(x.to_string())),
            }
        }
        Err(err("event names kept colliding".into()))
    }
}

/// The Event object for a drift transition (see [`KubeEventRecorder::event_object`]).
pub fn event_object(
    instance: &str,
    e: &DriftEvent,
    uid: Option<&str>,
    now: &str,
    nanos: u128,
) -> Option<Value> {
    let (reason, kind) = reason_for(e.kind)?;
    let key = &e.drift.key;
    let namespace = key.namespace.clone().unwrap_or_else(|| "default".into());
    let what = if e.drift.rule == "missing-live" {
        "the object is missing from the cluster".to_string()
    } else {
        e.drift.describe()
    };
    let mut message = format!("{what} ({} drift, {})", e.drift.set, e.drift.severity);
    if let Some(a) = &e.drift.actor {
        message.push_str(&format!("; changed by {a}"));
    }
    if !e.reason.is_empty() && e.kind != DriftEventKind::Opened {
        message.push_str(&format!("; {}", e.reason));
    }
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    let mut involved = json!({"apiVersion": key.api_version(), "kind": key.kind, "name": key.name});
    if let Some(ns) = &key.namespace {
        involved["namespace"] = json!(ns);
    }
    if let Some(uid) = uid {
        involved["uid"] = json!(uid);
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.{:x}", key.name, nanos), "namespace": namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": kind,
        "action": match e.kind {
            DriftEventKind::Opened | DriftEventKind::Updated => "Detect",
            DriftEventKind::Escalated => "Escalate",
            _ => "Correct",
        },
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use drift_core::ports::DriftEvent;

    #[test]
    fn each_transition_is_an_event_on_the_object() {
        assert!(reason_for(DriftEventKind::Approved).is_none());
        let key = drift_core::ResourceKey::new("apps/v1", "Deployment", Some("shop"), "web");
        let mut d = drift_core::detector::missing_live_drift(&key);
        d.rule = "replicas".into();
        d.path = drift_core::path::FieldPath::fields(["spec", "replicas"]);
        d.change = drift_core::Change::Changed;
        d.expected = Some(json!(2));
        d.actual = Some(json!(5));
        d.actor = Some(drift_core::Actor {
            manager: "kubectl".into(),
            operation: "Update".into(),
            time: Some("2026-12-02T10:16:00Z".into()),
            subresource: Some("scale".into()),
        });
        let e = DriftEvent::new(DriftEventKind::Opened, 0, d.clone(), "drift-detector", "new");
        let v =
            event_object("drift-detector-0", &e, Some("u-1"), "2026-12-02T10:16:01Z", 0x1f).expect("event");
        assert_eq!(v["metadata"]["name"], "web.1f");
        assert_eq!(v["metadata"]["namespace"], "shop");
        assert_eq!(
            v["involvedObject"],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "shop", "uid": "u-1"})
        );
        assert_eq!(v["reason"], "DriftDetected");
        assert_eq!(v["type"], "Warning");
        assert_eq!(v["reportingInstance"], "drift-detector-0");
        let msg = v["message"].as_str().expect("message");
        assert!(msg.starts_with("spec.replicas expected=2, actual=5"), "{msg}");
        assert!(
            msg.contains("changed by kubectl (scale) at 2026-12-02T10:16:00Z"),
            "{msg}"
        );
        let fixed = DriftEvent::new(
            DriftEventKind::Corrected,
            1,
            d.clone(),
            "drift-detector",
            "verified",
        );
        let v = event_object("i", &fixed, None, "t", 1).expect("event");
        assert_eq!(
            (v["reason"].as_str(), v["type"].as_str()),
            (Some("DriftCorrected"), Some("Normal"))
        );
        assert!(v["involvedObject"].get("uid").is_none());
        // The message stays under the limit, whatever the values, cut on a character boundary.
        d.actual = Some(Value::String("é".repeat(2000)));
        let e = DriftEvent::new(DriftEventKind::Opened, 2, d, "drift-detector", "new");
        let v = event_object("i", &e, None, "t", 2).expect("event");
        let msg = v["message"].as_str().expect("message");
        assert!(msg.len() <= MAX_MESSAGE && msg.ends_with("..."), "{}", msg.len());
    }
}
