//! Fault and abuse suite (issue 7): d1vault's promises under bad configuration, crashes, storage outages,
//! Cloudflare faults and hostile storage contents, checked through the real binary, the in-process S3
//! server (s3s), the d1-emulator over HTTP and a real TCP proxy that throttles, holds or cuts connections.
//! Every binary run also asserts that no secret reached its output (see `crate::support::run`).

mod bad_config;
mod cloudflare;
mod crash;
mod fuzz_replay;
mod outage;
mod retention;
mod transfers;
