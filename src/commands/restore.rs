//! `d1vault restore DB [--backup ID | --at TIME] (--to-d1 NAME_OR_ID | --to-sqlite PATH) [--replace] [--yes]
//! [--no-safety-backup]`: restore a backup (default: the newest) with [`crate::restore::plan`], after a
//! confirmation when the restore replaces something. The backup is downloaded and its size and sha256 are
//! checked before any of it runs or anything on the target changes.

use std::io::{BufRead, IsTerminal, Write};

use super::present::TerminalProgress;
use super::{Failure, open_sources};
use crate::cli::RestoreArgs;
use crate::config::Config;
use crate::restore::{
    self, BackupChoice, Destructive, Progress, RestoreError, RestoreRequest, RestoreTarget,
    Restored, RestoredInto, parse_at,
};

/// Runs the restore described by `args`.
pub async fn run(config: &Config, args: &RestoreArgs) -> Result<(), Failure> {
    if args.to_d1.is_some() {
        super::require_d1(config)?;
    }
    let mut sources = open_sources(config).await?;
    if let Some(identity) = &args.identity {
        sources.identity_file = Some(identity.clone());
    }
    let target = if let Some(path) = &args.to_sqlite {
        RestoreTarget::Sqlite(path.clone())
    } else if let Some(target) = &args.to_d1 {
        RestoreTarget::D1(target.clone())
    } else {
        return Err(Failure::usage(
            "name a target: --to-d1 NAME_OR_ID or --to-sqlite PATH",
        ));
    };
    // The D1 side first checks the backup ("checking"), then imports it; SQLite restores as it reads.
    let verb = match target {
        RestoreTarget::Sqlite(_) => "restoring",
        RestoreTarget::D1(_) => "checking",
    };
    let backup = match (&args.backup, &args.at) {
        (Some(id), _) if id == "latest" => BackupChoice::Newest,
        (Some(id), _) => BackupChoice::Id(id.clone()),
        (None, Some(at)) => {
            BackupChoice::At(parse_at(at, chrono::Utc::now()).map_err(Failure::usage)?)
        }
        (None, None) => BackupChoice::Newest,
    };
    let request = RestoreRequest {
        database: args.database.clone(),
        backup,
        target,
        replace: args.replace,
        safety_backup: !args.no_safety_backup,
        via: args.via.into(),
    };
    let at = match &request.backup {
        BackupChoice::At(at) => Some(*at),
        _ => None,
    };
    let plan = restore::plan(config, &sources, request)
        .await
        .map_err(failed)?;
    if let Some(at) = at {
        let chosen = plan.manifest();
        eprintln!(
            "restoring backup {} (started {}), the newest that started at or before {}",
            chosen.backup_id,
            chosen
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    match plan.destructive() {
        Some(Destructive::ReplaceFile(path)) => {
            confirm(args, &format!("replace the SQLite file {}", path.display()))?
        }
        Some(Destructive::ReplaceD1(name)) => confirm(
            args,
            &format!("replace every table, view, trigger and index of the D1 database {name}"),
        )?,
        None => {}
    }
    let mut drawer = TerminalProgress::new(verb);
    let restored = plan
        .run(&mut Progress::new(&mut drawer))
        .await
        .map_err(failed)?;
    print(&restored);
    Ok(())
}

/// A restore error's exit status: a missing `[cloudflare]` section is a configuration error (2), anything
/// else a failed restore (1).
fn failed(e: RestoreError) -> Failure {
    match e {
        RestoreError::NoCloudflare { .. } => Failure::usage(e.to_string()),
        e => Failure::failed(e.to_string()),
    }
}

/// The result lines on stdout.
fn print(restored: &Restored) {
    let Restored {
        database,
        backup_id,
        into,
    } = restored;
    match into {
        RestoredInto::Sqlite { path, restored } => println!(
            "restored {database} backup {backup_id} into {}: {} tables, {} rows, integrity ok",
            path.display(),
            restored.tables,
            restored.rows
        ),
        RestoredInto::TimeTravel {
            target,
            bookmark,
            previous_bookmark,
        } => {
            println!(
                "restored {database} backup {backup_id} into D1 database {target} by Time Travel, to \
                 bookmark {bookmark} (exact; no data was imported)"
            );
            if let Some(previous) = previous_bookmark {
                println!(
                    "to return to the state before: wrangler d1 time-travel restore {target} --bookmark={previous}"
                );
            }
        }
        RestoredInto::D1(d1) => {
            println!(
                "restored {database} backup {backup_id} into D1 database {} through an import ({} queries)",
                d1.target,
                d1.num_queries
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "?".into())
            );
            if let Some(id) = &d1.safety_backup {
                println!(
                    "safety backup: {id} (undo with: d1vault restore {name} --backup {id} --to-d1 {name} --replace --yes)",
                    name = d1.target
                );
            }
        }
    }
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
