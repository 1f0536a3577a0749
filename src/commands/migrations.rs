//! `d1vault migrations create|list|apply`: wrangler-compatible migrations with a safety backup and
//! all-or-nothing apply (see [`crate::migrations`]).

use chrono::Utc;

use super::{Failure, select_databases};
use crate::cli::MigrationsCommand;
use crate::config::{Config, DatabaseConfig};
use crate::migrations::{self, ApplyEvent, ApplyOutcome, ApplyRequest, MigrationError};

/// Dispatches the migrations subcommand.
pub async fn run(config: &Config, command: &MigrationsCommand) -> Result<(), Failure> {
    match command {
        MigrationsCommand::Create { database, name } => create(config, database, name),
        MigrationsCommand::List { database } => {
            super::require_d1(config)?;
            list(config, database).await
        }
        MigrationsCommand::Apply {
            database,
            no_backup,
            dry_run,
        } => {
            super::require_d1(config)?;
            apply(config, database, *no_backup, *dry_run).await
        }
    }
}

fn database<'a>(config: &'a Config, name: &str) -> Result<&'a DatabaseConfig, Failure> {
    Ok(select_databases(config, &[name.to_string()])?[0])
}

/// A migrations error's exit status: a missing `[cloudflare]` section is a configuration error (2),
/// anything else a failed operation (1).
fn failed(e: MigrationError) -> Failure {
    match e {
        MigrationError::NoCloudflare => Failure::usage(e.to_string()),
        e => Failure::failed(e.to_string()),
    }
}

fn create(config: &Config, name: &str, description: &str) -> Result<(), Failure> {
    let db = database(config, name)?;
    let path = migrations::create(db, description, Utc::now()).map_err(failed)?;
    println!("{}", path.display());
    Ok(())
}

async fn list(config: &Config, name: &str) -> Result<(), Failure> {
    let db = database(config, name)?;
    let status = migrations::status(config, db).await.map_err(failed)?;
    for name in &status.applied {
        println!("applied  {name}");
    }
    for file in &status.pending {
        println!("pending  {}", file.name);
    }
    if status.pending.is_empty() {
        eprintln!("no migrations to apply");
    }
    Ok(())
}

async fn apply(config: &Config, name: &str, no_backup: bool, dry_run: bool) -> Result<(), Failure> {
    let request = ApplyRequest {
        database: database(config, name)?,
        no_backup,
        dry_run,
    };
    let outcome = migrations::apply(config, request, |event| match event {
        ApplyEvent::BackupTaken { backup_id } => println!("backup before migrating: {backup_id}"),
        ApplyEvent::BookmarkRead { bookmark } => println!("bookmark before migrating: {bookmark}"),
        ApplyEvent::Applied { name } => println!("applied  {name}"),
    })
    .await
    .map_err(failed)?;
    match outcome {
        ApplyOutcome::NothingPending => println!("no migrations to apply"),
        ApplyOutcome::WouldApply(names) => {
            for name in names {
                println!("would apply  {name}");
            }
        }
        ApplyOutcome::Applied(_) => {}
    }
    Ok(())
}
