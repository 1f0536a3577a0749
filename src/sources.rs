//! The wiring every operation on backups starts from: the configured storage and, when any database is in
//! D1, the Cloudflare client with its shared rate limiter. Commands and the daemon open it once.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cloudflare::{self, ApiError, RATE_LIMIT_WINDOW, RateLimiter};
use crate::config::Config;
use crate::encryption::Recipients;
use crate::storage::{Storage, StorageError};

/// The storage, its key prefix and the optional D1 client: what a backup, restore, verify, list or prune
/// needs besides the database's own configuration.
#[derive(Debug, Clone)]
pub struct BackupSources {
    /// Where backups live.
    pub storage: Arc<dyn Storage>,
    /// The storage key prefix (`storage.prefix`).
    pub prefix: String,
    /// The D1 client; `None` when no `[cloudflare]` section is configured.
    pub cloudflare: Option<cloudflare::Client>,
    /// `[encryption]`'s recipients: every backup taken through these sources is encrypted to them.
    pub encryption: Option<Recipients>,
    /// Where restore and verify read the age identity (`--identity`, else `encryption.identity_file`).
    pub identity_file: Option<PathBuf>,
}

/// Why the sources could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The storage could not be reached or set up.
    #[error("opening storage: {0}")]
    Storage(#[from] StorageError),
    /// The Cloudflare client could not be built from its configuration.
    #[error("{0}")]
    Cloudflare(#[from] ApiError),
}

/// Opens the configured storage and, when configured, the Cloudflare client.
pub async fn open(config: &Config) -> Result<BackupSources, OpenError> {
    let storage = crate::storage::open(&config.storage).await?;
    let cloudflare = match &config.cloudflare {
        Some(cf) => {
            let limiter = Arc::new(RateLimiter::new(cf.requests_per_5min, RATE_LIMIT_WINDOW));
            Some(cloudflare::Client::new(cf, limiter)?)
        }
        None => None,
    };
    Ok(BackupSources {
        storage,
        prefix: config.storage.prefix().to_string(),
        cloudflare,
        encryption: config.encryption.as_ref().map(|e| e.recipients.clone()),
        identity_file: config
            .encryption
            .as_ref()
            .and_then(|e| e.identity_file.clone()),
    })
}
