//! The floor under the detector's 10,000-object scan with `serde_json::Value` inputs: one pass over
//! every live and desired tree of the `scan` fixture that only counts its nodes and string bytes (no
//! comparison at all), beside the engine's 10,000 diffs on prepared objects, each twice; then both
//! sides compiled (the time to compile them, and the diffs reading both in place, twice).
//! Run: `cargo run --release -p drift-benches --example scan_floor`
#![allow(clippy::print_stdout)] // prints its own timing

use std::time::Instant;

use serde_json::Value;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Nodes and string bytes under a value: a read of every node, nothing else.
fn touch(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.iter().map(|(k, v)| k.len() + touch(v)).sum::<usize>() + 1,
        Value::Array(a) => a.iter().map(touch).sum::<usize>() + 1,
        Value::String(s) => s.len(),
        _ => 1,
    }
}

fn main() {
    let (desired, live) = drift_benches::scan_fixture(10_000);
    let engine = drift_core::DiffEngine::default();
    for _ in 0..3 {
        let (d, l) = (desired.clone(), live.clone());
        let t = Instant::now();
        let live_size: usize = l.iter().map(|r| touch(&r.object)).sum();
        let t1 = Instant::now();
        let again: usize = l.iter().map(|r| touch(&r.object)).sum();
        let t2 = Instant::now();
        let desired_size: usize = d.iter().map(|r| touch(&r.object)).sum();
        let t3 = Instant::now();
        let pairs: Vec<_> = d
            .into_iter()
            .zip(l)
            .map(|(d, l)| (drift_core::DesiredObject::new(d), drift_core::LiveObject::new(l)))
            .collect();
        let t4 = Instant::now();
        let mut drifts = 0;
        for (d, l) in &pairs {
            drifts += engine.diff(d, Some(l)).drifts.len();
        }
        let t5 = Instant::now();
        for (d, l) in &pairs {
            drifts += engine.diff(d, Some(l)).drifts.len();
        }
        let t6 = Instant::now();
        // Both sides compiled (the desired index's form and the live object's).
        let compiled: Vec<_> = pairs
            .iter()
            .map(|(d, l)| {
                (
                    d.key().clone(),
                    drift_core::compiled::Compiled::of(d.object()),
                    drift_core::CompiledLive::of(l),
                )
            })
            .collect();
        let t7 = Instant::now();
        let ctx = drift_core::DiffContext::default();
        for (k, d, l) in &compiled {
            drifts += engine.diff_compiled_both(k, d, l, &ctx).drifts.len();
        }
        let t8 = Instant::now();
        for (k, d, l) in &compiled {
            drifts += engine.diff_compiled_both(k, d, l, &ctx).drifts.len();
        }
        let t9 = Instant::now();
        println!(
            "  compiling both {:?}; compiled diffs {:?}, again {:?}",
            t7 - t6,
            t8 - t7,
            t9 - t8
        );
        assert_eq!(live_size, again);
        println!(
            "one core: touch live {:?}, again {:?} ({live_size}); touch desired {:?} ({desired_size}); prepare both {:?}; diffs {:?}, again {:?} ({} drifts)",
            t1 - t,
            t2 - t1,
            t3 - t2,
            t4 - t3,
            t5 - t4,
            t6 - t5,
            drifts / 4
        );
    }
}
