#![no_main]
//! Fuzz target: see `drift_core::fuzzing::quantity`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| drift_core::fuzzing::quantity(data));
