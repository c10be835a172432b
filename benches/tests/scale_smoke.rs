//! The moonshot bench (`--bin scale`) end to end at a small size, so it keeps working: the sandbox
//! process, the real `drift-detector watch`, edits, and every edit reported.
#![allow(clippy::print_stderr)] // says what it skips

use std::path::PathBuf;
use std::process::Command;

/// The workspace's `drift-detector` binary of the same profile as this test (built by
/// `cargo test --workspace`), if there is one.
fn detector() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/scale_smoke-<hash> -> target/<profile>/drift-detector
    let p = exe.parent()?.parent()?.join("drift-detector");
    p.exists().then_some(p)
}

#[test]
fn the_scale_bench_runs_and_every_edit_is_reported() {
    let Some(detector) = detector() else {
        eprintln!("skipped: no drift-detector binary beside the test (run `cargo test --workspace`)");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_scale"))
        .args([
            "--objects",
            "300",
            "--namespaces",
            "5",
            "--edits",
            "20",
            "--rate",
            "50",
        ])
        .arg("--detector")
        .arg(&detector)
        .output()
        .expect("run scale");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    let fields: Vec<(&str, &str)> = last
        .split_whitespace()
        .filter_map(|f| f.split_once('='))
        .collect();
    let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        ["objects", "ready_s", "detector_rss_mb", "p50_ms", "p99_ms"],
        "{last}"
    );
    assert_eq!(fields[0].1, "300");
    for (k, v) in &fields[1..] {
        let x: f64 = v.parse().unwrap_or(f64::NAN);
        assert!(x.is_finite() && x >= 0.0, "{k}={v} in {last}");
    }
    assert!(
        stderr.contains("20 edits answered, 20 reported, 0 not reported"),
        "{stderr}"
    );
}
