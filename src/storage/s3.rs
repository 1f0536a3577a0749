//! S3-compatible storage (AWS S3, Cloudflare R2, Garage, MinIO) through aws-sdk-s3.
//!
//! Bodies are cut into `part_size` buffers: a body that fits in one part is a single PutObject, a larger
//! one a multipart upload with at most `max_parts_in_flight` parts uploading at once, so memory stays
//! below `part_size * (max_parts_in_flight + 1)` whatever the dump size. Every failure, and a dropped
//! future, aborts the multipart upload. Each request is retried by the SDK (standard mode, bounded
//! attempts with exponential backoff); a part's bytes are kept in memory until it succeeds, so a retry
//! resends exactly the same bytes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockEnabled, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode,
};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OnceCell;
use tokio::task::JoinSet;

use super::{ObjectInfo, ObjectReader, Storage, StorageError};
use crate::config::{LockMode, ObjectLock, S3Config};

/// Attempts per request, the first included; with the backoff below a dead endpoint fails within seconds.
const MAX_ATTEMPTS: u32 = 4;
/// First retry delay; the SDK doubles it per attempt with jitter (capped at 20 s).
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// How long to wait for a TCP/TLS connection before counting the attempt as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for one request attempt: generous enough for a large part on a slow uplink, finite so that
/// a server that accepts and then hangs cannot block a backup forever.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
/// S3's limit on parts per multipart upload.
const MAX_PARTS: i32 = 10_000;

/// Backups stored as objects in an S3-compatible bucket.
#[derive(Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    prefix: String,
    /// Where requests go, for messages: the configured endpoint or `AWS S3 (region)`.
    endpoint: String,
    part_size: usize,
    max_parts_in_flight: usize,
    list_page_size: Option<i32>,
    /// See [`super::READ_IDLE_TIMEOUT`].
    read_idle: Duration,
    /// Whether the store refuses a second `If-None-Match: *` write (PutObject and
    /// CompleteMultipartUpload): probed once, on the first exclusive create, and shared by clones.
    conditional_writes: Arc<OnceCell<bool>>,
    /// `storage.object_lock`: the retention every backup object is written with.
    object_lock: Option<ObjectLock>,
}

/// Whether a write carries the configured Object Lock retention. Backup objects do; the probes d1vault
/// writes to learn what the store can do (and deletes at once) must not, or they would stay for days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retain {
    /// Lock the object as `storage.object_lock` says (no lock when it is not set).
    Configured,
    /// Never lock it: a probe.
    Never,
}

/// How an upload treats an object that already exists under its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteMode {
    /// Replace it (`put_stream`, `put_bytes`).
    Replace,
    /// Send `If-None-Match: *`: the store refuses atomically (AWS S3, R2, MinIO).
    IfNoneMatch,
    /// The store ignores `If-None-Match` (Garage 2.5): look first (HEAD), then write. Two writers racing
    /// within the window are not detected; the store was reported at WARN when this was decided.
    CheckFirst,
}

impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client holds credentials: print only what identifies the store.
        f.debug_struct("S3Storage")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("part_size", &self.part_size)
            .field("max_parts_in_flight", &self.max_parts_in_flight)
            .finish_non_exhaustive()
    }
}

impl S3Storage {
    /// Builds the client from the configuration: custom endpoint and path style for R2, Garage or MinIO;
    /// static keys when both are given, the AWS default credentials chain otherwise; checksums only when an
    /// operation requires them and never a storage-class header, which R2 and other stores reject.
    pub async fn new(config: &S3Config) -> Result<Self, StorageError> {
        if config.part_size < 5 * 1024 * 1024 {
            return Err(StorageError::permanent(format!(
                "storage.part_size {} is below S3's minimum of 5 MiB",
                config.part_size
            )));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()));
        match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(
                    id.expose(),
                    secret.expose(),
                    None,
                    None,
                    "d1vault-config",
                ));
            }
            (None, None) => {}
            _ => {
                return Err(StorageError::permanent(
                    "storage.access_key_id and storage.secret_access_key must be given together \
                     (or both left out to use the AWS default credentials chain)",
                ));
            }
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(INITIAL_BACKOFF),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .build();
        let endpoint = match &config.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_string(),
            None => format!("AWS S3 ({})", config.region),
        };
        Ok(S3Storage {
            client: Client::from_conf(s3_config),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            endpoint,
            part_size: config.part_size,
            max_parts_in_flight: config.max_parts_in_flight.max(1),
            list_page_size: None,
            read_idle: super::READ_IDLE_TIMEOUT,
            conditional_writes: Arc::new(OnceCell::new()),
            object_lock: config.object_lock,
        })
    }

    /// Replaces the read idle timeout of object downloads and the bound on one request attempt (an upload
    /// to a server that takes the part and never answers ends after `attempt`, then the SDK retries).
    /// Exists so that tests of stalled stores run in seconds rather than minutes.
    pub fn with_timeouts(mut self, read_idle: Duration, attempt: Duration) -> Self {
        self.read_idle = read_idle;
        let config = self
            .client
            .config()
            .to_builder()
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(attempt)
                    .build(),
            )
            .build();
        self.client = Client::from_conf(config);
        self
    }

    /// Asks for at most `keys` keys per ListObjectsV2 page (S3's default and maximum is 1,000). Exists so
    /// that tests can exercise pagination without creating thousands of objects.
    pub fn with_list_page_size(mut self, keys: i32) -> Self {
        self.list_page_size = Some(keys);
        self
    }

    /// Turns an SDK error into a classified error whose message says what to check.
    fn error<E>(
        &self,
        what: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let bucket = &self.bucket;
        let endpoint = &self.endpoint;
        match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                return StorageError::retryable(format!(
                    "{what}: cannot reach {endpoint}: {}",
                    DisplayErrorContext(&err)
                ));
            }
            SdkError::ResponseError(_) => {
                return StorageError::retryable(format!(
                    "{what}: unreadable response from {endpoint}: {}",
                    DisplayErrorContext(&err)
                ));
            }
            SdkError::ConstructionFailure(_) => {
                return StorageError::permanent(format!(
                    "{what}: could not build the request: {}",
                    DisplayErrorContext(&err)
                ));
            }
            _ => {}
        }
        let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
        let service = err.as_service_error();
        let code = service.and_then(|e| e.code()).unwrap_or("");
        let detail = service.and_then(|e| e.message()).unwrap_or("");
        let detail = if detail.is_empty() {
            format!("HTTP {status} {code}")
        } else {
            format!("HTTP {status} {code}: {detail}")
        };
        match code {
            "NoSuchBucket" => StorageError::permanent(format!(
                "{what}: bucket {bucket} does not exist at {endpoint}: create it or fix storage.bucket"
            )),
            "NoSuchKey" | "NoSuchUpload" => StorageError::not_found(format!("{what}: {detail}")),
            // `If-None-Match: *` refused (412), or a concurrent conditional write to the key (409): either
            // way another writer has or is taking the key.
            "PreconditionFailed" | "ConditionalRequestConflict" => {
                StorageError::already_exists(format!(
                    "{what}: the object already exists (another writer created it first; nothing was replaced)"
                ))
            }
            "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => {
                StorageError::permanent(format!(
                    "{what}: access denied to bucket {bucket} at {endpoint} ({detail}): check that the key in \
                 storage.access_key_id may read, write, list and delete in this bucket"
                ))
            }
            "InvalidAccessKeyId" => StorageError::permanent(format!(
                "{what}: {endpoint} does not know the access key ({detail}): check storage.access_key_id"
            )),
            "SignatureDoesNotMatch" => StorageError::permanent(format!(
                "{what}: {endpoint} rejected the request signature ({detail}): check \
                 storage.secret_access_key and storage.region"
            )),
            "AuthorizationHeaderMalformed" => StorageError::permanent(format!(
                "{what}: {endpoint} rejected the request ({detail}): check storage.region"
            )),
            "RequestTimeTooSkewed" => StorageError::permanent(format!(
                "{what}: {endpoint} says this machine's clock is wrong ({detail}): fix the system clock (NTP)"
            )),
            // A 501: the store lacks the operation (Garage and Object Lock); asking again cannot help.
            "NotImplemented" => StorageError::permanent(format!(
                "{what}: {endpoint} does not implement this operation ({detail})"
            )),
            "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout" => {
                StorageError::retryable(format!("{what}: {endpoint}: {detail}"))
            }
            _ => match status {
                404 => StorageError::not_found(format!("{what}: {detail}")),
                412 => StorageError::already_exists(format!(
                    "{what}: the object already exists (another writer created it first; nothing was \
                     replaced): {detail}"
                )),
                401 | 403 => StorageError::permanent(format!(
                    "{what}: {endpoint} refused the credentials ({detail}): check storage.access_key_id, \
                     storage.secret_access_key and the key's permissions on bucket {bucket}"
                )),
                408 | 429 | 500..=599 => {
                    StorageError::retryable(format!("{what}: {endpoint}: {detail}"))
                }
                _ => StorageError::permanent(format!("{what}: {endpoint}: {detail}")),
            },
        }
    }

    /// Sends one buffered body as a single PutObject.
    async fn put_single(
        &self,
        key: &str,
        body: Bytes,
        mode: WriteMode,
        retain: Retain,
    ) -> Result<(), StorageError> {
        if mode == WriteMode::CheckFirst {
            self.refuse_existing(key).await?;
        }
        let len = body.len() as i64;
        let lock = self.retention(retain);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(len)
            .set_if_none_match((mode == WriteMode::IfNoneMatch).then(|| "*".to_string()))
            .set_object_lock_mode(lock.as_ref().map(Retention::mode))
            .set_object_lock_retain_until_date(lock.as_ref().map(|l| l.until))
            .set_checksum_algorithm(lock.as_ref().map(|_| ChecksumAlgorithm::Crc32))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error(&format!("uploading {key}"), e))?;
        Ok(())
    }

    /// The Object Lock headers for a write made now, when `storage.object_lock` is set and the write is
    /// not a probe. A locked write also carries a CRC32 checksum: S3 refuses a locked upload without one.
    fn retention(&self, retain: Retain) -> Option<Retention> {
        let lock = self.object_lock.filter(|_| retain == Retain::Configured)?;
        let until = Utc::now() + chrono::Duration::days(i64::from(lock.days));
        Some(Retention {
            mode: lock.mode,
            until: aws_sdk_s3::primitives::DateTime::from_secs(until.timestamp()),
        })
    }

    /// Fails with [`StorageErrorKind::AlreadyExists`](super::StorageErrorKind) when `key` exists (HEAD).
    async fn refuse_existing(&self, key: &str) -> Result<(), StorageError> {
        let result = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match result {
            Ok(_) => Err(StorageError::already_exists(format!(
                "uploading {key}: the object already exists (another writer created it first; nothing was \
                 replaced)"
            ))),
            Err(e) => {
                let err = self.error(&format!("checking whether {key} exists"), e);
                if err.kind == super::StorageErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// How an exclusive create must be sent to this store: probes it on first use (see
    /// [`Self::probe_conditional_writes`]); a failed probe is not remembered, so the next create probes again.
    async fn create_mode(&self) -> Result<WriteMode, StorageError> {
        let honoured = *self
            .conditional_writes
            .get_or_try_init(|| self.probe_conditional_writes())
            .await?;
        Ok(if honoured {
            WriteMode::IfNoneMatch
        } else {
            WriteMode::CheckFirst
        })
    }

    /// Finds out whether the store honours `If-None-Match: *` on PutObject and on
    /// CompleteMultipartUpload: writes a probe object under the prefix, then tries to write it again
    /// both ways, expecting 412 each time, and deletes it. A store that lets the second write through
    /// (Garage 2.5) is reported once at WARN: it cannot guarantee that two writers never share a backup id.
    async fn probe_conditional_writes(&self) -> Result<bool, StorageError> {
        let key = crate::repository::manifest::join_key(&[
            &self.prefix,
            &format!(
                ".d1vault-conditional-write-probe-{:016x}",
                rand::random::<u64>()
            ),
        ]);
        let body = Bytes::from_static(b"d1vault conditional write probe; safe to delete");
        let result = match self
            .put_single(&key, body.clone(), WriteMode::IfNoneMatch, Retain::Never)
            .await
        {
            Ok(()) => self.probe_second_writes(&key, body).await,
            // A store that rejects the header itself (rather than the write) cannot create exclusively;
            // a plain put proves that it is the header and not the store that fails.
            Err(e) if e.kind == super::StorageErrorKind::Permanent => self
                .put_single(&key, body, WriteMode::Replace, Retain::Never)
                .await
                .map(|()| false)
                .map_err(|_| e),
            Err(e) => Err(e),
        };
        if let Err(e) = self.delete(&key).await {
            tracing::warn!(key = %key, error = %e, "could not delete the conditional write probe");
        }
        let honoured = result?;
        if honoured {
            tracing::debug!(store = %self.describe(), "the store honours If-None-Match: *");
        } else {
            tracing::warn!(
                store = %self.describe(),
                "the store ignores If-None-Match: * (conditional writes): it cannot guarantee exclusive \
                 backup ids; d1vault checks before each write instead, which two writers racing within \
                 the same moment can still pass"
            );
        }
        Ok(honoured)
    }

    /// The second half of the probe: `Ok(true)` when both second writes were refused with 412.
    async fn probe_second_writes(&self, key: &str, body: Bytes) -> Result<bool, StorageError> {
        match self
            .put_single(key, body, WriteMode::IfNoneMatch, Retain::Never)
            .await
        {
            Err(e) if e.kind == super::StorageErrorKind::AlreadyExists => {}
            Err(e) if e.kind == super::StorageErrorKind::Permanent => return Ok(false),
            Err(e) => return Err(e),
            Ok(()) => return Ok(false),
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(&format!("probing conditional writes on {key}"), e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        // The last (here: only) part of an upload may be smaller than 5 MiB.
        let completed = async {
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(1)
                .content_length(1)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .map_err(|e| self.error(&format!("probing conditional writes on {key}"), e))?;
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .if_none_match("*")
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .parts(
                            CompletedPart::builder()
                                .part_number(1)
                                .set_e_tag(part.e_tag().map(str::to_string))
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.error(&format!("probing conditional writes on {key}"), e))
        }
        .await;
        match completed {
            Ok(_) => Ok(false),
            Err(e) => {
                self.abort(key, &upload_id).await;
                match e.kind {
                    super::StorageErrorKind::AlreadyExists => Ok(true),
                    // The header refused on completion (a store with conditional PutObject only): the
                    // multipart path could not be exclusive, so neither is assumed.
                    super::StorageErrorKind::Permanent => Ok(false),
                    _ => Err(e),
                }
            }
        }
    }

    /// Uploads the two parts already read and the rest of `body` as a multipart upload, aborting it on any
    /// failure; a [`AbortOnDrop`] guard covers a dropped future.
    async fn put_multipart(
        &self,
        key: &str,
        first: Bytes,
        second: Bytes,
        body: &mut (dyn AsyncRead + Send + Unpin),
        mode: WriteMode,
    ) -> Result<u64, StorageError> {
        if mode != WriteMode::Replace {
            // Not the guarantee (that is the completion), but no reason to upload a taken key's body.
            self.refuse_existing(key).await?;
        }
        let lock = self.retention(Retain::Configured);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_object_lock_mode(lock.as_ref().map(Retention::mode))
            .set_object_lock_retain_until_date(lock.as_ref().map(|l| l.until))
            .set_checksum_algorithm(lock.as_ref().map(|_| ChecksumAlgorithm::Crc32))
            .send()
            .await
            .map_err(|e| self.error(&format!("starting the multipart upload of {key}"), e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        if upload_id.is_empty() {
            return Err(StorageError::permanent(format!(
                "starting the multipart upload of {key}: {} returned no upload id",
                self.endpoint
            )));
        }
        let mut guard = AbortOnDrop {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id: Some(upload_id.clone()),
        };
        match self
            .upload_parts(key, &upload_id, first, second, body, mode)
            .await
        {
            Ok(total) => {
                guard.upload_id = None;
                if let Some(lock) = &lock {
                    self.ensure_locked(key, lock).await?;
                }
                Ok(total)
            }
            Err(err) => {
                guard.upload_id = None;
                self.abort(key, &upload_id).await;
                Err(err)
            }
        }
    }

    /// The body of [`Self::put_multipart`] between create and abort: parts, then complete.
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        second: Bytes,
        body: &mut (dyn AsyncRead + Send + Unpin),
        mode: WriteMode,
    ) -> Result<u64, StorageError> {
        // Dropping the set (failure or dropped future) cancels the parts still in flight.
        let mut in_flight: JoinSet<Result<UploadedPart, StorageError>> = JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::new();
        // Buffers of uploaded parts, refilled for the next ones. A fresh 8 MiB buffer per part made glibc
        // keep freed ones resident (its mmap threshold adapts upwards), about 9 MiB of peak RSS, and cost a
        // page fault per 4 KiB written.
        let mut spare: Vec<BytesMut> = Vec::new();
        let mut total = (first.len() + second.len()) as u64;
        let mut pending = vec![second, first];
        let mut part_number: i32 = 0;
        loop {
            // Collect finished parts without waiting, so a failed part stops the upload early.
            while let Some(joined) = in_flight.try_join_next() {
                joined_part(joined)?.collect(&mut done, &mut spare);
            }
            while in_flight.len() >= self.max_parts_in_flight {
                let joined = in_flight.join_next().await.expect("set is not empty");
                joined_part(joined)?.collect(&mut done, &mut spare);
            }
            let part = match pending.pop() {
                Some(part) => part,
                None => {
                    let buffer = spare.pop().unwrap_or_default();
                    let part = read_part(body, self.part_size, buffer).await.map_err(|e| {
                        StorageError::retryable(format!("reading the body for {key}: {e}"))
                    })?;
                    if part.is_empty() {
                        break;
                    }
                    total += part.len() as u64;
                    part
                }
            };
            part_number += 1;
            if part_number > MAX_PARTS {
                return Err(StorageError::permanent(format!(
                    "uploading {key}: the object needs more than {MAX_PARTS} parts of {} bytes: raise \
                     storage.part_size",
                    self.part_size
                )));
            }
            let request = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .content_length(part.len() as i64)
                // A locked upload was created with a checksum algorithm: each part must carry its own.
                .set_checksum_algorithm(self.object_lock.map(|_| ChecksumAlgorithm::Crc32))
                // `Bytes` is cheap to clone and replayable: the SDK resends the same bytes on a retry.
                .body(ByteStream::from(part.clone()));
            let this = self.clone();
            let key = key.to_string();
            in_flight.spawn(async move {
                let output = request.send().await.map_err(|e| {
                    this.error(&format!("uploading part {part_number} of {key}"), e)
                })?;
                Ok(UploadedPart {
                    part: CompletedPart::builder()
                        .part_number(part_number)
                        .set_e_tag(output.e_tag().map(str::to_string))
                        .set_checksum_crc32(output.checksum_crc32().map(str::to_string))
                        .build(),
                    // The request is gone, so this is normally the last reference to the buffer.
                    buffer: part.try_into_mut().ok(),
                })
            });
        }
        while let Some(joined) = in_flight.join_next().await {
            done.push(joined_part(joined)?.part);
        }
        done.sort_by_key(|part| part.part_number());
        if mode == WriteMode::CheckFirst {
            self.refuse_existing(key).await?;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .set_if_none_match((mode == WriteMode::IfNoneMatch).then(|| "*".to_string()))
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error(&format!("completing the multipart upload of {key}"), e))?;
        Ok(total)
    }

    /// Streams `body` into `key`: one PutObject when it fits in a part, a multipart upload otherwise.
    async fn upload(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
        mode: WriteMode,
    ) -> Result<u64, StorageError> {
        let read_error =
            |e: std::io::Error| StorageError::retryable(format!("reading the body for {key}: {e}"));
        let first = read_part(body, self.part_size, BytesMut::new())
            .await
            .map_err(read_error)?;
        if first.len() < self.part_size {
            let len = first.len() as u64;
            self.put_single(key, first, mode, Retain::Configured)
                .await?;
            return Ok(len);
        }
        // Exactly one full part may still be the whole body: look one part ahead before going multipart.
        let second = read_part(body, self.part_size, BytesMut::new())
            .await
            .map_err(read_error)?;
        if second.is_empty() {
            let len = first.len() as u64;
            self.put_single(key, first, mode, Retain::Configured)
                .await?;
            return Ok(len);
        }
        self.put_multipart(key, first, second, body, mode).await
    }

    /// Aborts a multipart upload after a failure; an abort that fails is logged, since the original error
    /// is the one to report and `prune` clears stale uploads later.
    async fn abort(&self, key: &str, upload_id: &str) {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = result {
            let err = self.error(&format!("aborting the multipart upload of {key}"), e);
            tracing::warn!(error = %err, "multipart upload left open; prune will clear it");
        }
    }
}

impl S3Storage {
    /// Refuses a bucket without Object Lock when `storage.object_lock` is set: its objects could not be
    /// locked, and a backup that seems protected but is not is worse than a clear error at the start.
    async fn check_object_lock(&self) -> Result<(), StorageError> {
        let bucket = &self.bucket;
        let refuse = |detail: String| {
            StorageError::permanent(format!(
                "storage.object_lock is set, but bucket {bucket} at {} cannot lock objects ({detail}): \
                 create a bucket with Object Lock enabled (AWS S3, MinIO: `aws s3api create-bucket \
                 --object-lock-enabled-for-bucket`), or remove storage.object_lock (R2 and Garage have no \
                 Object Lock; for R2 see bucket lock rules in docs/runbook.md)",
                self.endpoint
            ))
        };
        match self
            .client
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(output) => {
                let enabled = output
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled());
                if enabled == Some(&ObjectLockEnabled::Enabled) {
                    Ok(())
                } else {
                    Err(refuse(
                        "its Object Lock configuration is not enabled".to_string(),
                    ))
                }
            }
            Err(e) => {
                let err = self.error(
                    &format!("reading the Object Lock configuration of {bucket}"),
                    e,
                );
                if err.is_retryable() {
                    Err(err)
                } else {
                    Err(refuse(err.message))
                }
            }
        }
    }

    /// Makes sure a completed multipart upload holds the retention it was created with: a store may drop
    /// the lock of CreateMultipartUpload on completion (moto 5.2 does), and an object that seems locked
    /// but is not is the failure `storage.object_lock` exists to prevent. One HEAD; when the lock is
    /// missing or shorter, PutObjectRetention sets it, and a failure of that fails the write (the dump
    /// then has no manifest: an incomplete backup, never listed, removed by a later prune).
    async fn ensure_locked(&self, key: &str, lock: &Retention) -> Result<(), StorageError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(&format!("checking the Object Lock of {key}"), e))?;
        let held = head.object_lock_retain_until_date().map(|t| t.secs());
        if head.object_lock_mode() == Some(&lock.mode()) && held >= Some(lock.until.secs()) {
            return Ok(());
        }
        tracing::debug!(key = %key, "the store dropped the multipart upload's Object Lock; setting it again");
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(head.version_id().map(str::to_string))
            .retention(
                ObjectLockRetention::builder()
                    .mode(lock.retention_mode())
                    .retain_until_date(lock.until)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error(&format!("setting the Object Lock retention of {key}"), e))?;
        Ok(())
    }

    /// Deletes every version of `key` (a bucket with Object Lock keeps versions: a plain delete would only
    /// hide the object behind a delete marker and keep paying for it). A version still under retention is
    /// refused by the store; the error says so.
    async fn delete_versions(&self, key: &str) -> Result<(), StorageError> {
        let what = format!("listing the versions of {key}");
        let mut versions = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| self.error(&what, e))?;
            let ids = page
                .versions()
                .iter()
                .filter(|v| v.key() == Some(key))
                .filter_map(|v| v.version_id())
                .chain(
                    page.delete_markers()
                        .iter()
                        .filter(|m| m.key() == Some(key))
                        .filter_map(|m| m.version_id()),
                );
            versions.extend(ids.map(str::to_string));
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() && version_marker.is_none() {
                break;
            }
        }
        for version in versions {
            let result = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .version_id(&version)
                .send()
                .await;
            let Err(e) = result else { continue };
            let denied = e.as_service_error().and_then(|s| s.code()) == Some("AccessDenied");
            let err = self.error(&format!("deleting {key} (version {version})"), e);
            if denied {
                return Err(StorageError::permanent(format!(
                    "deleting {key} (version {version}): access denied: the object is under Object Lock \
                     retention or a legal hold (or the key lacks s3:DeleteObjectVersion)"
                )));
            }
            if err.kind != super::StorageErrorKind::NotFound {
                return Err(err);
            }
        }
        Ok(())
    }
}

/// The Object Lock headers of one write.
struct Retention {
    mode: LockMode,
    until: aws_sdk_s3::primitives::DateTime,
}

impl Retention {
    /// The mode as PutObject and CreateMultipartUpload send it (and HeadObject answers it).
    fn mode(&self) -> ObjectLockMode {
        match self.mode {
            LockMode::Governance => ObjectLockMode::Governance,
            LockMode::Compliance => ObjectLockMode::Compliance,
        }
    }

    /// The mode as PutObjectRetention sends it (the SDK models it as another type).
    fn retention_mode(&self) -> ObjectLockRetentionMode {
        match self.mode {
            LockMode::Governance => ObjectLockRetentionMode::Governance,
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
        }
    }
}

/// A part the store has taken, with its buffer back for the next part.
struct UploadedPart {
    part: CompletedPart,
    buffer: Option<BytesMut>,
}

impl UploadedPart {
    /// Records the part as done and keeps its buffer for reuse.
    fn collect(self, done: &mut Vec<CompletedPart>, spare: &mut Vec<BytesMut>) {
        done.push(self.part);
        spare.extend(self.buffer);
    }
}

/// The outcome of one spawned part upload; a panicked or cancelled task counts as a failure.
fn joined_part(
    joined: Result<Result<UploadedPart, StorageError>, tokio::task::JoinError>,
) -> Result<UploadedPart, StorageError> {
    joined.map_err(|e| StorageError::retryable(format!("part upload task failed: {e}")))?
}

/// Reads up to `size` bytes into `buf` (emptied first), stopping early only at EOF; an empty result means
/// the body had ended.
async fn read_part(
    body: &mut (dyn AsyncRead + Send + Unpin),
    size: usize,
    mut buf: BytesMut,
) -> std::io::Result<Bytes> {
    buf.clear();
    buf.reserve(size);
    while buf.len() < size {
        let n = (&mut *body)
            .take((size - buf.len()) as u64)
            .read_buf(&mut buf)
            .await?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

/// Aborts the multipart upload when dropped while armed (the put future was dropped mid-upload), so no
/// upload stays open and billed. Drop cannot await, so the abort runs as a spawned task.
struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key = %self.key, "multipart upload left open (no runtime to abort it); prune will clear it");
            return;
        };
        let request = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id);
        let key = self.key.clone();
        runtime.spawn(async move {
            if let Err(e) = request.send().await {
                tracing::warn!(key = %key, error = %DisplayErrorContext(&e), "could not abort a cancelled multipart upload; prune will clear it");
            }
        });
    }
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[async_trait]
impl Storage for S3Storage {
    fn describe(&self) -> String {
        let location = if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        };
        format!("{location} at {}", self.endpoint)
    }

    async fn put_stream(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StorageError> {
        self.upload(key, body, WriteMode::Replace).await
    }

    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.put_single(
            key,
            Bytes::from(bytes),
            WriteMode::Replace,
            Retain::Configured,
        )
        .await
    }

    async fn create_stream(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StorageError> {
        let mode = self.create_mode().await?;
        self.upload(key, body, mode).await
    }

    async fn create_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let mode = self.create_mode().await?;
        self.put_single(key, Bytes::from(bytes), mode, Retain::Configured)
            .await
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectReader, StorageError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(&format!("reading {key}"), e))?;
        // The SDK's attempt timeout ends when the headers arrive; the body is guarded here.
        Ok(Box::new(crate::idle::IdleTimeout::new(
            output.body.into_async_read(),
            self.read_idle,
            format!("{key} at {}", self.endpoint),
        )))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let what = format!("listing {prefix:?} in bucket {}", self.bucket);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_max_keys(self.list_page_size)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            // Any failed page fails the listing: a partial list could make retention delete too much.
            let page = page.map_err(|e| self.error(&what, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                objects.push(ObjectInfo {
                    key: key.to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    last_modified: object.last_modified().and_then(to_chrono),
                });
            }
        }
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        if self.object_lock.is_some() {
            return self.delete_versions(key).await;
        }
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = self.error(&format!("deleting {key}"), e);
                if err.kind == super::StorageErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn abort_stale_uploads(
        &self,
        prefix: &str,
        older_than: DateTime<Utc>,
    ) -> Result<usize, StorageError> {
        let what = format!(
            "listing unfinished uploads under {prefix:?} in bucket {}",
            self.bucket
        );
        let mut stale = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut upload_id_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_id_marker.take())
                .send()
                .await
                .map_err(|e| self.error(&what, e))?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let started = upload.initiated().and_then(to_chrono);
                if started.is_some_and(|t| t < older_than) {
                    stale.push((key.to_string(), id.to_string()));
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            upload_id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && upload_id_marker.is_none() {
                break;
            }
        }
        let mut aborted = 0;
        for (key, upload_id) in stale {
            let result = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .send()
                .await;
            match result {
                Ok(_) => aborted += 1,
                Err(e) => {
                    let err =
                        self.error(&format!("aborting the stale multipart upload of {key}"), e);
                    // Already gone (a concurrent abort or completion) is what we wanted.
                    if err.kind != super::StorageErrorKind::NotFound {
                        return Err(err);
                    }
                }
            }
        }
        Ok(aborted)
    }

    async fn put_probe(&self, key: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.put_single(key, Bytes::from(bytes), WriteMode::Replace, Retain::Never)
            .await
    }

    async fn locked_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
        if self.object_lock.is_none() {
            // Without `storage.object_lock` d1vault locks nothing and spends no request asking.
            return Ok(None);
        }
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(&format!("reading the Object Lock retention of {key}"), e))?;
        Ok(head.object_lock_retain_until_date().and_then(to_chrono))
    }

    async fn check(&self) -> Result<(), StorageError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) if self.object_lock.is_some() => self.check_object_lock().await,
            Ok(_) => Ok(()),
            Err(e) => {
                let err = self.error(&format!("checking bucket {}", self.bucket), e);
                // HeadBucket has no body, so a missing bucket is a bare 404.
                if err.kind == super::StorageErrorKind::NotFound {
                    Err(StorageError::permanent(format!(
                        "bucket {} does not exist at {}: create it or fix storage.bucket",
                        self.bucket, self.endpoint
                    )))
                } else {
                    Err(err)
                }
            }
        }
    }
}
