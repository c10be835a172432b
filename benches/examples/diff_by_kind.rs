//! Times the comparisons of the `scan` group's objects by kind, one core, each object compared once
//! per round in the fixture's order (as a scan reads them): what one comparison costs when its
//! objects are not in the core's cache, against the `deployment_pair` bench's same pair compared
//! again and again.
//! Run: `cargo run --release -p drift-benches --example diff_by_kind` (`N=` objects, default 10,000).
#![allow(clippy::print_stdout)] // prints its own timing

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use drift_core::compiled::Compiled;
use drift_core::{DesiredObject, DiffContext, DiffEngine, LiveObject};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n = std::env::var("N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let (desired, live) = drift_benches::scan_fixture(n);
    let engine = DiffEngine::default();
    let ctx = DiffContext::default();
    // As the detector holds them: desired compiled, live prepared.
    let pairs: Vec<_> = desired
        .into_iter()
        .zip(live)
        .map(|(d, l)| {
            let d = DesiredObject::new(d);
            (d.key().clone(), Compiled::of(d.object()), LiveObject::new(l))
        })
        .collect();
    for round in 1..=3 {
        let mut by_kind: BTreeMap<&str, (u32, Duration)> = BTreeMap::new();
        for (key, desired, live) in &pairs {
            let t = Instant::now();
            let report = engine.diff_compiled(key, desired, Some(live), &ctx);
            let spent = t.elapsed();
            std::hint::black_box(report);
            let k = by_kind.entry(key.kind.as_str()).or_default();
            k.0 += 1;
            k.1 += spent;
        }
        let line: Vec<String> = by_kind
            .iter()
            .map(|(kind, (count, spent))| format!("{kind} {:?} each ({count})", *spent / *count))
            .collect();
        println!("round {round}: {}", line.join(", "));
    }
}
