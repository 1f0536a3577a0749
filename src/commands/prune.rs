//! `d1vault prune [DB...] [--dry-run] [--json]`: apply the retention policy now and print every backup with
//! keep/delete and the reasons (or, with `--json`, one array of the same). `--dry-run` changes nothing. With
//! no names: every configured database
//! and fleet member (each by its entry's retention). A database gone from the account is never pruned
//! automatically: its backups are the last copy of it, so `prune` says it keeps them (`gone` lines).

use chrono::Utc;

use super::{Failure, open_sources};
use crate::cli::PruneArgs;
use crate::config::Config;
use crate::fleet;
use crate::repository::backups;
use crate::repository::prune::{self, PruneOutcome, PrunePlan};

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
    // `--json`: one object per database, printed together at the end instead of the lines.
    let mut reports: Vec<serde_json::Value> = Vec::new();
    if let Some(e) = &selection.discovery {
        failures.push(format!("fleet members were not pruned: {e}"));
    }
    if args.databases.is_empty() && selection.listed.is_some() {
        match backups::database_names(sources.storage.as_ref(), &sources.prefix).await {
            Ok(stored) => {
                for name in selection.gone(config, &stored) {
                    if args.json {
                        reports.push(serde_json::json!({ "database": name, "gone": true }));
                        continue;
                    }
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
        if !args.json {
            print_plan(&plan, args.dry_run);
        }
        if !plan.unreadable.is_empty() {
            failures.push(unreadable_failure(&plan));
        }
        if args.dry_run {
            if args.json {
                reports.push(plan_json(&plan, true, None));
            }
            continue;
        }
        let outcome = prune::execute(sources.storage.as_ref(), &sources.prefix, &plan, now).await;
        if args.json {
            reports.push(plan_json(&plan, false, Some(&outcome)));
        } else {
            print_outcome(&db.name, &outcome);
        }
        failures.extend(
            outcome
                .errors
                .into_iter()
                .map(|e| format!("{}: {e}", db.name)),
        );
    }
    if args.json {
        let text = serde_json::to_string_pretty(&reports).expect("prune reports serialize");
        println!("{text}");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(failures.join("\n")))
    }
}

/// The summary line after a database's deletions.
fn print_outcome(database: &str, outcome: &PruneOutcome) {
    println!(
        "{}: deleted {} backups, removed {} incomplete, aborted {} stale uploads, kept {} with an unreadable manifest{}",
        database,
        outcome.deleted_backups,
        outcome.removed_incomplete,
        outcome.aborted_uploads,
        outcome.kept_unreadable,
        kept_locked_note(outcome.kept_locked),
    );
}

/// One database's object in `prune --json`: every backup with its action and reasons, and with
/// `outcome` (not a dry run) what was done.
fn plan_json(plan: &PrunePlan, dry_run: bool, outcome: Option<&PruneOutcome>) -> serde_json::Value {
    let delete = if dry_run { "would_delete" } else { "delete" };
    let backups: Vec<serde_json::Value> = plan
        .complete
        .iter()
        .map(|p| {
            serde_json::json!({
                "backup_id": p.backup.backup_id,
                "action": if p.keep { "keep" } else { delete },
                "reasons": p.reasons,
                "locked_until": p.locked_until,
            })
        })
        .collect();
    let unreadable: Vec<serde_json::Value> = plan
        .unreadable
        .iter()
        .map(|b| serde_json::json!({ "backup_id": b.backup_id, "reason": b.unreadable }))
        .collect();
    let incomplete: Vec<&str> = plan
        .incomplete
        .iter()
        .map(|b| b.backup_id.as_str())
        .collect();
    let foreign: Vec<serde_json::Value> = plan
        .foreign
        .iter()
        .map(|(id, keys)| serde_json::json!({ "backup_id": id, "keys": keys }))
        .collect();
    let mut report = serde_json::json!({
        "database": plan.database,
        "dry_run": dry_run,
        "backups": backups,
        "unreadable": unreadable,
        "incomplete": incomplete,
        "foreign": foreign,
    });
    if let Some(outcome) = outcome {
        report["deleted_backups"] = outcome.deleted_backups.into();
        report["removed_incomplete"] = outcome.removed_incomplete.into();
        report["aborted_uploads"] = outcome.aborted_uploads.into();
        report["kept_locked"] = outcome.kept_locked.into();
        report["errors"] = outcome.errors.clone().into();
    }
    report
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
