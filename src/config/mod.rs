//! The validated configuration. [`load`] turns a TOML file into a [`Config`] or into a list of every problem
//! found, each with file, line, column and key; nothing downstream ever sees a half-valid configuration.
//!
//! The file format is binding (see CONTRACT.md "Configuration"): unknown keys are errors, `${VAR}` is expanded
//! in every string, and secrets may come from `*_file` keys.

mod error;
mod load;
mod preflight;
mod reader;
mod schema;

pub use error::{ConfigError, ConfigErrors};
pub use load::{find_config_path, load, load_str};
pub use preflight::preflight;

/// The known name that `word` is most likely a typo of (a small edit distance), for "did you mean"
/// hints on the command line as in configuration errors.
pub fn closest_name<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    reader::closest(word, known)
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::glob::Glob;
use crate::repository::retention::RetentionPolicy;
use crate::schedule::{Schedule, Window};
use crate::secret::Secret;

/// Default Cloudflare API base URL.
pub const DEFAULT_API_BASE_URL: &str = "https://api.cloudflare.com/client/v4";

/// Everything d1vault needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration came from (relative paths inside it are already resolved against it).
    pub path: PathBuf,
    /// `[daemon]`: catalog location, HTTP listener, time zone, concurrency, shutdown.
    pub daemon: DaemonConfig,
    /// Absent when no database uses the D1 source (for example the SQLite-only quickstart), or when the
    /// section's credentials could not be resolved (then `cloudflare_unavailable` says why).
    pub cloudflare: Option<CloudflareConfig>,
    /// Set when `[cloudflare]` is written but its account id or token did not resolve from the
    /// environment (a variable not set, a secret file missing or empty): the errors, exactly as the loader
    /// words them. Commands that only read storage run regardless; those that need D1 fail with these
    /// ([`Config::require_cloudflare`]), and `check-config` reports them.
    pub cloudflare_unavailable: Option<ConfigErrors>,
    /// The local paths the file names (`sqlite_path`, a filesystem `storage.path`, a written
    /// `state_dir`), with their positions, for `check-config`'s [`preflight`]; never checked at load.
    pub(crate) preflight: Vec<preflight::PathCheck>,
    /// `[storage]`: where backups are kept.
    pub storage: StorageConfig,
    /// Every `[[database]]`, with `[defaults]` applied, in file order.
    pub databases: Vec<DatabaseConfig>,
    /// Every `[[fleet]]`, with `[defaults]` applied, in file order (the first that fits a name governs it).
    pub fleets: Vec<FleetConfig>,
    /// Every `[[notify]]`, in file order: where backups and their failures are told about.
    pub notify: Vec<crate::notify::NotifyConfig>,
    /// `[encryption]`: when set, every backup is encrypted with age before it leaves the host.
    pub encryption: Option<EncryptionConfig>,
    /// `databases` by name, for [`Config::database`]: every daemon task looks itself up there, and a
    /// fleet may put 100,000 members in `databases`.
    pub(crate) index: DatabaseIndex,
}

/// A name-to-position index over [`Config::databases`], built at the first lookup. A clone starts
/// empty, so a configuration made from another by struct update (`Config { databases, ..other.clone()
/// }`, as the configuration with fleet members is) never inherits an index of other databases. Each hit
/// is checked against `databases` and a miss falls back to a scan, so an index made stale by a later
/// change to the public `databases` field is slower, never wrong.
#[derive(Debug, Default)]
pub(crate) struct DatabaseIndex(std::sync::OnceLock<std::collections::HashMap<String, usize>>);

impl Clone for DatabaseIndex {
    fn clone(&self) -> Self {
        DatabaseIndex::default()
    }
}

impl Config {
    /// The configured database called `name`, if any.
    pub fn database(&self, name: &str) -> Option<&DatabaseConfig> {
        let index = self.index.0.get_or_init(|| {
            self.databases
                .iter()
                .enumerate()
                .map(|(i, d)| (d.name.clone(), i))
                .collect()
        });
        index
            .get(name)
            .and_then(|&i| self.databases.get(i))
            .filter(|d| d.name == name)
            .or_else(|| self.databases.iter().find(|d| d.name == name))
    }

    /// For an operation that needs the D1 API: the reason it cannot have it when `[cloudflare]` is written
    /// but its credentials did not resolve. `Ok` also when no `[cloudflare]` is written (the operation then
    /// says what is missing, as before).
    pub fn require_cloudflare(&self) -> Result<(), &ConfigErrors> {
        self.cloudflare_unavailable.as_ref().map_or(Ok(()), Err)
    }

    /// Whether backing up `names` (every configured database and fleet member when empty) needs the D1
    /// API: a D1 database among them, or a name found only among fleet members. Pure.
    pub fn backup_needs_d1(&self, names: &[String]) -> bool {
        let is_d1 = |db: &DatabaseConfig| matches!(db.source, Source::D1 { .. });
        if names.is_empty() {
            return !self.fleets.is_empty() || self.databases.iter().any(is_d1);
        }
        names.iter().any(|name| match self.database(name) {
            Some(db) => is_d1(db),
            None => !self.fleets.is_empty(),
        })
    }
}

/// `[daemon]`: process-wide settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Local catalog (SQLite) and spool directory.
    pub state_dir: PathBuf,
    /// Address for `/healthz` and `/metrics`; `None` when `listen = ""`.
    pub listen: Option<SocketAddr>,
    /// IANA zone for schedules, windows and retention buckets.
    pub timezone: chrono_tz::Tz,
    /// Backups running at once across databases.
    pub max_concurrent: usize,
    /// How long running backups may finish after SIGTERM before they are aborted.
    pub shutdown_grace: Duration,
    /// How often the daemon lists the account's databases to find `[[fleet]]` members.
    pub discovery_interval: Duration,
}

/// `[encryption]`: who can read the backups.
#[derive(Debug, Clone)]
pub struct EncryptionConfig {
    /// The public keys every new backup is encrypted to.
    pub recipients: crate::encryption::Recipients,
    /// Where `restore` and `verify` read the private key when `--identity` is not given.
    pub identity_file: Option<PathBuf>,
}

/// `[cloudflare]`: how to reach the D1 REST API.
#[derive(Debug, Clone)]
pub struct CloudflareConfig {
    /// The Cloudflare account that owns the databases.
    pub account_id: String,
    /// The API token (D1 read and, for restores, edit); never logged.
    pub api_token: Secret,
    /// Base URL including `/client/v4`, without a trailing slash.
    pub api_base_url: String,
    /// Client-side budget shared by every job: requests per 5 minutes (Cloudflare allows 1,200).
    pub requests_per_5min: u32,
    /// Overall limit for one export, polling included.
    pub export_timeout: Duration,
}

/// `[storage]`: where backups go.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// An S3-compatible bucket (R2, AWS S3, MinIO, Garage).
    S3(S3Config),
    /// A local directory (or a mounted one).
    Filesystem(FilesystemConfig),
}

impl StorageConfig {
    /// The key prefix under which every database's backups live (may be empty).
    pub fn prefix(&self) -> &str {
        match self {
            StorageConfig::S3(s3) => &s3.prefix,
            StorageConfig::Filesystem(fs) => &fs.prefix,
        }
    }
}

/// `type = "s3"`.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The bucket; it must exist (d1vault never creates it).
    pub bucket: String,
    /// Key prefix without leading or trailing slashes; may be empty.
    pub prefix: String,
    /// Custom endpoint (R2, MinIO, Garage); AWS when `None`.
    pub endpoint: Option<String>,
    /// The signing region (`auto` for R2).
    pub region: String,
    /// Address the bucket in the path rather than the host name (MinIO, Garage).
    pub force_path_style: bool,
    /// Static credentials; `None` means the AWS default chain.
    pub access_key_id: Option<Secret>,
    /// The secret half of the static credentials; never logged.
    pub secret_access_key: Option<Secret>,
    /// Multipart part size in bytes (at least 5 MiB).
    pub part_size: usize,
    /// Parts uploaded at once for one object.
    pub max_parts_in_flight: usize,
    /// Object Lock retention for every object a backup writes; `None` writes objects unlocked.
    pub object_lock: Option<ObjectLock>,
}

/// `storage.object_lock`: the S3 Object Lock retention d1vault sets on each backup object it writes, so a
/// leaked key cannot delete a backup before `days` have passed (the bucket must have Object Lock enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    /// Who may still remove a locked object early.
    pub mode: LockMode,
    /// Days from the write until the object may be deleted.
    pub days: u32,
}

/// S3's two Object Lock retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// A key with `s3:BypassGovernanceRetention` may still delete or shorten (d1vault never asks to).
    Governance,
    /// Nobody can delete or shorten until the date, not even the account root.
    Compliance,
}

/// `type = "filesystem"`.
#[derive(Debug, Clone)]
pub struct FilesystemConfig {
    /// The storage root; it must exist (d1vault never creates it).
    pub path: PathBuf,
    /// Key prefix without leading or trailing slashes; may be empty.
    pub prefix: String,
}

/// Where a database's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Cloudflare D1 database, exported through the REST API. `id` skips the name lookup.
    D1 {
        /// The database id, when configured.
        id: Option<String>,
    },
    /// A local SQLite file (for example wrangler's local state), dumped in D1's export format.
    Sqlite {
        /// The SQLite file, resolved against the config file's directory.
        path: PathBuf,
    },
}

/// Compression applied to the SQL dump before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd, the default: fast and small.
    Zstd {
        /// The zstd level (1 to 22).
        level: i32,
    },
    /// gzip, for tools that only read gzip.
    Gzip {
        /// The gzip level (1 to 9).
        level: i32,
    },
    /// Stored as plain SQL.
    None,
}

impl Compression {
    /// File name of the stored dump: `dump.sql.zst`, `dump.sql.gz` or `dump.sql`.
    pub fn dump_file_name(&self) -> &'static str {
        match self {
            Compression::Zstd { .. } => "dump.sql.zst",
            Compression::Gzip { .. } => "dump.sql.gz",
            Compression::None => "dump.sql",
        }
    }

    /// The name written into manifests: `"zstd"`, `"gzip"` or `"none"`.
    pub fn name(&self) -> &'static str {
        match self {
            Compression::Zstd { .. } => "zstd",
            Compression::Gzip { .. } => "gzip",
            Compression::None => "none",
        }
    }
}

/// One `[[database]]`, with `[defaults]` already applied.
///
/// The job settings sit behind an [`Arc`] so that the members of a fleet share one copy of them: a
/// fleet may have 100,000 members, and a copy each would cost about a kilobyte per member (issue 17).
/// `Deref` to [`Job`] keeps the settings readable as fields (`db.schedule`); a write through `DerefMut`
/// copies them first (`Arc::make_mut`), so it never changes another database's settings.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The D1 database name; also the directory name in storage.
    pub name: String,
    /// Where the data comes from: D1 or a local SQLite file.
    pub source: Source,
    /// How and when it is backed up; shared with the other members of its fleet.
    pub job: Arc<Job>,
    /// A scratch D1 database the scheduled verification also restores the newest backup into and checks
    /// there (integrity, foreign keys, row counts): the whole path a real restore takes. `[[database]]`
    /// only.
    pub drill_to_d1: Option<String>,
    /// The `[[fleet]]` (its position in the file, from 0) that found this database; `None` for a
    /// `[[database]]`. Members of one fleet share its settings, and `/metrics` summarises them by fleet.
    pub fleet: Option<usize>,
}

impl std::ops::Deref for DatabaseConfig {
    type Target = Job;

    fn deref(&self) -> &Job {
        &self.job
    }
}

impl std::ops::DerefMut for DatabaseConfig {
    fn deref_mut(&mut self) -> &mut Job {
        Arc::make_mut(&mut self.job)
    }
}

/// A database's job settings (`[defaults]` overridden by its own keys, or its fleet's): what is
/// backed up, when, how it is stored and kept.
#[derive(Debug, Clone)]
pub struct Job {
    /// When backups are due (cron, in `daemon.timezone`).
    pub schedule: Schedule,
    /// The daily window a backup may start in (a D1 export blocks the database).
    pub window: Option<Window>,
    /// A random delay of up to this much before each start, to spread load.
    pub jitter: Duration,
    /// How the dump is compressed before it is stored.
    pub compression: Compression,
    /// Which complete backups `prune` and the daemon keep.
    pub retention: RetentionPolicy,
    /// Export the schema only.
    pub no_data: bool,
    /// Export only these tables (empty: all).
    pub tables: Vec<String>,
    /// Resolved against the config file's directory.
    pub migrations_dir: PathBuf,
    /// The table that records applied migrations (wrangler's `d1_migrations` by default).
    pub migrations_table: String,
    /// Skip a D1 export when the database's current Time Travel bookmark equals the one in its newest
    /// complete backup (`skip_unchanged`, default true): an export blocks the database and costs API budget.
    pub skip_unchanged: bool,
    /// When the daemon verifies the newest backup (downloaded from storage, restored into a scratch
    /// SQLite database, checked); `None`: never on its own.
    pub verify_schedule: Option<Schedule>,
}

/// One `[[fleet]]`: every D1 database of the account whose name fits `pattern` and no `exclude`, backed up
/// with the same job settings, found by listing the account at each run (see [`crate::fleet`]).
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Its position among the `[[fleet]]` tables of the file (0 first): file order decides which fleet
    /// governs a name two of them fit.
    pub index: usize,
    /// `match`: the glob a member's name fits.
    pub pattern: Glob,
    /// `exclude`: globs of names this fleet leaves out although `pattern` fits them.
    pub exclude: Vec<Glob>,
    /// The job settings every member gets (`[defaults]` overridden by the fleet's own keys), as a
    /// database configuration whose `name` is the pattern and whose source is D1 without an id.
    pub job: DatabaseConfig,
}

impl FleetConfig {
    /// Whether this fleet would take `name`: `match` fits and no `exclude` does.
    pub fn fits(&self, name: &str) -> bool {
        self.pattern.matches(name) && !self.exclude.iter().any(|g| g.matches(name))
    }

    /// The configuration of member `name` (D1 id `id`, as listed): this fleet's job settings.
    pub fn member(&self, name: &str, id: &str) -> DatabaseConfig {
        DatabaseConfig {
            name: name.to_string(),
            source: Source::D1 {
                id: Some(id.to_string()),
            },
            job: self.job.job.clone(),
            drill_to_d1: None,
            fleet: Some(self.index),
        }
    }
}

/// Whether `name` is a valid D1 database name (`^[a-zA-Z0-9][a-zA-Z0-9_-]*$`), hence safe as a
/// storage directory: listed names are checked with it before they become paths.
pub fn is_database_name(name: &str) -> bool {
    schema::is_database_name(name)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn lookups_by_name_survive_struct_update_and_later_changes_to_databases() {
        // Proves the index behind Config::database is never wrong: a configuration built from another by
        // struct update finds its own databases (not the other's), and a database pushed after the index
        // was built, or one removed, is still answered correctly.
        let text = "[storage]\ntype = \"filesystem\"\npath = \"/srv\"\n\
                    [[database]]\nname = \"blog\"\nsqlite_path = \"/srv/blog.sqlite\"\n";
        let file = load_str(text, Path::new("/etc/d1vault/d1vault.toml"), &|_| None).unwrap();
        assert!(file.database("blog").is_some());
        let template = file.databases[0].clone();
        let named = |name: &str| DatabaseConfig {
            name: name.to_string(),
            ..template.clone()
        };
        let mut members = Config {
            databases: vec![named("tenant-b"), named("tenant-a")],
            ..file.clone()
        };
        assert_eq!(members.database("tenant-a").unwrap().name, "tenant-a");
        assert!(
            members.database("blog").is_none(),
            "the file's index leaked"
        );
        members.databases.push(named("tenant-c"));
        members.databases.remove(0);
        assert_eq!(members.database("tenant-c").unwrap().name, "tenant-c");
        assert_eq!(members.database("tenant-a").unwrap().name, "tenant-a");
        assert!(members.database("tenant-b").is_none());
    }

    #[test]
    fn fleet_members_share_one_copy_of_the_job_settings_and_a_write_copies_them() {
        // Proves that members cost no copy of their fleet's settings (100,000 members, issue 17) and
        // that changing one member's settings leaves the fleet's and the other members' alone.
        let text = "[cloudflare]\naccount_id = \"a\"\napi_token = \"t\"\n\n\
                    [storage]\ntype = \"filesystem\"\npath = \"/srv\"\n\n\
                    [[fleet]]\nmatch = \"tenant-*\"\nschedule = \"@daily\"\n";
        let file = load_str(text, Path::new("/etc/d1vault/d1vault.toml"), &|_| None).unwrap();
        let fleet = &file.fleets[0];
        let a = fleet.member("tenant-a", "id-a");
        let mut b = fleet.member("tenant-b", "id-b");
        assert!(Arc::ptr_eq(&a.job, &b.job));
        assert!(Arc::ptr_eq(&a.job, &fleet.job.job));
        assert_eq!(a.fleet, Some(0));
        b.no_data = true;
        assert!(b.no_data);
        assert!(!a.no_data && !fleet.job.no_data);
        assert!(!Arc::ptr_eq(&a.job, &b.job));
        assert!(
            std::mem::size_of::<DatabaseConfig>() < 200,
            "a member's own part grew to {} bytes",
            std::mem::size_of::<DatabaseConfig>()
        );
    }
}
