//! `[encryption]` through the real binary, checked against the `age` CLI (the reference implementation,
//! Debian package `age`): what d1vault stores holds no plaintext and decrypts with `age -d` to the SQL its
//! manifest describes; what `age -r` encrypted, d1vault restores; verify and restore work with the identity
//! and refuse without it or with another; rotated keys leave old backups readable with their own identity;
//! the safety backup of an in-place D1 restore is encrypted too; no identity appears in any output.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::bed::Bed;
use crate::support::fixture::{assert_same_contents, create_fixture_db};
use crate::support::run::{list_json, run, stderr, stdout};

/// The `age` and `age-keygen` programs: `D1VAULT_AGE` (set by scripts/test-all), else `age` on PATH;
/// `None` (the test is skipped, saying so) when neither is there.
fn age_cli(test: &str) -> Option<(PathBuf, PathBuf)> {
    let age = std::env::var_os("D1VAULT_AGE")
        .map(PathBuf::from)
        .or_else(|| {
            let found = Command::new("sh")
                .args(["-c", "command -v age"])
                .output()
                .ok()?;
            found
                .status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&found.stdout).trim()))
        });
    let Some(age) = age else {
        eprintln!("skipping {test}: the age CLI is not installed (apt-get install age)");
        return None;
    };
    let keygen = age.with_file_name("age-keygen");
    Some((age, keygen))
}

/// A new identity file at `path` from `age-keygen`; returns (its public key, its secret key line).
fn keygen(keygen: &Path, path: &Path) -> (String, String) {
    let out = Command::new(keygen).arg("-o").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(path).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let secret = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    (public, secret)
}

/// `age -d -i identity file`'s output.
fn age_decrypt(age: &Path, identity: &Path, file: &Path) -> Vec<u8> {
    let out = Command::new(age)
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "age -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The filesystem store's `[storage]` body: `store/` in the bed, prefix `p`.
fn store(env: &Bed) -> String {
    let root = env.dir.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    format!(
        "type = \"filesystem\"\npath = \"{}\"\nprefix = \"p\"\n",
        root.display()
    )
}

/// The stored file behind a listed manifest's dump.
fn stored(env: &Bed, manifest: &serde_json::Value) -> PathBuf {
    env.dir
        .path()
        .join("store")
        .join(manifest["dump"]["key"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_backups_hold_no_plaintext_open_with_the_age_cli_and_restore_only_with_the_identity()
 {
    let Some((age, age_keygen)) = age_cli("encryption round trip") else {
        return;
    };
    let env = Bed::with_emulator(&["blog"]).await;
    let local = env.dir.path().join("local.sqlite");
    create_fixture_db(&local);
    let key = env.dir.path().join("key.txt");
    let other = env.dir.path().join("other.txt");
    let (public, secret) = keygen(&age_keygen, &key);
    let (other_public, other_secret) = keygen(&age_keygen, &other);
    let secrets = vec![secret.clone(), other_secret.clone()];
    let databases = |recipient: &str| {
        format!(
            "[[database]]\nname = \"blog\"\ncompression = \"zstd\"\n\
             [[database]]\nname = \"local\"\nsqlite_path = \"{}\"\ncompression = \"none\"\n\
             [encryption]\nrecipients = [\"{recipient}\"]\n",
            local.display()
        )
    };
    let config = env.write_config("enc", &store(&env), "", &databases(&public));
    let backup = run(&config, &["backup"], &secrets).await;
    assert_eq!(backup.status.code(), Some(0), "{}", stderr(&backup));

    let listed = list_json(&config, &secrets).await;
    assert_eq!(listed.len(), 2);
    for manifest in &listed {
        assert_eq!(manifest["encryption"]["type"], "age", "{manifest}");
        assert_eq!(manifest["encryption"]["recipients"][0], public.as_str());
        let file = stored(&env, manifest);
        assert!(
            file.to_string_lossy().ends_with(".age"),
            "{}",
            file.display()
        );
        let bytes = std::fs::read(&file).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
        assert_eq!(
            bytes.len() as u64,
            manifest["dump"]["size"].as_u64().unwrap()
        );
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            manifest["dump"]["sha256"]
        );
        for plain in [&b"CREATE TABLE"[..], b"ada@example.com", b"INSERT INTO"] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain),
                "plaintext {:?} in {}",
                String::from_utf8_lossy(plain),
                file.display()
            );
        }
        // The reference CLI opens it, to the SQL the manifest describes.
        let opened = age_decrypt(&age, &key, &file);
        let sql = match manifest["dump"]["compression"].as_str().unwrap() {
            "zstd" => zstd::decode_all(&opened[..]).unwrap(),
            _ => opened,
        };
        assert_eq!(
            hex::encode(Sha256::digest(&sql)),
            manifest["dump"]["raw_sha256"]
        );
        assert!(String::from_utf8_lossy(&sql).contains("ada@example.com"));
    }

    // verify: with the identity it restores; without one it checks the stored bytes and says it could
    // not decrypt; with another identity it refuses. Exit 1 for both.
    let key_arg = key.to_str().unwrap();
    let verified = run(&config, &["verify", "--identity", key_arg], &secrets).await;
    assert_eq!(verified.status.code(), Some(0), "{}", stderr(&verified));
    let locked = run(&config, &["verify"], &secrets).await;
    assert_eq!(locked.status.code(), Some(1));
    let said = format!("{}{}", stdout(&locked), stderr(&locked));
    assert!(said.contains("size and sha256 match"), "{said}");
    assert!(said.contains("cannot be decrypted"), "{said}");
    let wrong = run(
        &config,
        &["verify", "--identity", other.to_str().unwrap()],
        &secrets,
    )
    .await;
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stdout(&wrong).contains("none of the identities"),
        "{}",
        stdout(&wrong)
    );

    // restore: refused without the identity before the target exists; done with it.
    let target = env.dir.path().join("restored.sqlite");
    let t = target.to_str().unwrap();
    let refused = run(&config, &["restore", "local", "--to-sqlite", t], &secrets).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("cannot be decrypted"),
        "{}",
        stderr(&refused)
    );
    assert!(!target.exists(), "a refused restore created its target");
    let restored = run(
        &config,
        &["restore", "local", "--to-sqlite", t, "--identity", key_arg],
        &secrets,
    )
    .await;
    assert_eq!(restored.status.code(), Some(0), "{}", stderr(&restored));
    assert_same_contents(&local, &target);

    // In place into D1 through the import: the safety backup it takes first is encrypted too.
    let in_place = run(
        &config,
        &[
            "restore",
            "blog",
            "--to-d1",
            "blog",
            "--replace",
            "--yes",
            "--via",
            "import",
            "--identity",
            key_arg,
        ],
        &secrets,
    )
    .await;
    assert_eq!(in_place.status.code(), Some(0), "{}", stderr(&in_place));
    let after = list_json(&config, &secrets).await;
    assert_eq!(
        after.len(),
        3,
        "the safety backup is listed; restore said:\n{}",
        stdout(&in_place)
    );
    assert!(
        after
            .iter()
            .all(|m| m["encryption"]["recipients"][0] == public.as_str())
    );

    // Key rotation: new backups go to the new key, old ones keep theirs; each opens with its own.
    let rotated = env.write_config("enc", &store(&env), "", &databases(&other_public));
    let again = run(&rotated, &["backup", "local"], &secrets).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let newest_id = stdout(&again)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let table = run(&rotated, &["list", "local"], &secrets).await;
    let text = stdout(&table);
    assert!(
        text.contains(&format!("encrypted (age) to {other_public}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("encrypted (age) to {public}")),
        "{text}"
    );
    for (id, identity) in [
        (newest_id.as_str(), &other),
        (listed_id(&listed, "local"), &key),
    ] {
        let out = run(
            &rotated,
            &[
                "verify",
                "local",
                "--backup",
                id,
                "--identity",
                identity.to_str().unwrap(),
            ],
            &secrets,
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{id}: {}", stdout(&out));
    }
}

/// The id of `database`'s backup in a `list --json` answer.
fn listed_id<'a>(listed: &'a [serde_json::Value], database: &str) -> &'a str {
    listed
        .iter()
        .find(|m| m["database"]["name"] == database)
        .and_then(|m| m["backup_id"].as_str())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_age_cli_encrypted_d1vault_verifies_and_restores() {
    // Proves d1vault reads age's format as the reference CLI writes it: a plain backup's dump, encrypted
    // with `age -r` and described by its manifest, verifies and restores with the identity.
    let Some((age, age_keygen)) = age_cli("reading the age CLI's files") else {
        return;
    };
    let env = Bed::start().await;
    let key = env.dir.path().join("key.txt");
    let (public, secret) = keygen(&age_keygen, &key);
    let secrets = vec![secret];
    let databases = env.sqlite_database("blog", "blog.sqlite", "gzip");
    let config = env.write_config("plain", &store(&env), "", &databases);
    let backup = run(&config, &["backup"], &secrets).await;
    assert_eq!(backup.status.code(), Some(0), "{}", stderr(&backup));
    let manifest = list_json(&config, &secrets).await.remove(0);
    let plain = stored(&env, &manifest);
    let sealed = PathBuf::from(format!("{}.age", plain.display()));
    let out = Command::new(&age)
        .arg("-r")
        .arg(&public)
        .arg("-o")
        .arg(&sealed)
        .arg(&plain)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&plain).unwrap();
    let bytes = std::fs::read(&sealed).unwrap();
    let mut rewritten = manifest.clone();
    let key_name = format!("{}.age", manifest["dump"]["key"].as_str().unwrap());
    rewritten["dump"]["key"] = key_name.into();
    rewritten["dump"]["size"] = (bytes.len() as u64).into();
    rewritten["dump"]["sha256"] = hex::encode(Sha256::digest(&bytes)).into();
    rewritten["encryption"] = serde_json::json!({ "type": "age", "recipients": [public] });
    let manifest_file = plain.with_file_name("manifest.json");
    std::fs::write(
        &manifest_file,
        serde_json::to_vec_pretty(&rewritten).unwrap(),
    )
    .unwrap();

    let key_arg = key.to_str().unwrap();
    let verified = run(&config, &["verify", "--identity", key_arg], &secrets).await;
    assert_eq!(verified.status.code(), Some(0), "{}", stdout(&verified));
    let target = env.dir.path().join("restored.sqlite");
    let restored = run(
        &config,
        &[
            "restore",
            "blog",
            "--to-sqlite",
            target.to_str().unwrap(),
            "--identity",
            key_arg,
        ],
        &secrets,
    )
    .await;
    assert_eq!(restored.status.code(), Some(0), "{}", stderr(&restored));
    assert_same_contents(&env.dir.path().join("blog.sqlite"), &target);
}
