//! Prometheus metrics (text exposition format, `/metrics`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SetSeverity {
    pub set: String,
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Result_ {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Kind {
    pub kind: String,
}

/// Every metric the daemon exports.
pub(crate) struct Metrics {
    registry: Registry,
    pub open_drifts: Family<SetSeverity, Gauge>,
    pub drifts_detected: Counter,
    pub drift_events: Family<Kind, Counter>,
    pub fixes: Family<Result_, Counter>,
    pub events_processed: Counter<u64, AtomicU64>,
    pub events_skipped: Counter<u64, AtomicU64>,
    pub watch_restarts: Counter<u64, AtomicU64>,
    pub watch_errors: Counter,
    pub event_to_report: Histogram,
    pub confighub_requests: Counter<u64, AtomicU64>,
    pub confighub_retries: Counter<u64, AtomicU64>,
    pub log_write_seconds: Histogram,
    pub log_spooled: Gauge,
    pub claude_requests: Counter<u64, AtomicU64>,
    pub claude_failures: Counter<u64, AtomicU64>,
    pub analysis_seconds: Histogram,
    pub alerts: Counter,
    pub kube_event_failures: Counter,
    pub ready: Gauge,
    pub leader: Gauge,
    pub shard_namespaces: Gauge,
    pub shard_members: Gauge,
    pub shard_reassignments: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("drift_detector");
        let m = Metrics {
            open_drifts: Family::default(),
            drifts_detected: Counter::default(),
            drift_events: Family::default(),
            fixes: Family::default(),
            events_processed: Counter::default(),
            events_skipped: Counter::default(),
            watch_restarts: Counter::default(),
            watch_errors: Counter::default(),
            event_to_report: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            confighub_requests: Counter::default(),
            confighub_retries: Counter::default(),
            log_write_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            log_spooled: Gauge::default(),
            claude_requests: Counter::default(),
            claude_failures: Counter::default(),
            analysis_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            alerts: Counter::default(),
            kube_event_failures: Counter::default(),
            ready: Gauge::default(),
            leader: Gauge::default(),
            shard_namespaces: Gauge::default(),
            shard_members: Gauge::default(),
            shard_reassignments: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "open_drifts",
            "Open drifts by set and severity",
            m.open_drifts.clone(),
        );
        registry.register("drifts_detected", "Drifts opened", m.drifts_detected.clone());
        registry.register(
            "drift_events",
            "Drift lifecycle events by kind",
            m.drift_events.clone(),
        );
        registry.register(
            "fixes",
            "Fixes by result (attempted, applied, failed, conflict, skipped)",
            m.fixes.clone(),
        );
        registry.register(
            "events_processed",
            "Live objects seen",
            m.events_processed.clone(),
        );
        registry.register(
            "events_skipped",
            "Live events recognised as unchanged without a diff",
            m.events_skipped.clone(),
        );
        registry.register(
            "watch_restarts",
            "Re-lists (first lists and watch gaps)",
            m.watch_restarts.clone(),
        );
        registry.register(
            "watch_errors",
            "Watch errors (the source backs off and resumes)",
            m.watch_errors.clone(),
        );
        registry.register(
            "event_to_report_seconds",
            "From a live event's arrival to its drift report",
            m.event_to_report.clone(),
        );
        registry.register(
            "confighub_requests",
            "HTTP requests to ConfigHub",
            m.confighub_requests.clone(),
        );
        registry.register(
            "confighub_retries",
            "ConfigHub requests that were retries",
            m.confighub_retries.clone(),
        );
        registry.register(
            "drift_log_write_seconds",
            "Time to write a drift event to the history",
            m.log_write_seconds.clone(),
        );
        registry.register(
            "drift_log_spooled",
            "Drift events waiting to be written (ConfigHub unreachable)",
            m.log_spooled.clone(),
        );
        registry.register(
            "claude_requests",
            "Requests to the Anthropic API",
            m.claude_requests.clone(),
        );
        registry.register(
            "claude_failures",
            "Failed requests to the Anthropic API",
            m.claude_failures.clone(),
        );
        registry.register(
            "analysis_seconds",
            "Time to analyse a batch of drifts",
            m.analysis_seconds.clone(),
        );
        registry.register("alerts", "Alerts raised", m.alerts.clone());
        registry.register(
            "kube_event_failures",
            "Drift transitions whose Kubernetes Event could not be written",
            m.kube_event_failures.clone(),
        );
        registry.register(
            "ready",
            "1 when every watch has listed and the desired state is loaded",
            m.ready.clone(),
        );
        registry.register(
            "leader",
            "1 when this replica leads (fixes and writes history)",
            m.leader.clone(),
        );
        registry.register(
            "shard_namespaces",
            "Namespaces this replica's shard holds (watch --sharding)",
            m.shard_namespaces.clone(),
        );
        registry.register(
            "shard_members",
            "Live replicas sharing the cluster (watch --sharding)",
            m.shard_members.clone(),
        );
        registry.register(
            "shard_reassignments",
            "Times this replica's shard changed (members joining or leaving)",
            m.shard_reassignments.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_parse() {
        let m = Metrics::new();
        m.drifts_detected.inc();
        m.fixes
            .get_or_create(&Result_ {
                result: "applied".into(),
            })
            .inc();
        m.event_to_report.observe(0.002);
        let text = m.encode();
        let lines: Vec<Result<String, std::io::Error>> = text.lines().map(|l| Ok(l.to_string())).collect();
        let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("parses");
        let get = |name: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name)
                .map(|s| match &s.value {
                    prometheus_parse::Value::Untyped(x)
                    | prometheus_parse::Value::Counter(x)
                    | prometheus_parse::Value::Gauge(x) => *x,
                    _ => f64::NAN,
                })
        };
        assert_eq!(get("drift_detector_drifts_detected_total"), Some(1.0), "{text}");
        assert_eq!(get("drift_detector_fixes_total"), Some(1.0), "{text}");
        assert_eq!(
            get("drift_detector_event_to_report_seconds_count"),
            Some(1.0),
            "{text}"
        );
    }
}
