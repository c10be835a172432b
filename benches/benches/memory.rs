//! Memory figures of ARCHITECTURE §10, measured exactly with dhat's heap accounting (bytes live on the
//! heap), not with RSS.
//!
//! Run: `cargo bench -p drift-benches --bench memory`.
#![allow(clippy::print_stdout)] // a measuring program prints its figures

use std::sync::Arc;

use drift_benches::{frontend_desired, scan_fixture, with_server_state};
use drift_core::clock::ManualClock;
use drift_core::detector::{Detector, DetectorConfig};
use drift_core::ports::{LiveEvent, RelistScope};
use drift_core::{DiffEngine, LiveObject, Resource};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn heap() -> u64 {
    dhat::HeapStats::get().curr_bytes as u64
}

fn project(v: &serde_json::Value) -> serde_json::Value {
    let mut p = v.clone();
    drift_kube::Projection::default().apply(&mut p);
    p
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let desired = frontend_desired();
    let live = with_server_state(&desired);
    let json_len = live.to_string().len();
    // The process-wide redactor (its name automaton's table) is made once, on first use: not per
    // object, so not in the figures below.
    let _ = drift_core::redact::Redactor::global();

    let before = heap();
    let obj = LiveObject::new(Resource::from_value(live.clone()).expect("live"));
    let full_object = heap() - before;
    drop(obj);
    let before = heap();
    let projected = project(&live);
    let projected_value = heap() - before;
    let before = heap();
    let text: Box<str> = projected.to_string().into_boxed_str();
    let projected_text = heap() - before;
    drop((projected, text));
    let before = heap();
    let d = Resource::from_value(desired.clone()).expect("desired");
    let desired_value = heap() - before;
    drop(d);

    const N: usize = 10_000;
    let per = |b: i64| b as f64 / N as f64;
    let mut det = Detector::new(
        DiffEngine::default(),
        DetectorConfig::default(),
        Arc::new(ManualClock::new(0)),
    );
    let h0 = heap() as i64;
    let (d, _) = scan_fixture(N);
    det.set_desired(drift_benches::as_desired(d));
    let h1 = heap() as i64;
    let (_, l) = scan_fixture(N);
    // As drift-kube's live source delivers them: projected.
    let projection = drift_kube::Projection::default();
    let l: Vec<Resource> = l.into_iter().map(|r| projection.resource(r)).collect();
    let h2 = heap() as i64;
    det.observe(LiveEvent::Restarted {
        scope: RelistScope::All,
        resources: l,
    });
    det.observe(LiveEvent::Ready);
    while let Some(k) = det.next_key() {
        det.process(&k);
    }
    det.compact(usize::MAX);
    let h3 = heap() as i64;
    let deployments = N.div_ceil(3);
    let deployment_text: usize = det
        .desired_keys()
        .iter()
        .filter(|k| k.kind == "Deployment")
        .filter_map(|k| det.live_object(k))
        .map(|o| o.resource().object.to_string().len())
        .sum();

    println!("memory (dhat heap accounting: bytes live on the heap)");
    println!("  the microservices-demo frontend Deployment:");
    println!("    as the API server returns it              {json_len:>7} bytes of JSON");
    println!("    held as a full LiveObject (serde_json)    {full_object:>7} bytes");
    println!("    projected by drift-kube (no status or");
    println!("      managedFields; last-applied shrunk)     {projected_value:>7} bytes as serde_json::Value");
    println!("    projected, as compact JSON text           {projected_text:>7} bytes");
    println!("    desired object as serde_json::Value       {desired_value:>7} bytes");
    println!("  detector tracking {N} objects (1/3 Deployments, 1/3 Services, 1/3 ConfigMaps):");
    println!(
        "    desired index             {:>10} bytes  {:>7.0} B/object",
        h1 - h0,
        per(h1 - h0)
    );
    println!(
        "    projected live, as given  {:>10} bytes  {:>7.0} B/object  (serde_json::Value, before the detector)",
        h2 - h1,
        per(h2 - h1)
    );
    println!(
        "    live state after scan     {:>10} bytes  {:>7.0} B/object  (cache as packed compiled objects, fingerprints, open drifts)",
        h3 - h1,
        per(h3 - h1)
    );
    println!(
        "    of which packed objects   {:>10} bytes  {:>7.0} B/object  (Detector::live_cache_bytes); a Deployment: {:.0} B of compact JSON before packing",
        det.live_cache_bytes(),
        per(det.live_cache_bytes() as i64),
        deployment_text as f64 / deployments as f64
    );
    println!(
        "    total                     {:>10} bytes  {:>7.0} B/object",
        h3 - h0,
        per(h3 - h0)
    );
    drop(det);
}
