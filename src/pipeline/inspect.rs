//! Validation of a SQL dump while it streams. A backup only counts when its body is a complete D1-format
//! dump: UTF-8 SQL starting with `PRAGMA defer_foreign_keys=TRUE;`, exactly as long as the server announced,
//! not an HTML error page, not empty, and ending with a complete statement. Peers have stored truncated
//! dumps and CDN error pages as "successful" backups and then pruned the good ones; this module is why
//! d1vault does not.
//!
//! The same pass counts rows per table and collects the names in the migrations table, for the manifest.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;

use crate::manifest::TableCount;
use crate::sql::{
    SqlValue, StatementKind, StatementSplitter, classify, parse_insert, quote_identifier,
};

/// The first statement of every D1 export.
pub const DUMP_HEADER: &str = "PRAGMA defer_foreign_keys=TRUE;";

/// Why a downloaded or generated dump is not a usable backup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    #[error("the dump is empty (0 bytes): the export produced nothing; not counted as a backup")]
    Empty,
    #[error(
        "the download is an HTML page, not a SQL dump (it starts with {start:?}): an error page from a proxy \
         or CDN; not counted as a backup"
    )]
    Html { start: String },
    #[error("the dump is not UTF-8 text at byte {offset}: {detail}")]
    NotUtf8 { offset: u64, detail: String },
    #[error("the dump does not start with `{DUMP_HEADER}` but with {found:?}: not a D1 export")]
    MissingHeader { found: String },
    #[error("the dump is truncated: {received} bytes received, the server announced {announced}")]
    Truncated { received: u64, announced: u64 },
    #[error("the dump is longer than announced: more than {announced} bytes received")]
    Overlong { announced: u64 },
    #[error("the dump ends in the middle of a statement ({tail:?}): truncated")]
    IncompleteStatement { tail: String },
}

/// What the inspection learned about a valid dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpReport {
    /// Bytes of SQL text.
    pub raw_size: u64,
    /// sha256 (hex) of the SQL text.
    pub raw_sha256: String,
    /// Tables in dump order with the rows inserted into each.
    pub tables: Vec<TableCount>,
    /// Names inserted into the migrations table, in dump order.
    pub migrations: Vec<String>,
    /// Statements seen.
    pub statements: u64,
}

/// Counts and checks, kept apart from the splitter so the splitter's callback can borrow them.
#[derive(Debug)]
struct Tally {
    migrations_table: String,
    statements: u64,
    table_index: HashMap<String, usize>,
    tables: Vec<TableCount>,
    migrations: Vec<String>,
    error: Option<DumpError>,
    /// The exact start shared by the INSERTs of the table last inserted into (as `INSERT INTO "t" (`),
    /// with that table's index: a dump is mostly runs of such rows, and counting them by prefix skips
    /// classifying millions of statements one by one.
    row_prefix: Option<(String, usize)>,
}

impl Tally {
    /// The index of table `name` in `tables`, adding it on first sight.
    fn table(&mut self, name: &str) -> usize {
        match self.table_index.get(name) {
            Some(i) => *i,
            None => {
                self.tables.push(TableCount {
                    name: name.to_string(),
                    rows: 0,
                });
                self.table_index
                    .insert(name.to_string(), self.tables.len() - 1);
                self.tables.len() - 1
            }
        }
    }

    /// Remembers how `stmt`, an INSERT into `tables[index]`, starts, when that start names the table
    /// unambiguously: the quoted name followed by `(` or `VALUES` (not `.`, which would make it a schema).
    fn remember_row_prefix(&mut self, stmt: &str, table: &str, index: usize) {
        let head = format!("INSERT INTO {} ", quote_identifier(table));
        if let Some(next) = stmt
            .strip_prefix(head.as_str())
            .and_then(|rest| rest.chars().next())
            && matches!(next, '(' | 'V' | 'v')
        {
            self.row_prefix = Some((format!("{head}{next}"), index));
        }
    }

    fn statement(&mut self, stmt: &str) {
        if self.error.is_some() {
            return;
        }
        self.statements += 1;
        if self.statements == 1 {
            let normalized: String = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
            if !normalized.eq_ignore_ascii_case(DUMP_HEADER) {
                self.error = Some(DumpError::MissingHeader {
                    found: preview(stmt),
                });
            }
            return;
        }
        if let Some((prefix, index)) = &self.row_prefix
            && stmt.starts_with(prefix.as_str())
        {
            self.tables[*index].rows += 1;
            return;
        }
        match classify(stmt) {
            StatementKind::CreateTable { name } if is_user_table(&name) => {
                self.table(&name);
            }
            StatementKind::Insert { table } if is_user_table(&table) => {
                let index = self.table(&table);
                self.tables[index].rows += 1;
                if table.eq_ignore_ascii_case(&self.migrations_table) {
                    // Never counted by prefix: each of its rows also names a migration.
                    if let Some(name) = migration_name(stmt) {
                        self.migrations.push(name);
                    }
                } else {
                    self.remember_row_prefix(stmt, &table, index);
                }
            }
            _ => {}
        }
    }
}

/// Tables that belong to the user (not SQLite's or Cloudflare's internals).
fn is_user_table(name: &str) -> bool {
    let starts_with = |prefix: &str| {
        name.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    !starts_with("sqlite_") && !starts_with("_cf_")
}

/// The `name` value of an INSERT into wrangler's migrations table (`id, name, applied_at`).
fn migration_name(stmt: &str) -> Option<String> {
    let insert = parse_insert(stmt)?;
    let index = match &insert.columns {
        Some(columns) => columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case("name"))?,
        None => 1,
    };
    match insert.values.get(index)? {
        SqlValue::Text(name) => Some(name.clone()),
        _ => None,
    }
}

fn preview(text: &str) -> String {
    let one_line: String = text.chars().take(60).collect();
    one_line.replace('\n', "\\n")
}

/// Feeds on the dump's bytes in order and decides, at the end, whether it is a valid dump.
#[derive(Debug)]
pub struct DumpInspector {
    splitter: StatementSplitter,
    tally: Tally,
    sha256: Sha256,
    received: u64,
    announced: Option<u64>,
    /// The first non-whitespace bytes, to recognise an HTML page before a statement completes.
    start: Vec<u8>,
}

impl DumpInspector {
    /// An inspector for a dump of `announced` bytes (when the server said), whose migrations live in
    /// `migrations_table`.
    pub fn new(announced: Option<u64>, migrations_table: &str) -> Self {
        DumpInspector {
            splitter: StatementSplitter::new(),
            tally: Tally {
                migrations_table: migrations_table.to_string(),
                statements: 0,
                table_index: HashMap::new(),
                tables: Vec::new(),
                migrations: Vec::new(),
                error: None,
                row_prefix: None,
            },
            sha256: Sha256::new(),
            received: 0,
            announced,
            start: Vec::new(),
        }
    }

    /// Consumes the next bytes. Fails as soon as the dump is known to be bad (HTML, no header, not UTF-8,
    /// longer than announced), so that a bad download is abandoned early.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), DumpError> {
        if let Some(err) = &self.tally.error {
            return Err(err.clone());
        }
        self.received += chunk.len() as u64;
        if let Some(announced) = self.announced {
            if self.received > announced {
                return self.fail(DumpError::Overlong { announced });
            }
        }
        self.sha256.update(chunk);
        if self.start.len() < 16 {
            for &b in chunk {
                if self.start.len() == 16 {
                    break;
                }
                // Leading whitespace does not count: an HTML page may start with a newline.
                if self.start.is_empty() && b.is_ascii_whitespace() {
                    continue;
                }
                self.start.push(b);
            }
            if self.start.first() == Some(&b'<') {
                let start = String::from_utf8_lossy(&self.start).into_owned();
                return self.fail(DumpError::Html { start });
            }
        }
        let tally = &mut self.tally;
        if let Err(e) = self.splitter.push(chunk, &mut |stmt| tally.statement(stmt)) {
            return self.fail(DumpError::NotUtf8 {
                offset: self.received,
                detail: e.to_string(),
            });
        }
        match &self.tally.error {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }

    /// Ends the inspection: the dump is valid only if everything announced arrived and the last
    /// statement is complete.
    pub fn finish(self) -> Result<DumpReport, DumpError> {
        if let Some(err) = self.tally.error {
            return Err(err);
        }
        if self.received == 0 {
            return Err(DumpError::Empty);
        }
        if let Some(announced) = self.announced {
            if self.received < announced {
                return Err(DumpError::Truncated {
                    received: self.received,
                    announced,
                });
            }
        }
        let mut tally = self.tally;
        let tail = self.splitter.finish().map_err(|e| DumpError::NotUtf8 {
            offset: self.received,
            detail: e.to_string(),
        })?;
        if let Some(tail) = tail {
            // A complete final statement without its `;` is still incomplete for SQLite's purposes.
            return Err(DumpError::IncompleteStatement {
                tail: preview(&tail),
            });
        }
        if tally.statements == 0 {
            return Err(DumpError::MissingHeader {
                found: String::new(),
            });
        }
        Ok(DumpReport {
            raw_size: self.received,
            raw_sha256: hex::encode(self.sha256.finalize()),
            tables: std::mem::take(&mut tally.tables),
            migrations: std::mem::take(&mut tally.migrations),
            statements: tally.statements,
        })
    }

    fn fail(&mut self, err: DumpError) -> Result<(), DumpError> {
        self.tally.error = Some(err.clone());
        Err(err)
    }
}

/// Bytes copied for the inspector are sent in batches of about this size: one channel hand-over per read
/// (often 16 KiB) cost more than the copy itself.
const BATCH_BYTES: usize = 256 * 1024;

/// Batches in flight between an [`InspectingReader`] and its inspector thread: enough to keep both sides
/// busy, few enough to keep memory bounded (about 2 MiB).
const BATCHES_IN_FLIGHT: usize = 8;

/// An `AsyncRead` that passes a dump through unchanged while a [`DumpInspector`] checks a copy of it on a
/// blocking thread, so that validation, hashing and row counting run in parallel with compression and
/// upload instead of adding to them. A bad dump turns into an I/O error (soon after the inspector sees the
/// first bad byte, or at EOF), and EOF itself is only reported once the inspector has accepted the whole
/// dump, so whatever consumes the stream (an upload) fails and stores nothing.
pub struct InspectingReader<R> {
    inner: R,
    /// Copies of the bytes read, to the inspector thread; `None` once EOF was passed on.
    batches: Option<PollSender<Bytes>>,
    /// Bytes read but not yet sent to the inspector.
    batch: BytesMut,
    /// Whether `inner` reached its end (the last batch may still be waiting for room).
    inner_done: bool,
    /// The inspector's verdict, sent when it has seen everything or found the dump bad.
    verdict: oneshot::Receiver<Result<DumpReport, DumpError>>,
    outcome: Option<Result<DumpReport, DumpError>>,
}

impl<R: AsyncRead + Unpin> InspectingReader<R> {
    /// Wraps `inner`, starting the inspector on tokio's blocking pool (so it must be called inside a tokio
    /// runtime).
    pub fn new(inner: R, inspector: DumpInspector) -> Self {
        let (batch_sender, batch_receiver) = mpsc::channel(BATCHES_IN_FLIGHT);
        let (verdict_sender, verdict) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let _ = verdict_sender.send(inspect_batches(inspector, batch_receiver));
        });
        InspectingReader {
            inner,
            batches: Some(PollSender::new(batch_sender)),
            batch: BytesMut::new(),
            inner_done: false,
            verdict,
            outcome: None,
        }
    }

    /// The verdict, once the stream was read to the end (or failed validation). `None` if reading stopped
    /// early for another reason.
    pub fn outcome(self) -> Option<Result<DumpReport, DumpError>> {
        self.outcome
    }

    /// Hands the pending batch to the inspector. If the inspector already stopped (it found the dump bad),
    /// the channel is dropped instead, and the verdict is what comes next.
    fn poll_send_batch(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(batches) = self.batches.as_mut() else {
            return Poll::Ready(());
        };
        let sent = std::task::ready!(batches.poll_reserve(cx)).is_ok()
            && batches.send_item(self.batch.split().freeze()).is_ok();
        if !sent {
            self.batches = None;
        }
        Poll::Ready(())
    }

    /// Waits for the inspector's verdict and turns it into the end of the stream or an error.
    fn poll_verdict(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing the channel lets the inspector finish.
        self.batches = None;
        let outcome = std::task::ready!(Pin::new(&mut self.verdict).poll(cx)).map_err(|_| {
            io::Error::other("the dump inspector stopped without a verdict (a bug in d1vault)")
        })?;
        let result = match &outcome {
            Ok(_) => Ok(()),
            Err(err) => Err(io::Error::new(io::ErrorKind::InvalidData, err.clone())),
        };
        self.outcome = Some(outcome);
        Poll::Ready(result)
    }
}

/// The inspector thread: feeds every batch to `inspector` until the stream ends or the dump is found bad
/// (then it returns at once, which closes the channel and tells the reader to stop).
fn inspect_batches(
    mut inspector: DumpInspector,
    mut batches: mpsc::Receiver<Bytes>,
) -> Result<DumpReport, DumpError> {
    while let Some(batch) = batches.blocking_recv() {
        inspector.push(&batch)?;
    }
    inspector.finish()
}

impl<R: AsyncRead + Unpin> AsyncRead for InspectingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &this.outcome {
            Some(Ok(_)) => return Poll::Ready(Ok(())), // at EOF and valid
            Some(Err(err)) => {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, err.clone())));
            }
            None => {}
        }
        loop {
            if this.batches.is_none() {
                return this.poll_verdict(cx);
            }
            // A full batch (or the last one) goes to the inspector before anything else is read, so that
            // memory stays bounded and EOF is only passed on once the inspector has seen every byte.
            if this.batch.len() >= BATCH_BYTES || this.inner_done && !this.batch.is_empty() {
                std::task::ready!(this.poll_send_batch(cx));
                continue;
            }
            if this.inner_done {
                return this.poll_verdict(cx);
            }
            let before = buf.filled().len();
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let new = &buf.filled()[before..];
            if new.is_empty() {
                this.inner_done = true;
                continue;
            }
            this.batch.extend_from_slice(new);
            return Poll::Ready(Ok(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(dump: &str) -> Vec<(String, u64)> {
        let mut inspector = DumpInspector::new(None, "d1_migrations");
        inspector.push(dump.as_bytes()).unwrap();
        let report = inspector.finish().unwrap();
        report
            .tables
            .into_iter()
            .map(|t| (t.name, t.rows))
            .collect()
    }

    #[test]
    fn rows_counted_by_prefix_match_rows_counted_one_by_one() {
        // Proves the INSERT-prefix shortcut counts exactly what classifying each statement counts: names
        // that share a prefix, quotes inside names, a schema-qualified name after a cached one, other
        // casing, and tables interleaved.
        let dump = "PRAGMA defer_foreign_keys=TRUE;\n\
            CREATE TABLE \"a\" (x);\nCREATE TABLE \"ab\" (x);\nCREATE TABLE \"q\"\"t\" (x);\nCREATE TABLE \"b\" (x);\n\
            INSERT INTO \"a\" (\"x\") VALUES(1);\nINSERT INTO \"a\" (\"x\") VALUES(2);\n\
            INSERT INTO \"ab\" (\"x\") VALUES(1);\nINSERT INTO \"a\" VALUES(3);\n\
            INSERT INTO \"q\"\"t\" (\"x\") VALUES(1);\nINSERT INTO \"a\" .\"b\" VALUES(1);\n\
            insert into \"a\" (\"x\") values(4);\nINSERT INTO \"a\" (\"x\") VALUES(5);\n";
        assert_eq!(
            rows(dump),
            vec![
                ("a".to_string(), 5),
                ("ab".to_string(), 1),
                ("q\"t".to_string(), 1),
                ("b".to_string(), 1),
            ]
        );
    }
}
