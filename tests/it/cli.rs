//! The command line as a person meets it, through the binary: where the configuration file is found
//! without `--config` (the XDG user path between `./d1vault.toml` and `/etc`), and a mistyped database
//! name answered with the name meant.

use std::path::Path;

/// Runs `d1vault ARGS` in `dir` with `HOME` = `home`, no `D1VAULT_CONFIG` and `XDG_CONFIG_HOME` as given.
fn d1vault(dir: &Path, home: &Path, xdg: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut cmd = assert_cmd::Command::cargo_bin("d1vault").expect("the d1vault binary is built");
    cmd.current_dir(dir)
        .args(args)
        .env_remove("D1VAULT_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home);
    if let Some(xdg) = xdg {
        cmd.env("XDG_CONFIG_HOME", xdg);
    }
    cmd.output().expect("d1vault ran")
}

/// A valid configuration with one SQLite database named `blog`, at `path`.
fn write_config(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let dir = path.parent().unwrap();
    std::fs::create_dir_all(dir.join("store")).unwrap();
    crate::support::fixture::create_fixture_db(&dir.join("blog.sqlite"));
    std::fs::write(
        path,
        "[storage]\ntype = \"filesystem\"\npath = \"store\"\n[[database]]\nname = \"blog\"\n\
         sqlite_path = \"blog.sqlite\"\n",
    )
    .unwrap();
}

#[test]
fn without_config_the_user_config_is_found_after_the_working_directory() {
    // Proves the search order ./d1vault.toml, then $XDG_CONFIG_HOME/d1vault/d1vault.toml (default
    // ~/.config/d1vault/d1vault.toml): each is named as the file in use.
    let scratch = tempfile::tempdir().unwrap();
    let (work, home) = (scratch.path().join("work"), scratch.path().join("home"));
    std::fs::create_dir_all(&work).unwrap();
    let default_user = home.join(".config/d1vault/d1vault.toml");
    write_config(&default_user);
    let found = |xdg: Option<&Path>| {
        let output = d1vault(&work, &home, xdg, &["check-config"]);
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        out.lines().next().unwrap_or_default().to_string()
    };
    assert!(
        found(None).contains(&format!("{} (ok)", default_user.display())),
        "{}",
        found(None)
    );

    let xdg = scratch.path().join("xdg");
    let xdg_user = xdg.join("d1vault/d1vault.toml");
    write_config(&xdg_user);
    assert!(found(Some(&xdg)).contains(&format!("{} (ok)", xdg_user.display())));

    let local = work.join("d1vault.toml");
    write_config(&local);
    assert!(found(Some(&xdg)).contains(&format!("{} (ok)", local.display())));
}

#[test]
fn a_mistyped_database_name_is_answered_with_the_one_meant() {
    // Proves every command that takes configured names says which name was probably meant.
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("d1vault.toml");
    write_config(&config);
    let config = config.to_string_lossy().into_owned();
    // One backup, so that storage knows blog too (restore and verify look there).
    let made = d1vault(
        scratch.path(),
        scratch.path(),
        None,
        &["--config", &config, "backup"],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for args in [
        vec!["backup", "bolg"],
        vec!["prune", "bolg", "--dry-run"],
        vec!["restore", "bolg", "--to-sqlite", "x.sqlite"],
        vec!["migrations", "list", "bolg"],
        vec!["verify", "bolg"],
    ] {
        let mut full = vec!["--config", config.as_str()];
        full.extend(args.iter().copied());
        let output = d1vault(scratch.path(), scratch.path(), None, &full);
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        // A name that is not configured is a usage error (2), except for the commands that read any
        // database's backups in storage (a gone database's too), where finding none is a failure (1).
        let expected = if matches!(args[0], "restore" | "verify") {
            1
        } else {
            2
        };
        assert_eq!(output.status.code(), Some(expected), "{args:?}: {err}");
        assert!(err.contains("(did you mean \"blog\"?)"), "{args:?}: {err}");
    }
}
