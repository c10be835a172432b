//! Shared helpers for drift-core's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository's `testdata/` folder: external acceptance data copied in with its provenance and
/// licence (`testdata/PROVENANCE.md`), so a fresh clone needs nothing beside it.
pub fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// Parses a YAML file from `testdata/`.
pub fn testdata_yaml(rel: &str) -> serde_json::Value {
    let path = testdata_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The report of the walk the detector makes: over the desired object's compiled form (to check it
/// against the `Value` walk's).
pub fn diff_compiled(
    engine: &drift_core::DiffEngine,
    desired: &drift_core::DesiredObject,
    live: &drift_core::LiveObject,
) -> drift_core::DriftReport {
    engine.diff_compiled(
        desired.key(),
        &drift_core::compiled::Compiled::of(desired.object()),
        Some(live),
        &drift_core::DiffContext::default(),
    )
}

/// The report against the live object's compiled form ([`drift_core::CompiledLive`], as the
/// detector holds a compacted one), to check it against the `Value` walk's; and whether that walk
/// read field ownership.
pub fn diff_compiled_live(
    engine: &drift_core::DiffEngine,
    desired: &drift_core::DesiredObject,
    live: &drift_core::LiveObject,
) -> (drift_core::DriftReport, bool) {
    let compiled = drift_core::CompiledLive::of(live);
    let ctx = drift_core::DiffContext::default();
    let report = engine.diff_with_compiled_live(desired, &compiled, &ctx);
    // The live object read flat from its text (`diff`'s lean path): the same report and ownership
    // reading, against either form of the desired object.
    let flat = drift_core::FlatLive::of(live, |flat| {
        let compiled_desired = drift_core::compiled::Compiled::of(desired.object());
        (
            engine.diff_with_flat_live(desired, flat, &ctx),
            engine.diff_compiled_flat_live(desired.key(), &compiled_desired, flat, &ctx),
            flat.ownership_read(),
        )
    });
    if let Some((with_value, with_compiled, ownership_read)) = flat {
        assert_eq!(with_value, report, "the flat live form compares differently");
        assert_eq!(
            with_compiled, report,
            "the flat live form compares differently (compiled desired)"
        );
        assert_eq!(ownership_read, compiled.ownership_read());
    }
    (report, compiled.ownership_read())
}
