//! Replays the checked-in cargo-fuzz corpus (`fuzz/corpus/<target>/`) through the same target bodies
//! the fuzzer runs, on stable Rust in the normal test run: every input that ever found new coverage
//! (and every crash we fixed) keeps being checked.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let data = std::fs::read(&path).expect("corpus file");
        let result = std::panic::catch_unwind(|| f(&data));
        assert!(
            result.is_ok(),
            "fuzz target {target} failed on {}",
            path.display()
        );
        n += 1;
    }
    assert!(n > 10, "corpus {target} has only {n} inputs");
}

#[test]
fn parse_corpus() {
    replay("parse", drift_core::fuzzing::parse);
}

#[test]
fn diff_corpus() {
    replay("diff", drift_core::fuzzing::diff_pair);
}

#[test]
fn quantity_corpus() {
    replay("quantity", drift_core::fuzzing::quantity);
}

/// The inputs the fuzzer found crashing, kept as regressions.
#[test]
fn fixed_crashes() {
    // A canonical form longer than 36 digits did not parse back.
    drift_core::fuzzing::quantity(b"77777770000000000000000.0516309216681E5");
    // A non-object element in a keyed list made an object drift from itself.
    drift_core::fuzzing::parse(
        b"apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\nspec:\n  ports:\n  - p[\n",
    );
}
