//! Restoring into D1 through the import API. The dump is downloaded and proven, then spooled to
//! `state_dir/spool` in restore order (D1's import needs the file's md5 before the upload, so it cannot be
//! streamed straight through), with the statements that clear the target in front. D1 applies an import
//! atomically, so clearing and loading succeed or fail together: a failed import leaves the target exactly
//! as it was.
//!
//! Every spool file is private (0600). The parts are unnamed; the one named file, the import file handed
//! to the upload, is a [`ScratchFile`] named `d1vault-import-*.sql`, removed when the import ends and, if
//! the process was killed, by the next restore's [`sweep`](super::scratch::sweep).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};
use tracing::{info, warn};

use super::pieces::{RowRun, pack, parents_first};
use super::scratch::{self, PRIVATE, ScratchFile};
use super::{Phase, Progress, RestoreError, download_and_prove, phase_of, read_statements};
use crate::cloudflare::{Client, ImportOutcome};
use crate::repository::manifest::Manifest;
use crate::storage::Storage;
use d1_dump::limits::MAX_STATEMENT_BYTES;
use d1_dump::{StatementKind, quote_identifier};

/// The user objects of a D1 database, newest first, for clearing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaObject {
    /// `table`, `view`, `trigger` or `index`, as `sqlite_schema.type` says.
    pub kind: String,
    /// The object's name.
    pub name: String,
}

/// Reads the target's user tables, views, triggers and indexes (not SQLite's or Cloudflare's internals).
pub async fn user_objects(
    client: &Client,
    database_id: &str,
) -> Result<Vec<SchemaObject>, RestoreError> {
    let results = client
        .query(
            database_id,
            "SELECT type, name FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' ORDER BY rowid DESC",
            &[],
        )
        .await?;
    let rows = results
        .into_iter()
        .next()
        .map(|r| r.results)
        .unwrap_or_default();
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(SchemaObject {
                kind: row.get("type")?.as_str()?.to_string(),
                name: row.get("name")?.as_str()?.to_string(),
            })
        })
        .collect())
}

/// The statements that remove `objects`: triggers and views first, then indexes, then tables (newest first).
pub fn clearing_statements(objects: &[SchemaObject]) -> Vec<String> {
    let mut out = Vec::new();
    for kind in ["trigger", "view", "index", "table"] {
        for object in objects.iter().filter(|o| o.kind == kind) {
            out.push(format!(
                "DROP {} IF EXISTS {};",
                kind.to_uppercase(),
                quote_identifier(&object.name)
            ));
        }
    }
    out
}

/// The file-name prefix of the import files in the spool directory.
pub const IMPORT_PREFIX: &str = "d1vault-import-";

/// The body of an import file, spooled in restore order by [`spool_import_body`] into unnamed files that
/// vanish when it is dropped (or the process dies). [`import_replacing`] puts it behind the clearing
/// statements and imports it.
#[derive(Debug)]
pub struct ImportBody {
    /// Schema, rows, late objects: concatenated in this order.
    parts: [File; 3],
    /// Each part's size in bytes.
    sizes: [u64; 3],
    /// The rows part in runs of one table each, cut at statement boundaries to fit one import.
    runs: Vec<RowRun>,
    /// The dump's `CREATE TABLE` statements: their foreign keys order the imports of a large restore.
    create_tables: Vec<String>,
    /// Bytes of rows one import takes.
    rows_per_import: u64,
    spool_dir: PathBuf,
}

/// The first line of every import file: foreign keys are checked at the end of each import.
const IMPORT_HEADER: &[u8] = b"PRAGMA defer_foreign_keys=TRUE;\n";

/// Spools the body of the import file for `manifest` into `spool_dir`: schema, rows, then indexes,
/// triggers and views; rows are cut at statement boundaries into runs that each fit one import under
/// `import_limit`, should the whole not fit. The stored object is downloaded and proven against its manifest first; statements
/// over D1's 100 KB limit are refused here, naming the table and row, before anything is uploaded.
/// Leftover import files of killed runs in `spool_dir` are removed first.
pub async fn spool_import_body(
    storage: &dyn Storage,
    manifest: &Manifest,
    identities: Option<&crate::encryption::Identities>,
    import_limit: u64,
    spool_dir: &Path,
    progress: &mut Progress<'_>,
) -> Result<ImportBody, RestoreError> {
    let dir = spool_dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || scratch::sweep(&dir, IMPORT_PREFIX)).await;
    let dump = download_and_prove(storage, manifest, identities, spool_dir, progress).await?;
    let mut parts = Parts::create(spool_dir, rows_per_import(import_limit)).await?;
    let mut rows_per_table: std::collections::HashMap<String, u64> = Default::default();
    read_statements(dump, manifest, progress, async |batch| {
        for (stmt, kind) in batch {
            if let StatementKind::Insert { table } = &kind {
                let row = rows_per_table.entry(table.clone()).or_default();
                *row += 1;
                if stmt.len() > MAX_STATEMENT_BYTES {
                    return Err(RestoreError::Refused(format!(
                        "row {row} of table {table} is a {}-byte statement, over D1's {MAX_STATEMENT_BYTES}-byte \
                         limit: D1 cannot import it; restore this backup with --to-sqlite instead",
                        stmt.len()
                    )));
                }
            } else if stmt.len() > MAX_STATEMENT_BYTES {
                return Err(RestoreError::Refused(format!(
                    "a {}-byte statement is over D1's {MAX_STATEMENT_BYTES}-byte limit: {:?}",
                    stmt.len(),
                    stmt.chars().take(80).collect::<String>()
                )));
            }
            parts.write(&kind, &stmt).await?;
        }
        Ok(())
    })
    .await?;
    parts.finish(spool_dir).await
}

/// Replaces everything in the D1 database `database_id` with the spooled `body` (from
/// [`spool_import_body`]). When it fits one import (D1's limit is 5 GB), in one atomic import: what the
/// database holds now is read, dropped and loaded over in the same request, so a failed import leaves it
/// as it was. When it does not, in several imports in order (clearing and schema, the rows in runs, then
/// indexes, triggers and views): no longer one atomic step, which is said before the first, and a failure
/// after the first is [`RestoreError::PartlyImported`]. The import files are removed either way. The last
/// step of [`super::replace::spool_then_import`], which `restore --to-d1` and the undo of a failed
/// `migrations apply` on a database without Time Travel both call.
pub async fn import_replacing(
    client: &Client,
    database_id: &str,
    body: ImportBody,
) -> Result<ImportOutcome, RestoreError> {
    let objects = user_objects(client, database_id).await?;
    let clearing = clearing_statements(&objects);
    let pieces = plan_pieces(&body, &clearing, client.import_limit())?;
    if pieces.len() > 1 {
        warn!(
            imports = pieces.len(),
            limit_bytes = client.import_limit(),
            "the dump is larger than one D1 import: restoring in several imports, so the restore is no \
             longer one atomic step; if one fails, the database holds the imports before it: run the same \
             restore again to finish (it clears the database and starts over), or restore the safety \
             backup to undo"
        );
    }
    let mut body = body;
    let total = pieces.len();
    let mut outcome = ImportOutcome {
        num_queries: Some(0),
        final_bookmark: None,
    };
    for (index, piece) in pieces.iter().enumerate() {
        let import_file = write_piece(&mut body, &clearing, piece).await?;
        // Dropping the scratch file removes it, whatever the import did (a full disk included).
        let done = match client.import(database_id, import_file.path()).await {
            Ok(done) => done,
            Err(e) if index == 0 => return Err(e.into()),
            Err(e) => {
                return Err(RestoreError::PartlyImported {
                    done: index,
                    total,
                    source: e,
                });
            }
        };
        if total > 1 {
            info!(import = index + 1, of = total, "import done");
        }
        outcome.num_queries = outcome
            .num_queries
            .zip(done.num_queries)
            .map(|(a, b)| a + b);
        outcome.final_bookmark = done.final_bookmark;
    }
    Ok(outcome)
}

/// Room left in each import for the header (and a margin): the rows of one import are cut below this.
fn rows_per_import(import_limit: u64) -> u64 {
    import_limit
        .saturating_sub(IMPORT_HEADER.len() as u64 + 1024)
        .max(1)
}

/// What one import file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Everything: clearing, schema, rows, late objects.
    Whole,
    /// The clearing statements and the schema.
    Schema,
    /// These runs of the rows part.
    Rows(Vec<RowRun>),
    /// Indexes, triggers and views.
    Late,
}

/// The imports `body` needs under `limit`: one when it all fits, else schema, row runs, late objects.
fn plan_pieces(
    body: &ImportBody,
    clearing: &[String],
    limit: u64,
) -> Result<Vec<Piece>, RestoreError> {
    let clearing_bytes: u64 = clearing.iter().map(|s| s.len() as u64 + 1).sum();
    let header = IMPORT_HEADER.len() as u64;
    let [schema, rows, late] = body.sizes;
    if header + clearing_bytes + schema + rows + late <= limit {
        return Ok(vec![Piece::Whole]);
    }
    if header + clearing_bytes + schema > limit || header + late > limit {
        return Err(RestoreError::Refused(format!(
            "the schema or the indexes, triggers and views alone are larger than one D1 import ({limit} \
             bytes); restore this backup with --to-sqlite instead"
        )));
    }
    let order = parents_first(&body.create_tables);
    let mut pieces = vec![Piece::Schema];
    pieces.extend(
        pack(&body.runs, &order, body.rows_per_import)
            .into_iter()
            .map(Piece::Rows),
    );
    if late > 0 {
        pieces.push(Piece::Late);
    }
    Ok(pieces)
}

/// Writes one import file: the header, then what `piece` holds.
async fn write_piece(
    body: &mut ImportBody,
    clearing: &[String],
    piece: &Piece,
) -> Result<ScratchFile, RestoreError> {
    let dir = body.spool_dir.clone();
    let import_file = tokio::task::spawn_blocking(move || {
        ScratchFile::create(&dir, IMPORT_PREFIX, ".sql", PRIVATE)
    })
    .await
    .map_err(|e| RestoreError::Target(format!("creating the import file: {e}")))?
    .map_err(|e| {
        RestoreError::Target(format!(
            "creating the import file in {}: {e}",
            body.spool_dir.display()
        ))
    })?;
    let handle = import_file.file().try_clone().map_err(spool_io)?;
    let mut out = BufWriter::new(File::from_std(handle));
    out.write_all(IMPORT_HEADER).await.map_err(spool_io)?;
    if matches!(piece, Piece::Whole | Piece::Schema) {
        for stmt in clearing {
            out.write_all(stmt.as_bytes()).await.map_err(spool_io)?;
            out.write_all(b"\n").await.map_err(spool_io)?;
        }
    }
    let [schema, rows, late] = &mut body.parts;
    match piece {
        Piece::Whole => {
            for part in [schema, rows, late] {
                copy_range(part, 0, None, &mut out).await?;
            }
        }
        Piece::Schema => copy_range(schema, 0, None, &mut out).await?,
        Piece::Rows(runs) => {
            for run in runs {
                copy_range(rows, run.start, Some(run.end - run.start), &mut out).await?;
            }
        }
        Piece::Late => copy_range(late, 0, None, &mut out).await?,
    }
    out.flush().await.map_err(spool_io)?;
    Ok(import_file)
}

/// Copies `length` bytes of `part` from `start` (to its end when `None`) into `out`.
async fn copy_range(
    part: &mut File,
    start: u64,
    length: Option<u64>,
    out: &mut BufWriter<File>,
) -> Result<(), RestoreError> {
    part.seek(SeekFrom::Start(start)).await.map_err(spool_io)?;
    match length {
        Some(n) => tokio::io::copy(&mut part.take(n), out).await,
        None => tokio::io::copy(part, out).await,
    }
    .map_err(spool_io)?;
    Ok(())
}

fn spool_io(e: std::io::Error) -> RestoreError {
    RestoreError::Target(format!("writing the spool file: {e}"))
}

/// The three spool parts, appended to as statements arrive, with their sizes, the rows' runs (one table
/// each, at most `rows_per_import` bytes) and the `CREATE TABLE` statements.
struct Parts {
    schema: BufWriter<File>,
    rows: BufWriter<File>,
    late: BufWriter<File>,
    sizes: [u64; 3],
    rows_per_import: u64,
    runs: Vec<RowRun>,
    create_tables: Vec<String>,
}

impl Parts {
    async fn create(dir: &Path, rows_per_import: u64) -> Result<Parts, RestoreError> {
        Ok(Parts {
            schema: BufWriter::new(unnamed(dir).await?),
            rows: BufWriter::new(unnamed(dir).await?),
            late: BufWriter::new(unnamed(dir).await?),
            sizes: [0; 3],
            rows_per_import,
            runs: Vec::new(),
            create_tables: Vec::new(),
        })
    }

    /// Appends `stmt` to its part; a row extends the current run, or starts one when its table differs
    /// or the run would outgrow one import.
    async fn write(&mut self, kind: &StatementKind, stmt: &str) -> Result<(), RestoreError> {
        let length = stmt.len() as u64 + 1;
        if let StatementKind::CreateTable { .. } = kind {
            self.create_tables.push(stmt.to_string());
        }
        let (out, index) = match phase_of(kind) {
            Phase::Schema => (&mut self.schema, 0),
            Phase::Rows => {
                let table = match kind {
                    StatementKind::Insert { table } | StatementKind::DeleteFrom { table } => {
                        table.as_str()
                    }
                    _ => "",
                };
                let at = self.sizes[1];
                match self.runs.last_mut() {
                    Some(run)
                        if run.table == table
                            && run.end - run.start + length <= self.rows_per_import =>
                    {
                        run.end = at + length;
                    }
                    _ => self.runs.push(RowRun {
                        table: table.to_string(),
                        start: at,
                        end: at + length,
                    }),
                }
                (&mut self.rows, 1)
            }
            Phase::Late => (&mut self.late, 2),
            Phase::Skip => return Ok(()),
        };
        out.write_all(stmt.as_bytes()).await.map_err(spool_io)?;
        out.write_all(b"\n").await.map_err(spool_io)?;
        self.sizes[index] += length;
        Ok(())
    }

    async fn finish(mut self, spool_dir: &Path) -> Result<ImportBody, RestoreError> {
        for out in [&mut self.schema, &mut self.rows, &mut self.late] {
            out.flush().await.map_err(spool_io)?;
        }
        Ok(ImportBody {
            parts: [
                self.schema.into_inner(),
                self.rows.into_inner(),
                self.late.into_inner(),
            ],
            sizes: self.sizes,
            runs: self.runs,
            create_tables: self.create_tables,
            rows_per_import: self.rows_per_import,
            spool_dir: spool_dir.to_path_buf(),
        })
    }
}

/// An unnamed, private spool file in `dir`.
async fn unnamed(dir: &Path) -> Result<File, RestoreError> {
    let dir = dir.to_path_buf();
    let file = tokio::task::spawn_blocking(move || scratch::unnamed(&dir).map_err(|e| (dir, e)))
        .await
        .map_err(|e| RestoreError::Target(format!("creating a spool file: {e}")))?
        .map_err(|(dir, e)| {
            RestoreError::Target(format!("creating a spool file in {}: {e}", dir.display()))
        })?;
    Ok(File::from_std(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearing_drops_dependents_before_tables() {
        let objects = vec![
            SchemaObject {
                kind: "view".into(),
                name: "v".into(),
            },
            SchemaObject {
                kind: "index".into(),
                name: "i".into(),
            },
            SchemaObject {
                kind: "table".into(),
                name: "child".into(),
            },
            SchemaObject {
                kind: "trigger".into(),
                name: "t".into(),
            },
            SchemaObject {
                kind: "table".into(),
                name: "we\"ird".into(),
            },
        ];
        assert_eq!(
            clearing_statements(&objects),
            vec![
                "DROP TRIGGER IF EXISTS \"t\";",
                "DROP VIEW IF EXISTS \"v\";",
                "DROP INDEX IF EXISTS \"i\";",
                "DROP TABLE IF EXISTS \"child\";",
                "DROP TABLE IF EXISTS \"we\"\"ird\";",
            ]
        );
    }
}
