//! ARCHITECTURE §10 for drift-kube: watch-to-report latency, events per second through
//! `KubeLiveSource` → `Detector`, and live-cache bytes per Deployment, on the sandbox API server over
//! loopback HTTP with the real `kube` client.
//!
//! Run: `cargo bench -p drift-benches --bench live`. Criterion measures the single-change round trip;
//! a second pass (after criterion's) takes 2,000 latency samples for the percentiles, pushes a burst of
//! writes for the throughput, and reads the detector's cache size.
#![allow(clippy::print_stdout)] // a measuring program prints its figures

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use drift_benches::frontend_desired;
use drift_core::clock::SystemClock;
use drift_core::detector::{Detector, DetectorConfig};
use drift_core::ports::{DesiredResource, DriftEventKind, LiveSource, Provenance};
use drift_core::{DiffEngine, Resource};
use drift_kube::sandbox::{Sandbox, SandboxConfig};
use drift_kube::{KubeLiveSource, LiveSourceConfig};
use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

const DEPLOYMENTS: usize = 200;

fn desired(i: usize) -> Value {
    let mut d = frontend_desired();
    d["metadata"]["name"] = json!(format!("frontend-{i}"));
    d["metadata"]["namespace"] = json!("default");
    d["spec"]["replicas"] = json!(2);
    d
}

/// A signal from the detector task: a drift event with the instant it was produced.
struct Reported {
    name: String,
    kind: DriftEventKind,
    at: Instant,
}

enum Query {
    /// Live events taken in so far.
    Events(oneshot::Sender<u64>),
    /// Compacts the live cache, then reports its bytes and objects.
    Cache(oneshot::Sender<(usize, usize)>),
}

struct Bench {
    sandbox: Sandbox,
    api: Api<DynamicObject>,
    reports: mpsc::UnboundedReceiver<Reported>,
    queries: mpsc::UnboundedSender<Query>,
    replicas: Vec<i64>,
}

impl Bench {
    async fn start() -> Bench {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
        let client = sandbox.client().expect("client");
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        );
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
        let mut desired_set = Vec::new();
        for i in 0..DEPLOYMENTS {
            let d = desired(i);
            // As `kubectl apply` leaves it: the last-applied annotation is part of what is cached.
            let mut obj = d.clone();
            obj["metadata"]["annotations"] =
                json!({"kubectl.kubernetes.io/last-applied-configuration": d.to_string()});
            let obj: DynamicObject = serde_json::from_value(obj).expect("object");
            api.create(
                &PostParams {
                    field_manager: Some("kubectl-client-side-apply".into()),
                    ..Default::default()
                },
                &obj,
            )
            .await
            .expect("create");
            desired_set.push(DesiredResource {
                resource: Resource::from_value(d).expect("desired"),
                provenance: Provenance::file("bench"),
            });
        }
        let source = KubeLiveSource::new(
            client,
            LiveSourceConfig::default().kinds([("apps", "Deployment")]),
        )
        .expect("source");
        let (rtx, reports) = mpsc::unbounded_channel();
        let (queries, mut qrx) = mpsc::unbounded_channel::<Query>();
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut det = Detector::new(
                DiffEngine::default(),
                DetectorConfig::default(),
                Arc::new(SystemClock),
            );
            det.set_desired(desired_set);
            let mut events = source.watch();
            let mut ready_tx = Some(ready_tx);
            let mut events_seen = 0u64;
            loop {
                tokio::select! {
                    ev = events.next() => {
                        let Some(Ok(ev)) = ev else { return };
                        if matches!(ev, drift_core::ports::LiveEvent::Applied(_) | drift_core::ports::LiveEvent::Deleted(_)) {
                            events_seen += 1;
                        }
                        det.observe(ev);
                        while let Some(k) = det.next_key() {
                            let out = det.process(&k);
                            let at = Instant::now();
                            for e in out.events {
                                let _ = rtx.send(Reported { name: e.drift.key.name.clone(), kind: e.kind, at });
                            }
                        }
                        if det.is_ready() && det.queue_len() == 0 && let Some(t) = ready_tx.take() {
                            let _ = t.send(());
                        }
                    }
                    q = qrx.recv() => match q {
                        Some(Query::Events(reply)) => {
                            let _ = reply.send(events_seen);
                        }
                        Some(Query::Cache(reply)) => {
                            det.compact(usize::MAX);
                            let _ = reply.send((det.live_cache_bytes(), det.sizes().1));
                        }
                        None => return,
                    },
                }
            }
        });
        ready_rx.await.expect("the detector became ready");
        Bench {
            sandbox,
            api,
            reports,
            queries,
            replicas: vec![2; DEPLOYMENTS],
        }
    }

    /// Scales one Deployment across the drift line and waits for the detector's event; returns the
    /// time from sending the write to the report.
    async fn round_trip(&mut self, i: usize) -> Duration {
        let name = format!("frontend-{i}");
        let next = if self.replicas[i] == 2 { 3 } else { 2 };
        let want = if next == 2 {
            DriftEventKind::Resolved
        } else {
            DriftEventKind::Opened
        };
        self.replicas[i] = next;
        let start = Instant::now();
        self.api
            .patch_scale(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": next}})),
            )
            .await
            .expect("scale");
        loop {
            let r = tokio::time::timeout(Duration::from_secs(10), self.reports.recv())
                .await
                .expect("a report within 10 s")
                .expect("detector running");
            if r.name == name && r.kind == want {
                return r.at - start;
            }
        }
    }

    async fn cache(&self) -> (usize, usize) {
        let (tx, rx) = oneshot::channel();
        let _ = self.queries.send(Query::Cache(tx));
        rx.await.expect("detector running")
    }

    async fn events(&self) -> u64 {
        let (tx, rx) = oneshot::channel();
        let _ = self.queries.send(Query::Events(tx));
        rx.await.expect("detector running")
    }

    /// Waits until the detector has taken in `committed` events after `before`; returns how many it
    /// took in and when it had.
    async fn drain(&self, before: u64, committed: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        while Instant::now() < deadline {
            seen = self.events().await - before;
            if seen >= committed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut bench = rt.block_on(Bench::start());

    let mut c = Criterion::default().configure_from_args();
    let mut i = 0usize;
    c.bench_function("live/scale_to_drift_report", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += bench.round_trip(i % DEPLOYMENTS).await;
                    i += 1;
                }
                total
            })
        });
    });
    c.final_summary();

    rt.block_on(async {
        // Percentiles over sequential changes.
        let mut samples = Vec::with_capacity(2000);
        for j in 0..2000 {
            samples.push(bench.round_trip(j % DEPLOYMENTS).await);
        }
        samples.sort_unstable();
        println!("watch-to-report latency, {} sequential scale writes (write sent → drift event out of the detector):", samples.len());
        println!("  p50 {:?}  p90 {:?}  p99 {:?}  max {:?}", pct(&samples, 0.5), pct(&samples, 0.9), pct(&samples, 0.99), samples[samples.len() - 1]);

        // Throughput: 16 writers in flight; every write is one watch event carrying a spec change (plus
        // the status events the sandbox's controller writes after each).
        let events_before = bench.events().await;
        let rv_before = bench.sandbox.resource_version();
        let writes = 4_000usize;
        let start = Instant::now();
        let api = bench.api.clone();
        let replicas = bench.replicas.clone();
        let tasks: Vec<_> = (0..16)
            .map(|w| {
                let api = api.clone();
                let mut replicas = replicas.clone();
                tokio::spawn(async move {
                    for k in (w..writes).step_by(16) {
                        let i = k % DEPLOYMENTS;
                        replicas[i] = if replicas[i] == 2 { 3 } else { 2 };
                        api.patch_scale(&format!("frontend-{i}"), &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": replicas[i]}})))
                            .await
                            .expect("scale");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("writer");
        }
        let writes_done = start.elapsed();
        // Every committed write is one watch event (the scale, and the status the sandbox's controller
        // writes after it); the store's resourceVersion counts them exactly.
        let committed = bench.sandbox.resource_version() - rv_before;
        let seen = bench.drain(events_before, committed, Duration::from_secs(60)).await;
        let elapsed = start.elapsed();
        println!(
            "throughput: {writes} scale writes by 16 concurrent writers in {writes_done:?} ({:.0} writes/s); the detector took in {seen} of {committed} watch events in {elapsed:?}: {:.0} events/s",
            writes as f64 / writes_done.as_secs_f64(),
            seen as f64 / elapsed.as_secs_f64()
        );

        // The pipeline's own capacity: writes made in process (no HTTP client), so the CPU goes to
        // the store, the watch stream, kube's watcher, the projection and the detector.
        let events_before = bench.events().await;
        let rv_before = bench.sandbox.resource_version();
        let writes = 10_000usize;
        let start = Instant::now();
        for k in 0..writes {
            let i = k % DEPLOYMENTS;
            bench.replicas[i] = if bench.replicas[i] == 2 { 3 } else { 2 };
            let r = bench.replicas[i];
            bench.sandbox.modify("apps", "Deployment", Some("default"), &format!("frontend-{i}"), "bench", |o| o["spec"]["replicas"] = json!(r)).expect("modify");
            if k % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let writes_done = start.elapsed();
        let committed = bench.sandbox.resource_version() - rv_before;
        let seen = bench.drain(events_before, committed, Duration::from_secs(120)).await;
        let elapsed = start.elapsed();
        println!(
            "pipeline capacity: {writes} in-process writes ({committed} watch events with the controller's status writes) made in {writes_done:?}; the detector took in {seen} events in {elapsed:?}: {:.0} events/s",
            seen as f64 / elapsed.as_secs_f64()
        );

        let (bytes, objects) = bench.cache().await;
        println!(
            "live cache: {bytes} bytes of compact projected JSON for {objects} Deployments = {} bytes per Deployment (budget 4,096)",
            bytes / objects.max(1)
        );
    });
}
