//! Export and import: D1's polling protocols, the download URL and the upload URL.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use d1_dump::{DumpError, DumpOptions, write_dump};
use d1_dump::{SqlError, StatementSplitter};

use super::AppState;
use super::engine::{
    MAX_STATEMENT_BYTES, Meta, TransactionGuard, d1_message, database_size, refusal,
    set_foreign_keys,
};
use super::envelope::{ok, polling_failure, success};
use super::faults::DownloadFault;
use super::registry::Database;

/// How long the server holds a poll open waiting for the task to finish (D1 waits about a second).
const POLL_HOLD: Duration = Duration::from_secs(1);

/// How a background task ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Running,
    Done(Value),
    Failed(String),
}

/// A running or finished export or import of one database.
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) at_bookmark: String,
    outcome: watch::Receiver<Outcome>,
    /// Polls still to answer `active` regardless of progress (fault injection).
    active_polls_left: u32,
    /// The error to report instead of the result (fault injection).
    forced_error: Option<String>,
    messages: Vec<String>,
}

/// Per-database transfer state: at most one export and one import at a time.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    pub(crate) exports: Mutex<std::collections::HashMap<uuid::Uuid, Task>>,
    pub(crate) imports: Mutex<std::collections::HashMap<uuid::Uuid, Task>>,
    /// Export files by download token (a database keeps only its newest export on disk, under only its
    /// newest URL; older URLs then answer 404, as expired signed URLs do).
    pub(crate) downloads: Mutex<std::collections::HashMap<String, ExportFile>>,
    /// Upload slots by token.
    pub(crate) uploads: Mutex<std::collections::HashMap<String, UploadSlot>>,
}

/// A finished export on disk.
#[derive(Debug, Clone)]
pub(crate) struct ExportFile {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) database: uuid::Uuid,
    /// The database's bookmark when the dump was written, and what was dumped: an export of an unchanged
    /// database with the same options reuses the file, since its content would be identical.
    pub(crate) at_bookmark: String,
    pub(crate) options: DumpOptions,
}

/// A file announced by `init`, possibly uploaded.
#[derive(Debug, Clone)]
pub(crate) struct UploadSlot {
    pub(crate) database: uuid::Uuid,
    pub(crate) etag: String,
    pub(crate) filename: String,
    pub(crate) path: PathBuf,
    pub(crate) uploaded_md5: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

/// Waits (up to [`POLL_HOLD`]) for the task to finish, then answers the poll; removes finished tasks.
async fn answer_poll(
    tasks: &Mutex<std::collections::HashMap<uuid::Uuid, Task>>,
    db: uuid::Uuid,
    kind: &str,
) -> Response {
    let (mut receiver, at_bookmark) = {
        let guard = lock(tasks);
        let Some(task) = guard.get(&db) else {
            return polling_failure(if kind == "import" {
                "Not currently importing anything."
            } else {
                "Not currently exporting anything."
            });
        };
        (task.outcome.clone(), task.at_bookmark.clone())
    };
    let _ = tokio::time::timeout(
        POLL_HOLD,
        receiver.wait_for(|o| !matches!(o, Outcome::Running)),
    )
    .await;
    let outcome = receiver.borrow().clone();
    let mut guard = lock(tasks);
    let Some(task) = guard.get_mut(&db) else {
        return polling_failure("Not currently importing anything.");
    };
    let messages = std::mem::take(&mut task.messages);
    let active = |messages: Vec<String>| {
        success(
            StatusCode::ACCEPTED,
            json!({ "success": true, "type": kind, "at_bookmark": at_bookmark, "status": "active", "messages": messages }),
        )
    };
    if task.active_polls_left > 0 {
        task.active_polls_left -= 1;
        return active(messages);
    }
    let response = match (outcome, task.forced_error.clone()) {
        (Outcome::Running, _) => return active(messages),
        (_, Some(error)) | (Outcome::Failed(error), None) => ok(json!({
            "success": true, "type": kind, "at_bookmark": at_bookmark, "status": "error",
            "error": error, "errors": [error], "messages": messages
        })),
        (Outcome::Done(result), None) => ok(json!({
            "success": true, "type": kind, "at_bookmark": at_bookmark, "status": "complete",
            "result": result, "messages": messages
        })),
    };
    guard.remove(&db);
    response
}

/// The `/export` request body.
#[derive(Debug, Deserialize)]
pub(crate) struct ExportRequest {
    output_format: Option<String>,
    #[serde(default)]
    dump_options: ExportDumpOptions,
    current_bookmark: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ExportDumpOptions {
    #[serde(default)]
    no_data: bool,
    #[serde(default)]
    no_schema: bool,
    #[serde(default)]
    tables: Vec<String>,
}

/// `POST …/export`: starts an export, or answers a poll of the running one.
pub(crate) async fn export(
    state: Arc<AppState>,
    db: Arc<Database>,
    request: ExportRequest,
) -> Response {
    if request.output_format.as_deref() != Some("polling") {
        return super::envelope::failure(
            StatusCode::BAD_REQUEST,
            7400,
            "output_format must be \"polling\"",
        );
    }
    let transfers = &state.transfers;
    if let Some(bookmark) = &request.current_bookmark {
        let known = lock(&transfers.exports)
            .get(&db.uuid)
            .map(|t| t.at_bookmark.clone());
        if known.as_deref() != Some(bookmark.as_str()) {
            return polling_failure("Not currently exporting anything.");
        }
        return answer_poll(&transfers.exports, db.uuid, "export").await;
    }
    {
        let mut exports = lock(&transfers.exports);
        if let Some(task) = exports.get(&db.uuid)
            && matches!(*task.outcome.borrow(), Outcome::Running)
        {
            return polling_failure("Currently processing a long-running export.");
        }
        let (active_polls, forced_error) = state.faults.take_export_faults();
        let (sender, receiver) = watch::channel(Outcome::Running);
        let at_bookmark = db.current_bookmark();
        let filename = format!("{}-{}.sql", db.uuid, at_bookmark);
        exports.insert(
            db.uuid,
            Task {
                at_bookmark: at_bookmark.clone(),
                outcome: receiver,
                active_polls_left: active_polls,
                forced_error,
                messages: vec![format!("Generating {filename}")],
            },
        );
        let options = DumpOptions {
            no_data: request.dump_options.no_data,
            no_schema: request.dump_options.no_schema,
            tables: request.dump_options.tables,
        };
        let state = state.clone();
        let db = db.clone();
        let write_after = state.faults.take_write_after_export();
        tokio::task::spawn_blocking(move || {
            let outcome = run_export(&state, &db, &options, &at_bookmark, &filename);
            if let Some(sql) = write_after {
                // A fault: another writer commits once the export is written (a new bookmark).
                let _ = crate::engine::run_batch(&db, &[(sql, Vec::new())], true);
            }
            let _ = sender.send(outcome);
        });
    }
    answer_poll(&transfers.exports, db.uuid, "export").await
}

/// Writes the dump to a file under the data directory and registers its download URL. When the newest
/// export of this database was made at the same bookmark with the same options, its file is reused under
/// a new URL: the content would be byte for byte the same, and a gigabyte dump takes seconds to write.
fn run_export(
    state: &AppState,
    db: &Database,
    options: &DumpOptions,
    at_bookmark: &str,
    filename: &str,
) -> Outcome {
    let token = random_token();
    let same_export = lock(&state.transfers.downloads)
        .values()
        .find(|f| f.database == db.uuid && f.at_bookmark == at_bookmark && &f.options == options)
        .cloned();
    // Checked after the lock is released: no file-system call while the downloads map is held.
    let file = match same_export.filter(|f| f.path.is_file()) {
        Some(file) => Ok(file),
        None => write_export(state, db, options, at_bookmark),
    };
    match file {
        Ok(file) => {
            let stale: Vec<PathBuf> = {
                let mut downloads = lock(&state.transfers.downloads);
                let old: Vec<String> = downloads
                    .iter()
                    .filter(|(_, entry)| entry.database == db.uuid)
                    .map(|(token, _)| token.clone())
                    .collect();
                let stale = old
                    .iter()
                    .filter_map(|t| downloads.remove(t))
                    .map(|e| e.path)
                    .filter(|path| *path != file.path)
                    .collect();
                downloads.insert(token.clone(), file);
                stale
            };
            for path in stale {
                let _ = std::fs::remove_file(path);
            }
            Outcome::Done(json!({
                "filename": filename,
                "signed_url": format!("http://{}/__emulator/exports/{token}", state.addr),
            }))
        }
        Err(e) => {
            if matches!(e, DumpError::VirtualTables) {
                state.stats.record_refused_export();
            }
            Outcome::Failed(e.to_string())
        }
    }
}

/// Dumps `db` into a new file under the data directory. Not synced: export files are scratch copies,
/// rewritten by the next export.
fn write_export(
    state: &AppState,
    db: &Database,
    options: &DumpOptions,
    at_bookmark: &str,
) -> Result<ExportFile, DumpError> {
    let path = state
        .work_dir
        .join("exports")
        .join(format!("{}.sql", random_token()));
    let result = (|| -> Result<u64, DumpError> {
        std::fs::create_dir_all(path.parent().expect("export path has a parent"))?;
        let mut file = std::fs::File::create(&path)?;
        let conn = db.connection()?;
        // A read transaction gives the dump one consistent snapshot (the lock already keeps writers out);
        // the guard ends it however the dump ends, a panic included.
        let snapshot = TransactionGuard::begin_read(&conn)?;
        let written = write_dump(&conn, options, &mut file);
        drop(snapshot);
        Ok(written?.bytes)
    })();
    match result {
        Ok(size) => Ok(ExportFile {
            path,
            size,
            database: db.uuid,
            at_bookmark: at_bookmark.to_string(),
            options: options.clone(),
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// `GET /__emulator/exports/{token}`: the signed download URL (no auth), with download faults.
pub(crate) async fn download(state: Arc<AppState>, token: String) -> Response {
    let entry = lock(&state.transfers.downloads).get(&token).cloned();
    let fault = state.faults.take_download_fault();
    let Some(ExportFile { path, size, .. }) = entry else {
        return expired();
    };
    match fault {
        Some(DownloadFault::Expired) => return expired(),
        Some(DownloadFault::Html) => {
            let page = "<!DOCTYPE html><html><head><title>Error 1101</title></head><body><h1>Worker threw exception</h1></body></html>";
            return ([(header::CONTENT_TYPE, "text/html; charset=UTF-8")], page).into_response();
        }
        Some(DownloadFault::Empty) => {
            return (
                [(header::CONTENT_TYPE, "application/octet-stream")],
                Body::empty(),
            )
                .into_response();
        }
        _ => {}
    }
    let short = matches!(
        fault,
        Some(DownloadFault::ChunkedShort | DownloadFault::CloseShort)
    );
    let length = if short {
        match statement_boundary_before(&path, size / 2).await {
            Ok(cut) => cut,
            Err(_) => return expired(),
        }
    } else {
        size
    };
    if fault == Some(DownloadFault::CloseShort) {
        return match close_delimited_once(&path, length).await {
            Ok(location) => (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response(),
            Err(_) => expired(),
        };
    }
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return expired(),
    };
    if matches!(
        fault,
        Some(DownloadFault::Chunked | DownloadFault::ChunkedShort)
    ) {
        // No Content-Length on a streamed body: hyper sends it chunked, and ends it cleanly.
        let body = Body::from_stream(tokio_util::io::ReaderStream::new(
            tokio::io::AsyncReadExt::take(file, length),
        ));
        return ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
    }
    let body = if fault == Some(DownloadFault::Stall) {
        let half = size / 2;
        let stream = tokio_util::io::ReaderStream::new(tokio::io::AsyncReadExt::take(file, half))
            .chain(futures_util::stream::once(async {
                // Silence, bounded so that a forgotten client does not keep the task forever.
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                Err(std::io::Error::other("injected stall"))
            }));
        Body::from_stream(stream)
    } else if fault == Some(DownloadFault::Truncate) {
        // Send the first half, then fail the body so the connection closes short of Content-Length.
        let half = size / 2;
        let stream = tokio_util::io::ReaderStream::new(tokio::io::AsyncReadExt::take(file, half))
            .chain(futures_util::stream::once(async {
                // Pause before failing: while the body is pending, hyper flushes the headers and the half
                // already produced, so the client sees a response that stops short, not a refused request.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Err(std::io::Error::other("injected truncation"))
            }));
        Body::from_stream(stream)
    } else {
        // 256 KiB reads: the default 4 KiB chunks made serving a gigabyte dump CPU-bound on chunk overhead.
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            256 * 1024,
        ))
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if matches!(fault, Some(DownloadFault::Truncate | DownloadFault::Stall)) {
        // Tell the client not to reuse this connection: it dies mid-body, and a pooled client would
        // otherwise send its next request into the closing socket.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The offset just after the last `;\n` at or before `limit` (within the 1 MiB before it), so that a dump
/// cut there ends after a complete statement; `limit` itself when there is none.
async fn statement_boundary_before(path: &std::path::Path, limit: u64) -> std::io::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let window = limit.min(1 << 20);
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(limit - window)).await?;
    let mut buf = vec![0u8; window as usize];
    file.read_exact(&mut buf).await?;
    Ok(buf
        .windows(2)
        .rposition(|w| w == b";\n")
        .map(|i| limit - window + i as u64 + 2)
        .unwrap_or(limit))
}

/// Serves the first `length` bytes of `path` once, as an HTTP/1.0 answer without `Content-Length` that
/// ends when the connection closes, on a new listener next to the emulator's; returns its URL.
async fn close_delimited_once(path: &std::path::Path, length: u64) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/export.sql", listener.local_addr()?);
    let path = path.to_path_buf();
    tokio::spawn(async move {
        let accepted = tokio::time::timeout(Duration::from_secs(60), listener.accept()).await;
        let Ok(Ok((mut socket, _))) = accepted else {
            return;
        };
        // Read the request head (the client waits for it to be taken before reading the answer).
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let Ok(file) = tokio::fs::File::open(&path).await else {
            return;
        };
        let _ = socket
            .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
            .await;
        let _ = tokio::io::copy(&mut file.take(length), &mut socket).await;
        let _ = socket.shutdown().await;
    });
    Ok(url)
}

fn expired() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
    )
        .into_response()
}

/// The `/import` request body.
#[derive(Debug, Deserialize)]
pub(crate) struct ImportRequest {
    action: String,
    etag: Option<String>,
    filename: Option<String>,
    current_bookmark: Option<String>,
}

/// `POST …/import`: `init`, `ingest` and `poll`.
pub(crate) async fn import(
    state: Arc<AppState>,
    db: Arc<Database>,
    request: ImportRequest,
) -> Response {
    let bad = |message: &str| super::envelope::failure(StatusCode::BAD_REQUEST, 7400, message);
    match request.action.as_str() {
        "init" => {
            let Some(etag) = request
                .etag
                .filter(|e| e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit()))
            else {
                return bad("init requires `etag`, the md5 of the file in hex");
            };
            let etag = etag.to_ascii_lowercase();
            // A file with this etag already uploaded for this database starts at once (D1 saves the re-upload).
            let uploaded = lock(&state.transfers.uploads)
                .values()
                .find(|s| s.database == db.uuid && s.uploaded_md5.as_deref() == Some(etag.as_str()))
                .cloned();
            if let Some(slot) = uploaded {
                return start_import(state, db, slot).await;
            }
            let token = random_token();
            let filename = format!("{}-{etag}.sql", db.uuid);
            let path = state.work_dir.join("uploads").join(format!("{token}.sql"));
            lock(&state.transfers.uploads).insert(
                token.clone(),
                UploadSlot {
                    database: db.uuid,
                    etag,
                    filename: filename.clone(),
                    path,
                    uploaded_md5: None,
                },
            );
            ok(json!({
                "filename": filename,
                "upload_url": format!("http://{}/__emulator/uploads/{token}", state.addr),
            }))
        }
        "ingest" => {
            let (Some(etag), Some(filename)) = (request.etag, request.filename) else {
                return bad("ingest requires `etag` and `filename`");
            };
            let slot = lock(&state.transfers.uploads)
                .values()
                .find(|s| s.database == db.uuid && s.filename == filename)
                .cloned();
            let Some(slot) = slot else {
                return polling_failure(
                    "No upload found for that filename; call init and upload first.",
                );
            };
            if slot.uploaded_md5.as_deref() != Some(etag.to_ascii_lowercase().as_str())
                || slot.etag != etag.to_ascii_lowercase()
            {
                return polling_failure(
                    "The uploaded file does not match the etag; upload it again.",
                );
            }
            start_import(state, db, slot).await
        }
        "poll" => {
            let known = lock(&state.transfers.imports)
                .get(&db.uuid)
                .map(|t| t.at_bookmark.clone());
            if known.is_none()
                || (request.current_bookmark.is_some() && request.current_bookmark != known)
            {
                return polling_failure("Not currently importing anything.");
            }
            answer_poll(&state.transfers.imports, db.uuid, "import").await
        }
        other => bad(&format!(
            "unknown import action {other:?}; expected init, ingest or poll"
        )),
    }
}

async fn start_import(state: Arc<AppState>, db: Arc<Database>, slot: UploadSlot) -> Response {
    let limit = state.faults.import_max_bytes();
    let size = tokio::fs::metadata(&slot.path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if size > limit {
        return polling_failure(&format!(
            "The import file is {size} bytes, over the limit of {limit} bytes for one import."
        ));
    }
    {
        let mut imports = lock(&state.transfers.imports);
        if imports
            .get(&db.uuid)
            .is_some_and(|t| matches!(*t.outcome.borrow(), Outcome::Running))
        {
            return polling_failure("Currently processing a long-running import.");
        }
        let (sender, receiver) = watch::channel(Outcome::Running);
        imports.insert(
            db.uuid,
            Task {
                at_bookmark: db.current_bookmark(),
                outcome: receiver,
                active_polls_left: state.faults.take_import_active_polls(),
                forced_error: None,
                messages: vec![format!("Processing {}", slot.filename)],
            },
        );
        let enforce_fk = state.faults.enforce_foreign_keys();
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = match run_import(&db, &slot.path, enforce_fk) {
                Ok(result) => Outcome::Done(result),
                Err(message) => Outcome::Failed(message),
            };
            let _ = sender.send(outcome);
        });
    }
    answer_poll(&state.transfers.imports, db.uuid, "import").await
}

/// Executes an uploaded SQL file in one transaction; on any failure the database is left untouched and the
/// error names the failing statement.
fn run_import(
    db: &Database,
    path: &std::path::Path,
    enforce_foreign_keys: bool,
) -> Result<Value, String> {
    use std::io::Read;
    let started = Instant::now();
    let conn = db.connection().map_err(|e| e.to_string())?;
    set_foreign_keys(&conn, enforce_foreign_keys)?;
    db.before_write(&conn);
    // Rolls back on any failure, and on a panic half-way, when dropped uncommitted.
    let transaction = TransactionGuard::begin(&conn)?;
    let before = conn.total_changes();
    let count = std::cell::Cell::new(0u64);
    let failure: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
    let outcome = (|| -> Result<(), String> {
        let mut file =
            std::fs::File::open(path).map_err(|e| format!("cannot read the uploaded file: {e}"))?;
        let mut splitter = StatementSplitter::with_max_len(MAX_STATEMENT_BYTES);
        let mut buffer = vec![0u8; 64 * 1024];
        let mut run = |statement: &str| {
            if failure.borrow().is_some() {
                return;
            }
            count.set(count.get() + 1);
            let error = refusal(statement)
                .or_else(|| conn.execute_batch(statement).err().map(|e| d1_message(&e)));
            if let Some(error) = error {
                *failure.borrow_mut() = Some(describe(error, count.get(), statement));
            }
        };
        loop {
            let n = file
                .read(&mut buffer)
                .map_err(|e| format!("cannot read the uploaded file: {e}"))?;
            if n == 0 {
                break;
            }
            splitter.push(&buffer[..n], &mut run).map_err(split_error)?;
            if failure.borrow().is_some() {
                return Ok(());
            }
        }
        if let Some(rest) = splitter.finish().map_err(split_error)? {
            run(&rest);
        }
        Ok(())
    })();
    let error = match outcome {
        Err(e) => Some(e),
        Ok(()) => failure.into_inner(),
    };
    if let Some(error) = error {
        return Err(error);
    }
    transaction
        .commit()
        .map_err(|e| format!("the import was rolled back at commit: {e}"))?;
    let changes = conn.total_changes().saturating_sub(before);
    let meta = Meta {
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        changes,
        last_row_id: conn.last_insert_rowid(),
        changed_db: true,
        size_after: database_size(&conn),
        rows_read: changes,
        rows_written: changes,
    };
    drop(conn);
    let final_bookmark = db.note_change();
    Ok(
        json!({ "final_bookmark": final_bookmark, "num_queries": count.get(), "meta": meta.to_json() }),
    )
}

fn describe(error: String, number: u64, statement: &str) -> String {
    let mut shown: String = statement.chars().take(200).collect();
    if shown.len() < statement.len() {
        shown.push_str("...");
    }
    format!("{error} (statement {number}: {shown})")
}

fn split_error(e: SqlError) -> String {
    match e {
        SqlError::StatementTooLong { start, .. } => {
            format!(
                "Statement too long: statement starting {start:?} is over {MAX_STATEMENT_BYTES} bytes: SQLITE_TOOBIG"
            )
        }
        other => other.to_string(),
    }
}

/// `PUT /__emulator/uploads/{token}`: stores the body, answers 200 with its md5 as a quoted `ETag`.
pub(crate) async fn upload(state: Arc<AppState>, token: String, body: Body) -> Response {
    use md5::{Digest, Md5};
    let Some(slot) = lock(&state.transfers.uploads).get(&token).cloned() else {
        return expired();
    };
    if state.faults.take_upload_stall() {
        // Take the whole body, then stay silent (bounded, so that a forgotten client frees the task).
        let mut stream = body.into_data_stream();
        while let Some(Ok(_)) = stream.next().await {}
        tokio::time::sleep(Duration::from_secs(600)).await;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let result = async {
        tokio::fs::create_dir_all(slot.path.parent().expect("upload path has a parent")).await?;
        let mut file = tokio::fs::File::create(&slot.path).await?;
        let mut hasher = Md5::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        Ok::<_, std::io::Error>(hex::encode(hasher.finalize()))
    }
    .await;
    match result {
        Ok(md5) => {
            if let Some(s) = lock(&state.transfers.uploads).get_mut(&token) {
                s.uploaded_md5 = Some(md5.clone());
            }
            let mut response = StatusCode::OK.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("\"{md5}\"")) {
                response.headers_mut().insert(header::ETAG, v);
            }
            response
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("upload failed: {e}"),
        )
            .into_response(),
    }
}
