//! cargo-fuzz target: see `harness::manifest` for the properties checked.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::manifest(data));
