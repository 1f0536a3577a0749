//! The per-database job settings: `[defaults]`, and the same keys inside each `[[database]]` where they
//! override it (docs/configuration.md "`[defaults]` and `[[database]]`"). Read as written first
//! ([`JobSettings`]), then merged and completed with the built-in defaults ([`Job`]), which is where the
//! checks across keys (jitter against window, level against compression) happen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::retention;
use crate::config::reader::{At, Reader, Schema, Section, with};
use crate::config::{Compression, Job};
use crate::repository::retention::RetentionPolicy;
use crate::schedule::{Schedule, Window};

/// The keys of a job, accepted in `[defaults]` and in every `[[database]]`.
pub(super) const KEYS: &[&str] = &[
    "schedule",
    "window",
    "jitter",
    "compression",
    "compression_level",
    "retention",
    "no_data",
    "tables",
    "migrations_dir",
    "migrations_table",
    "skip_unchanged",
    "verify_schedule",
];

/// The keys `[defaults]` accepts.
pub(super) static DEFAULTS: Schema = Schema {
    name: "defaults",
    keys: &[KEYS],
    tables: &[&retention::SCHEMA],
};

const DEFAULT_SCHEDULE: &str = "0 3 * * *";
const DEFAULT_COMPRESSION_LEVEL: i64 = 3;
const DEFAULT_MIGRATIONS_DIR: &str = "./migrations";
const DEFAULT_MIGRATIONS_TABLE: &str = "d1_migrations";

/// The job keys as written in one table (`[defaults]` or one `[[database]]`); `None` where the table
/// does not set the key.
#[derive(Debug, Clone, Default)]
pub(super) struct JobSettings {
    schedule: Option<At<Schedule>>,
    window: Option<At<Window>>,
    jitter: Option<At<Duration>>,
    compression: Option<At<CompressionKind>>,
    compression_level: Option<At<i64>>,
    retention: Option<At<RetentionPolicy>>,
    no_data: Option<At<bool>>,
    tables: Option<At<Vec<String>>>,
    migrations_dir: Option<At<PathBuf>>,
    migrations_table: Option<At<String>>,
    skip_unchanged: Option<At<bool>>,
    verify_schedule: Option<At<Schedule>>,
}

impl JobSettings {
    /// Keys set here win; the others come from `fallback` (the `[defaults]` table).
    pub(super) fn or(self, fallback: &JobSettings) -> JobSettings {
        JobSettings {
            schedule: self.schedule.or_else(|| fallback.schedule.clone()),
            window: self.window.or_else(|| fallback.window.clone()),
            jitter: self.jitter.or_else(|| fallback.jitter.clone()),
            compression: self.compression.or_else(|| fallback.compression.clone()),
            compression_level: self
                .compression_level
                .or_else(|| fallback.compression_level.clone()),
            retention: self.retention.or_else(|| fallback.retention.clone()),
            no_data: self.no_data.or_else(|| fallback.no_data.clone()),
            tables: self.tables.or_else(|| fallback.tables.clone()),
            migrations_dir: self
                .migrations_dir
                .or_else(|| fallback.migrations_dir.clone()),
            migrations_table: self
                .migrations_table
                .or_else(|| fallback.migrations_table.clone()),
            skip_unchanged: self
                .skip_unchanged
                .or_else(|| fallback.skip_unchanged.clone()),
            verify_schedule: self
                .verify_schedule
                .or_else(|| fallback.verify_schedule.clone()),
        }
    }
}

/// `compression = "..."` before the level is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompressionKind {
    Zstd,
    Gzip,
    None,
}

/// Reads the job keys present in `section` (the defaults table or one database).
pub(super) fn read(reader: &mut Reader<'_>, section: Section<'_>) -> JobSettings {
    let mut settings = JobSettings::default();
    if let Some(at) = reader.string(section, "schedule") {
        match Schedule::parse(&at.value) {
            Ok(schedule) => settings.schedule = Some(with(at, schedule)),
            Err(message) => reader.error(at.offset, &at.key, message),
        }
    }
    if let Some(at) = reader.string(section, "verify_schedule") {
        match Schedule::parse(&at.value) {
            Ok(schedule) => settings.verify_schedule = Some(with(at, schedule)),
            Err(message) => reader.error(at.offset, &at.key, message),
        }
    }
    if let Some(at) = reader.string(section, "window") {
        match at.value.parse::<Window>() {
            Ok(window) => settings.window = Some(with(at, window)),
            Err(message) => reader.error(at.offset, &at.key, message),
        }
    }
    settings.jitter = reader.duration(section, "jitter");
    if let Some(at) = reader.string(section, "compression") {
        let kind = match at.value.as_str() {
            "zstd" => Some(CompressionKind::Zstd),
            "gzip" => Some(CompressionKind::Gzip),
            "none" => Some(CompressionKind::None),
            other => {
                reader.error(
                    at.offset,
                    &at.key,
                    format!("unknown compression {other:?}; use \"zstd\", \"gzip\" or \"none\""),
                );
                None
            }
        };
        settings.compression = kind.map(|kind| with(at, kind));
    }
    settings.compression_level = reader.integer(section, "compression_level");
    if section.contains("retention") {
        let name = section.key_path("retention");
        settings.retention = retention::read(reader, section, &name);
    }
    settings.no_data = reader.boolean(section, "no_data");
    settings.tables = reader.string_array(section, "tables");
    settings.migrations_dir = reader.path(section, "migrations_dir");
    settings.migrations_table = reader.nonempty_string(section, "migrations_table");
    settings.skip_unchanged = reader.boolean(section, "skip_unchanged");
    settings
}

/// Applies the built-in defaults and the checks that span several keys.
pub(super) fn resolve(
    reader: &mut Reader<'_>,
    settings: &JobSettings,
    database: &str,
) -> Option<Job> {
    let schedule = match &settings.schedule {
        Some(at) => at.value.clone(),
        None => Schedule::parse(DEFAULT_SCHEDULE).expect("default schedule parses"),
    };
    let window = settings.window.as_ref().map(|at| at.value);
    let jitter = settings
        .jitter
        .as_ref()
        .map_or(Duration::ZERO, |at| at.value);
    if let (Some(window_at), Some(jitter_at)) = (&settings.window, &settings.jitter) {
        let length = window_length(&window_at.value);
        if jitter_at.value > length {
            reader.error(
                jitter_at.offset,
                &jitter_at.key,
                format!(
                    "jitter {} is longer than the {} window ({}) of database {database:?}: a \
                     delayed start would fall outside it; shorten the jitter or widen the window",
                    humantime::format_duration(jitter_at.value),
                    humantime::format_duration(length),
                    window_at.key,
                ),
            );
            return None;
        }
    }
    let kind = settings
        .compression
        .as_ref()
        .map_or(CompressionKind::Zstd, |at| at.value);
    let level = settings
        .compression_level
        .as_ref()
        .map_or(DEFAULT_COMPRESSION_LEVEL, |at| at.value);
    let (range, name) = match kind {
        CompressionKind::Zstd => (1..=22, "zstd"),
        CompressionKind::Gzip => (1..=9, "gzip"),
        CompressionKind::None => (i64::MIN..=i64::MAX, "none"),
    };
    if !range.contains(&level) {
        let at = settings
            .compression_level
            .as_ref()
            .expect("the default level is in range for every compression");
        reader.error(
            at.offset,
            &at.key,
            format!(
                "compression level {level} is out of range for {name} (used by database \
                 {database:?}): use {} to {}",
                range.start(),
                range.end()
            ),
        );
        return None;
    }
    let compression = match kind {
        CompressionKind::Zstd => Compression::Zstd {
            level: level as i32,
        },
        CompressionKind::Gzip => Compression::Gzip {
            level: level as i32,
        },
        CompressionKind::None => Compression::None,
    };
    Some(Job {
        schedule,
        window,
        jitter,
        compression,
        retention: settings
            .retention
            .as_ref()
            .map_or_else(RetentionPolicy::default, |at| at.value),
        no_data: settings.no_data.as_ref().is_some_and(|at| at.value),
        tables: settings
            .tables
            .as_ref()
            .map_or_else(Vec::new, |at| at.value.clone()),
        migrations_dir: settings.migrations_dir.as_ref().map_or_else(
            || reader.resolve(Path::new(DEFAULT_MIGRATIONS_DIR)),
            |at| at.value.clone(),
        ),
        migrations_table: settings.migrations_table.as_ref().map_or_else(
            || DEFAULT_MIGRATIONS_TABLE.to_string(),
            |at| at.value.clone(),
        ),
        skip_unchanged: settings.skip_unchanged.as_ref().is_none_or(|at| at.value),
        verify_schedule: settings.verify_schedule.as_ref().map(|at| at.value.clone()),
    })
}

/// How long a daily window lasts; windows whose end is before their start cross midnight.
fn window_length(window: &Window) -> Duration {
    let span = window.end - window.start;
    let seconds = if span < chrono::TimeDelta::zero() {
        span.num_seconds() + 24 * 3600
    } else {
        span.num_seconds()
    };
    Duration::from_secs(seconds as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_unchanged_defaults_to_true_and_a_database_overrides_defaults() {
        // Proves the contract's default and the [defaults] -> [[database]] override of skip_unchanged.
        let text = r#"
            [storage]
            type = "filesystem"
            path = "/tmp/b"
            [[database]]
            name = "a"
            sqlite_path = "/tmp/a.sqlite"
        "#;
        let path = Path::new("/etc/d1vault/d1vault.toml");
        let config = crate::config::load_str(text, path, &|_| None).unwrap();
        assert!(config.databases[0].skip_unchanged);
        let text = r#"
            [storage]
            type = "filesystem"
            path = "/tmp/b"
            [defaults]
            skip_unchanged = false
            [[database]]
            name = "a"
            sqlite_path = "/tmp/a.sqlite"
            [[database]]
            name = "b"
            sqlite_path = "/tmp/b.sqlite"
            skip_unchanged = true
        "#;
        let config = crate::config::load_str(text, path, &|_| None).unwrap();
        let flags: Vec<bool> = config.databases.iter().map(|d| d.skip_unchanged).collect();
        assert_eq!(flags, [false, true]);
        let bad = text.replace("skip_unchanged = true", "skip_unchanged = \"yes\"");
        assert!(crate::config::load_str(&bad, path, &|_| None).is_err());
    }

    #[test]
    fn window_length_crosses_midnight() {
        // Proves a window ending before it starts lasts until the next day.
        let w: Window = "23:00-01:00".parse().unwrap();
        assert_eq!(window_length(&w), Duration::from_secs(2 * 3600));
        let w: Window = "02:00-05:00".parse().unwrap();
        assert_eq!(window_length(&w), Duration::from_secs(3 * 3600));
    }
}
