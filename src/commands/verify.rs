//! `d1vault verify [DB...] [--backup ID] [--all]`: prove that backups restore ([`crate::verify`]), one
//! line per backup. Exit 1 on any mismatch. With no names: every configured database and fleet member
//! (a failed listing of the account still verifies the configured ones, then exits 1).

use super::present::TerminalProgress;
use super::{Failure, open_sources};
use crate::cli::VerifyArgs;
use crate::config::Config;
use crate::fleet;
use crate::notify::{Event, EventKind, Notifier};
use crate::repository::backups;
use crate::restore::Progress;
use crate::verify::{self, Selection, Verdict, VerifyRequest};

/// Verifies the selected backups and prints one line per backup.
pub async fn run(config: &Config, args: &VerifyArgs) -> Result<(), Failure> {
    let mut sources = open_sources(config).await?;
    if let Some(identity) = &args.identity {
        sources.identity_file = Some(identity.clone());
    }
    let mut failures = Vec::new();
    let databases = if args.databases.is_empty() {
        let selection = fleet::select(config, &sources, &[]).await;
        for warning in &selection.warnings {
            tracing::warn!("{warning}");
        }
        if let Some(e) = &selection.discovery {
            failures.push(format!("fleet members were not verified: {e}"));
        }
        selection.databases.into_iter().map(|d| d.name).collect()
    } else {
        // Any name with backups in storage, configured or not (a gone database's backups too).
        args.databases.clone()
    };
    let request = VerifyRequest {
        databases,
        selection: match (&args.backup, args.all) {
            (Some(id), _) if id == "latest" => Selection::Newest,
            (Some(id), _) => Selection::Backup(id.clone()),
            (None, true) => Selection::All,
            (None, false) => Selection::Newest,
        },
    };
    let mut drawer = TerminalProgress::new("verifying");
    let json = args.json;
    let verdicts = verify::verify(
        config,
        &sources,
        &request,
        &mut Progress::new(&mut drawer),
        |verdict| {
            if !json {
                print(verdict)
            }
        },
    )
    .await
    .map_err(|e| Failure::failed(e.to_string()))?;
    if json {
        let text = serde_json::to_string_pretty(&verdicts).expect("verdicts serialize");
        println!("{text}");
    }
    for verdict in &verdicts {
        let Some(mut line) = failure_line(verdict) else {
            continue;
        };
        if let Verdict::Missing {
            database,
            backup_id: None,
            ..
        } = verdict
        {
            // Probably a typo: name the database with backups that was meant.
            let storage = sources.storage.as_ref();
            line.push_str(&backups::name_hint(storage, &sources.prefix, database).await);
        }
        failures.push(line);
    }
    notify_failures(config, &verdicts).await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(failures.join("\n")))
    }
}

/// The lines a verdict prints on stdout as soon as it is known.
fn print(verdict: &Verdict) {
    match verdict {
        Verdict::Ok {
            database,
            backup_id,
            tables,
            rows,
        } => println!(
            "ok      {database} {backup_id} sha256 ok, {tables} tables, {rows} rows match, integrity_check ok, \
             foreign_key_check ok"
        ),
        Verdict::Failed {
            database,
            backup_id,
            problems,
        } => {
            println!("FAILED  {database} {backup_id}");
            for p in problems {
                println!("        {p}");
            }
        }
        Verdict::Refused {
            database,
            backup_id,
            why,
        } => {
            println!("FAILED  {database} {backup_id}");
            println!("        {why}");
        }
        Verdict::Missing { .. } => {}
    }
}

/// Sends a `verify_failure` notification for each backup that did not check out, and waits (bounded)
/// for them to be delivered.
async fn notify_failures(config: &Config, verdicts: &[Verdict]) {
    let notifier = Notifier::for_command(&config.notify);
    for verdict in verdicts {
        let (database, backup_id) = match verdict {
            Verdict::Ok { .. } => continue,
            Verdict::Failed {
                database,
                backup_id,
                ..
            }
            | Verdict::Refused {
                database,
                backup_id,
                ..
            } => (database, Some(backup_id.clone())),
            Verdict::Missing {
                database,
                backup_id,
                ..
            } => (database, backup_id.clone()),
        };
        let Some(line) = failure_line(verdict) else {
            continue;
        };
        let mut event =
            Event::new(EventKind::VerifyFailure, database, chrono::Utc::now()).with_error(line);
        event.backup_id = backup_id;
        notifier.send(&event);
    }
    // Bounded: a receiver that hangs delays the exit by at most one delivery's worst case.
    notifier.finish_in_time().await;
}

/// A verdict's line in the final error, or `None` when the backup checked out.
fn failure_line(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::Ok { .. } => None,
        Verdict::Failed {
            database,
            backup_id,
            problems,
        } => Some(format!("{database} {backup_id}: {}", problems.join("; "))),
        Verdict::Refused { database, why, .. } => Some(format!("{database}: {why}")),
        Verdict::Missing {
            database,
            backup_id,
            storage,
        } => {
            let what = backup_id
                .as_ref()
                .map(|id| format!("backup {id}"))
                .unwrap_or_else(|| "complete backup".into());
            Some(format!("{database}: no {what} in {storage}"))
        }
    }
}
