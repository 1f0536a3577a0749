//! Validation of a SQL dump while it streams. A backup only counts when its body is a complete D1-format
//! dump: UTF-8 SQL starting with `PRAGMA defer_foreign_keys=TRUE;`, exactly as long as the server announced,
//! not an HTML error page, not empty, and ending with a complete statement. Peers have stored truncated
//! dumps and CDN error pages as "successful" backups and then pruned the good ones; this module is why
//! d1vault does not.
//!
//! The same pass counts rows per table and collects the names in the migrations table, for the manifest.

use std::collections::HashMap;
use std::io;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;

use crate::manifest::TableCount;
use crate::sql::{SqlValue, StatementKind, StatementSplitter, classify, parse_insert};

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
}

impl Tally {
    fn table(&mut self, name: &str) -> &mut TableCount {
        let index = match self.table_index.get(name) {
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
        };
        &mut self.tables[index]
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
        match classify(stmt) {
            StatementKind::CreateTable { name } if is_user_table(&name) => {
                self.table(&name);
            }
            StatementKind::Insert { table } if is_user_table(&table) => {
                self.table(&table).rows += 1;
                if table.eq_ignore_ascii_case(&self.migrations_table) {
                    if let Some(name) = migration_name(stmt) {
                        self.migrations.push(name);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Tables that belong to the user (not SQLite's or Cloudflare's internals).
fn is_user_table(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !lower.starts_with("sqlite_") && !lower.starts_with("_cf_")
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

/// Chunks in flight between an [`InspectingReader`] and its inspector thread: enough to keep both sides
/// busy, few enough to keep memory bounded (a chunk is at most one read, typically 16–256 KiB).
const CHUNKS_IN_FLIGHT: usize = 16;

/// An `AsyncRead` that passes a dump through unchanged while a [`DumpInspector`] checks a copy of it on a
/// blocking thread, so that validation, hashing and row counting run in parallel with compression and
/// upload instead of adding to them. A bad dump turns into an I/O error (soon after the inspector sees the
/// first bad byte, or at EOF), and EOF itself is only reported once the inspector has accepted the whole
/// dump, so whatever consumes the stream (an upload) fails and stores nothing.
pub struct InspectingReader<R> {
    inner: R,
    /// Copies of the bytes read, to the inspector thread; `None` once EOF was passed on.
    chunks: Option<PollSender<Bytes>>,
    /// The inspector's verdict, sent when it has seen everything or found the dump bad.
    verdict: oneshot::Receiver<Result<DumpReport, DumpError>>,
    outcome: Option<Result<DumpReport, DumpError>>,
}

impl<R: AsyncRead + Unpin> InspectingReader<R> {
    /// Wraps `inner`, starting the inspector on tokio's blocking pool (so it must be called inside a tokio
    /// runtime).
    pub fn new(inner: R, inspector: DumpInspector) -> Self {
        let (chunk_sender, chunk_receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let (verdict_sender, verdict) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let _ = verdict_sender.send(inspect_chunks(inspector, chunk_receiver));
        });
        InspectingReader {
            inner,
            chunks: Some(PollSender::new(chunk_sender)),
            verdict,
            outcome: None,
        }
    }

    /// The verdict, once the stream was read to the end (or failed validation). `None` if reading stopped
    /// early for another reason.
    pub fn outcome(self) -> Option<Result<DumpReport, DumpError>> {
        self.outcome
    }

    /// Waits for the inspector's verdict and turns it into the end of the stream or an error.
    fn poll_verdict(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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

/// The inspector thread: feeds every chunk to `inspector` until the stream ends or the dump is found bad
/// (then it returns at once, which closes the channel and tells the reader to stop).
fn inspect_chunks(
    mut inspector: DumpInspector,
    mut chunks: mpsc::Receiver<Bytes>,
) -> Result<DumpReport, DumpError> {
    while let Some(chunk) = chunks.blocking_recv() {
        inspector.push(&chunk)?;
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
        let Some(chunks) = this.chunks.as_mut() else {
            return this.poll_verdict(cx);
        };
        // Room for the copy first, so that bytes read are never bytes the inspector misses.
        if std::task::ready!(chunks.poll_reserve(cx)).is_err() {
            // The inspector stopped early: it found the dump bad.
            this.chunks = None;
            return this.poll_verdict(cx);
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if new.is_empty() {
            // End of the body: closing the channel lets the inspector finish; EOF waits for its verdict.
            this.chunks = None;
            return this.poll_verdict(cx);
        }
        if chunks.send_item(Bytes::copy_from_slice(new)).is_err() {
            // Closed since the reservation: the inspector found the dump bad; do not pass these bytes on.
            buf.set_filled(before);
            this.chunks = None;
            return this.poll_verdict(cx);
        }
        Poll::Ready(Ok(()))
    }
}
