//! Fault injection: tests (and users trying their alerting) make the emulator misbehave on purpose.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The next `count` API requests answer HTTP 429 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitFault {
    /// How many requests to refuse.
    pub count: u32,
    /// The `Retry-After` value, in seconds.
    pub retry_after_secs: u64,
}

/// The next `count` API requests answer with a 5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerErrorFault {
    /// How many requests to fail.
    pub count: u32,
    /// The HTTP status (500..=599).
    pub status: u16,
}

/// How the next export download misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownloadFault {
    /// `Content-Length` announces the full size, the body stops at half and the connection closes.
    Truncate,
    /// Status 200 with a `text/html` error page instead of the dump.
    Html,
    /// Status 200 with an empty body.
    Empty,
    /// Status 404, as an expired signed URL answers.
    Expired,
    /// The whole dump, chunked, without `Content-Length` (as a proxy that re-chunks serves it).
    Chunked,
    /// The first half of the dump, cut after a complete statement, chunked and ended cleanly, without
    /// `Content-Length`: a short body that looks whole.
    #[serde(rename = "chunked_short")]
    ChunkedShort,
    /// The same half dump as an HTTP/1.0 close-delimited answer (no length; the connection closes after
    /// the half). Served by a one-shot listener that the download URL redirects to.
    #[serde(rename = "close_short")]
    CloseShort,
    /// `Content-Length` announces the full size, half the body is sent, then nothing more (for ten
    /// minutes): a server that goes silent mid-body.
    Stall,
}

/// A write the emulator makes after exports (see [`Faults::write_after_export`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteAfterExport {
    /// The SQL to run (one `/query` request's worth).
    pub sql: String,
    /// After how many exports (the next ones) it runs.
    pub exports: u32,
}

/// Faults to inject; every field is optional. POST this as JSON to `/__emulator/faults` or set it with
/// [`FaultInjector::set`]; fields present replace the current ones, absent fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// A burst of 429 answers.
    pub rate_limit: Option<RateLimitFault>,
    /// A burst of 5xx answers.
    pub server_error: Option<ServerErrorFault>,
    /// The next export answers `active` to this many polls (the starting request counts as one) first.
    pub export_active_polls: Option<u32>,
    /// The next export ends with status `error` and this message.
    pub export_error: Option<String>,
    /// A concurrent writer: right after each of the next exports is written, this SQL runs on the
    /// exported database (a new bookmark), as a write from an application between a backup's requests.
    pub write_after_export: Option<WriteAfterExport>,
    /// The next export download misbehaves this way.
    pub download: Option<DownloadFault>,
    /// The next import answers `active` to this many polls (the starting request counts as one) first.
    pub import_active_polls: Option<u32>,
    /// The next import upload takes the whole body, then does not answer (for ten minutes).
    pub upload_stall: Option<bool>,
    /// Whether SQL runs with foreign keys enforced, as on D1 (default `true`). Not a fault: a switch for
    /// tests that need to load dumps D1 itself would refuse (rows before their parent table exists).
    pub enforce_foreign_keys: Option<bool>,
    /// Whether databases have Time Travel (default `true`). Not a fault: `false` makes every database an
    /// old `alpha` one, which D1 reports as `version: "alpha"` and serves no Time Travel for, so tests can
    /// reach the code paths for databases without it.
    pub time_travel: Option<bool>,
    /// Database list requests (`GET …/d1/database`) for this page or a later one answer HTTP 500 until
    /// set to `0` (off): a listing that fails part way through, retries included.
    pub list_error_from_page: Option<u64>,
    /// The largest import file accepted, in bytes (D1's is 5 GB). Not a fault: a small limit lets tests
    /// reach restores that need several imports without 5 GB dumps.
    pub import_max_bytes: Option<u64>,
}

/// A fault decided for one API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiFault {
    RateLimited { retry_after_secs: u64 },
    ServerError { status: u16 },
}

/// The emulator's current faults, shared by all requests: tests set them through [`crate::Emulator::faults`],
/// clients through `POST /__emulator/faults`, and each request consumes what applies to it.
#[derive(Debug, Default)]
pub struct FaultInjector {
    faults: Mutex<Faults>,
}

impl FaultInjector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Merges `faults` into the current set: each field given replaces the current one.
    pub fn set(&self, faults: Faults) {
        let mut current = self.lock();
        if faults.rate_limit.is_some() {
            current.rate_limit = faults.rate_limit;
        }
        if faults.server_error.is_some() {
            current.server_error = faults.server_error;
        }
        if faults.export_active_polls.is_some() {
            current.export_active_polls = faults.export_active_polls;
        }
        if faults.export_error.is_some() {
            current.export_error = faults.export_error;
        }
        if faults.write_after_export.is_some() {
            current.write_after_export = faults.write_after_export;
        }
        if faults.download.is_some() {
            current.download = faults.download;
        }
        if faults.import_active_polls.is_some() {
            current.import_active_polls = faults.import_active_polls;
        }
        if faults.upload_stall.is_some() {
            current.upload_stall = faults.upload_stall;
        }
        if faults.enforce_foreign_keys.is_some() {
            current.enforce_foreign_keys = faults.enforce_foreign_keys;
        }
        if faults.time_travel.is_some() {
            current.time_travel = faults.time_travel;
        }
        if faults.list_error_from_page.is_some() {
            current.list_error_from_page = faults.list_error_from_page;
        }
        if faults.import_max_bytes.is_some() {
            current.import_max_bytes = faults.import_max_bytes;
        }
    }

    /// The faults still pending.
    pub(crate) fn current(&self) -> Faults {
        self.lock().clone()
    }

    /// The largest import file accepted (D1's 5 GB unless set).
    pub(crate) fn import_max_bytes(&self) -> u64 {
        self.lock().import_max_bytes.unwrap_or(5_000_000_000)
    }

    /// Whether SQL runs with foreign keys enforced.
    pub(crate) fn enforce_foreign_keys(&self) -> bool {
        self.lock().enforce_foreign_keys.unwrap_or(true)
    }

    /// Whether databases have Time Travel (see [`Faults::time_travel`]).
    pub(crate) fn time_travel(&self) -> bool {
        self.lock().time_travel.unwrap_or(true)
    }

    /// Whether a database list request for `page` fails (see [`Faults::list_error_from_page`]).
    pub(crate) fn list_page_fails(&self, page: u64) -> bool {
        self.lock()
            .list_error_from_page
            .is_some_and(|from| from > 0 && page >= from)
    }

    /// Consumes one API-request fault, rate limits first.
    pub(crate) fn take_api_fault(&self) -> Option<ApiFault> {
        let mut faults = self.lock();
        if let Some(limit) = &mut faults.rate_limit
            && limit.count > 0
        {
            limit.count -= 1;
            let fault = ApiFault::RateLimited {
                retry_after_secs: limit.retry_after_secs,
            };
            if limit.count == 0 {
                faults.rate_limit = None;
            }
            return Some(fault);
        }
        if let Some(error) = &mut faults.server_error
            && error.count > 0
        {
            error.count -= 1;
            let fault = ApiFault::ServerError {
                status: error.status,
            };
            if error.count == 0 {
                faults.server_error = None;
            }
            return Some(fault);
        }
        None
    }

    /// Consumes the export faults for a starting export: (polls to stay active, error to end with).
    pub(crate) fn take_export_faults(&self) -> (u32, Option<String>) {
        let mut faults = self.lock();
        (
            faults.export_active_polls.take().unwrap_or(0),
            faults.export_error.take(),
        )
    }

    /// The write to make after a starting export, counting it against [`Faults::write_after_export`].
    pub(crate) fn take_write_after_export(&self) -> Option<String> {
        let mut faults = self.lock();
        let write = faults.write_after_export.as_mut()?;
        if write.exports == 0 {
            faults.write_after_export = None;
            return None;
        }
        write.exports -= 1;
        Some(write.sql.clone())
    }

    /// Consumes the import fault for a starting import: polls to stay active.
    pub(crate) fn take_import_active_polls(&self) -> u32 {
        self.lock().import_active_polls.take().unwrap_or(0)
    }

    /// Consumes the upload fault: whether this upload goes unanswered.
    pub(crate) fn take_upload_stall(&self) -> bool {
        self.lock().upload_stall.take().unwrap_or(false)
    }

    /// Consumes the download fault.
    pub(crate) fn take_download_fault(&self) -> Option<DownloadFault> {
        self.lock().download.take()
    }
}
