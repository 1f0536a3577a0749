//! Fault and abuse suite (issue 7): d1vault's promises under bad configuration, crashes, storage outages,
//! Cloudflare faults and hostile storage contents, checked through the real binary, the in-process S3
//! server (s3s), the d1-emulator over HTTP and a real TCP proxy that throttles, holds or cuts connections.
//! Every binary run also asserts that no secret reached its output (see `common::Run`).

#[path = "support/mod.rs"]
mod support;

#[path = "faults/bad_config.rs"]
mod bad_config;
#[path = "faults/cloudflare.rs"]
mod cloudflare;
#[path = "faults/common.rs"]
mod common;
#[path = "faults/crash.rs"]
mod crash;
#[path = "faults/fuzz_replay.rs"]
mod fuzz_replay;
#[path = "faults/outage.rs"]
mod outage;
#[path = "faults/retention.rs"]
mod retention;
#[path = "faults/transfers.rs"]
mod transfers;
