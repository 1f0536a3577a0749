//! `d1vault migrations create|list|apply`: wrangler-compatible migrations with a safety backup and
//! all-or-nothing apply (see [`crate::migrations`]).

use chrono::Utc;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use super::{Failure, open_sources, select_databases};
use crate::cli::MigrationsCommand;
use crate::cloudflare::Client;
use crate::config::{Config, DatabaseConfig, Source};
use crate::migrations::{self, MigrationFile};
use crate::pipeline::run_backup_now;
use crate::repository::manifest::Manifest;
use crate::restore::{Progress, d1};
use crate::sources::BackupSources;

/// Dispatches the migrations subcommand.
pub async fn run(config: &Config, command: &MigrationsCommand) -> Result<(), Failure> {
    match command {
        MigrationsCommand::Create { database, name } => create(config, database, name),
        MigrationsCommand::List { database } => list(config, database).await,
        MigrationsCommand::Apply {
            database,
            no_backup,
            dry_run,
        } => apply(config, database, *no_backup, *dry_run).await,
    }
}

fn database<'a>(config: &'a Config, name: &str) -> Result<&'a DatabaseConfig, Failure> {
    Ok(select_databases(config, &[name.to_string()])?[0])
}

fn files(db: &DatabaseConfig) -> Result<Vec<MigrationFile>, Failure> {
    migrations::list_files(&db.migrations_dir).map_err(|e| {
        Failure::failed(format!(
            "reading migrations_dir {}: {e}",
            db.migrations_dir.display()
        ))
    })
}

fn create(config: &Config, name: &str, description: &str) -> Result<(), Failure> {
    let db = database(config, name)?;
    let files = files(db)?;
    let file_name = migrations::next_file_name(&files, description);
    let number = files.iter().filter_map(|f| f.number).max().unwrap_or(0) + 1;
    std::fs::create_dir_all(&db.migrations_dir)
        .map_err(|e| Failure::failed(format!("creating {}: {e}", db.migrations_dir.display())))?;
    let path = db.migrations_dir.join(&file_name);
    std::fs::write(&path, migrations::file_header(number, Utc::now()))
        .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
    println!("{}", path.display());
    Ok(())
}

/// The database a migration command talks to.
enum Target {
    D1 { client: Client, id: String },
    Sqlite { path: std::path::PathBuf },
}

async fn target(config: &Config, db: &DatabaseConfig) -> Result<Target, Failure> {
    match &db.source {
        Source::Sqlite { path } => Ok(Target::Sqlite { path: path.clone() }),
        Source::D1 { id } => {
            let sources = open_sources(config).await?;
            let client = sources
                .cloudflare
                .ok_or_else(|| Failure::usage("[cloudflare] is not configured"))?;
            let id = match id {
                Some(id) => id.clone(),
                None => {
                    client
                        .get_database(&db.name)
                        .await
                        .map_err(|e| Failure::failed(e.to_string()))?
                        .uuid
                }
            };
            Ok(Target::D1 { client, id })
        }
    }
}

/// The applied names, in applied order; a missing table means nothing is applied. Reads only: wrangler
/// creates the table before listing, d1vault creates it inside the apply run, so that a failed run leaves
/// no trace of it.
async fn applied(target: &Target, table: &str) -> Result<Vec<String>, Failure> {
    match target {
        Target::D1 { client, id } => {
            let exists = client
                .query(
                    id,
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
                    &[Value::String(table.into())],
                )
                .await
                .map_err(|e| Failure::failed(e.to_string()))?;
            if exists.first().is_none_or(|r| r.results.is_empty()) {
                return Ok(Vec::new());
            }
            let results = client
                .query(id, &migrations::select_applied_sql(table), &[])
                .await
                .map_err(|e| Failure::failed(e.to_string()))?;
            Ok(results
                .into_iter()
                .next()
                .map(|r| {
                    r.results
                        .into_iter()
                        .filter_map(|row| row.get("name")?.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default())
        }
        Target::Sqlite { path } => {
            let conn = open_sqlite(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let exists: bool = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n > 0)
                .map_err(|e| Failure::failed(format!("reading {}: {e}", path.display())))?;
            if !exists {
                return Ok(Vec::new());
            }
            let mut stmt = conn
                .prepare(&migrations::select_applied_sql(table))
                .map_err(|e| Failure::failed(e.to_string()))?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Failure::failed(e.to_string()))?;
            Ok(names)
        }
    }
}

/// Opens an existing SQLite source (never creates one: a mistyped `sqlite_path` must fail, not migrate a
/// new empty file), waiting up to 10 s for a lock held by the application.
fn open_sqlite(path: &std::path::Path, mode: OpenFlags) -> Result<Connection, Failure> {
    let flags = mode | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        Failure::failed(format!("opening the SQLite source {}: {e}", path.display()))
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| Failure::failed(e.to_string()))?;
    Ok(conn)
}

async fn list(config: &Config, name: &str) -> Result<(), Failure> {
    let db = database(config, name)?;
    let files = files(db)?;
    let target = target(config, db).await?;
    let applied = applied(&target, &db.migrations_table).await?;
    for name in &applied {
        println!("applied  {name}");
    }
    let pending = migrations::pending(&files, &applied);
    for file in &pending {
        println!("pending  {}", file.name);
    }
    if pending.is_empty() {
        eprintln!("no migrations to apply");
    }
    Ok(())
}

async fn apply(config: &Config, name: &str, no_backup: bool, dry_run: bool) -> Result<(), Failure> {
    let db = database(config, name)?;
    let files = files(db)?;
    let target = target(config, db).await?;
    // Nothing is written before the backup: the migrations table is created inside the run, so that a
    // failed run leaves no trace of it either.
    let applied_now = applied(&target, &db.migrations_table).await?;
    let pending = migrations::pending(&files, &applied_now);
    if pending.is_empty() {
        println!("no migrations to apply");
        return Ok(());
    }
    if dry_run {
        for file in &pending {
            println!("would apply  {}", file.name);
        }
        return Ok(());
    }
    let mut contents = Vec::new();
    for file in &pending {
        let text = std::fs::read_to_string(&file.path)
            .map_err(|e| Failure::failed(format!("reading {}: {e}", file.path.display())))?;
        contents.push((file.name.clone(), text));
    }
    // How a failed D1 run will be undone, decided before anything changes: by the Time Travel bookmark, or,
    // on an old `alpha` database that has no Time Travel, from the backup taken first. (On SQLite, one
    // transaction undoes a failed run.)
    let undo_from_backup = match &target {
        Target::D1 { client, id } => !has_time_travel(client, id).await?,
        Target::Sqlite { .. } => false,
    };
    if undo_from_backup && no_backup {
        return Err(Failure::failed(format!(
            "D1 database {name} has no Time Travel (version alpha), so only the backup taken before the run \
             could undo a failed run, and --no-backup skips it: run without --no-backup (nothing was applied)"
        )));
    }
    let mut backup = None;
    if !no_backup {
        let sources = open_sources(config).await?;
        let manifest = run_backup_now(db, &sources).await.map_err(|e| {
            Failure::failed(format!(
                "the backup before migrating failed, nothing was applied: {e}"
            ))
        })?;
        println!("backup before migrating: {}", manifest.backup_id);
        backup = Some((sources, manifest));
    }
    match &target {
        Target::Sqlite { path } => apply_sqlite(path, &db.migrations_table, &contents),
        Target::D1 { client, id } => {
            let undo = match backup {
                Some((sources, manifest)) if undo_from_backup => Undo::Backup {
                    sources,
                    manifest,
                    spool_dir: config.daemon.state_dir.join("spool"),
                },
                _ => {
                    let bookmark = client.bookmark(id).await.map_err(|e| {
                        Failure::failed(format!(
                            "reading the Time Travel bookmark before migrating (nothing applied): {e}"
                        ))
                    })?;
                    println!("bookmark before migrating: {bookmark}");
                    Undo::Bookmark(bookmark)
                }
            };
            apply_d1(client, id, &db.migrations_table, &contents, undo).await
        }
    }
}

/// Whether the D1 database has Time Travel: every database does except the old `alpha` ones (wrangler makes
/// the same check before `d1 time-travel`).
async fn has_time_travel(client: &Client, id: &str) -> Result<bool, Failure> {
    let info = client.get_database(id).await.map_err(|e| {
        Failure::failed(format!(
            "looking up the database before migrating (nothing applied): {e}"
        ))
    })?;
    Ok(info.version.as_deref() != Some("alpha"))
}

/// How a failed D1 run is put back.
#[allow(clippy::large_enum_variant)] // one value per run: its size does not matter
enum Undo {
    /// Restore this Time Travel bookmark, read just before the run.
    Bookmark(String),
    /// No Time Travel: replace the database's contents with the backup taken before the run.
    Backup {
        sources: BackupSources,
        manifest: Manifest,
        spool_dir: std::path::PathBuf,
    },
}

/// Where in a migration file a run failed, for the report.
struct FailedAt<'a> {
    file: &'a str,
    /// 1-based statement number within the file and its text, when known.
    statement: Option<(usize, String)>,
    error: String,
}

impl std::fmt::Display for FailedAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "migration {} failed", self.file)?;
        if let Some((number, text)) = &self.statement {
            write!(f, " at statement {number} ({})", shorten(text))?;
        }
        write!(f, ": {}", self.error)
    }
}

/// A statement cut to one readable line for error messages.
fn shorten(statement: &str) -> String {
    let line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(120) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

/// SQLite sources: the migrations table (when missing) and every pending file with its bookkeeping insert
/// in one transaction, statement by statement; any failure rolls the whole run back, so the file is
/// exactly as before.
fn apply_sqlite(
    path: &std::path::Path,
    table: &str,
    contents: &[(String, String)],
) -> Result<(), Failure> {
    let mut conn = open_sqlite(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let tx = conn
        .transaction()
        .map_err(|e| Failure::failed(e.to_string()))?;
    tx.execute_batch(&migrations::create_table_sql(table))
        .map_err(|e| {
            Failure::failed(format!(
                "creating the migrations table {table}: {e}; nothing was applied"
            ))
        })?;
    for (name, text) in contents {
        let sql = migrations::apply_sql(text, table, name);
        // Statement by statement so that the report can name the failing one; a file the splitter cannot
        // read runs whole and SQLite's error is reported alone.
        let statements = d1_dump::split_statements(&sql).unwrap_or_else(|_| vec![sql.clone()]);
        let numbered = statements.len() > 1;
        for (index, statement) in statements.iter().enumerate() {
            if let Err(e) = tx.execute_batch(statement) {
                drop(tx); // rolls back every file of this run
                let failed = FailedAt {
                    file: name,
                    statement: numbered.then(|| (index + 1, statement.clone())),
                    error: e.to_string(),
                };
                return Err(Failure::failed(format!(
                    "{failed}; the database was rolled back to its state before this run"
                )));
            }
        }
        println!("applied  {name}");
    }
    tx.commit()
        .map_err(|e| Failure::failed(format!("committing the migrations: {e}")))?;
    Ok(())
}

/// D1: each file with its insert in one atomic request, as wrangler does; on a failure, undo the whole run
/// (see [`Undo`]) so that earlier files of this run are undone too.
async fn apply_d1(
    client: &Client,
    id: &str,
    table: &str,
    contents: &[(String, String)],
    undo: Undo,
) -> Result<(), Failure> {
    let failure = 'run: {
        if let Err(e) = client
            .query(id, &migrations::create_table_sql(table), &[])
            .await
        {
            break 'run format!("creating the migrations table {table} failed: {e}");
        }
        for (name, text) in contents {
            let sql = migrations::apply_sql(text, table, name);
            if let Err(e) = client.query(id, &sql, &[]).await {
                // The failed request changed nothing (D1 runs it as one transaction), so the database is as
                // the failing statement found it: find that statement before undoing the run.
                let statement = if e.is_retryable() {
                    None
                } else {
                    failing_statement(client, id, &sql).await
                };
                break 'run FailedAt {
                    file: name,
                    statement,
                    error: e.to_string(),
                }
                .to_string();
            }
            println!("applied  {name}");
        }
        return Ok(());
    };
    let state = match undo {
        Undo::Bookmark(bookmark) => match client.time_travel_restore(id, &bookmark).await {
            Ok(_) => {
                format!("the database was restored to bookmark {bookmark}, as before this run")
            }
            Err(undo_error) => format!(
                "restoring bookmark {bookmark} ALSO FAILED ({undo_error}): restore it by hand with \
                 `wrangler d1 time-travel restore DB --bookmark={bookmark}` or from the backup taken before"
            ),
        },
        Undo::Backup {
            sources,
            manifest,
            spool_dir,
        } => match restore_backup(client, id, &sources, &manifest, &spool_dir).await {
            Ok(()) => format!(
                "the database was restored from backup {}, taken before this run",
                manifest.backup_id
            ),
            Err(undo_error) => format!(
                "restoring backup {id} ALSO FAILED ({undo_error}): restore it by hand with \
                     `d1vault restore {db} --backup {id} --to-d1 {db} --replace --yes`",
                id = manifest.backup_id,
                db = manifest.database.name
            ),
        },
    };
    Err(Failure::failed(format!("{failure}; {state}")))
}

/// Replaces the contents of D1 database `id` with the backup `manifest`, as `restore --to-d1 --replace`
/// does: the backup is downloaded and proven against its manifest, spooled, then loaded in one atomic import.
async fn restore_backup(
    client: &Client,
    id: &str,
    sources: &BackupSources,
    manifest: &Manifest,
    spool_dir: &std::path::Path,
) -> Result<(), crate::restore::RestoreError> {
    let body = d1::spool_import_body(
        sources.storage.as_ref(),
        manifest,
        spool_dir,
        &mut Progress::hidden(),
    )
    .await?;
    d1::import_replacing(client, id, body).await?;
    Ok(())
}

/// A statement no database has, ending every probe so that the probe is rolled back whatever it ran.
const PROBE_SENTINEL: &str = "SELECT * FROM \"d1vault: probe, rolled back\";";

/// Finds which statement of a failed request fails, without changing the database: each probe sends the
/// first k statements followed by [`PROBE_SENTINEL`], which fails, so D1 rolls the probe back; when the
/// error is the sentinel's, the first k statements succeed. A binary search costs about log2(statements)
/// requests, and only after a failure. `None` when the statements cannot be split or the probes disagree.
async fn failing_statement(client: &Client, id: &str, sql: &str) -> Option<(usize, String)> {
    let statements = d1_dump::split_statements(sql).ok()?;
    if statements.len() < 2 {
        return None;
    }
    // Invariant: the first `good` statements succeed; the first `bad` fail.
    let (mut good, mut bad) = (0, statements.len());
    let mut confirmed = false;
    while bad - good > 1 || !confirmed {
        let k = if confirmed {
            good + (bad - good) / 2
        } else {
            bad
        };
        let probe = format!("{}\n{PROBE_SENTINEL}", statements[..k].join("\n"));
        let error = client.query(id, &probe, &[]).await.err()?;
        if error.is_retryable() {
            return None;
        }
        if error.message.contains("d1vault: probe, rolled back") {
            if k == statements.len() {
                return None; // the whole request succeeds now: the failure did not reproduce
            }
            good = k;
        } else {
            bad = k;
        }
        confirmed = true;
    }
    Some((bad, statements[bad - 1].clone()))
}
