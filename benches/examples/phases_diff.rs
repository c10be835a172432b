//! Times the phases of `drift-detector diff` on the files `scale_pairs` writes (single thread):
//! loading (read and identity scan), parsing each object, preparing, comparing.
//! Run: `cargo run --release -p drift-benches --example phases_diff -- DIR`
#![allow(clippy::print_stdout)] // prints its own timing

use std::time::Instant;

use drift_core::deferred::Deferred;
use drift_core::{DesiredObject, DiffEngine, LiveObject};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let dir = std::path::Path::new(&dir);
    let t = Instant::now();
    let mut desired = Deferred::default();
    desired.add_path(&dir.join("desired.json"));
    let mut live = Deferred::default();
    live.add_path(&dir.join("live.json"));
    println!(
        "load+scan     {:?} ({} + {} objects)",
        t.elapsed(),
        desired.len(),
        live.len()
    );
    let engine = DiffEngine::default();
    let mut spent = [std::time::Duration::ZERO; 6];
    let mut drifts = 0;
    for i in 0..desired.len().min(live.len()) {
        let t = Instant::now();
        let d = desired.comparable(i).expect("desired");
        let t1 = Instant::now();
        let l = live.comparable(i).expect("live");
        let t2 = Instant::now();
        let d = DesiredObject::new(d);
        let t2b = Instant::now();
        let l = LiveObject::new(l);
        let t3 = Instant::now();
        drifts += engine.diff(&d, Some(&l)).drifts.len();
        let t4 = Instant::now();
        drop((d, l));
        let t5 = Instant::now();
        for (s, (a, b)) in spent
            .iter_mut()
            .zip([(t, t1), (t1, t2), (t2, t2b), (t2b, t3), (t3, t4), (t4, t5)])
        {
            *s += b - a;
        }
    }
    let names = [
        "parse desired",
        "parse live",
        "prepare desired",
        "prepare live",
        "diff",
        "drop",
    ];
    for (name, s) in names.iter().zip(spent) {
        println!("{name:15} {s:?}");
    }
    println!("{drifts} drifts");
}
