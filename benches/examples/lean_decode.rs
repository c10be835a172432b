//! One core: every live object of a `scale_pairs` directory read lean, as a `Value`
//! (`Deferred::lean`, then dropped), decoded straight into the compiled form
//! (`Deferred::lean_compiled`) and read flat (`Deferred::lean_flat`, with its identity and
//! redaction checks), alternately, three rounds; first, serde_json's pass over the whole file that
//! builds nothing (the floor under all). `ONLY_COMPILED=1` skips the `Value` reads (to profile the
//! others alone).
//! Run: `cargo run --release -p drift-benches --example lean_decode -- /tmp/scale20000`
#![allow(clippy::print_stdout)] // prints its own timing

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/scale20000".to_string());
    let mut live = drift_core::deferred::Deferred::default_compact();
    live.add_path(std::path::Path::new(&dir).join("live.json").as_path());
    let n = live.len();
    let text = std::fs::read_to_string(std::path::Path::new(&dir).join("live.json")).expect("live.json");
    for _ in 0..2 {
        let t = Instant::now();
        let _: &serde_json::value::RawValue = serde_json::from_str(&text).expect("json");
        println!(
            "serde_json reading the whole file, building nothing: {:?}",
            t.elapsed()
        );
    }
    for _ in 0..3 {
        let t = Instant::now();
        let mut nodes = 0usize;
        let only_compiled = std::env::var_os("ONLY_COMPILED").is_some();
        for i in (0..n).filter(|_| !only_compiled) {
            if let Ok(r) = live.lean(i) {
                nodes += r.object.as_object().map_or(0, serde_json::Map::len);
            }
        }
        let t1 = Instant::now();
        let mut bytes = 0usize;
        for i in 0..n {
            if let Some(c) = live.lean_compiled(i) {
                bytes += c.compiled().len();
            }
        }
        let t2 = Instant::now();
        let mut flat = 0usize;
        for i in 0..n {
            flat += live.lean_flat(i, |f| f.key().name.len()).unwrap_or(0);
        }
        let t3 = Instant::now();
        println!(
            "{n} objects: lean Value {:?} ({nodes} root fields), lean compiled {:?} ({bytes} bytes), lean flat {:?} ({flat})",
            t1 - t,
            t2 - t1,
            t3 - t2
        );
    }
}
