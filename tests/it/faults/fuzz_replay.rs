//! Stable fallback for the cargo-fuzz targets: replays every corpus file in fuzz/corpus/<target>/ and a
//! bounded number of seeded random mutations of them through the same harness functions
//! (fuzz/harness.rs), so `cargo test` exercises the fuzz properties without a nightly toolchain.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "../../../fuzz/harness.rs"]
mod harness;

/// Mutations per corpus file (overridable with D1VAULT_FUZZ_MUTATIONS for longer local runs).
fn mutations() -> usize {
    std::env::var("D1VAULT_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// One random edit: flip, insert, delete, duplicate a slice, or splice in a SQL/JSON/TOML token.
fn mutate(rng: &mut StdRng, data: &mut Vec<u8>) {
    const TOKENS: [&[u8]; 14] = [
        b"'",
        b"\"",
        b";",
        b"--",
        b"/*",
        b"*/",
        b"\n",
        b"BEGIN",
        b"END;",
        b"[[database]]",
        b"{",
        b"}",
        b"\xc3",
        b"\\u0000",
    ];
    let len = data.len();
    match rng.random_range(0..5) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            data[i] ^= 1 << rng.random_range(0..8);
        }
        1 => {
            let i = rng.random_range(0..=len);
            data.insert(i, rng.random());
        }
        2 if len > 0 => {
            let i = rng.random_range(0..len);
            let end = (i + rng.random_range(1..16)).min(len);
            data.drain(i..end);
        }
        3 if len > 0 => {
            let i = rng.random_range(0..len);
            let end = (i + rng.random_range(1..64)).min(len);
            let slice = data[i..end].to_vec();
            let at = rng.random_range(0..=data.len());
            data.splice(at..at, slice);
        }
        _ => {
            let token = TOKENS[rng.random_range(0..TOKENS.len())];
            let at = rng.random_range(0..=len);
            data.splice(at..at, token.iter().copied());
        }
    }
}

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no corpus", dir.display());
    let mut rng = StdRng::seed_from_u64(0xd1_7a_u64);
    for file in files {
        let seed = std::fs::read(&file).unwrap();
        run(&seed);
        let mut data = seed.clone();
        for i in 0..mutations() {
            if i % 20 == 0 {
                data = seed.clone();
            }
            mutate(&mut rng, &mut data);
            let input = data.clone();
            if std::panic::catch_unwind(|| run(&input)).is_err() {
                let out = std::env::temp_dir().join(format!("d1vault-fuzz-crash-{target}"));
                std::fs::write(&out, &input).unwrap();
                panic!(
                    "{target}: a mutation of {} fails the harness; input saved to {}",
                    file.display(),
                    out.display()
                );
            }
        }
    }
}

/// Proves the SQL statement splitter's properties (no panic, chunking-invariant) over corpus + mutations.
#[test]
fn fuzz_replay_sql_splitter() {
    replay("sql_splitter", harness::sql_splitter);
}

/// Proves the dump inspector's properties (no panic, chunking-invariant, truncation refused).
#[test]
fn fuzz_replay_dump_inspector() {
    replay("dump_inspector", harness::dump_inspector);
}

/// Proves the manifest parser never panics and round-trips what it accepts.
#[test]
fn fuzz_replay_manifest() {
    replay("manifest", harness::manifest);
}

/// Proves the config loader never panics and never echoes a secret in its errors.
#[test]
fn fuzz_replay_config() {
    replay("config", harness::config);
}
