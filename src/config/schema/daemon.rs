//! `[daemon]`: process-wide settings (docs/configuration.md "`[daemon]`").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::DaemonConfig;
use crate::config::preflight::Expect;
use crate::config::reader::{Reader, Schema, Section, closest};

/// The keys `[daemon]` accepts.
pub(super) static SCHEMA: Schema = Schema {
    name: "daemon",
    keys: &[&[
        "state_dir",
        "listen",
        "timezone",
        "max_concurrent",
        "shutdown_grace",
        "discovery_interval",
    ]],
    tables: &[],
};

// Built-in defaults (CONTRACT.md plus the documented extras).
const DEFAULT_STATE_DIR: &str = "/var/lib/d1vault";
const DEFAULT_LISTEN: &str = "127.0.0.1:9180";
const DEFAULT_MAX_CONCURRENT: usize = 2;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5 * 60);
const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// `[daemon]` with its defaults applied; every default when the file has no such table.
pub(super) fn read(reader: &mut Reader<'_>, section: Option<Section<'_>>) -> DaemonConfig {
    let default_state_dir = reader
        .env("STATE_DIRECTORY")
        .and_then(|dirs| dirs.split(':').next().map(str::to_string))
        .filter(|dir| !dir.is_empty())
        .map_or_else(
            || PathBuf::from(DEFAULT_STATE_DIR),
            |dir| reader.resolve(Path::new(&dir)),
        );
    let mut daemon = DaemonConfig {
        state_dir: default_state_dir,
        listen: Some(
            DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
        ),
        timezone: chrono_tz::UTC,
        max_concurrent: DEFAULT_MAX_CONCURRENT,
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        discovery_interval: DEFAULT_DISCOVERY_INTERVAL,
    };
    let Some(section) = section else {
        return daemon;
    };
    reader.check_keys(section);
    if let Some(at) = reader.path(section, "state_dir") {
        reader.expect_path(&at, Expect::StateDir);
        daemon.state_dir = at.value;
    }
    if let Some(at) = reader.string(section, "listen") {
        let text = at.value.trim();
        if text.is_empty() {
            daemon.listen = None;
        } else {
            match text.parse::<SocketAddr>() {
                Ok(addr) => daemon.listen = Some(addr),
                Err(_) => reader.error(
                    at.offset,
                    &at.key,
                    format!(
                        "{text:?} is not a socket address; write IP:PORT such as \"127.0.0.1:9180\" \
                         or \"[::1]:9180\", or \"\" to disable"
                    ),
                ),
            }
        }
    }
    if let Some(at) = reader.string(section, "timezone") {
        match at.value.trim().parse::<chrono_tz::Tz>() {
            Ok(tz) => daemon.timezone = tz,
            Err(_) => {
                let message = timezone_message(at.value.trim());
                reader.error(at.offset, &at.key, message);
            }
        }
    }
    if let Some(at) = reader.integer_in(section, "max_concurrent", 1, i64::MAX) {
        daemon.max_concurrent = usize::try_from(at.value).unwrap_or(usize::MAX);
    }
    if let Some(at) = reader.duration(section, "shutdown_grace") {
        daemon.shutdown_grace = at.value;
    }
    if let Some(at) = reader.duration(section, "discovery_interval") {
        if at.value < Duration::from_secs(1) {
            reader.error(
                at.offset,
                &at.key,
                "must be at least 1s: every listing costs API requests from the shared budget",
            );
        } else {
            daemon.discovery_interval = at.value;
        }
    }
    daemon
}

/// The message for an unknown time zone, suggesting IANA names that end like the given one (`Berlin` ->
/// `Europe/Berlin`) or are spelled closely.
pub(super) fn timezone_message(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let by_city: Vec<&str> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .filter(|name| {
            let name = name.to_ascii_lowercase();
            name == lower || name.rsplit('/').next() == Some(lower.as_str())
        })
        .take(3)
        .collect();
    let suggestion = if !by_city.is_empty() {
        Some(by_city.join("\" or \""))
    } else {
        let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
        closest(text, &names).map(str::to_string)
    };
    match suggestion {
        Some(s) => format!("unknown time zone {text:?}; did you mean \"{s}\"?"),
        None => format!(
            "unknown time zone {text:?}; use an IANA name such as \"UTC\", \"Europe/Berlin\" or \
             \"America/New_York\""
        ),
    }
}
