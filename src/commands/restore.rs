//! `d1vault restore DB [--backup ID] (--to-d1 NAME_OR_ID | --to-sqlite PATH) [--replace] [--yes]
//! [--no-safety-backup]`: restore a backup (default: the newest). The backup is downloaded and its size and
//! sha256 are checked before any of it runs or anything on the target changes.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use super::{Failure, open_sources};
use crate::cli::RestoreArgs;
use crate::config::{Config, DatabaseConfig, Source};
use crate::pipeline::run_backup_now;
use crate::repository::manifest::Manifest;
use crate::restore::scratch::{self, ScratchFile};
use crate::restore::sqlite::TargetPath;
use crate::restore::{self, Progress, RestoreError, d1, sqlite};
use crate::sources::BackupSources;

/// Runs the restore described by `args`.
pub async fn run(config: &Config, args: &RestoreArgs) -> Result<(), Failure> {
    let sources = open_sources(config).await?;
    let manifest = restore::select_backup(
        sources.storage.as_ref(),
        &sources.prefix,
        &args.database,
        args.backup.as_deref(),
    )
    .await
    .map_err(failed)?;
    if let Some(path) = &args.to_sqlite {
        to_sqlite(&sources, &manifest, path, args).await
    } else if let Some(target) = &args.to_d1 {
        to_d1(config, &sources, &manifest, target, args).await
    } else {
        Err(Failure::usage(
            "name a target: --to-d1 NAME_OR_ID or --to-sqlite PATH",
        ))
    }
}

fn failed(e: RestoreError) -> Failure {
    Failure::failed(e.to_string())
}

async fn to_sqlite(
    sources: &BackupSources,
    manifest: &Manifest,
    path: &Path,
    args: &RestoreArgs,
) -> Result<(), Failure> {
    let target = sqlite::check_target(path, args.replace).map_err(failed)?;
    if target == TargetPath::ReplaceRegularFile {
        confirm(args, &format!("replace the SQLite file {}", path.display()))?;
    }
    // The temporary file and the spooled dump go next to the target: the rename is then atomic, and the
    // space needed is where the user chose to put the database.
    let dir = sqlite::parent_dir(path);
    let prefix = sqlite::temporary_prefix(path);
    scratch::sweep(dir, &prefix);
    let mut progress = Progress::new(
        format!("restoring {}", manifest.backup_id),
        manifest.dump.raw_size,
    );
    let dump = restore::download_and_prove(sources.storage.as_ref(), manifest, dir, &mut progress)
        .await
        .map_err(failed)?;
    // Mode 0666 less the umask, as SQLite would create it; a replaced file's mode is kept below.
    let temp = ScratchFile::create(dir, &prefix, "", 0o666).map_err(|e| {
        Failure::failed(format!(
            "creating a temporary file in {}: {e}; nothing was changed",
            dir.display()
        ))
    })?;
    let report = sqlite::load_proven(dump, manifest, temp.path(), &mut progress)
        .await
        .map_err(failed)?;
    if report.integrity != ["ok"] {
        return Err(Failure::failed(format!(
            "the restored database fails integrity_check: {}; nothing was changed",
            report.integrity.join("; ")
        )));
    }
    // What is at the path now must still be what was checked before the restore.
    match sqlite::check_target(path, args.replace) {
        Ok(now) if now == target => {}
        Ok(_) => {
            return Err(Failure::failed(format!(
                "{} appeared while the restore ran; nothing was replaced: run the restore again",
                path.display()
            )));
        }
        Err(e) => return Err(failed(e)),
    }
    let install = keep_mode_of(path, target, temp.path())
        .and_then(|()| temp.file().sync_all())
        .and_then(|()| std::fs::rename(temp.path(), path));
    if install.is_ok() {
        temp.keep(); // the name is the restored database's now
    }
    let install = install.and_then(|()| sync_parent(path));
    if let Err(e) = install {
        return Err(Failure::failed(format!(
            "moving the restored database into place at {}: {e}",
            path.display()
        )));
    }
    let rows: u64 = report.row_counts.iter().filter_map(|(_, n)| *n).sum();
    println!(
        "restored {} backup {} into {}: {} tables, {rows} rows, integrity ok",
        manifest.database.name,
        manifest.backup_id,
        path.display(),
        report.row_counts.len()
    );
    Ok(())
}

/// Gives the restored file `temp` the mode of the regular file it replaces, so that a database readable
/// only by its owner does not become readable by all.
fn keep_mode_of(path: &Path, target: TargetPath, temp: &Path) -> std::io::Result<()> {
    if target == TargetPath::ReplaceRegularFile {
        let permissions = std::fs::symlink_metadata(path)?.permissions();
        std::fs::set_permissions(temp, permissions)?;
    }
    Ok(())
}

async fn to_d1(
    config: &Config,
    sources: &BackupSources,
    manifest: &Manifest,
    target: &str,
    args: &RestoreArgs,
) -> Result<(), Failure> {
    let client = sources.cloudflare.as_ref().ok_or_else(|| {
        Failure::usage(format!(
            "--to-d1 needs a [cloudflare] section in {}",
            config.path.display()
        ))
    })?;
    let target_db = client.get_database(target).await.map_err(|e| {
        Failure::failed(format!(
            "the target D1 database {target:?} was not found ({e}); d1vault never creates one implicitly: \
             create it first (wrangler d1 create {target})"
        ))
    })?;
    let objects = d1::user_objects(client, &target_db.uuid)
        .await
        .map_err(failed)?;
    // Views and triggers count: a database holding only those is not empty, and a restore drops them.
    let has_objects = !objects.is_empty();
    if has_objects && !args.replace {
        let names: Vec<String> = objects
            .iter()
            .map(|o| format!("{} {}", o.kind, o.name))
            .collect();
        return Err(Failure::failed(format!(
            "the target D1 database {} is not empty ({}); pass --replace to replace its contents (a safety \
             backup is taken first)",
            target_db.name,
            names.join(", ")
        )));
    }
    if has_objects {
        confirm(
            args,
            &format!(
                "replace every table, view, trigger and index of the D1 database {}",
                target_db.name
            ),
        )?;
    }

    // 1. Check the backup and spool it in restore order. Nothing on the target has changed yet.
    let spool_dir = config.daemon.state_dir.join("spool");
    let mut progress = Progress::new(
        format!("checking {}", manifest.backup_id),
        manifest.dump.raw_size,
    );
    let body = d1::spool_import_body(
        sources.storage.as_ref(),
        manifest,
        &spool_dir,
        &mut progress,
    )
    .await
    .map_err(failed)?;

    // 2. Safety backup of what is about to be replaced.
    let mut safety_id = None;
    if has_objects && !args.no_safety_backup {
        let safety_config =
            safety_backup_config(config, &args.database, &target_db.name, &target_db.uuid);
        match run_backup_now(&safety_config, sources).await {
            Ok(m) => {
                eprintln!("safety backup of {} taken: {}", target_db.name, m.backup_id);
                safety_id = Some(m.backup_id);
            }
            Err(e) => {
                drop(body);
                return Err(Failure::failed(format!(
                    "the safety backup of {} failed, so nothing was changed: {e} (use --no-safety-backup to \
                     restore without one)",
                    target_db.name
                )));
            }
        }
    }

    // 3. One atomic import: clear what is there now, then load.
    let outcome = d1::import_replacing(client, &target_db.uuid, body)
        .await
        .map_err(|e| Failure::failed(format!("restoring into {}: {e}", target_db.name)))?;
    println!(
        "restored {} backup {} into D1 database {} ({} queries)",
        manifest.database.name,
        manifest.backup_id,
        target_db.name,
        outcome
            .num_queries
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".into())
    );
    if let Some(id) = safety_id {
        println!(
            "safety backup: {id} (undo with: d1vault restore {name} --backup {id} --to-d1 {name} --replace --yes)",
            name = target_db.name
        );
    }
    Ok(())
}

/// The configuration of the safety backup of a D1 target: the source database's settings (compression),
/// stored under the target's name, always a full export.
fn safety_backup_config(
    config: &Config,
    source_db: &str,
    target_name: &str,
    target_id: &str,
) -> DatabaseConfig {
    let base = config
        .database(source_db)
        .or_else(|| config.databases.first())
        .expect("config has a database");
    let mut safety = base.clone();
    safety.name = target_name.to_string();
    safety.source = Source::D1 {
        id: Some(target_id.to_string()),
    };
    safety.no_data = false;
    safety.tables = Vec::new();
    safety
}

/// Destructive restores need `--yes`, or a "yes" typed at a terminal.
fn confirm(args: &RestoreArgs, what: &str) -> Result<(), Failure> {
    if args.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "refusing to {what} without --yes (stdin is not a terminal)"
        )));
    }
    eprint!("This will {what}. Type yes to continue: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::failed(e.to_string()))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Failure::failed("not confirmed; nothing was changed"))
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}
