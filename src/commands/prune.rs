//! `d1vault prune [DB...] [--dry-run]`: apply the retention policy now and print every backup with
//! keep/delete and the reasons. `--dry-run` changes nothing. With no names: every configured database
//! and fleet member (each by its entry's retention). A database gone from the account is never pruned
//! automatically: its backups are the last copy of it, so `prune` says it keeps them (`gone` lines).

use chrono::Utc;

use super::{Failure, open_sources};
use crate::cli::PruneArgs;
use crate::config::Config;
use crate::fleet;
use crate::repository::backups;
use crate::repository::prune::{self, PrunePlan};

/// Plans, prints, and (unless `--dry-run`) executes.
pub async fn run(config: &Config, args: &PruneArgs) -> Result<(), Failure> {
    let sources = open_sources(config).await?;
    let selection = fleet::select(config, &sources, &args.databases).await;
    if !selection.unknown.is_empty() {
        if selection.listed.is_some()
            && let Ok(stored) =
                backups::database_names(sources.storage.as_ref(), &sources.prefix).await
        {
            let gone = selection.gone(config, &stored);
            if let Some(name) = selection.unknown.iter().find(|n| gone.contains(n)) {
                return Err(Failure::usage(format!(
                    "{name} is gone from the account: prune never deletes a gone database's backups \
                     (they may be its last copy); delete its directory in {} by hand when you no \
                     longer want them",
                    sources.storage.describe()
                )));
            }
        }
        return Err(super::unknown_databases(config, &selection.unknown));
    }
    for warning in &selection.warnings {
        tracing::warn!("{warning}");
    }
    let now = Utc::now();
    let mut failures = Vec::new();
    if let Some(e) = &selection.discovery {
        failures.push(format!("fleet members were not pruned: {e}"));
    }
    if args.databases.is_empty() && selection.listed.is_some() {
        match backups::database_names(sources.storage.as_ref(), &sources.prefix).await {
            Ok(stored) => {
                for name in selection.gone(config, &stored) {
                    println!(
                        "{:<12} {name}  (gone from the account: its backups are kept, prune never deletes them)",
                        "gone"
                    );
                }
            }
            Err(e) => failures.push(format!("listing storage for gone databases: {e}")),
        }
    }
    for db in &selection.databases {
        let plan = match prune::plan(
            sources.storage.as_ref(),
            &sources.prefix,
            &db.name,
            &db.retention,
            config.daemon.timezone,
            now,
        )
        .await
        {
            Ok(plan) => plan,
            Err(e) => {
                failures.push(format!(
                    "{}: listing failed, nothing was deleted: {e}",
                    db.name
                ));
                continue;
            }
        };
        print_plan(&plan, args.dry_run);
        if !plan.unreadable.is_empty() {
            failures.push(unreadable_failure(&plan));
        }
        if args.dry_run {
            continue;
        }
        let outcome = prune::execute(sources.storage.as_ref(), &sources.prefix, &plan, now).await;
        println!(
            "{}: deleted {} backups, removed {} incomplete, aborted {} stale uploads, kept {} with an unreadable manifest{}",
            db.name,
            outcome.deleted_backups,
            outcome.removed_incomplete,
            outcome.aborted_uploads,
            outcome.kept_unreadable,
            kept_locked_note(outcome.kept_locked),
        );
        failures.extend(
            outcome
                .errors
                .into_iter()
                .map(|e| format!("{}: {e}", db.name)),
        );
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(failures.join("\n")))
    }
}

/// The tail of the summary line for backups kept only because their Object Lock has not ended.
fn kept_locked_note(kept: usize) -> String {
    if kept == 0 {
        String::new()
    } else {
        format!(
            ", kept {kept} still under Object Lock (they go at the first prune after their lock ends)"
        )
    }
}

/// Why prune exits 1 when a backup's manifest cannot be read: the backup was kept, and only a person can
/// decide what it is (a newer d1vault's backup, a damaged manifest) and fix or remove it.
fn unreadable_failure(plan: &PrunePlan) -> String {
    let ids: Vec<&str> = plan
        .unreadable
        .iter()
        .map(|b| b.backup_id.as_str())
        .collect();
    format!(
        "{}: kept {} backup(s) whose manifest cannot be read ({}): they are not listed, counted or restored, \
         and prune never deletes them; if a newer d1vault wrote them, use that version; otherwise repair \
         or remove them by hand",
        plan.database,
        ids.len(),
        ids.join(", ")
    )
}

/// One line per backup: `keep`/`delete`, database, id, reasons.
pub fn print_plan(plan: &PrunePlan, dry_run: bool) {
    let delete = if dry_run { "would delete" } else { "delete" };
    for p in &plan.complete {
        let verdict = if p.keep { "keep" } else { delete };
        let reasons = if p.reasons.is_empty() {
            "no rule keeps it".to_string()
        } else {
            p.reasons.join(", ")
        };
        println!(
            "{verdict:<12} {} {}  ({reasons})",
            plan.database, p.backup.backup_id
        );
    }
    for b in &plan.unreadable {
        println!(
            "{:<12} {} {}  (manifest unreadable: {}; never deleted, not counted by retention)",
            "keep",
            plan.database,
            b.backup_id,
            b.unreadable.as_deref().unwrap_or("unknown reason")
        );
    }
    let remove = if dry_run { "would remove" } else { "remove" };
    for b in &plan.incomplete {
        println!(
            "{remove:<12} {} {}  (incomplete: no manifest, {} objects, older than a day)",
            plan.database,
            b.backup_id,
            b.d1vault_objects(&plan.prefix).len()
        );
    }
    for (id, keys) in &plan.foreign {
        const SHOWN: usize = 5;
        let mut names = keys
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if keys.len() > SHOWN {
            names.push_str(&format!(" and {} more", keys.len() - SHOWN));
        }
        println!(
            "{:<12} {} {}  (not written by d1vault, never deleted: {names})",
            "leave", plan.database, id
        );
    }
}
