//! Replays the checked-in `where_clause` fuzz corpus (`fuzz/corpus/where_clause/`) through the target
//! body on stable Rust.

#[test]
fn where_clause_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/where_clause");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in &entries {
        let data = std::fs::read(path).expect("corpus file");
        let ok = std::panic::catch_unwind(|| drift_confighub::fuzzing::where_clause(&data)).is_ok();
        assert!(ok, "the where_clause target failed on {}", path.display());
    }
    assert!(
        entries.len() > 100,
        "the corpus has only {} inputs",
        entries.len()
    );
}
