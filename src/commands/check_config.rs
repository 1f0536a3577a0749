//! `d1vault check-config`: the configuration has already been loaded and validated by the time this runs
//! (a broken file exits 2 with every error before any command starts); this adds the checks plain loading
//! leaves out (unresolved Cloudflare credentials, the local paths' [`config::preflight`], reading only),
//! then prints what d1vault understood, so the user can check that the schedule means what they meant.
//! `--online` then asks what only asking can tell ([`crate::online`]); a failure there exits 1.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::Failure;
use crate::config::{self, Config, DatabaseConfig, Source, StorageConfig};

/// How many upcoming runs are shown per database.
const UPCOMING_RUNS: usize = 3;

/// Prints the configuration path, where backups go and, per database, its source and next run times
/// (as text, or as one JSON object with `--json`). Fails with exit 2 when a schedule never fires (for
/// example `0 0 30 2 *`), which the loader cannot know without a clock.
pub async fn run(
    config: &Config,
    now: DateTime<Utc>,
    online: bool,
    json: bool,
) -> Result<(), Failure> {
    // Unresolved Cloudflare credentials are an error here as at any D1 command, and so is a local path
    // that is not what the file says (read-only checks): exit 2, in the loader's form, as a file error.
    let mut found = config::preflight(config).0;
    if let Some(unavailable) = &config.cloudflare_unavailable {
        found.extend(unavailable.0.iter().cloned());
    }
    let errors = config::ConfigErrors::in_file_order(found);
    if !errors.0.is_empty() {
        return Err(Failure::usage(errors.to_string()));
    }
    let mut checked = report(config, now);
    if !json {
        print!("{}", checked.text());
    }
    if !checked.problems.is_empty() {
        if json {
            println!("{}", checked.json());
        }
        return Err(Failure::usage(checked.problems.join("\n")));
    }
    let mut failed = Vec::new();
    if online {
        let sources = super::open_sources(config).await?;
        for check in crate::online::check(config, &sources).await {
            match &check.result {
                Ok(found) if !json => println!("online: {}: {found}", check.what),
                Err(problem) => {
                    if !json {
                        println!("online: {}: FAILED: {problem}", check.what);
                    }
                    failed.push(format!("{}: {problem}", check.what));
                }
                Ok(_) => {}
            }
            checked.online.push(OnlineResult {
                check: check.what,
                ok: check.result.is_ok(),
                detail: match check.result {
                    Ok(found) => found,
                    Err(problem) => problem,
                },
            });
        }
    }
    if json {
        println!("{}", checked.json());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::failed(failed.join("\n")))
    }
}

/// What `check-config` found: the text it prints and the JSON object of `--json` are both made from it.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// The configuration file, absolute.
    pub configuration: String,
    /// Where backups go, without credentials.
    pub storage: String,
    /// `daemon.timezone`.
    pub timezone: String,
    /// Each `[[database]]`, in file order.
    pub databases: Vec<JobReport>,
    /// Each `[[fleet]]`, in file order.
    pub fleets: Vec<JobReport>,
    /// Databases or fleets that would never run (exit 2).
    pub problems: Vec<String>,
    /// With `--online`: each check and its answer.
    pub online: Vec<OnlineResult>,
}

/// One database or fleet in the report.
#[derive(Debug, serde::Serialize)]
pub struct JobReport {
    /// The database name, or `fleet[i] match "PATTERN"`.
    pub name: String,
    /// The source (databases) or the member rule (fleets).
    pub source: String,
    /// The cron expression.
    pub schedule: String,
    /// The next start times (window-aware), RFC 3339 in UTC.
    pub next_runs: Vec<DateTime<Utc>>,
    /// What applies to each start beyond its time (window, jitter), in words; empty when nothing.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// One `--online` check.
#[derive(Debug, serde::Serialize)]
pub struct OnlineResult {
    /// What was checked.
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// The answer, or why it failed.
    pub detail: String,
}

impl Report {
    /// The text `check-config` prints.
    pub fn text(&self) -> String {
        let tz: Tz = self.timezone.parse().unwrap_or(chrono_tz::UTC);
        let mut out = String::new();
        let _ = writeln!(out, "configuration: {} (ok)", self.configuration);
        let _ = writeln!(out, "storage: {}", self.storage);
        let _ = writeln!(out, "time zone: {}", self.timezone);
        for db in &self.databases {
            write_job(&mut out, &format!("database {}", db.name), "source", db, tz);
        }
        for fleet in &self.fleets {
            write_job(&mut out, &fleet.name, "members", fleet, tz);
        }
        out
    }

    /// The JSON object of `check-config --json`.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }
}

/// One database's or fleet's lines of the text report.
fn write_job(out: &mut String, header: &str, label: &str, job: &JobReport, tz: Tz) {
    let _ = writeln!(out, "{header}:");
    let _ = writeln!(out, "  {label}: {}", job.source);
    let _ = writeln!(out, "  schedule: {}", job.schedule);
    if job.next_runs.is_empty() {
        let _ = writeln!(out, "  next runs: none (the schedule never fires)");
        return;
    }
    let _ = writeln!(out, "  next runs:");
    for start in &job.next_runs {
        let local = start.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z");
        let _ = writeln!(out, "    {local}{}", job.note);
    }
}

/// What `check-config` reports about `config` at `now`, and the problems found (databases that would
/// never run).
pub fn report(config: &Config, now: DateTime<Utc>) -> Report {
    let tz = config.daemon.timezone;
    let mut problems = Vec::new();
    let mut databases = Vec::new();
    for db in &config.databases {
        let job = job_report(db.name.clone(), describe_source(&db.source), db, tz, now);
        if job.next_runs.is_empty() {
            problems.push(format!(
                "database {:?}: schedule {:?} never fires; fix its schedule",
                db.name, job.schedule
            ));
        }
        databases.push(job);
    }
    let mut fleets = Vec::new();
    for fleet in &config.fleets {
        let exclude: Vec<&str> = fleet.exclude.iter().map(|g| g.as_str()).collect();
        let members = format!(
            "every D1 database of the account whose name fits{} (`d1vault databases` lists them)",
            if exclude.is_empty() {
                String::new()
            } else {
                format!(", except {exclude:?}")
            }
        );
        let name = format!("fleet[{}] match {:?}", fleet.index, fleet.pattern.as_str());
        let job = job_report(name.clone(), members, &fleet.job, tz, now);
        if job.next_runs.is_empty() {
            problems.push(format!(
                "{name}: schedule {:?} never fires; fix its schedule",
                job.schedule
            ));
        }
        fleets.push(job);
    }
    Report {
        configuration: config.path.display().to_string(),
        storage: describe_storage(&config.storage),
        timezone: tz.to_string(),
        databases,
        fleets,
        problems,
        online: Vec::new(),
    }
}

/// One database's or fleet's part of the report.
fn job_report(
    name: String,
    source: String,
    db: &DatabaseConfig,
    tz: Tz,
    now: DateTime<Utc>,
) -> JobReport {
    JobReport {
        name,
        source,
        schedule: db.schedule.expr().to_string(),
        next_runs: upcoming_runs(db, tz, now),
        note: run_note(db),
    }
}

/// What applies to each start beyond its time: ` (starts only inside the window 02:00-05:00, plus up to
/// 5m random delay)`, or nothing.
fn run_note(db: &DatabaseConfig) -> String {
    match db.window {
        Some(w) => format!(
            " (starts only inside the window {}-{}{})",
            w.start.format("%H:%M"),
            w.end.format("%H:%M"),
            jitter_note(db),
        ),
        None => jitter_note(db)
            .strip_prefix(", ")
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
    }
}

/// The next start times of one database. Window-aware: a run due outside its window is shown at the
/// window's opening.
fn upcoming_runs(db: &DatabaseConfig, tz: Tz, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    crate::schedule::next_runs(&db.schedule, db.window, tz, now, UPCOMING_RUNS)
        .into_iter()
        .filter_map(|run| run.start())
        .collect()
}

/// `, plus up to 5m random delay` when a jitter is configured.
fn jitter_note(db: &DatabaseConfig) -> String {
    if db.jitter.is_zero() {
        String::new()
    } else {
        format!(
            ", plus up to {} random delay",
            humantime::format_duration(db.jitter)
        )
    }
}

/// Where backups go, without credentials.
fn describe_storage(storage: &StorageConfig) -> String {
    let prefix = match storage.prefix() {
        "" => String::new(),
        p => format!(", prefix {p:?}"),
    };
    match storage {
        StorageConfig::S3(s3) => {
            let endpoint = s3.endpoint.as_deref().unwrap_or("AWS");
            let credentials = if s3.access_key_id.is_some() {
                "static keys from the configuration"
            } else {
                "the AWS default credential chain"
            };
            let style = if s3.force_path_style {
                "path-style"
            } else {
                "virtual-hosted-style"
            };
            format!(
                "s3 bucket {:?}{prefix} at {endpoint} (region {}, {style}, credentials: {credentials}, \
                 parts of {} MiB, {} in flight)",
                s3.bucket,
                s3.region,
                s3.part_size / (1024 * 1024),
                s3.max_parts_in_flight
            )
        }
        StorageConfig::Filesystem(fs) => format!("filesystem at {}{prefix}", fs.path.display()),
    }
}

/// Where a database's data comes from.
fn describe_source(source: &Source) -> String {
    match source {
        Source::D1 { id: Some(id) } => format!("Cloudflare D1 (id {id})"),
        Source::D1 { id: None } => "Cloudflare D1 (looked up by name)".to_string(),
        Source::Sqlite { path } => format!("SQLite file {}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn report_lists_three_runs_in_the_configured_zone() {
        // Proves the report shows the next three runs, in local time, and no secret.
        let text = r#"
            [daemon]
            timezone = "Europe/Berlin"
            [cloudflare]
            account_id = "acc"
            api_token = "tok-very-secret"
            [storage]
            type = "s3"
            bucket = "b"
            access_key_id = "AKIA-SECRET-ID"
            secret_access_key = "s3-very-secret"
            [defaults]
            window = "02:00-05:00"
            jitter = "5m"
            [[database]]
            name = "blog"
            schedule = "0 3 * * *"
        "#;
        let config =
            crate::config::load_str(text, Path::new("/etc/d1vault/d1vault.toml"), &|_| None)
                .unwrap();
        let now = "2025-01-10T12:00:00Z".parse().unwrap();
        let checked = report(&config, now);
        assert!(checked.problems.is_empty());
        let out = checked.text();
        assert!(out.contains("2025-01-11 03:00:00 CET"), "{out}");
        assert!(out.contains("2025-01-13 03:00:00 CET"), "{out}");
        assert!(out.contains("window 02:00-05:00, plus up to 5m"), "{out}");
        for secret in ["tok-very-secret", "AKIA-SECRET-ID", "s3-very-secret"] {
            assert!(!out.contains(secret));
        }
    }

    #[test]
    fn fleets_show_their_rules_and_next_runs() {
        // Proves a fleet-only configuration reports each fleet: its match, excludes and next run times.
        let text = "[cloudflare]\naccount_id = \"a\"\napi_token = \"t\"\n[storage]\ntype = \"filesystem\"\npath = \"/srv\"\n[[fleet]]\nmatch = \"tenant-*\"\nexclude = [\"tenant-staging-*\"]\nschedule = \"0 4 * * *\"\n";
        let config =
            crate::config::load_str(text, Path::new("/etc/d1vault/d1vault.toml"), &|_| None)
                .unwrap();
        let checked = report(&config, "2025-01-10T12:00:00Z".parse().unwrap());
        assert!(checked.problems.is_empty());
        let out = checked.text();
        assert!(out.contains("fleet[0] match \"tenant-*\":"), "{out}");
        assert!(out.contains("except [\"tenant-staging-*\"]"), "{out}");
        assert!(out.contains("2025-01-11 04:00:00 UTC"), "{out}");
    }
}
