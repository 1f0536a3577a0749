//! Scheduled verification (`verify_schedule`): the daemon proves on its own that the newest backup of
//! each such database restores, as `d1vault verify` does: downloaded from storage (never from D1),
//! checked against its manifest, restored into a scratch SQLite database. One loop for every database:
//! it sleeps until the earliest verification due, then verifies what is due one database at a time, each
//! holding one of the `max_concurrent` slots at the lowest priority, so that verification never starves
//! a backup.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tracing::{error, info};

use super::context::TaskContext;
use super::metrics::VerifyResult;
use crate::config::{Config, DatabaseConfig};
use crate::notify::{Event, EventKind};
use crate::restore::{self, BackupChoice, Progress, RestoreRequest, RestoreTarget, RestoreVia};
use crate::verify::{self, Selection, Verdict, VerifyRequest};

/// The earliest verification due after `after` among `databases`, and every database due then. Pure.
pub(crate) fn next_due(
    databases: &[DatabaseConfig],
    after: DateTime<Utc>,
    tz: Tz,
) -> Option<(DateTime<Utc>, Vec<String>)> {
    let mut earliest: Option<(DateTime<Utc>, Vec<String>)> = None;
    for db in databases {
        let Some(due) = db
            .verify_schedule
            .as_ref()
            .and_then(|s| s.next_after(after, tz))
        else {
            continue;
        };
        match &mut earliest {
            Some((t, names)) if due == *t => names.push(db.name.clone()),
            Some((t, _)) if due > *t => {}
            _ => earliest = Some((due, vec![db.name.clone()])),
        }
    }
    earliest
}

/// Runs until the daemon stops taking new work: sleeps until the next verification due (re-planning
/// when the configuration changes), then verifies each database due.
pub(super) async fn verify_loop(ctx: Arc<TaskContext>) {
    let clock = ctx.shared.clock.clone();
    let mut config_changes = ctx.shared.config.clone();
    let mut after = clock.now();
    loop {
        let config: Arc<Config> = config_changes.borrow_and_update().clone();
        let next = next_due(&config.databases, after, config.daemon.timezone);
        let due_at = next.as_ref().map(|(due, _)| *due);
        let sleep_clock = clock.clone();
        let sleep = async move {
            match due_at {
                Some(due) => sleep_clock.sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            changed = config_changes.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            _ = ctx.stop_new.cancelled() => return,
        }
        let Some((due, names)) = next else { continue };
        for name in names {
            // The lowest priority: every waiting backup goes first (slots go longest-unprotected first).
            let permit = tokio::select! {
                permit = ctx.slots.acquire(Some(clock.now())) => permit,
                _ = ctx.stop_new.cancelled() => return,
            };
            // `verify` is not provably `Send` (the SQLite loader takes an async closure, whose future
            // rustc cannot bound), so a blocking thread drives it with the runtime's handle. A stop
            // interrupts it: it only reads storage and writes a scratch file, which is swept later.
            let (task_ctx, task_config) = (ctx.clone(), config.clone());
            let (handle, stop) = (tokio::runtime::Handle::current(), ctx.stop_new.clone());
            let verification = tokio::task::spawn_blocking(move || {
                handle.block_on(async {
                    tokio::select! {
                        _ = verify_newest(task_ctx, task_config, name) => {}
                        _ = stop.cancelled() => info!("scheduled verification interrupted by the stop"),
                    }
                })
            });
            if let Err(e) = verification.await {
                error!(error = %e, "a scheduled verification panicked");
            }
            drop(permit);
        }
        after = std::cmp::max(due, clock.now());
    }
}

/// Verifies the newest backup of `database` and publishes the outcome: metrics, `/healthz`, the log, and
/// a `verify_failure` notification when it failed.
async fn verify_newest(ctx: Arc<TaskContext>, config: Arc<Config>, database: String) {
    let database = database.as_str();
    let started_at = ctx.shared.clock.now();
    let request = VerifyRequest {
        databases: vec![database.to_string()],
        selection: Selection::Newest,
    };
    let result = verify::verify(
        &config,
        &ctx.sources,
        &request,
        &mut Progress::hidden(),
        ignore_verdict,
    )
    .await;
    let drill_to = config
        .database(database)
        .and_then(|db| db.drill_to_d1.clone());
    let (backup_id, problem) = match result.as_deref() {
        Ok([Verdict::Ok { backup_id, .. }]) => match &drill_to {
            // Proven in SQLite; now the whole path of a real restore, into the scratch D1 database.
            Some(target) => match drill(&ctx, &config, database, backup_id, target).await {
                Ok(()) => (Some(backup_id.clone()), None),
                Err(problem) => (
                    Some(backup_id.clone()),
                    Some(format!(
                        "the drill restore into D1 database {target} failed: {problem}"
                    )),
                ),
            },
            None => (Some(backup_id.clone()), None),
        },
        Ok([Verdict::Missing { .. }]) => {
            info!(
                database,
                "scheduled verification: no complete backup to verify yet"
            );
            return;
        }
        Ok(
            [
                Verdict::Failed {
                    backup_id,
                    problems,
                    ..
                },
            ],
        ) => (Some(backup_id.clone()), Some(problems.join("; "))),
        Ok([Verdict::Refused { backup_id, why, .. }]) => {
            (Some(backup_id.clone()), Some(why.clone()))
        }
        Ok(other) => (None, Some(format!("unexpected verdicts: {other:?}"))),
        Err(e) => (None, Some(e.to_string())),
    };
    let finished_at = ctx.shared.clock.now();
    let outcome = if problem.is_none() {
        VerifyResult::Success
    } else {
        VerifyResult::Failure
    };
    ctx.shared
        .metrics
        .record_verify(database, outcome, finished_at.timestamp() as f64);
    ctx.shared.set_verified(database, problem.is_none());
    let id = backup_id.as_deref().unwrap_or("none");
    match problem {
        None => info!(database, backup_id = id, "scheduled verification succeeded"),
        Some(problem) => {
            error!(database, backup_id = id, error = %problem, "scheduled verification FAILED: the newest backup may not restore");
            let mut event = Event::new(EventKind::VerifyFailure, database, finished_at)
                .with_duration_since(started_at)
                .with_error(problem);
            event.backup_id = backup_id;
            ctx.notifier.send(&event);
        }
    }
}

/// Restores backup `backup_id` of `database` into the scratch D1 database `target` through the import, as
/// `restore --to-d1 TARGET --replace --via import` would (without a safety backup: it is scratch), then
/// checks it there: `PRAGMA quick_check` (D1 allows no `integrity_check`), `PRAGMA foreign_key_check`, and every table's row count
/// against the manifest.
async fn drill(
    ctx: &TaskContext,
    config: &Config,
    database: &str,
    backup_id: &str,
    target: &str,
) -> Result<(), String> {
    let request = RestoreRequest {
        database: database.to_string(),
        backup: BackupChoice::Id(backup_id.to_string()),
        target: RestoreTarget::D1(target.to_string()),
        replace: true,
        safety_backup: false,
        via: RestoreVia::Import,
    };
    let plan = restore::plan(config, &ctx.sources, request)
        .await
        .map_err(|e| e.to_string())?;
    let manifest = plan.manifest().clone();
    plan.run(&mut Progress::hidden())
        .await
        .map_err(|e| e.to_string())?;
    let client = ctx
        .sources
        .cloudflare
        .as_ref()
        .ok_or("no [cloudflare] section")?;
    let id = client
        .get_database(target)
        .await
        .map_err(|e| e.to_string())?
        .uuid;
    let integrity = rows(client, &id, "PRAGMA quick_check").await?;
    let verdict: Vec<String> = integrity
        .iter()
        .filter_map(|row| row.values().next()?.as_str().map(str::to_string))
        .collect();
    if verdict != ["ok"] {
        return Err(format!("quick_check: {}", verdict.join("; ")));
    }
    let violations = rows(client, &id, "PRAGMA foreign_key_check").await?;
    if !violations.is_empty() {
        return Err(format!(
            "foreign_key_check found {} violations",
            violations.len()
        ));
    }
    for table in &manifest.tables {
        let sql = format!(
            "SELECT count(*) AS n FROM {}",
            d1_dump::quote_identifier(&table.name)
        );
        let found = rows(client, &id, &sql)
            .await?
            .first()
            .and_then(|row| row.get("n")?.as_u64())
            .ok_or_else(|| format!("no row count for table {}", table.name))?;
        if found != table.rows {
            return Err(format!(
                "table {} has {found} rows, the manifest says {}",
                table.name, table.rows
            ));
        }
    }
    info!(
        database,
        target, backup_id, "drill restore into D1 checked out"
    );
    Ok(())
}

/// The rows `sql` answers on D1 database `id`.
async fn rows(
    client: &crate::cloudflare::Client,
    id: &str,
    sql: &str,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, String> {
    let results = client
        .query(id, sql, &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(results
        .into_iter()
        .next()
        .map(|r| r.results)
        .unwrap_or_default())
}

/// The daemon reads the verdicts at the end, not as they come.
fn ignore_verdict(_: &Verdict) {}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::test_time::utc;

    #[test]
    fn the_earliest_verification_due_is_chosen_with_every_database_due_then() {
        // Proves databases without verify_schedule are ignored, ties are grouped, and the bound is
        // strictly after `after`.
        let text = r#"
            [storage]
            type = "filesystem"
            path = "/srv"
            [[database]]
            name = "a"
            sqlite_path = "a.sqlite"
            verify_schedule = "0 5 * * *"
            [[database]]
            name = "b"
            sqlite_path = "b.sqlite"
            verify_schedule = "0 4 * * *"
            [[database]]
            name = "c"
            sqlite_path = "c.sqlite"
            verify_schedule = "0 5 * * *"
            [[database]]
            name = "d"
            sqlite_path = "d.sqlite"
        "#;
        let config =
            crate::config::load_str(text, Path::new("/etc/d1vault/d1vault.toml"), &|_| None)
                .unwrap();
        let tz = chrono_tz::UTC;
        let (due, names) = next_due(&config.databases, utc("2026-12-02T03:00:00Z"), tz).unwrap();
        assert_eq!(
            (due, names),
            (utc("2026-12-02T04:00:00Z"), vec!["b".to_string()])
        );
        let (due, names) = next_due(&config.databases, utc("2026-12-02T04:00:00Z"), tz).unwrap();
        assert_eq!(due, utc("2026-12-02T05:00:00Z"));
        assert_eq!(names, ["a", "c"]);
        assert!(next_due(&config.databases[3..], utc("2026-12-02T04:00:00Z"), tz).is_none());
    }
}
