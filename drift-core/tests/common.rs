//! Shared helpers for drift-core's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The read-only `shared/` folder next to the repository (`../shared` from the workspace root).
/// Tests that need it fail with a clear message when it is missing: CI must have it.
pub fn shared_dir() -> PathBuf {
    if let Ok(d) = std::env::var("DRIFT_SHARED_DIR") {
        return PathBuf::from(d);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidate = root.join("../shared");
    assert!(
        candidate.join("cases").is_dir(),
        "the shared acceptance data is missing: expected {} (set DRIFT_SHARED_DIR to its location)",
        candidate.display()
    );
    candidate
}

/// Parses a YAML file from `shared/`.
pub fn shared_yaml(rel: &str) -> serde_json::Value {
    let path = shared_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}
