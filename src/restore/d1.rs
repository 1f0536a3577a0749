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
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

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
    spool_dir: PathBuf,
}

/// Spools the body of the import file for `manifest` into `spool_dir`: schema, rows, then indexes,
/// triggers and views. The stored object is downloaded and proven against its manifest first; statements
/// over D1's 100 KB limit are refused here, naming the table and row, before anything is uploaded.
/// Leftover import files of killed runs in `spool_dir` are removed first.
pub async fn spool_import_body(
    storage: &dyn Storage,
    manifest: &Manifest,
    identities: Option<&crate::encryption::Identities>,
    spool_dir: &Path,
    progress: &mut Progress<'_>,
) -> Result<ImportBody, RestoreError> {
    let dir = spool_dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || scratch::sweep(&dir, IMPORT_PREFIX)).await;
    let dump = download_and_prove(storage, manifest, identities, spool_dir, progress).await?;
    let mut parts = Parts::create(spool_dir).await?;
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
            parts.write(phase_of(&kind), &stmt).await?;
        }
        Ok(())
    })
    .await?;
    parts.finish(spool_dir).await
}

/// Replaces everything in the D1 database `database_id` with the spooled `body` (from
/// [`spool_import_body`]) in one atomic import: what the database holds now is read, dropped and loaded over
/// in the same request, so a failed import leaves it as it was. The import file is removed either way. The
/// last step of [`super::replace::spool_then_import`], which `restore --to-d1` and the undo of a failed
/// `migrations apply` on a database without Time Travel both call.
pub async fn import_replacing(
    client: &Client,
    database_id: &str,
    body: ImportBody,
) -> Result<ImportOutcome, RestoreError> {
    let objects = user_objects(client, database_id).await?;
    let import_file = assemble_import_file(body, &clearing_statements(&objects)).await?;
    // Dropping the scratch file removes it, whatever the import did (a full disk included).
    Ok(client.import(database_id, import_file.path()).await?)
}

/// Writes the import file: `PRAGMA defer_foreign_keys=TRUE;`, the `clearing` statements, then `body`.
/// Because D1 applies an import atomically, clearing and loading then succeed or fail together.
async fn assemble_import_file(
    body: ImportBody,
    clearing: &[String],
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
    out.write_all(b"PRAGMA defer_foreign_keys=TRUE;\n")
        .await
        .map_err(spool_io)?;
    for stmt in clearing {
        out.write_all(stmt.as_bytes()).await.map_err(spool_io)?;
        out.write_all(b"\n").await.map_err(spool_io)?;
    }
    for mut part in body.parts {
        part.seek(SeekFrom::Start(0)).await.map_err(spool_io)?;
        tokio::io::copy(&mut part, &mut out)
            .await
            .map_err(spool_io)?;
    }
    out.flush().await.map_err(spool_io)?;
    Ok(import_file)
}

fn spool_io(e: std::io::Error) -> RestoreError {
    RestoreError::Target(format!("writing the spool file: {e}"))
}

/// The three spool parts, appended to as statements arrive.
struct Parts {
    schema: BufWriter<File>,
    rows: BufWriter<File>,
    late: BufWriter<File>,
}

impl Parts {
    async fn create(dir: &Path) -> Result<Parts, RestoreError> {
        Ok(Parts {
            schema: BufWriter::new(unnamed(dir).await?),
            rows: BufWriter::new(unnamed(dir).await?),
            late: BufWriter::new(unnamed(dir).await?),
        })
    }

    async fn write(&mut self, phase: Phase, stmt: &str) -> Result<(), RestoreError> {
        let out = match phase {
            Phase::Schema => &mut self.schema,
            Phase::Rows => &mut self.rows,
            Phase::Late => &mut self.late,
            Phase::Skip => return Ok(()),
        };
        out.write_all(stmt.as_bytes()).await.map_err(spool_io)?;
        out.write_all(b"\n").await.map_err(spool_io)
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
