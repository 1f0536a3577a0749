//! Restoring into SQLite: a new file written atomically (temporary file, one transaction, prepared
//! statements, `integrity_check`, then rename), and the scratch databases `verify` loads backups into.
//!
//! SQLite work runs on a blocking thread; the async side reads, checks and splits the proven dump and sends
//! the statements over a bounded channel (a few chunks' worth), so decompression and inserts run on two
//! cores. The connection is locked down ([`open_locked_down`]): whatever a dump says, it can change only
//! the one file it is loaded into.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags, params_from_iter, types::Value as SqlParam};
use tokio::sync::mpsc;

use super::{
    Phase, Progress, ProvenDump, RestoreError, StatementBatch, download_and_prove, phase_of,
    read_statements,
};
use crate::repository::manifest::Manifest;
use crate::storage::Storage;
use d1_dump::{SqlValue, insert_head, parse_insert, quote_identifier};

/// What a loaded database looks like, for `verify` and for the restore report.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// `PRAGMA integrity_check` output (`["ok"]` when healthy).
    pub integrity: Vec<String>,
    /// `PRAGMA foreign_key_check` violations, as text.
    pub foreign_key_violations: Vec<String>,
    /// Row counts of the manifest's tables as found in the loaded database (`None`: table missing).
    pub row_counts: Vec<(String, Option<u64>)>,
    /// The user tables the loaded database holds (ordinary tables, not `sqlite_*`/`_cf_*`, virtual or
    /// shadow tables): compared with the manifest's list so that the row check covers every table.
    pub tables_found: Vec<String>,
    /// The FTS5 tables the loaded database holds, each with its row count and FTS5's integrity-check.
    pub virtual_tables: Vec<VirtualTableCheck>,
}

/// One FTS5 table of a loaded database as `verify` found it: compared with the manifest's
/// `virtual_tables`, so a search index that did not come back whole fails the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualTableCheck {
    /// The table's name.
    pub name: String,
    /// Its module (`fts5`).
    pub module: String,
    /// `SELECT count(*)` on it, or why counting failed.
    pub rows: Result<u64, String>,
    /// What FTS5's `INSERT INTO t(t, rank) VALUES('integrity-check', 1)` reported when it failed; `None`
    /// when it passed.
    pub integrity: Option<String>,
}

impl LoadReport {
    /// Mismatches against the manifest, in words; empty when the backup checks out. The set of tables
    /// must match too: every manifest table exists with its row count, every user table the dump created
    /// is in the manifest (so `tables: []` cannot make the row check vacuous), a `tables` export filter
    /// holds only the tables it names, and a `no_data` export has no rows.
    pub fn problems(&self, manifest: &Manifest) -> Vec<String> {
        let mut problems = Vec::new();
        if self.integrity != ["ok"] {
            problems.push(format!("integrity_check: {}", self.integrity.join("; ")));
        }
        for v in &self.foreign_key_violations {
            problems.push(format!("foreign_key_check: {v}"));
        }
        for table in &manifest.tables {
            let found = self
                .row_counts
                .iter()
                .find(|(name, _)| *name == table.name)
                .and_then(|(_, n)| *n);
            match found {
                Some(n) if n == table.rows => {}
                Some(n) => problems.push(format!(
                    "table {}: {n} rows, the manifest says {}",
                    table.name, table.rows
                )),
                None => problems.push(format!("table {}: missing after load", table.name)),
            }
        }
        for name in &self.tables_found {
            if !manifest
                .tables
                .iter()
                .any(|t| t.name.eq_ignore_ascii_case(name))
            {
                problems.push(format!(
                    "table {name}: in the dump but not in the manifest's tables, so its rows were never counted"
                ));
            }
        }
        problems.extend(self.virtual_table_problems(manifest));
        if !manifest.export.tables.is_empty() {
            for table in &manifest.tables {
                if !manifest
                    .export
                    .tables
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&table.name))
                {
                    problems.push(format!(
                        "table {}: outside the export's tables filter ({})",
                        table.name,
                        manifest.export.tables.join(", ")
                    ));
                }
            }
        }
        if manifest.export.no_data {
            for table in manifest.tables.iter().filter(|t| t.rows > 0) {
                problems.push(format!(
                    "table {}: the manifest says {} rows but the export had no_data",
                    table.name, table.rows
                ));
            }
        }
        problems
    }

    /// Mismatches of the FTS5 tables against the manifest's `virtual_tables`: each listed table exists
    /// with its row count and passes FTS5's integrity-check, and each loaded one is listed.
    fn virtual_table_problems(&self, manifest: &Manifest) -> Vec<String> {
        let mut problems = Vec::new();
        for check in &self.virtual_tables {
            if let Some(why) = &check.integrity {
                problems.push(format!(
                    "virtual table {}: FTS5 integrity-check fails: {why}",
                    check.name
                ));
            }
            if let Err(why) = &check.rows {
                problems.push(format!(
                    "virtual table {}: counting its rows failed: {why}",
                    check.name
                ));
            }
            if !manifest
                .virtual_tables
                .iter()
                .any(|t| t.name.eq_ignore_ascii_case(&check.name))
            {
                problems.push(format!(
                    "virtual table {}: in the dump but not in the manifest's virtual_tables",
                    check.name
                ));
            }
        }
        for table in &manifest.virtual_tables {
            match self
                .virtual_tables
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(&table.name))
            {
                None => problems.push(format!("virtual table {}: missing after load", table.name)),
                Some(VirtualTableCheck { rows: Ok(n), .. }) if *n != table.rows => {
                    problems.push(format!(
                        "virtual table {}: {n} rows, the manifest says {}",
                        table.name, table.rows
                    ))
                }
                Some(_) => {}
            }
        }
        problems
    }
}

/// The file-name prefix of `verify`'s scratch databases in the spool directory, by which [`super::scratch::sweep`]
/// finds the leftovers of killed runs.
pub const VERIFY_PREFIX: &str = "d1vault-verify-";

/// Loads the backup into a new SQLite database at `path` (which must not exist) and checks it: the stored
/// object is first downloaded into an unnamed file beside `path` and proven, and `path` is created only
/// then. The file is complete and committed when this returns `Ok`; on error it may be partial (or absent)
/// and the caller removes it.
pub async fn load_into_new_file(
    storage: &dyn Storage,
    manifest: &Manifest,
    identities: Option<&crate::encryption::Identities>,
    path: &Path,
    progress: &mut Progress<'_>,
) -> Result<LoadReport, RestoreError> {
    let dump =
        download_and_prove(storage, manifest, identities, parent_dir(path), progress).await?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| RestoreError::Target(format!("creating {}: {e}", path.display())))?;
    load_proven(dump, manifest, path, progress).await
}

/// Loads a proven dump into the empty SQLite file at `path` (created by the caller, so that its name and
/// mode are the caller's choice) and checks it. The file is complete and committed when this returns
/// `Ok`; on error it may be partial and the caller removes it.
pub async fn load_proven(
    dump: ProvenDump,
    manifest: &Manifest,
    path: &Path,
    progress: &mut Progress<'_>,
) -> Result<LoadReport, RestoreError> {
    let (tx, rx) = mpsc::channel::<Message>(4);
    let db_path = path.to_path_buf();
    let tables: Vec<String> = manifest.tables.iter().map(|t| t.name.clone()).collect();
    let backup_id = manifest.backup_id.clone();
    let writer = tokio::task::spawn_blocking(move || apply_all(&db_path, rx, &tables, &backup_id));

    let mut writer_stopped = false;
    let read = read_statements(dump, manifest, progress, async |batch| {
        if tx.send(Message::Batch(batch)).await.is_err() {
            // The writer failed; its error is the one to report, and reading on is pointless.
            writer_stopped = true;
            return Err(RestoreError::Target("the SQLite writer stopped".into()));
        }
        Ok(())
    })
    .await;
    if read.is_ok() {
        // Only a dump read to its end and matching its manifest is committed.
        let _ = tx.send(Message::Done).await;
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| RestoreError::Target(format!("the SQLite writer stopped: {e}")))?;
    match read {
        Ok(()) => written,
        Err(_) if writer_stopped => written.and(Err(RestoreError::Target(
            "the SQLite writer stopped".into(),
        ))),
        // After a read error (damage, outage, a refused statement) that error is what the user must see.
        Err(e) => Err(e),
    }
}

/// What the reading side sends the SQLite writer.
enum Message {
    /// The next statements, in dump order.
    Batch(StatementBatch),
    /// The whole dump was read and matches its manifest: commit.
    Done,
}

/// The blocking side: applies statements in restore order inside one transaction, commits only on
/// [`Message::Done`], then checks the result.
fn apply_all(
    path: &Path,
    mut rx: mpsc::Receiver<Message>,
    tables: &[String],
    backup_id: &str,
) -> Result<LoadReport, RestoreError> {
    let (mut conn, denied) = open_locked_down(path)?;
    let failed =
        |stmt: &str, e: &dyn std::fmt::Display| match denied.lock().ok().and_then(|d| d.clone()) {
            Some(what) => RestoreError::Hostile {
                backup_id: backup_id.to_string(),
                what,
                statement: stmt.chars().take(120).collect(),
            },
            None => RestoreError::Target(statement_error(stmt, e)),
        };
    let target = |e: rusqlite::Error| RestoreError::Target(e.to_string());
    let tx = conn.transaction().map_err(target)?;
    let mut late: Vec<String> = Vec::new();
    let mut inserter = Inserter::default();
    loop {
        let batch = match rx.blocking_recv() {
            Some(Message::Batch(batch)) => batch,
            Some(Message::Done) => break,
            // The reader failed and reports why; nothing is committed.
            None => {
                return Err(RestoreError::Target(
                    "the dump was not read to its end".into(),
                ));
            }
        };
        for (stmt, kind) in batch {
            match phase_of(&kind) {
                Phase::Skip => {}
                Phase::Late => late.push(stmt),
                Phase::Rows => inserter.insert(&tx, &stmt).map_err(|e| failed(&stmt, &e))?,
                Phase::Schema => tx.execute_batch(&stmt).map_err(|e| failed(&stmt, &e))?,
            }
        }
    }
    for stmt in &late {
        tx.execute_batch(stmt).map_err(|e| failed(stmt, &e))?;
    }
    drop(inserter);
    tx.commit()
        .map_err(|e| RestoreError::Target(format!("committing: {e}")))?;
    let report = inspect(&conn, tables)
        .map_err(|e| RestoreError::Target(format!("checking the restored database: {e}")))?;
    conn.close().map_err(|(_, e)| target(e))?;
    Ok(report)
}

/// What the authorizer of a locked-down connection refused first, in words.
pub type Denied = Arc<Mutex<Option<String>>>;

/// Opens the existing SQLite file at `path` to load a dump into, locked down so that whatever the dump
/// says it can change nothing but this one file: no `ATTACH` (limit 0, and refused by the authorizer, as
/// is `DETACH`), no URI file names, no symlink followed, defensive mode (no `writable_schema`, no writes
/// to shadow tables or `sqlite_dbpage`), no extension loading, and an authorizer that allows only what
/// loading a D1 dump and checking it need ([`authorize`]). The second value reports what it refused.
pub fn open_locked_down(path: &Path) -> Result<(Connection, Denied), RestoreError> {
    let opening = |e: rusqlite::Error| {
        RestoreError::Target(format!("opening {} for the restore: {e}", path.display()))
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(opening)?;
    // A fresh file that is renamed into place only when complete: a journal in memory is enough (new pages
    // are never journaled), and nothing next to the file. Set before the lockdown, which forbids them.
    conn.execute_batch(
        "PRAGMA journal_mode=MEMORY; PRAGMA synchronous=OFF; PRAGMA foreign_keys=OFF;",
    )
    .map_err(opening)?;
    for (option, on) in [
        (DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_CREATE, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_ATTACH_WRITE, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, false),
        (DbConfig::SQLITE_DBCONFIG_WRITABLE_SCHEMA, false),
    ] {
        conn.set_db_config(option, on).map_err(opening)?;
    }
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(opening)?;
    let denied = Denied::default();
    let record = Arc::clone(&denied);
    conn.authorizer(Some(move |ctx: AuthContext<'_>| match authorize(&ctx) {
        Ok(()) => Authorization::Allow,
        Err(what) => {
            if let Ok(mut first) = record.lock() {
                first.get_or_insert(what);
            }
            Authorization::Deny
        }
    }));
    Ok((conn, denied))
}

/// Virtual-table modules a restored dump may create: FTS5 only, the one module a dump holds
/// (`docs/d1-dump-format.md`, "Virtual tables").
const VTAB_MODULES: [&str; 1] = [d1_dump::FTS5];

/// Pragmas a locked-down connection allows: the checks run after the load, the ones SQLite's own modules
/// (FTS5) issue, and `defer_foreign_keys`/`foreign_keys`, which D1 dumps write. None of them names a file.
const PRAGMAS: [&str; 13] = [
    "integrity_check",
    "quick_check",
    "foreign_key_check",
    "foreign_key_list",
    "data_version",
    "table_list",
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "defer_foreign_keys",
    "foreign_keys",
];

/// The authorizer's rule: `Ok` for what loading a D1 dump into the main database and checking it needs
/// (creating tables, indexes, triggers, views and the virtual tables D1 offers; reading and writing rows;
/// `ANALYZE` and `REINDEX`, which `CREATE INDEX` asks for; transactions; functions but `load_extension`; the [`PRAGMAS`]); `Err` naming anything else
/// (`ATTACH`, `DETACH`, drops, `ALTER`, temp objects, another database, other pragmas). Pure.
pub fn authorize(ctx: &AuthContext<'_>) -> Result<(), String> {
    if let Some(db) = ctx.database_name.filter(|db| *db != "main") {
        return Err(format!("a use of the database {db:?}"));
    }
    match ctx.action {
        AuthAction::CreateTable { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::Insert { .. }
        | AuthAction::Update { .. }
        | AuthAction::Delete { .. }
        | AuthAction::Read { .. }
        | AuthAction::Select
        | AuthAction::Recursive
        | AuthAction::Analyze { .. }
        | AuthAction::Reindex { .. }
        | AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. } => Ok(()),
        AuthAction::CreateVtable { module_name, .. }
            if VTAB_MODULES
                .iter()
                .any(|m| m.eq_ignore_ascii_case(module_name)) =>
        {
            Ok(())
        }
        AuthAction::Function { function_name }
            if !["load_extension", "fts3_tokenizer"]
                .iter()
                .any(|f| f.eq_ignore_ascii_case(function_name)) =>
        {
            Ok(())
        }
        AuthAction::Pragma { pragma_name, .. }
            if PRAGMAS.iter().any(|p| p.eq_ignore_ascii_case(pragma_name)) =>
        {
            Ok(())
        }
        AuthAction::Attach { filename } => Err(format!("an ATTACH of {filename:?}")),
        AuthAction::Detach { database_name } => Err(format!("a DETACH of {database_name:?}")),
        AuthAction::Pragma { pragma_name, .. } => Err(format!("PRAGMA {pragma_name}")),
        AuthAction::Function { function_name } => Err(format!("a call of {function_name}()")),
        AuthAction::CreateVtable { module_name, .. } => {
            Err(format!("a virtual table of module {module_name:?}"))
        }
        other => Err(format!("{other:?}")),
    }
}

fn statement_error(stmt: &str, e: &dyn std::fmt::Display) -> String {
    let head: String = stmt.chars().take(120).collect();
    format!("statement failed: {e}: {head}")
}

/// Inserts rows through cached prepared statements (`INSERT INTO "t" ("c",…) VALUES (?,…)`), which skips
/// SQLite's parser for every row; statements it cannot parse run as text.
#[derive(Default)]
struct Inserter {
    sql_for: HashMap<(String, Option<Vec<String>>, usize), String>,
}

impl Inserter {
    fn insert(&mut self, conn: &Connection, stmt: &str) -> rusqlite::Result<()> {
        let Some(insert) = parse_insert(stmt) else {
            return conn.execute_batch(stmt);
        };
        let key = (
            insert.table.clone(),
            insert.columns.clone(),
            insert.values.len(),
        );
        let sql = self.sql_for.entry(key).or_insert_with(|| {
            let placeholders = vec!["?"; insert.values.len()].join(",");
            format!(
                "{} ({placeholders})",
                insert_head(&insert.table, insert.columns.as_deref())
            )
        });
        let mut prepared = conn.prepare_cached(sql)?;
        prepared.execute(params_from_iter(insert.values.into_iter().map(to_param)))?;
        Ok(())
    }
}

fn to_param(value: SqlValue) -> SqlParam {
    match value {
        SqlValue::Null => SqlParam::Null,
        SqlValue::Integer(i) => SqlParam::Integer(i),
        SqlValue::Real(f) => SqlParam::Real(f),
        SqlValue::Text(s) => SqlParam::Text(s),
        SqlValue::Blob(b) => SqlParam::Blob(b),
    }
}

/// Runs the post-load checks: integrity, foreign keys, and row counts of `tables`.
pub fn inspect(conn: &Connection, tables: &[String]) -> rusqlite::Result<LoadReport> {
    let integrity = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let foreign_key_violations = conn
        .prepare("PRAGMA foreign_key_check")?
        .query_map([], |row| {
            let table: String = row.get(0)?;
            let rowid: Option<i64> = row.get(1)?;
            let parent: String = row.get(2)?;
            Ok(format!(
                "row {rowid:?} of {table} references a missing row of {parent}"
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut row_counts = Vec::new();
    for table in tables {
        let sql = format!("SELECT count(*) FROM {}", quote_identifier(table));
        let count = conn
            .query_row(&sql, [], |row| row.get::<_, i64>(0))
            .ok()
            .map(|n| n as u64);
        row_counts.push((table.clone(), count));
    }
    let tables_found = conn
        .prepare(
            "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' ORDER BY name",
        )?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let virtual_tables = check_fts5_tables(conn)?;
    Ok(LoadReport {
        integrity,
        foreign_key_violations,
        row_counts,
        tables_found,
        virtual_tables,
    })
}

/// Counts the rows of every FTS5 table of the loaded database and runs FTS5's own integrity-check on it
/// (`integrity_check` does not look inside a virtual table's index), with `rank` 1 so that an
/// external-content table's index is also compared with its content table.
fn check_fts5_tables(conn: &Connection) -> rusqlite::Result<Vec<VirtualTableCheck>> {
    let definitions = conn
        .prepare(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%' \
             ORDER BY rowid",
        )?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut checks = Vec::new();
    for table in definitions
        .iter()
        .filter_map(|sql| d1_dump::parse_virtual_table(sql))
    {
        if !table.is_fts5() {
            continue;
        }
        let quoted = quote_identifier(&table.name);
        let integrity = conn
            .execute_batch(&format!(
                "INSERT INTO {quoted}({quoted}, rank) VALUES('integrity-check', 1);"
            ))
            .err()
            .map(|e| e.to_string());
        let rows = conn
            .query_row(&format!("SELECT count(*) FROM {quoted}"), [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| e.to_string());
        checks.push(VirtualTableCheck {
            name: table.name,
            module: table.module,
            rows,
            integrity,
        });
    }
    Ok(checks)
}

/// The file-name prefix of the temporary file a `--to-sqlite` restore writes next to `target` before it
/// renames it into place (`.NAME.d1vault-restore-`), by which leftovers of killed runs are swept.
pub fn temporary_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "restore".into());
    format!(".{name}.d1vault-restore-")
}

/// The directory `target` is (to be) in: where its temporary file goes, so that the rename is atomic.
pub fn parent_dir(target: &Path) -> &Path {
    target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// What a `--to-sqlite` restore will do at its path, decided by [`check_target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetPath {
    /// Nothing is there: the restored file is created.
    New,
    /// A regular file is there and `--replace` was given: it is replaced atomically, keeping its mode.
    ReplaceRegularFile,
}

/// Decides what a restore may do at `path`, without following a link: create it when nothing is there
/// (in a directory that exists),
/// replace a regular file only with `replace`, and never touch anything else, `--replace` or not (a
/// symbolic link, dangling or not, a directory, a FIFO, a device, a socket): renaming over it would
/// replace the link or the special file itself, not a database (`/dev/null` once). A dangling link is
/// something that exists.
pub fn check_target(path: &Path, replace: bool) -> Result<TargetPath, RestoreError> {
    if path.file_name().is_none() {
        return Err(RestoreError::Refused(format!(
            "{:?} does not name a file; give the path of the SQLite file to write",
            path.display().to_string()
        )));
    }
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = parent_dir(path);
            return if std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
                Ok(TargetPath::New)
            } else {
                Err(RestoreError::Refused(format!(
                    "the directory {} does not exist; create it first (nothing was changed)",
                    dir.display()
                )))
            };
        }
        Err(e) => {
            return Err(RestoreError::Refused(format!(
                "cannot check what {} is: {e}; nothing was changed",
                path.display()
            )));
        }
    };
    let kind = metadata.file_type();
    if kind.is_file() {
        return if replace {
            Ok(TargetPath::ReplaceRegularFile)
        } else {
            Err(RestoreError::Refused(format!(
                "{} already exists; pass --replace to overwrite it (it is replaced atomically only after the \
                 restore succeeded)",
                path.display()
            )))
        };
    }
    let what = if kind.is_symlink() {
        match std::fs::read_link(path) {
            Ok(to) if path.exists() => format!("a symbolic link to {}", to.display()),
            Ok(to) => format!("a symbolic link to {}, which does not exist", to.display()),
            Err(_) => "a symbolic link".into(),
        }
    } else if kind.is_dir() {
        "a directory".into()
    } else {
        special_file_kind(&kind)
    };
    Err(RestoreError::Refused(format!(
        "{} is {what}; restore --to-sqlite only creates a new file or replaces a regular file (never a link, \
         directory, FIFO or device, with --replace or without), so nothing was changed: give the path of a \
         regular file, or a new one",
        path.display()
    )))
}

#[cfg(unix)]
fn special_file_kind(kind: &std::fs::FileType) -> String {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
    .into()
}

#[cfg(not(unix))]
fn special_file_kind(_kind: &std::fs::FileType) -> String {
    "not a regular file".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_db(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("scratch.sqlite");
        std::fs::File::create(&path).unwrap();
        path
    }

    #[test]
    fn a_locked_down_connection_touches_no_other_file() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.db");
        Connection::open(&victim)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let (conn, denied) = open_locked_down(&scratch_db(dir.path())).unwrap();
        let copy = dir.path().join("copy.db");
        let hostile = [
            format!("ATTACH '{}' AS v", victim.display()),
            format!("ATTACH 'file:{}?mode=rw' AS v", victim.display()),
            format!("VACUUM INTO '{}'", copy.display()),
            "VACUUM".into(),
            "DETACH main".into(),
            "PRAGMA writable_schema=ON".into(),
            format!("PRAGMA temp_store_directory='{}'", dir.path().display()),
            "PRAGMA journal_mode=WAL".into(),
            "CREATE TEMP TABLE z (x)".into(),
            "SELECT load_extension('/nonexistent/evil.so')".into(),
            "CREATE TABLE t (x); DROP TABLE t".into(),
            "CREATE TABLE u AS SELECT * FROM temp.sqlite_master".into(),
        ];
        for sql in &hostile {
            conn.execute_batch(sql)
                .expect_err(&format!("{sql} ran on a locked-down connection"));
        }
        assert!(
            denied
                .lock()
                .unwrap()
                .as_deref()
                .unwrap()
                .contains("ATTACH")
        );
        let names: Vec<String> = Connection::open(&victim)
            .unwrap()
            .prepare("SELECT name FROM sqlite_master")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names, ["t"], "the victim was changed");
        assert!(!copy.exists(), "VACUUM INTO wrote a file");
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["scratch.sqlite", "victim.db"]);
    }

    #[test]
    fn a_locked_down_connection_loads_and_checks_what_d1_dumps_hold() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, denied) = open_locked_down(&scratch_db(dir.path())).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(
            "PRAGMA defer_foreign_keys=TRUE;
             CREATE TABLE p (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT DEFAULT (lower('X')));
             CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id), CHECK (id > 0));
             INSERT INTO \"p\" (\"id\",\"name\") VALUES(1,replace('a''b','''',char(39)));
             INSERT INTO \"c\" VALUES(1,1);
             DELETE FROM sqlite_sequence;
             INSERT INTO \"sqlite_sequence\" VALUES('p',1);
             ANALYZE sqlite_schema;
             INSERT INTO \"sqlite_stat1\" VALUES('c',NULL,'1');
             CREATE VIRTUAL TABLE docs USING fts5(body);
             INSERT INTO docs(body) VALUES('hello world');
             CREATE INDEX ci ON c(p);
             CREATE VIEW v AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT * FROM n;
             CREATE TRIGGER tr AFTER INSERT ON c BEGIN UPDATE p SET name = 'y' WHERE id = NEW.p; END;",
        )
        .unwrap_or_else(|e| panic!("{e}: {:?}", denied.lock().unwrap()));
        tx.commit().unwrap();
        let report = inspect(&conn, &["p".into(), "c".into(), "docs".into()]).unwrap();
        assert_eq!(report.integrity, ["ok"]);
        assert!(report.foreign_key_violations.is_empty());
        assert_eq!(
            report.row_counts,
            [
                ("p".into(), Some(1)),
                ("c".into(), Some(1)),
                ("docs".into(), Some(1))
            ]
        );
        let hits: i64 = conn
            .query_row(
                "SELECT count(*) FROM docs WHERE docs MATCH 'hello'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hits, 1);
        assert_eq!(*denied.lock().unwrap(), None);
        let docs = &report.virtual_tables;
        assert_eq!(docs.len(), 1);
        assert_eq!(
            (docs[0].rows.clone(), docs[0].integrity.clone()),
            (Ok(1), None)
        );
        // FTS5 is the one module a dump holds; the authorizer refuses any other.
        assert!(
            conn.execute_batch("CREATE VIRTUAL TABLE g USING rtree(id, a, b);")
                .is_err()
        );
        assert!(
            denied
                .lock()
                .unwrap()
                .as_deref()
                .is_some_and(|d| d.contains("rtree"))
        );
    }

    #[test]
    fn verify_finds_a_broken_search_index_and_a_wrong_fts_count() {
        // Proves the FTS5 checks: an external-content index out of step with its content table fails
        // FTS5's integrity-check (which PRAGMA integrity_check does not see), a count unlike the
        // manifest's is reported, and the true manifest finds no problem.
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = open_locked_down(&scratch_db(dir.path())).unwrap();
        conn.execute_batch(
            "CREATE TABLE posts (id INTEGER PRIMARY KEY, body TEXT);
             INSERT INTO posts VALUES (1, 'alpha'), (2, 'beta');
             CREATE VIRTUAL TABLE posts_fts USING fts5(body, content='posts', content_rowid='id');
             INSERT INTO posts_fts(posts_fts) VALUES('rebuild');
             CREATE VIRTUAL TABLE notes USING fts5(n);
             INSERT INTO notes(rowid, n) VALUES (7, 'x');",
        )
        .unwrap();
        let manifest = |posts_fts_rows: u64| {
            let json = serde_json::json!({
                "format": 1, "tool": "d1vault 0.1.0",
                "database": { "name": "s", "id": null, "source": "sqlite" },
                "backup_id": "20261129T030012Z",
                "started_at": "2026-11-29T03:00:12Z", "finished_at": "2026-11-29T03:00:19Z",
                "bookmark": null,
                "export": { "no_data": false, "no_schema": false, "tables": [] },
                "dump": { "key": "s/20261129T030012Z/dump.sql", "compression": "none",
                          "size": 1, "sha256": "ab", "raw_size": 1, "raw_sha256": "cd" },
                "tables": [ { "name": "posts", "rows": 2 } ],
                "virtual_tables": [
                    { "name": "posts_fts", "module": "fts5", "rows": posts_fts_rows },
                    { "name": "notes", "module": "fts5", "rows": 1 }
                ],
                "migrations": []
            });
            Manifest::from_json(&serde_json::to_vec(&json).unwrap()).unwrap()
        };
        let report = inspect(&conn, &["posts".into()]).unwrap();
        assert_eq!(report.problems(&manifest(2)), Vec::<String>::new());
        let wrong = report.problems(&manifest(3));
        assert_eq!(
            wrong,
            ["virtual table posts_fts: 2 rows, the manifest says 3"]
        );

        // A content row the index never saw: the database is fine, the search index is not.
        conn.execute_batch("INSERT INTO posts VALUES (3, 'gamma');")
            .unwrap();
        let report = inspect(&conn, &["posts".into()]).unwrap();
        assert_eq!(report.integrity, ["ok"]);
        let problems = report.problems(&manifest(3));
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("virtual table posts_fts: FTS5 integrity-check fails")),
            "{problems:?}"
        );
    }

    #[test]
    fn check_target_replaces_only_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.sqlite");
        assert_eq!(check_target(&new, false).unwrap(), TargetPath::New);
        let nowhere = dir.path().join("missing/new.sqlite");
        assert!(
            check_target(&nowhere, true)
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        let file = dir.path().join("file.sqlite");
        std::fs::write(&file, b"x").unwrap();
        assert!(
            check_target(&file, false)
                .unwrap_err()
                .to_string()
                .contains("--replace")
        );
        assert_eq!(
            check_target(&file, true).unwrap(),
            TargetPath::ReplaceRegularFile
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        for (path, what) in [
            (&link, "a symbolic link"),
            (&dangling, "which does not exist"),
            (&dir.path().to_path_buf(), "a directory"),
            (&std::path::PathBuf::from("/dev/null"), "a character device"),
        ] {
            for replace in [false, true] {
                let err = check_target(path, replace).unwrap_err().to_string();
                assert!(err.contains(what), "{}: {err}", path.display());
            }
        }
    }
}
