//! `d1vault verify [DB...] [--backup ID] [--all]`: prove that backups restore. Each chosen backup is
//! downloaded, checked for size and sha256 against its manifest, and only then loaded into a scratch SQLite
//! database (`state_dir/spool/d1vault-verify-*.sqlite`, locked down, deleted after, and swept by the next
//! verify if the process was killed), and checked with `integrity_check`, `foreign_key_check` and the
//! manifest's row counts. Exit 1 on any mismatch. Production is never touched.

use super::{Failure, open_sources};
use crate::cli::VerifyArgs;
use crate::config::Config;
use crate::repository::backups;
use crate::repository::manifest::Manifest;
use crate::restore::scratch::{self, PRIVATE, ScratchFile};
use crate::restore::{self, Progress, RestoreError, sqlite};

/// Verifies the selected backups and prints one line per backup.
pub async fn run(config: &Config, args: &VerifyArgs) -> Result<(), Failure> {
    let sources = open_sources(config).await?;
    let names: Vec<String> = if args.databases.is_empty() {
        config.databases.iter().map(|d| d.name.clone()).collect()
    } else {
        args.databases.clone()
    };
    std::fs::create_dir_all(&config.daemon.state_dir).map_err(|e| {
        Failure::failed(format!(
            "creating state_dir {}: {e}",
            config.daemon.state_dir.display()
        ))
    })?;
    scratch::sweep(&spool_dir(config), sqlite::VERIFY_PREFIX);
    let mut failures = Vec::new();
    for name in &names {
        let manifests = match &args.backup {
            // A named backup is looked up on its own, so that an untrusted manifest is reported with its
            // reason rather than as a missing backup.
            Some(id) => match restore::select_backup(
                sources.storage.as_ref(),
                &sources.prefix,
                name,
                Some(id),
            )
            .await
            {
                Ok(manifest) => vec![manifest],
                Err(RestoreError::Refused(why)) => {
                    println!("FAILED  {name} {id}");
                    println!("        {why}");
                    failures.push(format!("{name}: {why}"));
                    continue;
                }
                Err(e) => return Err(Failure::failed(format!("listing backups of {name}: {e}"))),
            },
            None => backups::complete(sources.storage.as_ref(), &sources.prefix, Some(name))
                .await
                .map_err(|e| Failure::failed(format!("listing backups of {name}: {e}")))?,
        };
        let chosen: Vec<&Manifest> = match (&args.backup, args.all) {
            (Some(id), _) => manifests.iter().filter(|m| &m.backup_id == id).collect(),
            (None, true) => manifests.iter().collect(),
            (None, false) => manifests.iter().take(1).collect(),
        };
        if chosen.is_empty() {
            let what = args
                .backup
                .as_ref()
                .map(|id| format!("backup {id}"))
                .unwrap_or_else(|| "complete backup".into());
            failures.push(format!(
                "{name}: no {what} in {}",
                sources.storage.describe()
            ));
            continue;
        }
        for manifest in chosen {
            match verify_one(config, &sources, manifest).await {
                Ok(summary) => println!("ok      {name} {} {summary}", manifest.backup_id),
                Err(problems) => {
                    println!("FAILED  {name} {}", manifest.backup_id);
                    for p in &problems {
                        println!("        {p}");
                    }
                    failures.push(format!(
                        "{name} {}: {}",
                        manifest.backup_id,
                        problems.join("; ")
                    ));
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(failures.join("\n")))
    }
}

/// Where verify spools downloads and keeps its scratch databases.
fn spool_dir(config: &Config) -> std::path::PathBuf {
    config.daemon.state_dir.join("spool")
}

async fn verify_one(
    config: &Config,
    sources: &crate::sources::BackupSources,
    manifest: &Manifest,
) -> Result<String, Vec<String>> {
    let spool = spool_dir(config);
    let mut progress = Progress::new(
        format!("verifying {}", manifest.backup_id),
        manifest.dump.raw_size,
    );
    let dump =
        restore::download_and_prove(sources.storage.as_ref(), manifest, &spool, &mut progress)
            .await
            .map_err(|e| vec![e.to_string()])?;
    let scratch =
        ScratchFile::create(&spool, sqlite::VERIFY_PREFIX, ".sqlite", PRIVATE).map_err(|e| {
            vec![format!(
                "creating a scratch database in {}: {e}",
                spool.display()
            )]
        })?;
    let report = sqlite::load_proven(dump, manifest, scratch.path(), &mut progress)
        .await
        .map_err(|e| vec![e.to_string()])?;
    let problems = report.problems(manifest);
    if !problems.is_empty() {
        return Err(problems);
    }
    let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
    Ok(format!(
        "sha256 ok, {} tables, {rows} rows match, integrity_check ok, foreign_key_check ok",
        manifest.tables.len()
    ))
}
