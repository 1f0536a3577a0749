//! Where a dump's bytes come from: a D1 export download, or a local SQLite file dumped by
//! [`d1_dump::write_dump_with`] on a blocking thread. Either way the caller gets an `AsyncRead` and never
//! holds the whole dump.

use std::future::Future;
use std::io::{self, Write};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use rusqlite::OpenFlags;
use tokio::io::{AsyncRead, DuplexStream, ReadBuf};
use tokio::sync::oneshot;
use tokio_util::io::SyncIoBridge;

use d1_dump::{DumpOptions, VirtualTables, write_dump_with};

/// Size of the in-memory pipe between the dump thread and the upload (bounded: backpressure, not buffering).
const PIPE_BYTES: usize = 256 * 1024;

/// Streams a consistent snapshot of the SQLite database at `path`, in D1's export format. The snapshot is
/// one read transaction, so writers that commit meanwhile do not tear the dump. A failure of the dump
/// thread (for example a virtual table of another module than FTS5) surfaces as an I/O error at the end of the stream, so the upload
/// fails instead of storing a short dump.
pub fn sqlite_dump(path: &Path, options: DumpOptions) -> io::Result<SqliteDumpReader> {
    if !path.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "SQLite source {} does not exist or is not a file: check sqlite_path",
                path.display()
            ),
        ));
    }
    let (reader, writer) = tokio::io::duplex(PIPE_BYTES);
    let (done_tx, done_rx) = oneshot::channel();
    let bridge = SyncIoBridge::new(writer);
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let result = dump_to(&path, &options, bridge);
        let _ = done_tx.send(result);
    });
    Ok(SqliteDumpReader {
        inner: reader,
        done: Some(done_rx),
    })
}

fn dump_to(
    path: &Path,
    options: &DumpOptions,
    bridge: SyncIoBridge<DuplexStream>,
) -> Result<(), String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags)
        .map_err(|e| format!("opening SQLite source {}: {e}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    // BEGIN plus a read pins one snapshot for the whole dump.
    conn.execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
        .map_err(|e| format!("starting a read snapshot of {}: {e}", path.display()))?;
    let mut out = io::BufWriter::with_capacity(64 * 1024, bridge);
    // Unlike D1's export, a local source's dump is completed with its FTS5 tables (docs/d1-dump-format.md,
    // "Virtual tables"); a virtual table a dump cannot hold fails the backup, naming it.
    write_dump_with(&conn, options, VirtualTables::Complete, &mut out)
        .map_err(|e| format!("dumping {}: {e}", path.display()))?;
    out.flush()
        .map_err(|e| format!("dumping {}: {e}", path.display()))?;
    let mut bridge = out.into_inner().map_err(|e| e.to_string())?;
    bridge.shutdown().map_err(|e| e.to_string())?;
    Ok(())
}

/// The read side of a SQLite dump; see [`sqlite_dump`].
pub struct SqliteDumpReader {
    inner: DuplexStream,
    done: Option<oneshot::Receiver<Result<(), String>>>,
}

impl SqliteDumpReader {
    /// A reader of `inner` that ends cleanly only when `done` reports success: the shape of every dump
    /// written by a task of its own (the D1 backup's completed dump too).
    pub(crate) fn from_parts(
        inner: DuplexStream,
        done: oneshot::Receiver<Result<(), String>>,
    ) -> SqliteDumpReader {
        SqliteDumpReader {
            inner,
            done: Some(done),
        }
    }
}

impl AsyncRead for SqliteDumpReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            return Poll::Ready(Ok(()));
        }
        // EOF of the pipe: the dump is complete only if the thread says so.
        let Some(done) = this.done.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = std::task::ready!(Pin::new(done).poll(cx));
        this.done = None;
        match result {
            Ok(Ok(())) => Poll::Ready(Ok(())),
            Ok(Err(message)) => Poll::Ready(Err(io::Error::other(message))),
            Err(_) => Poll::Ready(Err(io::Error::other(
                "the SQLite dump thread stopped unexpectedly",
            ))),
        }
    }
}
