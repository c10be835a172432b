//! Writes the benchmark's Deployment pairs as JSON files, for the side-by-side comparison with other
//! tools (`benches/compare.py`). Usage: `cargo run --release -p drift-benches --example dump_pairs -- DIR`.

use drift_benches::{frontend_desired, frontend_pair_one_drift, with_server_state};

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let d = frontend_desired();
    std::fs::write(dir.join("no_drift.desired.json"), d.to_string())?;
    std::fs::write(dir.join("no_drift.live.json"), with_server_state(&d).to_string())?;
    let (d1, l1) = frontend_pair_one_drift();
    std::fs::write(dir.join("one_drift.desired.json"), d1.to_string())?;
    std::fs::write(dir.join("one_drift.live.json"), l1.to_string())?;
    Ok(())
}
