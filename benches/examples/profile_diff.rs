//! Runs the no-drift Deployment diff in a loop, for profilers (`perf record`, `valgrind --tool=callgrind`).
//! Run: `cargo run --release -p drift-benches --example profile_diff -- 200000`
#![allow(clippy::print_stdout)] // prints its own timing

use drift_benches::{frontend_desired, with_server_state};
use drift_core::{DesiredObject, DiffEngine, LiveObject, Resource};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let bare = std::env::args().nth(2).as_deref() == Some("bare");
    let desired = frontend_desired();
    let live = with_server_state(&desired);
    let d = DesiredObject::new(Resource::from_value(desired).expect("desired"));
    let l = LiveObject::new(Resource::from_value(live).expect("live"));
    let engine = DiffEngine::default();
    let r = engine.diff(&d, Some(&l));
    println!(
        "drifts {} unmanaged {:?}",
        r.drifts.len(),
        r.unmanaged.iter().map(|u| &u.field).collect::<Vec<_>>()
    );
    let start = std::time::Instant::now();
    let mut total = 0;
    for _ in 0..n {
        if bare {
            total += usize::from(!drift_benches::bare_leaf_walk(
                std::hint::black_box(d.object()),
                std::hint::black_box(l.object()),
            ));
        } else {
            total += std::hint::black_box(engine.diff(&d, Some(&l))).drifts.len();
        }
    }
    println!(
        "{n} diffs in {:?} ({:.2} µs each), {total} drifts",
        start.elapsed(),
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
