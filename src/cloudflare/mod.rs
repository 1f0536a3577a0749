//! The Cloudflare D1 REST API client: database lookup, queries, the export polling protocol and its
//! download, the import protocol, and Time Travel bookmarks.
//!
//! Every API request goes through one retry loop ([`Client::call`]): it waits for the shared
//! [`RateLimiter`], retries 429 (honouring `Retry-After`), 5xx and dropped connections with capped
//! exponential backoff and full jitter, and fails at once on 400/401/403/404 with a message that says what
//! to fix. The API token and the export's signed URL are [`Secret`]s and never reach a message or a log.

mod error;
mod rate_limit;

pub use error::{ApiError, ErrorClass};
pub use rate_limit::{RateLimiter, WINDOW as RATE_LIMIT_WINDOW};

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::TryStreamExt;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use d1_dump::DumpOptions;

use crate::config::CloudflareConfig;
use crate::retry::{RetryPolicy, parse_retry_after};
use crate::secret::Secret;

/// A finished export, ready to download.
#[derive(Debug, Clone)]
pub struct ExportReady {
    /// The Time Travel bookmark the export was taken at.
    pub at_bookmark: String,
    /// The file name D1 gives the dump, when it names one.
    pub filename: Option<String>,
    /// The download URL: a bearer credential for the whole database, valid for an hour.
    pub signed_url: Secret,
}

/// An export download in progress.
pub struct Download {
    /// The size the server announced, to check the body against. Always known: a download without
    /// `Content-Length` is refused, since a body that ends early would otherwise look complete.
    pub content_length: u64,
    /// The announced media type (an HTML error page is refused by the dump validator too).
    pub content_type: Option<String>,
    /// The body as a stream; a dropped connection surfaces as an I/O error.
    pub body: Box<dyn AsyncRead + Send + Unpin>,
}

/// One database as the API describes it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// The database id, the key of every per-database API path.
    pub uuid: String,
    /// The database name, as `[[database]] name` matches it.
    pub name: String,
    /// D1's storage version: `alpha`, `beta` or `production`; `alpha` databases have no Time Travel.
    #[serde(default)]
    pub version: Option<String>,
}

/// One page of the account's database list (`GET …/d1/database?page=N&per_page=M`).
#[derive(Debug, Clone)]
pub struct DatabasePage {
    /// The databases on this page.
    pub databases: Vec<DatabaseInfo>,
    /// `result_info.per_page`: the page size the API applied (it may differ from the one asked for).
    pub per_page: Option<u64>,
    /// `result_info.total_count`: how many databases the account holds, by the API's count.
    pub total_count: Option<u64>,
}

/// The result of one statement of a `/query` call.
#[derive(Debug, Clone, Deserialize)]
pub struct QueryResult {
    /// The rows, one JSON object per row.
    #[serde(default)]
    pub results: Vec<serde_json::Map<String, Value>>,
    /// D1's `meta` object (changes, duration, bookmarks ...), kept as JSON.
    #[serde(default)]
    pub meta: Value,
}

/// A finished import.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    /// Statements D1 reports it ran.
    pub num_queries: Option<u64>,
    /// The bookmark after the import, when D1 reports one.
    pub final_bookmark: Option<String>,
}

/// Tunables of the export and import polling loops.
#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    /// First wait between polls.
    pub first_delay: Duration,
    /// Longest wait between polls. D1 cancels an export that is not polled, so this stays short.
    pub max_delay: Duration,
}

impl Default for PollSettings {
    /// 1 s growing by half each poll up to 5 s: quick for small databases, about 60 requests per 5 minutes
    /// for long ones, well inside the account budget.
    fn default() -> Self {
        PollSettings {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// How long the export download may stay silent (before its headers and between body reads) before it
/// is abandoned as stalled. R2 serves the signed URL; a minute without a byte is a dead connection, not a
/// slow one.
pub const DOWNLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the import upload may go without progress (the server stops reading the body, or takes the
/// whole body and never answers) before it is abandoned.
pub const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long `restore --to-d1` waits for D1 to finish applying an import. D1 imports at most 5 GB of SQL;
/// an import still `active` after an hour is stuck, and waiting longer only holds the restore open.
pub const IMPORT_DEADLINE: Duration = Duration::from_secs(60 * 60);

/// Bounds on waiting for the network, so that no transfer or poll waits forever. The defaults are the
/// constants above; tests shorten them with [`Client::with_timeouts`]. (The export's poll deadline is the
/// configured `cloudflare.export_timeout`.)
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Longest silence of the export download: no headers, or no body bytes, for this long.
    pub download_idle: Duration,
    /// Longest the import upload may make no progress, its answer included.
    pub upload_idle: Duration,
    /// Longest an import may stay `active` once uploaded.
    pub import_deadline: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            download_idle: DOWNLOAD_IDLE_TIMEOUT,
            upload_idle: UPLOAD_IDLE_TIMEOUT,
            import_deadline: IMPORT_DEADLINE,
        }
    }
}

/// A D1 REST API client for one account. Cheap to clone; clones share the rate limiter.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    account_id: String,
    token: Secret,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
    poll: PollSettings,
    /// Boxed: the client is held by value in enums (clippy's `large_enum_variant`).
    limits: Box<Limits>,
}

/// How long the client waits for anything: the configured export deadline and the [`Timeouts`].
#[derive(Debug, Clone)]
struct Limits {
    export_timeout: Duration,
    timeouts: Timeouts,
    /// The largest file one import takes.
    import_max_bytes: u64,
}

/// D1's limit on one import file: 5 GB (a database may hold 10 GB).
pub const IMPORT_MAX_BYTES: u64 = 5_000_000_000;

impl Client {
    /// A client for the configured account, sharing `limiter` with every other client of the process.
    pub fn new(config: &CloudflareConfig, limiter: Arc<RateLimiter>) -> Result<Client, ApiError> {
        let http = reqwest::Client::builder()
            .user_agent(crate::TOOL.replace(' ', "/"))
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| error::from_transport(e, "setting up the HTTP client"))?;
        Ok(Client {
            http,
            base_url: config.api_base_url.trim_end_matches('/').to_string(),
            account_id: config.account_id.clone(),
            token: config.api_token.clone(),
            limiter,
            retry: RetryPolicy::default(),
            poll: PollSettings::default(),
            limits: Box::new(Limits {
                export_timeout: config.export_timeout,
                timeouts: Timeouts::default(),
                import_max_bytes: IMPORT_MAX_BYTES,
            }),
        })
    }

    /// Replaces the retry policy (tests use short waits).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Replaces the polling cadence (tests use short waits).
    pub fn with_poll_settings(mut self, poll: PollSettings) -> Self {
        self.poll = poll;
        self
    }

    /// Replaces the largest import file (tests use a small one, as the emulator's `import_max_bytes`).
    pub fn with_import_limit(mut self, bytes: u64) -> Self {
        self.limits.import_max_bytes = bytes;
        self
    }

    /// The largest file one import takes ([`IMPORT_MAX_BYTES`] unless set otherwise).
    pub fn import_limit(&self) -> u64 {
        self.limits.import_max_bytes
    }

    /// Replaces the transfer and import timeouts (tests use short ones).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.limits.timeouts = timeouts;
        self
    }

    /// The account this client talks to.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// Looks a database up by name or UUID (`GET …/d1/database/{name_or_id}`).
    pub async fn get_database(&self, name_or_id: &str) -> Result<DatabaseInfo, ApiError> {
        let url = self.database_url(name_or_id, &[])?;
        let what = format!("looking up D1 database {name_or_id:?}");
        let answer = self.call(Method::GET, url, None, &what).await.map_err(|e| {
            if e.status == Some(404) {
                ApiError::permanent(format!(
                    "{what}: no such database in account {}: check the [[database]] name (or id) and \
                     cloudflare.account_id",
                    self.account_id
                ))
            } else {
                e
            }
        })?;
        serde_json::from_value(answer.result)
            .map_err(|e| ApiError::permanent(format!("{what}: unexpected answer: {e}")))
    }

    /// One page of the account's databases (`GET …/d1/database?page=N&per_page=M`); pages count from 1.
    /// Each page is one request against the shared rate budget.
    pub async fn list_databases(&self, page: u64, per_page: u64) -> Result<DatabasePage, ApiError> {
        let mut url = self.url(&["accounts", &self.account_id, "d1", "database"])?;
        url.query_pairs_mut()
            .append_pair("page", &page.to_string())
            .append_pair("per_page", &per_page.to_string());
        let what = format!("listing the account's D1 databases (page {page})");
        let answer = self.call(Method::GET, url, None, &what).await?;
        let databases = serde_json::from_value(answer.result)
            .map_err(|e| ApiError::permanent(format!("{what}: unexpected answer: {e}")))?;
        let info = answer.result_info.unwrap_or(Value::Null);
        Ok(DatabasePage {
            databases,
            per_page: info["per_page"].as_u64(),
            total_count: info["total_count"].as_u64(),
        })
    }

    /// Creates a database (`POST …/d1/database`).
    pub async fn create_database(&self, name: &str) -> Result<DatabaseInfo, ApiError> {
        let url = self.url(&["accounts", &self.account_id, "d1", "database"])?;
        let what = format!("creating D1 database {name:?}");
        let answer = self
            .call(Method::POST, url, Some(json!({ "name": name })), &what)
            .await?;
        serde_json::from_value(answer.result)
            .map_err(|e| ApiError::permanent(format!("{what}: unexpected answer: {e}")))
    }

    /// Runs SQL through `/query` (several statements run as one transaction) and returns one result per
    /// statement.
    pub async fn query(
        &self,
        database_id: &str,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<QueryResult>, ApiError> {
        let url = self.database_url(database_id, &["query"])?;
        let mut body = json!({ "sql": sql });
        if !params.is_empty() {
            body["params"] = Value::Array(params.to_vec());
        }
        let answer = self
            .call(Method::POST, url, Some(body), "running a D1 query")
            .await?;
        serde_json::from_value(answer.result)
            .map_err(|e| ApiError::permanent(format!("running a D1 query: unexpected answer: {e}")))
    }

    /// The database's current Time Travel bookmark.
    pub async fn bookmark(&self, database_id: &str) -> Result<String, ApiError> {
        let url = self.database_url(database_id, &["time_travel", "bookmark"])?;
        let answer = self
            .call(Method::GET, url, None, "reading the Time Travel bookmark")
            .await?;
        answer.result["bookmark"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::permanent("reading the Time Travel bookmark: no bookmark in answer")
            })
    }

    /// Restores the database to `bookmark` with Time Travel; returns the bookmark to undo the restore.
    pub async fn time_travel_restore(
        &self,
        database_id: &str,
        bookmark: &str,
    ) -> Result<Option<String>, ApiError> {
        let mut url = self.database_url(database_id, &["time_travel", "restore"])?;
        url.query_pairs_mut().append_pair("bookmark", bookmark);
        let answer = self
            .call(Method::POST, url, None, "restoring with Time Travel")
            .await?;
        Ok(answer.result["previous_bookmark"]
            .as_str()
            .map(str::to_string))
    }

    /// Runs an export through the polling protocol until it completes, fails or exceeds the export
    /// timeout. D1 cancels an export that is not polled, so polling continues at a steady cadence.
    pub async fn export(
        &self,
        database_id: &str,
        options: &DumpOptions,
    ) -> Result<ExportReady, ApiError> {
        let url = self.database_url(database_id, &["export"])?;
        let deadline = Instant::now() + self.limits.export_timeout;
        let mut body = json!({
            "output_format": "polling",
            "dump_options": {
                "no_data": options.no_data,
                "no_schema": options.no_schema,
                "tables": options.tables,
            },
        });
        let mut delay = self.poll.first_delay;
        let mut polls = 0u32;
        let started = Instant::now();
        let mut next_note = started + crate::progress_log::EVERY;
        loop {
            let answer = self
                .call(Method::POST, url.clone(), Some(body.clone()), "exporting")
                .await?;
            let task: TaskStatus = serde_json::from_value(answer.result).map_err(|e| {
                ApiError::permanent(format!(
                    "exporting: unexpected answer from the export API: {e}"
                ))
            })?;
            for line in &task.messages {
                debug!(message = %line, "export progress");
            }
            if task.success == Some(false) {
                return Err(ApiError::permanent(format!(
                    "export failed: {}",
                    task.error.unwrap_or_else(|| "no reason given".into())
                )));
            }
            let bookmark = task.at_bookmark.clone().unwrap_or_default();
            match task.status.as_deref() {
                Some("complete") => {
                    let result = task.result.unwrap_or_default();
                    let signed_url = result.signed_url.ok_or_else(|| {
                        ApiError::permanent("export completed but the answer has no download URL")
                    })?;
                    info!(polls, bookmark = %bookmark, "export complete");
                    return Ok(ExportReady {
                        at_bookmark: bookmark,
                        filename: result.filename,
                        signed_url: Secret::new(signed_url),
                    });
                }
                Some("error") => {
                    let reason = task.error.or_else(|| task.errors.map(|e| e.join("; ")));
                    return Err(ApiError::permanent(format!(
                        "D1 reported the export as failed: {}",
                        reason.unwrap_or_else(|| "no reason given".into())
                    )));
                }
                Some("active") => {}
                other => {
                    return Err(ApiError::permanent(format!(
                        "exporting: unexpected export status {other:?}"
                    )));
                }
            }
            if bookmark.is_empty() {
                return Err(ApiError::permanent(
                    "exporting: the running export has no at_bookmark to poll",
                ));
            }
            body["current_bookmark"] = Value::String(bookmark);
            polls += 1;
            if Instant::now() >= next_note {
                next_note = Instant::now() + crate::progress_log::EVERY;
                info!(
                    elapsed_seconds = started.elapsed().as_secs(),
                    polls, "export still running (D1 blocks the database while it exports)"
                );
            }
            if Instant::now() + delay > deadline {
                // Retryable: a stuck export is D1's state, not a mistake in the request; the next run
                // starts a new one.
                return Err(ApiError::retryable(format!(
                    "the export did not finish within {} (cloudflare.export_timeout) after {polls} polls; \
                     D1 cancels exports that are no longer polled",
                    humantime::format_duration(self.limits.export_timeout)
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay.mul_f64(1.5)).min(self.poll.max_delay);
        }
    }

    /// Starts downloading an export from its signed URL (no API token; not rate limited: it is served by
    /// R2, not the API). Retries the request itself on 5xx, connection failures and a server that does not
    /// answer within the idle timeout; once the body streams, a failure surfaces as an I/O error from the
    /// body, and so does a body that goes silent for the idle timeout ([`crate::idle::Stalled`]).
    ///
    /// A download without `Content-Length` (chunked or close-delimited, as a proxy that re-chunks or an
    /// HTTP/1.0 hop answers) is refused: such a body that stops early ends like a whole one, and a dump cut
    /// after a complete statement would pass every other check. R2's signed URLs always announce the length.
    pub async fn download(&self, signed_url: &Secret) -> Result<Download, ApiError> {
        let url = Url::parse(signed_url.expose())
            .map_err(|_| ApiError::permanent("the export's download URL is not a valid URL"))?;
        let what = "downloading the export";
        let idle = self.limits.timeouts.download_idle;
        let mut retry = 0;
        let response = loop {
            let outcome = tokio::time::timeout(idle, self.http.get(url.clone()).send()).await;
            let failure = match outcome {
                Err(_) => ApiError::retryable(format!(
                    "{what}: the server sent no answer within {}",
                    humantime::format_duration(idle)
                )),
                Ok(Ok(resp)) if resp.status().is_success() => break resp,
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    let class = if resp.status().is_server_error() || status == 429 {
                        ErrorClass::Retryable
                    } else {
                        ErrorClass::Permanent
                    };
                    let message = match status {
                        403 | 404 => format!(
                            "{what}: the download URL was refused (HTTP {status}): it has expired or was \
                             already removed; run the backup again"
                        ),
                        _ => format!("{what}: HTTP {status}"),
                    };
                    ApiError {
                        class,
                        status: Some(status),
                        code: None,
                        message,
                    }
                }
                Ok(Err(e)) => error::from_transport(e, what),
            };
            if !failure.is_retryable() || retry + 1 >= self.retry.max_attempts {
                return Err(failure);
            }
            let wait = self.retry.backoff_random(retry);
            warn!(error = %failure, retry = retry + 1, wait_ms = wait.as_millis() as u64, "retrying download");
            tokio::time::sleep(wait).await;
            retry += 1;
        };
        let Some(content_length) = response.content_length() else {
            // Permanent: the same path answers the same way again. The usual cause is a proxy between
            // d1vault and R2 (HTTPS_PROXY, a TLS-inspecting gateway) that re-chunks the body.
            return Err(ApiError::permanent(format!(
                "{what}: the server sent the dump without a Content-Length (chunked or close-delimited), so a \
                 dump cut short could not be told from a whole one and nothing was stored; R2 always sends \
                 the length: check for a proxy between this host and Cloudflare that re-chunks downloads \
                 (HTTPS_PROXY, a TLS-inspecting gateway)"
            )));
        };
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let stream = response.bytes_stream().map_err(|e| {
            std::io::Error::other(error::from_transport(
                e,
                "the export download was interrupted",
            ))
        });
        Ok(Download {
            content_length,
            content_type,
            body: Box::new(crate::idle::IdleTimeout::new(
                tokio_util::io::StreamReader::new(stream),
                idle,
                "the export download",
            )),
        })
    }

    /// Imports a SQL file through the import API: md5 `etag`, `init`, signed upload, `ingest`, `poll`.
    /// D1 applies an import atomically: on failure the database stays as it was.
    pub async fn import(&self, database_id: &str, file: &Path) -> Result<ImportOutcome, ApiError> {
        let url = self.database_url(database_id, &["import"])?;
        let (etag, size) = md5_of_file(file).await?;
        let init = self
            .call(
                Method::POST,
                url.clone(),
                Some(json!({ "action": "init", "etag": etag })),
                "starting the import",
            )
            .await?;
        let mut task: TaskStatus = if let Some(upload_url) = init.result["upload_url"].as_str() {
            let filename = init.result["filename"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.upload(&Secret::new(upload_url), file, size, &etag)
                .await?;
            let ingest = json!({ "action": "ingest", "etag": etag, "filename": filename });
            let answer = self
                .call(
                    Method::POST,
                    url.clone(),
                    Some(ingest),
                    "ingesting the import",
                )
                .await?;
            parse_task(answer.result, "ingesting the import")?
        } else {
            parse_task(init.result, "starting the import")?
        };
        let mut delay = self.poll.first_delay;
        let deadline = Instant::now() + self.limits.timeouts.import_deadline;
        let mut polls = 0u32;
        loop {
            if task.success == Some(false) {
                return Err(ApiError::permanent(format!(
                    "the import failed: {}",
                    task.error.unwrap_or_else(|| "no reason given".into())
                )));
            }
            match task.status.as_deref() {
                Some("complete") => {
                    let result = task.result.unwrap_or_default();
                    return Ok(ImportOutcome {
                        num_queries: result.num_queries,
                        final_bookmark: result.final_bookmark,
                    });
                }
                Some("error") => {
                    let reason = task.error.or_else(|| task.errors.map(|e| e.join("; ")));
                    return Err(ApiError::permanent(format!(
                        "D1 rejected the import, and left the database as it was: {}",
                        reason.unwrap_or_else(|| "no reason given".into())
                    )));
                }
                Some("active") => {}
                other => {
                    return Err(ApiError::permanent(format!(
                        "importing: unexpected status {other:?}"
                    )));
                }
            }
            let bookmark = task.at_bookmark.clone().unwrap_or_default();
            if Instant::now() + delay > deadline {
                // Retryable: D1 was still busy, nothing was wrong with the request. The import is atomic,
                // so the target holds either all of it or none of it.
                return Err(ApiError::retryable(format!(
                    "gave up waiting for D1 to finish the import: still active after {} ({polls} polls); \
                     D1 applies an import whole or not at all and may still finish this one: check the \
                     target database, then run the restore again if it does not hold the backup",
                    humantime::format_duration(self.limits.timeouts.import_deadline)
                )));
            }
            polls += 1;
            tokio::time::sleep(delay).await;
            delay = (delay.mul_f64(1.5)).min(self.poll.max_delay);
            let poll = json!({ "action": "poll", "current_bookmark": bookmark });
            let answer = self
                .call(Method::POST, url.clone(), Some(poll), "polling the import")
                .await?;
            task = parse_task(answer.result, "polling the import")?;
        }
    }

    /// PUTs the import file to its signed upload URL and checks the returned `ETag` against the md5.
    async fn upload(
        &self,
        upload_url: &Secret,
        file: &Path,
        size: u64,
        etag: &str,
    ) -> Result<(), ApiError> {
        let url = Url::parse(upload_url.expose())
            .map_err(|_| ApiError::permanent("the import's upload URL is not a valid URL"))?;
        let reader = tokio::fs::File::open(file)
            .await
            .map_err(|e| ApiError::permanent(format!("opening {}: {e}", file.display())))?;
        // Every chunk hyper takes from the file counts as progress: a server that stops reading stops it,
        // and so does one that took the whole body and never answers.
        let (progress, mut moved) = tokio::sync::watch::channel(0u64);
        let chunks = tokio_util::io::ReaderStream::new(reader).inspect_ok(move |chunk| {
            progress.send_modify(|n| *n += chunk.len() as u64);
        });
        let body = reqwest::Body::wrap_stream(chunks);
        let send = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body)
            .send();
        tokio::pin!(send);
        let idle = self.limits.timeouts.upload_idle;
        let stalled = |bytes: u64| {
            ApiError::retryable(format!(
                "uploading the import file: no progress for {} after {bytes} of {size} bytes (the server \
                 stopped reading or never answered); nothing was imported, try again",
                humantime::format_duration(idle),
            ))
        };
        let sent = loop {
            let progressed = tokio::select! {
                sent = &mut send => break sent,
                changed = tokio::time::timeout(idle, moved.changed()) => changed,
            };
            match progressed {
                Ok(Ok(())) => {}
                // The body is gone (all of it was taken): the answer must follow within the limit.
                Ok(Err(_)) => match tokio::time::timeout(idle, &mut send).await {
                    Ok(sent) => break sent,
                    Err(_) => return Err(stalled(*moved.borrow())),
                },
                Err(_) => return Err(stalled(*moved.borrow())),
            }
        };
        let response = sent.map_err(|e| error::from_transport(e, "uploading the import file"))?;
        if response.status() != StatusCode::OK {
            return Err(ApiError::retryable(format!(
                "uploading the import file: HTTP {}",
                response.status().as_u16()
            )));
        }
        let returned = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_string());
        if returned.as_deref() != Some(etag) {
            return Err(ApiError::permanent(format!(
                "uploading the import file: the stored file's ETag {returned:?} does not match its md5 {etag}"
            )));
        }
        Ok(())
    }

    /// `base/…/segments` with each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<Url, ApiError> {
        let mut url = Url::parse(&self.base_url).map_err(|e| {
            ApiError::permanent(format!(
                "cloudflare.api_base_url {:?} is not a URL: {e}",
                self.base_url
            ))
        })?;
        url.path_segments_mut()
            .map_err(|_| ApiError::permanent("cloudflare.api_base_url cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn database_url(&self, database: &str, tail: &[&str]) -> Result<Url, ApiError> {
        let mut segments = vec!["accounts", &self.account_id, "d1", "database", database];
        segments.extend_from_slice(tail);
        self.url(&segments)
    }

    /// Sends one API request with rate limiting and retries, and unwraps Cloudflare's envelope.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        what: &str,
    ) -> Result<Answer, ApiError> {
        let mut retry = 0;
        loop {
            self.limiter.acquire().await;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(self.token.expose())
                .timeout(Duration::from_secs(120));
            if let Some(body) = &body {
                request = request.json(body);
            }
            let (failure, retry_after) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    match response.bytes().await {
                        Ok(bytes) => match self.unwrap_envelope(status, &bytes) {
                            Ok(answer) => return Ok(answer),
                            Err(e) => (e, retry_after),
                        },
                        Err(e) => (error::from_transport(e, "reading the answer"), None),
                    }
                }
                Err(e) => (error::from_transport(e, "sending the request"), None),
            };
            let failure = failure.context(what);
            if !failure.is_retryable() || retry + 1 >= self.retry.max_attempts {
                return Err(failure);
            }
            let wait = match retry_after {
                Some(wait) if wait > self.retry.max_retry_after => {
                    return Err(failure.context(&format!(
                        "Cloudflare asked to wait {}s, longer than d1vault waits",
                        wait.as_secs()
                    )));
                }
                Some(wait) => wait,
                None => self.retry.backoff_random(retry),
            };
            warn!(error = %failure, retry = retry + 1, wait_ms = wait.as_millis() as u64, "retrying Cloudflare API request");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    fn unwrap_envelope(&self, status: StatusCode, bytes: &[u8]) -> Result<Answer, ApiError> {
        let code = status.as_u16();
        let envelope: Envelope = match serde_json::from_slice(bytes) {
            Ok(envelope) => envelope,
            Err(_) => {
                let head =
                    String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).replace('\n', " ");
                let err = error::from_status(
                    code,
                    None,
                    &format!("the answer is not JSON: {head:?}"),
                    &self.account_id,
                );
                return Err(if status.is_success() {
                    ApiError::retryable(err.message)
                } else {
                    err
                });
            }
        };
        if envelope.success && status.is_success() {
            return Ok(Answer {
                result: envelope.result.unwrap_or(Value::Null),
                result_info: envelope.result_info,
            });
        }
        let first = envelope.errors.first();
        let cf_code = first.and_then(|e| e.code);
        let message = first
            .map(|e| e.message.clone())
            .or(envelope.error)
            .unwrap_or_else(|| "no error message".into());
        if status.is_success() {
            return Err(ApiError {
                class: ErrorClass::Permanent,
                status: Some(code),
                code: cf_code,
                message,
            });
        }
        Err(error::from_status(
            code,
            cf_code,
            &message,
            &self.account_id,
        ))
    }
}

/// A successful API answer: the envelope's `result`.
struct Answer {
    result: Value,
    /// List endpoints' `result_info` (`page`, `per_page`, `count`, `total_count`).
    result_info: Option<Value>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<CfMessage>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    result_info: Option<Value>,
    /// Some endpoints answer `{ "code": …, "error": "…" }` instead of `errors`.
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct CfMessage {
    #[serde(default)]
    code: Option<u64>,
    #[serde(default)]
    message: String,
}

/// The `result` of an export or import poll.
#[derive(Debug, Default, Deserialize)]
struct TaskStatus {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    at_bookmark: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    errors: Option<Vec<String>>,
    #[serde(default)]
    messages: Vec<String>,
    #[serde(default)]
    result: Option<TaskResult>,
}

#[derive(Debug, Default, Deserialize)]
struct TaskResult {
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    signed_url: Option<String>,
    #[serde(default)]
    final_bookmark: Option<String>,
    #[serde(default)]
    num_queries: Option<u64>,
}

fn parse_task(result: Value, what: &str) -> Result<TaskStatus, ApiError> {
    serde_json::from_value(result)
        .map_err(|e| ApiError::permanent(format!("{what}: unexpected answer: {e}")))
}

/// md5 (hex) and size of a file, read as a stream.
async fn md5_of_file(path: &Path) -> Result<(String, u64), ApiError> {
    use md5::Digest;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ApiError::permanent(format!("opening {}: {e}", path.display())))?;
    let mut hasher = md5::Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| ApiError::permanent(format!("reading {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}
