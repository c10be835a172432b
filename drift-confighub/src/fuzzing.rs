//! Fuzz target bodies (the `where_clause` target in `fuzz/`), replayed on stable by
//! `tests/fuzz_corpus.rs`. Not part of the public API.

/// Parses bytes as a where-clause: never panics; a clause that parses prints as one that parses to
/// the same tree.
pub fn where_clause(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = crate::where_clause::WhereClause::parse(text) {
        let printed = c.to_string();
        let again = crate::where_clause::WhereClause::parse(&printed);
        assert_eq!(again.as_ref().ok(), Some(&c), "{text:?} printed as {printed:?}");
    }
}
