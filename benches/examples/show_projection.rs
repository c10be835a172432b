//! Prints the frontend Deployment as the detector caches it (drift-kube's projection, compact text),
//! with the size of each part: what the live cache holds per object.
//! Run: `cargo run --release -p drift-benches --example show_projection`
#![allow(clippy::print_stdout)]

fn main() {
    let live = drift_benches::with_server_state(&drift_benches::frontend_desired());
    let mut p = live.clone();
    drift_kube::Projection::default().apply(&mut p);
    let text = p.to_string();
    println!("{} bytes", text.len());
    let size = |v: &serde_json::Value| v.to_string().len();
    for (k, v) in p.as_object().into_iter().flatten() {
        println!("  {k}: {}", size(v));
        if k == "metadata" {
            for (mk, mv) in v.as_object().into_iter().flatten() {
                println!("    {mk}: {}", size(mv));
            }
        }
    }
    println!("{text}");
}
