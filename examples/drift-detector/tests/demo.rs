//! `drift-detector demo` as a user runs it: every step of the walkthrough is asserted, not just the
//! exit code.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_demo_walkthrough_verifies_every_step() {
    let out = Command::new(env!("CARGO_BIN_EXE_drift-detector"))
        .args(["demo", "--output", "json"])
        .env_remove("CLAUDE_API_KEY")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let w: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    let steps = w["steps"].as_array().expect("steps");
    let titles: Vec<&str> = steps
        .iter()
        .map(|s| s["title"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        titles,
        [
            "Initialize ConfigHub resources",
            "Discover critical services through a filter, release them, start watching",
            "Detect drift made behind ConfigHub's back",
            "Analysis: risk and cost impact",
            "Fix through ConfigHub: a guarded patch of the drifted field, the audit line in ConfigHub",
            "Change the desired state the ConfigHub way: unreleased until a Release carries it",
        ]
    );
    let failed: Vec<&Value> = steps
        .iter()
        .flat_map(|s| s["checks"].as_array().into_iter().flatten())
        .filter(|c| c["ok"] != true)
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    let check = |step: usize, what: &str| {
        steps[step]["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["what"].as_str().is_some_and(|w| w.contains(what)) && c["ok"] == true)
    };
    assert!(check(0, "five spaces exist"));
    assert!(check(1, "backend-api, frontend-web and database-postgres"));
    assert!(check(1, "everything is in sync"));
    assert!(check(2, "backend-api spec.replicas expected=3, actual=5"));
    assert!(check(2, "frontend-web spec.replicas expected=2, actual=1"));
    assert!(check(3, "high availability risk"));
    assert!(check(3, "cost model"));
    assert!(check(4, "both drifts corrected"));
    assert!(check(4, "corrected-drifts"));
    assert!(check(4, "audit line"));
    assert!(check(1, "the release of prod reached the cluster"));
    assert!(check(5, "unreleased changes, not as drift"));
    assert!(check(5, "released, it is the desired state"));
    // People read the details: no Rust debug formatting (`Some(3)`, `(..)`) in them.
    for c in steps
        .iter()
        .flat_map(|s| s["checks"].as_array().into_iter().flatten())
    {
        let d = c["detail"].as_str().unwrap_or_default();
        assert!(
            !d.contains("Some(") && !d.contains("None"),
            "debug formatting in {d:?}"
        );
    }
    let lines: Vec<&str> = steps[3]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("monthly cost impact: +$")),
        "{lines:?}"
    );
    assert_eq!(w["passed"], true);
    assert!(out.status.success());
}

#[test]
fn the_text_walkthrough_says_what_it_runs_against() {
    let out = Command::new(env!("CARGO_BIN_EXE_drift-detector"))
        .arg("demo")
        .env_remove("CLAUDE_API_KEY")
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("in-process sandbox Kubernetes API server and an in-process ConfigHub simulator"),
        "{text}"
    );
    for n in 1..=6 {
        assert!(text.contains(&format!("[{n}/6]")), "{text}");
    }
    assert!(!text.contains("Some("), "no Rust debug formatting: {text}");
    assert!(text.contains("checks passed"), "{text}");
    assert_eq!(out.status.code(), Some(0));
}
