//! Times the phases of the detector's initial scan of 10,000 objects (the `scan` bench group):
//! taking the desired set, the re-list, processing every key.
//! Run: `cargo run --release -p drift-benches --example phases_scan` (`RUNS`, `N`, `PROJECTED`,
//! `PERF_CTL`: see below; `PHASE`: only that phase under `perf`; `REJUDGE`: then every key judged
//! again, thrice, the live cache compacted).
#![allow(clippy::print_stdout)] // prints its own timing

use std::sync::Arc;
use std::time::Instant;

use drift_core::DiffEngine;
use drift_core::clock::ManualClock;
use drift_core::detector::{Detector, DetectorConfig};
use drift_core::ports::{LiveEvent, RelistScope};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With `PERF_CTL` naming the control FIFO of `perf record --control=fifo:PATH -D -1`, only the
/// timed part is sampled (not the fixture's cloning).
fn perf_control(command: &[u8]) {
    if let Some(path) = std::env::var_os("PERF_CTL") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
            let _ = f.write_all(command);
        }
    }
}

fn main() {
    // `N` objects instead of 10,000 (does the cost per object depend on how much is held?).
    let n = std::env::var("N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let (desired, mut live) = drift_benches::scan_fixture(n);
    if std::env::var_os("PROJECTED").is_some() {
        // As drift-kube's live source delivers them.
        let projection = drift_kube::Projection::default();
        live = live.into_iter().map(|r| projection.resource(r)).collect();
    }
    let runs = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    for _ in 0..runs {
        let d = drift_benches::as_desired(desired.iter().cloned());
        let l = live.clone();
        let mut det = Detector::new(
            DiffEngine::default(),
            DetectorConfig::default(),
            Arc::new(ManualClock::new(0)),
        );
        // `PHASE` (`desired`, `relist`, `process`): only that phase sampled; `REJUDGE`: none.
        let phase = std::env::var("PHASE").ok();
        let sampled =
            |p: &str| std::env::var_os("REJUDGE").is_none() && phase.as_deref().is_none_or(|x| x == p);
        if sampled("desired") {
            perf_control(b"enable\n");
        }
        let t = Instant::now();
        det.set_desired(d);
        let t1 = Instant::now();
        perf_control(if sampled("relist") {
            b"enable\n"
        } else {
            b"disable\n"
        });
        det.observe(LiveEvent::Restarted {
            scope: RelistScope::All,
            resources: l,
        });
        det.observe(LiveEvent::Ready);
        let t2 = Instant::now();
        perf_control(if sampled("process") {
            b"enable\n"
        } else {
            b"disable\n"
        });
        let events = if std::env::var_os("ONE_BY_ONE").is_some() {
            let mut n = 0;
            while let Some(k) = det.next_key() {
                n += det.process(&k).events.len();
            }
            n
        } else {
            drift_benches::drain(&mut det)
        };
        let t3 = Instant::now();
        perf_control(b"disable\n");
        if std::env::var_os("REJUDGE").is_some() {
            // Every key judged again with the live cache compacted (the `scan` group's
            // `detector_rejudge_10k_compacted`).
            det.compact(usize::MAX);
            for _ in 0..3 {
                perf_control(b"enable\n");
                let t = Instant::now();
                det.queue_all();
                let again = drift_benches::drain(&mut det);
                let took = t.elapsed();
                perf_control(b"disable\n");
                println!("rejudge (compacted) {took:?} ({again} events)");
            }
        }
        println!(
            "set_desired {:?}  re-list {:?}  process {:?}  total {:?} ({events} events)",
            t1 - t,
            t2 - t1,
            t3 - t2,
            t3 - t
        );
        std::mem::forget(det);
    }
}
