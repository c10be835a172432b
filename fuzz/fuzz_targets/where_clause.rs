#![no_main]
//! Fuzz target: see `drift_confighub::fuzzing::where_clause`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| drift_confighub::fuzzing::where_clause(data));
