//! cargo-fuzz target: see `harness::sql_splitter` for the properties checked.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::sql_splitter(data));
