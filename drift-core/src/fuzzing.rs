//! Bodies of the cargo-fuzz targets in `fuzz/`, shared with the test that replays the checked-in
//! corpus on stable Rust (`tests/fuzz_corpus.rs`). Each must return on any input: no panic, no
//! unbounded recursion, no unbounded allocation.

use crate::compiled::Compiled;
use crate::drift::DriftReport;
use crate::{DesiredObject, DiffContext, DiffEngine, LiveObject, Quantity, parse_documents, revert_patch};

/// Diffs with the desired object as a value and in compiled form (the detector's), and the live
/// object as a value and read flat (`diff`'s); the walks must agree.
fn diff_both(engine: &DiffEngine, d: &DesiredObject, l: &LiveObject) -> DriftReport {
    let report = engine.diff(d, Some(l));
    let compiled = engine.diff_compiled(
        d.key(),
        &Compiled::of(d.object()),
        Some(l),
        &DiffContext::default(),
    );
    assert_eq!(report, compiled, "the compiled form compares differently");
    let flat = crate::FlatLive::of(l, |f| engine.diff_with_flat_live(d, f, &DiffContext::default()));
    if let Some(flat) = flat {
        assert_eq!(report, flat, "the flat live form compares differently");
    }
    report
}

/// Parses bytes as YAML/JSON documents; every object diffs empty against itself.
pub fn parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let loaded = parse_documents("fuzz", &text);
    for e in &loaded.errors {
        let _ = e.to_string();
    }
    let engine = DiffEngine::default();
    for r in loaded.resources {
        let d = DesiredObject::new(r.clone());
        let l = LiveObject::new(r);
        let report = diff_both(&engine, &d, &l);
        assert!(
            report.drifts.is_empty(),
            "an object drifted from itself: {:?}",
            report.drifts
        );
    }
}

/// Diffs two documents (separated by the first NUL byte) as desired and live, whatever their kinds,
/// then builds and applies the revert patch.
pub fn diff_pair(data: &[u8]) {
    let (a, b) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let desired = parse_documents("desired", &String::from_utf8_lossy(a));
    let live = parse_documents("live", &String::from_utf8_lossy(b));
    let engine = DiffEngine::default();
    for d in desired.resources.iter().take(4) {
        for l in live.resources.iter().take(4) {
            let mut l = l.clone();
            // Compare whatever came in as the same object.
            l.key = d.key.clone();
            let dobj = DesiredObject::new(d.clone());
            let lobj = LiveObject::new(l);
            let report = diff_both(&engine, &dobj, &lobj);
            for drift in &report.drifts {
                let _ = drift.describe();
            }
            if let Ok(patch) = revert_patch(&dobj, &lobj, &report.drifts) {
                let _ = crate::patch::apply_patch(lobj.object(), &patch);
            }
        }
    }
}

/// Parses a quantity; a parsed quantity prints a canonical form that parses back to the same value.
pub fn quantity(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(q) = s.parse::<Quantity>() {
        let back: Quantity = q.to_string().parse().expect("canonical form parses");
        assert_eq!(back, q, "{s}");
    }
}
