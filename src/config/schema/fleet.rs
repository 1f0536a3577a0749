//! `[[fleet]]`: every D1 database of the account whose name fits a glob, its own keys (`match`,
//! `exclude`) plus the job keys that override `[defaults]`, as in a `[[database]]` (docs/configuration.md
//! "`[defaults]`, `[[database]]` and `[[fleet]]`"). Members are found at run time (`crate::fleet`).

use toml_edit::TableLike;

use super::{job, retention};
use crate::config::reader::{At, Reader, Schema, Section};
use crate::config::{DatabaseConfig, FleetConfig, Source};
use crate::glob::Glob;

/// The keys only a `[[fleet]]` has.
const OWN_KEYS: &[&str] = &["match", "exclude"];

/// The keys a `[[fleet]]` accepts: its own, then the job keys.
pub(super) static SCHEMA: Schema = Schema {
    name: "fleet",
    keys: &[OWN_KEYS, job::KEYS],
    tables: &[&retention::SCHEMA],
};

/// Every valid `[[fleet]]` of the file (none when the file has no such key), with `defaults` applied,
/// in file order. Returns the header offset of the first one too: it makes `[cloudflare]` required.
pub(super) fn read_all(
    reader: &mut Reader<'_>,
    root: Section<'_>,
    defaults: &job::JobSettings,
) -> (Vec<FleetConfig>, Option<usize>) {
    let tables: Vec<(usize, &dyn TableLike)> = match root.get("fleet") {
        None => return (Vec::new(), None),
        Some((item, offset)) => match reader.array_of_tables("fleet", item, offset) {
            Ok(tables) => tables,
            Err(offset) => return (Vec::new(), Some(offset)),
        },
    };
    let first = tables.first().map(|(offset, _)| *offset);
    let names: Vec<String> = (0..tables.len()).map(|i| format!("fleet[{i}]")).collect();
    let mut fleets = Vec::new();
    for (index, ((offset, table), name)) in tables.into_iter().zip(&names).enumerate() {
        let section = Section {
            name,
            offset,
            table,
            schema: &SCHEMA,
        };
        if let Some(fleet) = read(reader, section, index, defaults) {
            fleets.push(fleet);
        }
    }
    (fleets, first)
}

/// A glob read from the file, or its problem reported at the key.
fn glob(reader: &mut Reader<'_>, at: &At<String>) -> Option<Glob> {
    match Glob::parse(at.value.trim()) {
        Ok(glob) => Some(glob),
        Err(message) => {
            reader.error(at.offset, &at.key, message);
            None
        }
    }
}

/// One `[[fleet]]`, the `index`th of the file.
fn read(
    reader: &mut Reader<'_>,
    section: Section<'_>,
    index: usize,
    defaults: &job::JobSettings,
) -> Option<FleetConfig> {
    reader.check_keys(section);
    let pattern = reader
        .required_string(
            section,
            "match",
            "set match = \"a glob over database names\", such as \"tenant-*\"",
        )
        .and_then(|at| glob(reader, &at));
    let mut exclude = Some(Vec::new());
    if let Some(at) = reader.string_array(section, "exclude") {
        for (i, text) in at.value.iter().enumerate() {
            let element = At {
                value: text.clone(),
                offset: at.offset,
                key: format!("{}[{i}]", at.key),
            };
            match (glob(reader, &element), exclude.as_mut()) {
                (Some(g), Some(list)) => list.push(g),
                _ => exclude = None,
            }
        }
    } else if section.contains("exclude") {
        exclude = None;
    }
    let own = job::read(reader, section);
    let settings = own.or(defaults);
    let label = pattern
        .as_ref()
        .map_or_else(|| section.name.to_string(), |g| g.as_str().to_string());
    let job = job::resolve(reader, &settings, &label)?;
    Some(FleetConfig {
        index,
        job: DatabaseConfig {
            name: label,
            source: Source::D1 { id: None },
            job: std::sync::Arc::new(job),
            fleet: Some(index),
            drill_to_d1: None,
        },
        pattern: pattern?,
        exclude: exclude?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Compression, Config, Source, load_str};

    const HEAD: &str = "[cloudflare]\naccount_id = \"a\"\napi_token = \"t\"\n\n[storage]\ntype = \"filesystem\"\npath = \"/srv\"\n\n[defaults]\nschedule = \"@hourly\"\ncompression = \"gzip\"\n\n";

    fn load(text: &str) -> Result<Config, String> {
        load_str(text, Path::new("/etc/d1vault/d1vault.toml"), &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn fleets_take_the_job_keys_over_the_defaults_in_file_order() {
        // Proves a file with fleets and no [[database]] loads, each fleet keeps its position, its globs,
        // and the [defaults] overridden by its own job keys; and the daemon's discovery interval.
        let text = format!(
            "[daemon]\ndiscovery_interval = \"2m\"\n{HEAD}[[fleet]]\nmatch = \"tenant-*\"\nexclude = [\"tenant-staging-*\"]\nschedule = \"@daily\"\n\n[[fleet]]\nmatch = \"shop-[a-c]?\"\n"
        );
        let config = load(&text).unwrap();
        assert!(config.databases.is_empty());
        assert_eq!(config.daemon.discovery_interval, Duration::from_secs(120));
        let [first, second] = &config.fleets[..] else {
            panic!("{:?}", config.fleets)
        };
        assert_eq!((first.index, second.index), (0, 1));
        assert_eq!(first.job.schedule.expr(), "@daily");
        assert_eq!(second.job.schedule.expr(), "@hourly");
        assert_eq!(first.job.compression, Compression::Gzip { level: 3 });
        assert!(first.fits("tenant-a") && !first.fits("tenant-staging-a"));
        assert!(second.fits("shop-b1") && !second.fits("shop-d1"));
        let member = first.member("tenant-a", "uuid-1");
        assert_eq!(member.name, "tenant-a");
        assert_eq!(
            member.source,
            Source::D1 {
                id: Some("uuid-1".into())
            }
        );
        assert_eq!(member.schedule.expr(), "@daily");
    }

    #[test]
    fn the_discovery_interval_defaults_to_ten_minutes() {
        // Proves the contract's default when [daemon] does not set it.
        let text = format!("{HEAD}[[fleet]]\nmatch = \"t-*\"\n");
        assert_eq!(
            load(&text).unwrap().daemon.discovery_interval,
            Duration::from_secs(600)
        );
    }

    #[test]
    fn bad_fleets_are_reported_at_their_keys() {
        // Proves a missing match, a malformed glob, an unknown key, [fleet] with single brackets, a too
        // short discovery interval and a fleet without [cloudflare] are each an error naming the key.
        let text = format!(
            "[daemon]\ndiscovery_interval = \"0s\"\n{HEAD}[[fleet]]\nschedule = \"@daily\"\n\n[[fleet]]\nmatch = \"t-[a\"\nexclude = [\"x\", \"[\"]\nmatc = 1\n"
        );
        let errors = load(&text).unwrap_err();
        for needle in [
            "fleet[0].match: missing",
            "fleet[1].match: \"t-[a\": `[` is never closed",
            "fleet[1].exclude[1]",
            "fleet[1].matc",
            "daemon.discovery_interval: must be at least 1s",
        ] {
            assert!(errors.contains(needle), "{needle:?} not in:\n{errors}");
        }
        let single = format!("{HEAD}[fleet]\nmatch = \"t-*\"\n");
        assert!(
            load(&single)
                .unwrap_err()
                .contains("[[fleet]] (double brackets)")
        );
        let no_cloudflare =
            "[storage]\ntype = \"filesystem\"\npath = \"/srv\"\n\n[[fleet]]\nmatch = \"t-*\"\n";
        assert!(
            load(no_cloudflare)
                .unwrap_err()
                .contains("a [[fleet]] finds its members")
        );
        let nothing = "[storage]\ntype = \"filesystem\"\npath = \"/srv\"\n";
        assert!(
            load(nothing)
                .unwrap_err()
                .contains("no databases configured")
        );
    }
}
