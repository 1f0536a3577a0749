//! `d1vault prune [DB...] [--dry-run]`: apply the retention policy now and print every backup with
//! keep/delete and the reasons. `--dry-run` changes nothing.

use chrono::Utc;

use super::{Failure, open_sources, select_databases};
use crate::cli::PruneArgs;
use crate::config::Config;
use crate::prune::{self, PrunePlan};

/// Plans, prints, and (unless `--dry-run`) executes.
pub async fn run(config: &Config, args: &PruneArgs) -> Result<(), Failure> {
    let databases = select_databases(config, &args.databases)?;
    let sources = open_sources(config).await?;
    let now = Utc::now();
    let mut failures = Vec::new();
    for db in databases {
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
        if args.dry_run {
            continue;
        }
        let outcome = prune::execute(sources.storage.as_ref(), &sources.prefix, &plan, now).await;
        println!(
            "{}: deleted {} backups, removed {} incomplete, aborted {} stale uploads",
            db.name, outcome.deleted_backups, outcome.removed_incomplete, outcome.aborted_uploads
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
    let remove = if dry_run { "would remove" } else { "remove" };
    for b in &plan.incomplete {
        println!(
            "{remove:<12} {} {}  (incomplete: no manifest, {} objects, older than a day)",
            plan.database,
            b.backup_id,
            b.objects.len()
        );
    }
}
