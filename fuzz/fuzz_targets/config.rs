//! cargo-fuzz target: see `harness::config` for the properties checked.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The loader contains a known toml_edit panic with catch_unwind and reports it as a syntax error.
    // libfuzzer-sys's panic hook aborts even on caught panics, so restore a silent hook here: a panic
    // that escapes the loader still fails the run (libfuzzer-sys aborts when the closure unwinds).
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    harness::config(data)
});
