//! One module per subcommand. Each exposes `pub async fn run(...) -> Result<(), Failure>`; `main.rs` maps a
//! [`Failure`] to the contract's exit status (1 operation failed, 2 usage or configuration error).

pub mod check_config;

use std::fmt;

/// Why a command did not succeed, with the exit status the contract assigns to it.
#[derive(Debug)]
pub struct Failure {
    /// `1`: the operation failed. `2`: usage or configuration error.
    pub exit_code: u8,
    /// What went wrong and what to do, already phrased for the user (may span lines).
    pub message: String,
}

impl Failure {
    /// The operation failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            exit_code: 1,
            message: message.into(),
        }
    }

    /// A usage or configuration error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            exit_code: 2,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

pub mod backup;
pub mod databases;
pub mod healthcheck;
pub mod init;
pub mod list;
pub mod migrations;
pub mod notify;
pub mod present;
pub mod prune;
pub mod restore;
pub mod run;
pub mod status;
pub mod verify;

use crate::config::{Config, DatabaseConfig};
use crate::sources::{self, BackupSources};

/// Opens the configured storage and, when configured, the Cloudflare client: what every command that
/// touches backups needs.
pub async fn open_sources(config: &Config) -> Result<BackupSources, Failure> {
    sources::open(config)
        .await
        .map_err(|e| Failure::failed(e.to_string()))
}

/// For a command that talks to D1: exit 2 with the loader's own errors when `[cloudflare]` is written but
/// its credentials did not resolve (the commands that only read storage run without them).
pub fn require_d1(config: &Config) -> Result<(), Failure> {
    config.require_cloudflare().map_err(|errors| {
        Failure::usage(format!(
            "{errors}\nthis command needs the Cloudflare API; list, verify, restore --to-sqlite and prune \
             run without it"
        ))
    })
}

/// The databases named on the command line (all configured ones when none is named); an unknown name is a
/// usage error that lists the configured ones.
pub fn select_databases<'a>(
    config: &'a Config,
    names: &[String],
) -> Result<Vec<&'a DatabaseConfig>, Failure> {
    if names.is_empty() {
        return Ok(config.databases.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            config.database(name).ok_or_else(|| {
                let known: Vec<&str> = config.databases.iter().map(|d| d.name.as_str()).collect();
                Failure::usage(format!(
                    "no database named {name:?} in {}{}; configured: {}",
                    config.path.display(),
                    did_you_mean(std::slice::from_ref(name), &known),
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// The usage error for names that are neither configured nor fleet members of the account.
pub fn unknown_databases(config: &Config, unknown: &[String]) -> Failure {
    let known: Vec<&str> = config.databases.iter().map(|d| d.name.as_str()).collect();
    Failure::usage(format!(
        "no database named {} in {} nor among its fleets' members{}; configured: {}",
        unknown
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        config.path.display(),
        did_you_mean(unknown, &known),
        known.join(", ")
    ))
}

/// `" (did you mean "blog"?)"` for the first unknown name that is a likely typo of a known one, else
/// nothing: a mistyped name on the command line gets the same help as a mistyped key in the file.
fn did_you_mean(unknown: &[String], known: &[&str]) -> String {
    unknown
        .iter()
        .find_map(|name| crate::config::closest_name(name, known))
        .map(|name| format!(" (did you mean {name:?}?)"))
        .unwrap_or_default()
}
