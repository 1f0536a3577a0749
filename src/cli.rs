//! The command line (CONTRACT.md "Command line"), as clap derive types. `main.rs` parses it and hands each
//! subcommand to its module under [`crate::commands`]; completions and the man page are generated from it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `--log-format`'s values: defined by the logging it configures, parsed here.
pub use crate::logging::LogFormat;

/// d1vault: scheduled, verified backups of Cloudflare D1 databases.
#[derive(Debug, Parser)]
#[command(name = "d1vault", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// Configuration file [default: $D1VAULT_CONFIG, ./d1vault.toml, ~/.config/d1vault/d1vault.toml
    /// ($XDG_CONFIG_HOME), /etc/d1vault/d1vault.toml]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    /// Log line format on stderr.
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log detail (-v debug, -vv trace). Secrets are never logged at any level.
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only warnings and errors.
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The examples under `d1vault --help` (the man page has its own, longer EXAMPLES section).
const EXAMPLES: &str = "\
Examples:
  d1vault check-config --online        validate, show next runs, check token, databases and storage
  d1vault backup blog                  back up now (skipped as unchanged unless --force)
  d1vault verify blog                  prove the newest backup restores
  d1vault restore blog --to-sqlite ./blog.sqlite
  d1vault run                          the daemon: schedules, retention, /healthz, /metrics

Exit status: 0 success, 1 failure, 2 usage or configuration error. `man d1vault` has more.";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler daemon in the foreground; stops cleanly on SIGTERM/SIGINT.
    Run,
    /// Back up the named databases (all configured ones when none is named) now, once; a D1 database
    /// unchanged since its newest backup is skipped (printed as `unchanged`) unless --force.
    Backup(BackupArgs),
    /// List complete backups in storage, newest first.
    List(ListArgs),
    /// Restore a backup (default: the newest) into a D1 database or a SQLite file.
    Restore(RestoreArgs),
    /// Download a backup, check it against its manifest and load it into a scratch SQLite database.
    Verify(VerifyArgs),
    /// Apply the retention policy now, printing every backup with keep/delete and the reasons.
    Prune(PruneArgs),
    /// Per database: last success, last failure with its reason, next scheduled run.
    Status(StatusArgs),
    /// Validate the configuration and print each database's next three run times; with --online also
    /// check the token, each D1 database and write access to storage.
    CheckConfig(CheckConfigArgs),
    /// Write a commented starter configuration (R2 storage, one D1 database) to PATH, or to the
    /// --config path; never over an existing file.
    Init(InitArgs),
    /// The databases a backup would cover now: each configured database and each fleet member found in
    /// the account, with the entry (database or fleet) that governs it.
    Databases(DatabasesArgs),
    /// wrangler-compatible schema migrations.
    #[command(subcommand)]
    Migrations(MigrationsCommand),
    /// Notifications ([[notify]]).
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Ask a running daemon's /healthz (for container HEALTHCHECKs without curl); exit 0 when healthy.
    Healthcheck,
    /// Print shell completions.
    Completions(CompletionsArgs),
}

/// `check-config`: how far to check.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Also ask: the Cloudflare token (one request), each configured D1 database (one each), each
    /// fleet's members, and storage (a probe object written and deleted under the prefix).
    #[arg(long)]
    pub online: bool,
    /// Print one JSON object: the configuration, storage, each database's and fleet's next runs, the
    /// problems, and with --online each check's answer.
    #[arg(long)]
    pub json: bool,
}

/// `init`: where the starter configuration goes.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The file to write (default: the --config path, else ./d1vault.toml).
    pub path: Option<PathBuf>,
}

/// `backup`: which databases to back up now.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Databases to back up (default: every configured database).
    pub databases: Vec<String>,
    /// Export even a D1 database whose data has not changed since its newest backup (skip_unchanged).
    #[arg(long)]
    pub force: bool,
    /// Say what a backup would do for each database (export, and why, or skip as unchanged) and change
    /// nothing: no export, no upload, no catalog row, no notification (a D1 database costs one bookmark
    /// request).
    #[arg(long, conflicts_with = "json")]
    pub dry_run: bool,
    /// Print a JSON array, one object per database: {database, result (success, unchanged, failure),
    /// backup_id, raw_bytes, stored_bytes, error}.
    #[arg(long)]
    pub json: bool,
}

/// `list`: which backups to show, and how.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this database.
    pub database: Option<String>,
    /// Print the manifests as a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `restore`: which backup goes where, and what may be replaced.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_d1", "to_sqlite"])))]
pub struct RestoreArgs {
    /// The configured database whose backups to restore from.
    pub database: String,
    /// Backup id (or a prefix of exactly one), or `latest` (the default: the newest complete backup).
    #[arg(long, value_name = "ID", conflicts_with = "at")]
    pub backup: Option<String>,
    /// The newest complete backup that started at or before TIME: RFC 3339 (2026-12-01T14:10:00Z, or
    /// with an offset) or a duration ago (36h, 2d).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Restore into this D1 database (name or UUID).
    #[arg(long, value_name = "NAME_OR_ID")]
    pub to_d1: Option<String>,
    /// Restore into a new SQLite file.
    #[arg(long, value_name = "PATH")]
    pub to_sqlite: Option<PathBuf>,
    /// Allow replacing a target that is not empty (D1: tables, views or triggers) or an existing regular
    /// file (SQLite; never a link, directory, FIFO or device).
    #[arg(long)]
    pub replace: bool,
    /// Do not ask for confirmation (required for destructive restores without a TTY).
    #[arg(long)]
    pub yes: bool,
    /// Skip the safety backup of a D1 target before replacing it.
    #[arg(long)]
    pub no_safety_backup: bool,
    /// The age identity file that decrypts an encrypted backup (default: encryption.identity_file).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// How a backup goes back into its own source D1 database: `auto` uses Time Travel while D1 still
    /// holds the backup's bookmark (seconds, exact), else the import; `import` always imports.
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    pub via: Via,
}

/// `restore --via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Time Travel when possible, else the import.
    Auto,
    /// Always import the dump.
    Import,
    /// Time Travel, or fail.
    TimeTravel,
}

impl From<Via> for crate::restore::RestoreVia {
    fn from(via: Via) -> Self {
        match via {
            Via::Auto => crate::restore::RestoreVia::Auto,
            Via::Import => crate::restore::RestoreVia::Import,
            Via::TimeTravel => crate::restore::RestoreVia::TimeTravel,
        }
    }
}

/// `verify`: which backups to prove.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Databases to verify (default: every configured database and fleet member).
    pub databases: Vec<String>,
    /// Verify this backup id (or a prefix of exactly one) instead of the newest (`latest` names the
    /// newest).
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    pub backup: Option<String>,
    /// Verify every complete backup.
    #[arg(long)]
    pub all: bool,
    /// The age identity file that decrypts encrypted backups (default: encryption.identity_file).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Print a JSON array of verdicts: {result (ok, failed, refused, missing), database, backup_id, ...}.
    #[arg(long)]
    pub json: bool,
}

/// `prune`: which databases, and whether to change anything.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Databases to prune (default: every configured database and fleet member; a database gone from
    /// the account is never pruned).
    pub databases: Vec<String>,
    /// Print the decisions and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON array, one object per database: every backup with its action and reasons, and what
    /// was deleted.
    #[arg(long)]
    pub json: bool,
}

/// `status`: the output format.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `databases`: the output format.
#[derive(Debug, Args)]
pub struct DatabasesArgs {
    /// Print JSON: an array of {name, id, source, entry, schedule}.
    #[arg(long)]
    pub json: bool,
}

/// `notify`: the notification subcommands.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test event to every [[notify]] target and report each result; exit 1 if any failed.
    Test,
}

/// `migrations`: the wrangler-compatible migration subcommands.
#[derive(Debug, Subcommand)]
pub enum MigrationsCommand {
    /// Write the next `NNNN_NAME.sql` in the database's migrations_dir.
    Create {
        /// The configured database whose migrations_dir gets the file.
        database: String,
        /// What the migration does, as the file name's suffix.
        name: String,
    },
    /// Applied and pending migrations, as wrangler decides them.
    List {
        /// The configured database.
        database: String,
    },
    /// Back up, then apply every pending migration; on any failure put the database back as it was.
    Apply {
        /// The configured database.
        database: String,
        /// Skip the backup before applying (refused on a D1 database without Time Travel, where that
        /// backup is what undoes a failed run).
        #[arg(long)]
        no_backup: bool,
        /// Print what would be applied and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `completions`: for which shell.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    pub shell: clap_complete::Shell,
}
