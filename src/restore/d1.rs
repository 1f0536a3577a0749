//! Restoring into D1 through the import API. The dump is spooled to `state_dir` in restore order (D1's
//! import needs the file's md5 before the upload, so it cannot be streamed straight through), with the
//! statements that clear the target in front. D1 applies an import atomically, so clearing and loading
//! succeed or fail together: a failed import leaves the target exactly as it was.

use std::path::{Path, PathBuf};

use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};

use super::{Phase, Progress, RestoreError, phase_of, read_statements};
use crate::cloudflare::{Client, ImportOutcome};
use crate::manifest::Manifest;
use crate::sql::{StatementKind, quote_identifier};
use crate::storage::Storage;

/// D1's limit on one SQL statement.
pub const MAX_STATEMENT_BYTES: usize = 100_000;

/// The user objects of a D1 database, newest first, for clearing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaObject {
    pub kind: String,
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

/// Spools the body of the import file for `manifest` into `spool_dir`: schema, rows, then indexes,
/// triggers and views. Statements over D1's 100 KB limit are refused here, naming the table and row, before
/// anything is uploaded. The backup's sha256 is checked as it is read; on any error the spool files are
/// removed. [`import_replacing`] then puts the clearing statements in front and imports it.
pub async fn spool_import_body(
    storage: &dyn Storage,
    manifest: &Manifest,
    spool_dir: &Path,
    progress: &mut Progress,
) -> Result<PathBuf, RestoreError> {
    tokio::fs::create_dir_all(spool_dir).await.map_err(|e| {
        RestoreError::Target(format!(
            "creating the spool directory {}: {e}",
            spool_dir.display()
        ))
    })?;
    let stem = format!(
        "restore-{}-{}-{}",
        manifest.database.name,
        manifest.backup_id,
        std::process::id()
    );
    let parts = Parts::create(spool_dir, &stem).await?;
    let result = fill(storage, manifest, progress, parts, spool_dir, &stem).await;
    if result.is_err() {
        for suffix in ["schema", "rows", "late", "body"] {
            let _ = tokio::fs::remove_file(spool_dir.join(format!("{stem}.{suffix}"))).await;
        }
    }
    result
}

async fn fill(
    storage: &dyn Storage,
    manifest: &Manifest,
    progress: &mut Progress,
    mut parts: Parts,
    spool_dir: &Path,
    stem: &str,
) -> Result<PathBuf, RestoreError> {
    let mut rows_per_table: std::collections::HashMap<String, u64> = Default::default();
    read_statements(storage, manifest, progress, async |batch| {
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
    parts.flush().await?;
    let out_path = spool_dir.join(format!("{stem}.body"));
    let mut out = BufWriter::new(create(&out_path).await?);
    for suffix in ["schema", "rows", "late"] {
        let part = spool_dir.join(format!("{stem}.{suffix}"));
        let mut input = File::open(&part).await.map_err(spool_io)?;
        tokio::io::copy(&mut input, &mut out)
            .await
            .map_err(spool_io)?;
        let _ = tokio::fs::remove_file(&part).await;
    }
    out.flush().await.map_err(spool_io)?;
    Ok(out_path)
}

/// Replaces everything in the D1 database `database_id` with the spooled `body` (from
/// [`spool_import_body`]) in one atomic import: what the database holds now is read, dropped and loaded over
/// in the same request, so a failed import leaves it as it was. Removes the spool files either way. Used by
/// `restore --to-d1` and by `migrations apply` to undo a failed run on a database without Time Travel.
pub async fn import_replacing(
    client: &Client,
    database_id: &str,
    body: &Path,
) -> Result<ImportOutcome, RestoreError> {
    let import_file = body.with_extension("sql");
    let result = async {
        let objects = user_objects(client, database_id).await?;
        assemble_import_file(body, &import_file, &clearing_statements(&objects)).await?;
        Ok(client.import(database_id, &import_file).await?)
    }
    .await;
    // Scratch files whatever happened (a full disk included): never leave a dump behind in state_dir.
    let _ = tokio::fs::remove_file(body).await;
    let _ = tokio::fs::remove_file(&import_file).await;
    result
}

/// Writes the import file `out_path`: `PRAGMA defer_foreign_keys=TRUE;`, the `clearing` statements, then
/// `body`. Because D1 applies an import atomically, clearing and loading then succeed or fail together.
async fn assemble_import_file(
    body: &Path,
    out_path: &Path,
    clearing: &[String],
) -> Result<(), RestoreError> {
    let mut out = BufWriter::new(create(out_path).await?);
    out.write_all(b"PRAGMA defer_foreign_keys=TRUE;\n")
        .await
        .map_err(spool_io)?;
    for stmt in clearing {
        out.write_all(stmt.as_bytes()).await.map_err(spool_io)?;
        out.write_all(b"\n").await.map_err(spool_io)?;
    }
    let mut input = File::open(body).await.map_err(spool_io)?;
    tokio::io::copy(&mut input, &mut out)
        .await
        .map_err(spool_io)?;
    out.flush().await.map_err(spool_io)
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
    async fn create(dir: &Path, stem: &str) -> Result<Parts, RestoreError> {
        Ok(Parts {
            schema: BufWriter::new(create(&dir.join(format!("{stem}.schema"))).await?),
            rows: BufWriter::new(create(&dir.join(format!("{stem}.rows"))).await?),
            late: BufWriter::new(create(&dir.join(format!("{stem}.late"))).await?),
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

    async fn flush(&mut self) -> Result<(), RestoreError> {
        for out in [&mut self.schema, &mut self.rows, &mut self.late] {
            out.flush().await.map_err(spool_io)?;
        }
        Ok(())
    }
}

async fn create(path: &Path) -> Result<File, RestoreError> {
    File::create(path)
        .await
        .map_err(|e| RestoreError::Target(format!("creating {}: {e}", path.display())))
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
