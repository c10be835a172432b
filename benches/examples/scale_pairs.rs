//! Writes N desired/live Deployment pairs (live = desired plus server defaults, status and
//! managedFields; every 10th pair drifted) as two JSON `List` files, for timing `drift-detector diff`
//! at scale against the Python walk in `scale_walk.py`. Usage:
//! `cargo run --release -p drift-benches --example scale_pairs -- N DIR`.

use drift_benches::{frontend_desired, with_server_state};
use serde_json::{Value, json};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5_000);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let mut desired = Vec::with_capacity(n);
    let mut live = Vec::with_capacity(n);
    for i in 0..n {
        let mut d = frontend_desired();
        d["metadata"]["name"] = json!(format!("app-{i}"));
        d["metadata"]["namespace"] = json!(format!("team-{}", i % 100));
        let mut l = with_server_state(&d);
        if i % 10 == 0 {
            l["spec"]["replicas"] = json!(7);
        }
        desired.push(d);
        live.push(l);
    }
    let list = |items: Vec<Value>| json!({"apiVersion": "v1", "kind": "List", "items": items});
    std::fs::write(dir.join("desired.json"), list(desired).to_string())?;
    std::fs::write(dir.join("live.json"), list(live).to_string())?;
    Ok(())
}
