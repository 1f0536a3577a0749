//! Fleets: the databases a `[[fleet]]` backs up are found by listing the account, page by page
//! ([`list_all`]), and a pure rule decides which entry of the configuration governs each listed database
//! ([`resolve`]): a `[[database]]` with its name first, else the first `[[fleet]]` in file order whose
//! `match` fits and no `exclude` does (CONTRACT.md "Configuration").
//!
//! A listing is all or nothing: a page that fails, or an account whose count changes under the listing
//! until the attempts run out, is a [`DiscoveryError`], never a shorter list, so no member is ever taken
//! for gone because a page was missing.

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;

use crate::cloudflare::{ApiError, Client, DatabaseInfo};
use crate::config::{self, Config, DatabaseConfig, Source};
use crate::sources::BackupSources;

/// Databases asked for per list page: D1's default page size (it allows 10 to 10,000). Every page is
/// one request from the shared budget: 100 pages for 100,000 databases.
pub const LIST_PAGE_SIZE: u64 = 1000;

/// Listings started over because the account's count changed while the pages were read (a database
/// created or deleted shifts the later pages) before giving up.
const LIST_ATTEMPTS: u32 = 3;

/// Why the account's databases could not be listed completely.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A page could not be read (after the client's retries).
    #[error(
        "listing the account's D1 databases failed at page {page}: {source}; fleet members are not \
         known (none is taken for gone), try again later"
    )]
    Page {
        /// The page that failed (from 1).
        page: u64,
        /// What the API answered.
        source: ApiError,
    },
    /// Databases were created or deleted during every attempt, so no listing was consistent.
    #[error(
        "listing the account's D1 databases: the account changed while its list was read, {attempts} \
         times ({detail}); fleet members are not known (none is taken for gone), try again later"
    )]
    Unstable {
        /// Listings tried.
        attempts: u32,
        /// What the last attempt saw.
        detail: String,
    },
    /// The configuration has a `[[fleet]]` but no Cloudflare client could be opened.
    #[error("a [[fleet]] needs the [cloudflare] section to list the account's databases")]
    NoClient,
    /// `[cloudflare]` is written but its credentials did not resolve (the loader's errors, one a line).
    #[error("the account's D1 databases cannot be listed, fleet members are not known: {0}")]
    Unavailable(String),
}

impl DiscoveryError {
    /// Whether listing again later may succeed (a failed page that was not a permanent refusal, or an
    /// account that kept changing).
    pub fn is_retryable(&self) -> bool {
        match self {
            DiscoveryError::Page { source, .. } => source.is_retryable(),
            DiscoveryError::Unstable { .. } => true,
            DiscoveryError::NoClient | DiscoveryError::Unavailable(_) => false,
        }
    }
}

/// Every database of the account, listed `per_page` at a time until the list is complete: the pages
/// together hold `result_info.total_count` distinct databases, and the count stayed the same on every
/// page. A listing that raced a create or delete is started over (at most three times).
pub async fn list_all(client: &Client, per_page: u64) -> Result<Vec<DatabaseInfo>, DiscoveryError> {
    let mut detail = String::new();
    for _ in 0..LIST_ATTEMPTS {
        match list_once(client, per_page).await? {
            Ok(all) => return Ok(all),
            Err(why) => {
                tracing::info!(reason = %why, "the account changed during its listing; listing again");
                detail = why;
            }
        }
    }
    Err(DiscoveryError::Unstable {
        attempts: LIST_ATTEMPTS,
        detail,
    })
}

/// One pass over the pages: the databases, or why the pass was inconsistent.
async fn list_once(
    client: &Client,
    per_page: u64,
) -> Result<Result<Vec<DatabaseInfo>, String>, DiscoveryError> {
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    let mut total: Option<u64> = None;
    let mut page = 1u64;
    loop {
        let answer = client
            .list_databases(page, per_page)
            .await
            .map_err(|source| DiscoveryError::Page { page, source })?;
        match (total, answer.total_count) {
            (None, count) if page == 1 => total = count,
            (Some(before), Some(now)) if before != now => {
                return Ok(Err(format!(
                    "{before} databases at page 1, {now} at page {page}"
                )));
            }
            _ => {}
        }
        let on_page = answer.databases.len() as u64;
        for db in answer.databases {
            if seen.insert(db.uuid.clone()) {
                all.push(db);
            }
        }
        let size = answer.per_page.filter(|n| *n > 0).unwrap_or(per_page);
        let done = match total {
            Some(total) => all.len() as u64 >= total || on_page == 0,
            None => on_page < size,
        };
        if done {
            break;
        }
        // A list that never ends (a server repeating its last page) would never finish discovery.
        let most = total.map_or(u64::MAX, |t| t / size + 2);
        if page >= most.min(1_000_000) {
            return Ok(Err(format!("still listing at page {page}")));
        }
        page += 1;
    }
    if let Some(total) = total
        && all.len() as u64 != total
    {
        return Ok(Err(format!(
            "the pages held {} databases, the count said {total}",
            all.len()
        )));
    }
    Ok(Ok(all))
}

/// The entry of the configuration that governs a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    /// A `[[database]]` names it: the `index`th of the file (from 0).
    Database {
        /// Its position among the `[[database]]` tables.
        index: usize,
    },
    /// A `[[fleet]]` took it: the `index`th of the file (from 0), with its `match`.
    Fleet {
        /// Its position among the `[[fleet]]` tables.
        index: usize,
        /// Its `match` glob, as written.
        #[serde(rename = "match")]
        pattern: String,
    },
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Database { index } => write!(f, "database[{index}]"),
            Entry::Fleet { index, pattern } => write!(f, "fleet[{index}] match {pattern:?}"),
        }
    }
}

/// A database d1vault backs up, with the configuration it gets and the entry that gives it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its configuration: the `[[database]]` itself, or the fleet's job settings with the listed id.
    pub config: DatabaseConfig,
    /// Which entry governs it.
    pub entry: Entry,
}

/// What d1vault backs up: every configured database, then every fleet member, and the warnings about
/// fleets worth a look.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// Configured databases in file order, then fleet members in name order.
    pub members: Vec<Member>,
    /// A fleet that governs nothing, a listed name that cannot be a storage directory.
    pub warnings: Vec<String>,
    /// The names of every database of the account, when it was listed completely ([`discover`] with a
    /// fleet configured); `None` when it was not listed: then no database can be called gone.
    pub listed: Option<Vec<String>>,
}

impl Resolution {
    /// The configuration with every member as a database: what the daemon schedules and `backup` runs.
    pub fn effective(&self, config: &Config) -> Config {
        Config {
            databases: self.members.iter().map(|m| m.config.clone()).collect(),
            ..config.clone()
        }
    }

    /// The member called `name`, if any.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.config.name == name)
    }
}

/// Which entry governs each database: the configured databases, then each listed database that a fleet
/// takes (a `[[database]]` of the same name wins; among fleets the first in file order). Pure.
pub fn resolve(config: &Config, listed: &[DatabaseInfo]) -> Resolution {
    let mut resolution = Resolution::default();
    for (index, db) in config.databases.iter().enumerate() {
        resolution.members.push(Member {
            config: db.clone(),
            entry: Entry::Database { index },
        });
    }
    let mut listed: Vec<&DatabaseInfo> = listed.iter().collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let mut governs = vec![0usize; config.fleets.len()];
    let mut fits = vec![0usize; config.fleets.len()];
    for db in listed {
        let mut taken = config.database(&db.name).is_some();
        for (i, fleet) in config.fleets.iter().enumerate() {
            if !fleet.pattern.matches(&db.name) {
                continue;
            }
            fits[i] += 1;
            if taken || !fleet.fits(&db.name) {
                continue;
            }
            taken = true;
            if !config::is_database_name(&db.name) {
                resolution.warnings.push(format!(
                    "fleet[{i}] match {:?}: the listed name {:?} is not a D1 database name and cannot \
                     name a directory in storage; it is not backed up",
                    fleet.pattern.as_str(),
                    db.name
                ));
                continue;
            }
            governs[i] += 1;
            resolution.members.push(Member {
                config: fleet.member(&db.name, &db.uuid),
                entry: Entry::Fleet {
                    index: fleet.index,
                    pattern: fleet.pattern.as_str().to_string(),
                },
            });
        }
    }
    for (i, fleet) in config.fleets.iter().enumerate() {
        if governs[i] > 0 {
            continue;
        }
        let pattern = fleet.pattern.as_str();
        resolution.warnings.push(if fits[i] == 0 {
            format!("fleet[{}] match {pattern:?} fits no database of the account", fleet.index)
        } else {
            format!(
                "fleet[{}] match {pattern:?} fits {} database(s) but governs none: each is excluded, \
                 configured by name or taken by an earlier fleet",
                fleet.index, fits[i]
            )
        });
    }
    resolution
}

/// Lists the account (when the configuration has a fleet; no request otherwise) and resolves what
/// d1vault backs up now.
pub async fn discover(
    config: &Config,
    sources: &BackupSources,
) -> Result<Resolution, DiscoveryError> {
    if config.fleets.is_empty() {
        return Ok(resolve(config, &[]));
    }
    if let Err(errors) = config.require_cloudflare() {
        return Err(DiscoveryError::Unavailable(errors.to_string()));
    }
    let client = sources
        .cloudflare
        .as_ref()
        .ok_or(DiscoveryError::NoClient)?;
    let listed = list_all(client, LIST_PAGE_SIZE).await?;
    let mut resolution = resolve(config, &listed);
    resolution.listed = Some(listed.into_iter().map(|db| db.name).collect());
    Ok(resolution)
}

/// The databases of `stored` (directory names in storage) that are gone from the account: no
/// `[[database]]` names them and the complete listing `listed` does not hold them. Their backups are
/// kept; they are shown as gone, never as an error. Pure; sorted by name.
pub fn gone<'a>(
    config: &Config,
    listed: &[String],
    stored: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let listed: HashSet<&str> = listed.iter().map(String::as_str).collect();
    let mut gone: Vec<String> = stored
        .into_iter()
        .filter(|name| config.database(name).is_none() && !listed.contains(name.as_str()))
        .cloned()
        .collect();
    gone.sort();
    gone.dedup();
    gone
}

/// The databases a one-shot operation (`backup`) covers, chosen by name or all of them.
#[derive(Debug, Default)]
pub struct Selection {
    /// What to back up: configured databases and fleet members, in [`Resolution`] order (or the order
    /// named).
    pub databases: Vec<DatabaseConfig>,
    /// Names that are neither configured nor a fleet member of the account.
    pub unknown: Vec<String>,
    /// The listing failed: configured databases are still selected, fleet members are not known.
    pub discovery: Option<DiscoveryError>,
    /// The resolution's warnings (a fleet that governs nothing).
    pub warnings: Vec<String>,
    /// The entry governing each of `databases`, in the same order.
    pub entries: Vec<Entry>,
    /// The names of every database of the account, when it was listed completely; `None` when no
    /// listing was needed or it failed (then no database can be called gone).
    pub listed: Option<Vec<String>>,
}

impl Selection {
    /// The databases of `stored` (directory names in storage) gone from the account ([`gone`]); none
    /// unless the account was listed completely.
    pub fn gone<'a>(
        &self,
        config: &Config,
        stored: impl IntoIterator<Item = &'a String>,
    ) -> Vec<String> {
        match &self.listed {
            Some(listed) => gone(config, listed, stored),
            None => Vec::new(),
        }
    }
}

/// The databases `names` asks for (every configured database and fleet member when empty). The account
/// is listed only when needed: no names and a fleet configured, or a name that no `[[database]]` has.
pub async fn select(config: &Config, sources: &BackupSources, names: &[String]) -> Selection {
    let mut selection = Selection::default();
    let all_configured = names.iter().all(|n| config.database(n).is_some());
    let listing_needed = !config.fleets.is_empty() && (names.is_empty() || !all_configured);
    let resolution = if listing_needed {
        match discover(config, sources).await {
            Ok(resolution) => resolution,
            Err(e) => {
                selection.discovery = Some(e);
                resolve(config, &[])
            }
        }
    } else {
        resolve(config, &[])
    };
    if names.is_empty() {
        for m in &resolution.members {
            selection.databases.push(m.config.clone());
            selection.entries.push(m.entry.clone());
        }
    } else {
        for name in names {
            match resolution.member(name) {
                Some(m) => {
                    selection.databases.push(m.config.clone());
                    selection.entries.push(m.entry.clone());
                }
                // Unknown only when the listing could tell; after a failed listing it may be a member.
                None if selection.discovery.is_none() => selection.unknown.push(name.clone()),
                None => {}
            }
        }
    }
    if selection.discovery.is_none() {
        selection.warnings = resolution.warnings;
        selection.listed = resolution.listed;
    }
    selection
}

/// `"d1"` or `"sqlite"`, as manifests name a source.
pub fn source_kind(source: &Source) -> &'static str {
    match source {
        Source::D1 { .. } => "d1",
        Source::Sqlite { .. } => "sqlite",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(text: &str) -> Config {
        let head = "[cloudflare]\naccount_id = \"a\"\napi_token = \"t\"\n\n[storage]\ntype = \"filesystem\"\npath = \"/srv\"\n\n";
        config::load_str(
            &format!("{head}{text}"),
            Path::new("/etc/d1vault/d1vault.toml"),
            &|_| None,
        )
        .unwrap()
    }

    fn listed(names: &[&str]) -> Vec<DatabaseInfo> {
        names
            .iter()
            .map(|n| DatabaseInfo {
                uuid: format!("uuid-{n}"),
                name: n.to_string(),
                version: None,
            })
            .collect()
    }

    fn governed(resolution: &Resolution) -> Vec<(String, String)> {
        resolution
            .members
            .iter()
            .map(|m| (m.config.name.clone(), m.entry.to_string()))
            .collect()
    }

    #[test]
    fn a_database_by_name_wins_then_the_first_fleet_in_file_order() {
        // Proves the contract's rule: `tenant-vip` is configured by name (so no fleet takes it, and its own
        // schedule holds), `tenant-a` fits both fleets and goes to the first, `tenant-staging-1` is excluded
        // by the first and taken by the second, `blog` fits no fleet, and each member gets its fleet's
        // settings and the listed id.
        let c = config(
            "[[database]]\nname = \"tenant-vip\"\nschedule = \"@hourly\"\n\n\
             [[fleet]]\nmatch = \"tenant-*\"\nexclude = [\"tenant-staging-*\"]\nschedule = \"@daily\"\n\n\
             [[fleet]]\nmatch = \"*\"\nschedule = \"@weekly\"\n",
        );
        let r = resolve(
            &c,
            &listed(&["tenant-staging-1", "tenant-a", "tenant-vip", "blog"]),
        );
        assert_eq!(
            governed(&r),
            [
                ("tenant-vip", "database[0]"),
                ("blog", "fleet[1] match \"*\""),
                ("tenant-a", "fleet[0] match \"tenant-*\""),
                ("tenant-staging-1", "fleet[1] match \"*\""),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(
            r.member("tenant-vip").unwrap().config.schedule.expr(),
            "@hourly"
        );
        let a = &r.member("tenant-a").unwrap().config;
        assert_eq!(a.schedule.expr(), "@daily");
        assert_eq!(
            a.source,
            Source::D1 {
                id: Some("uuid-tenant-a".into())
            }
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let effective = r.effective(&c);
        assert_eq!(effective.databases.len(), 4);
        assert!(effective.database("tenant-staging-1").is_some());
    }

    #[test]
    fn a_fleet_that_governs_nothing_is_a_warning_that_says_why() {
        // Proves a pattern fitting no listed name, and one whose every fit is taken, are warnings (not
        // errors), and that a listed name that could not be a storage directory is skipped with one.
        let c = config(
            "[[database]]\nname = \"shop-1\"\n\n[[fleet]]\nmatch = \"tenant-*\"\n\n[[fleet]]\nmatch = \"shop-*\"\n\n[[fleet]]\nmatch = \"x*\"\n",
        );
        let r = resolve(&c, &listed(&["shop-1", "x/../y"]));
        assert_eq!(
            governed(&r),
            [("shop-1".to_string(), "database[0]".to_string())]
        );
        let all = r.warnings.join("\n");
        assert!(
            all.contains("fleet[0] match \"tenant-*\" fits no database"),
            "{all}"
        );
        assert!(
            all.contains("fleet[1] match \"shop-*\" fits 1 database(s) but governs none"),
            "{all}"
        );
        assert!(
            all.contains("\"x/../y\" is not a D1 database name"),
            "{all}"
        );
    }

    #[test]
    fn gone_is_a_stored_database_neither_configured_nor_listed() {
        // Proves the rule: `old-tenant` is in storage only (gone); `blog` is configured (never gone, even
        // when the account does not list it, as a SQLite source would not be); `other` is listed but
        // governed by no entry (not gone: it is still in the account).
        let c = config("[[database]]\nname = \"blog\"\n\n[[fleet]]\nmatch = \"tenant-*\"\n");
        let stored: Vec<String> = ["tenant-a", "old-tenant", "blog", "other"]
            .map(String::from)
            .to_vec();
        let listed = ["tenant-a".to_string(), "other".to_string()];
        assert_eq!(gone(&c, &listed, &stored), ["old-tenant"]);
        let unknown = Selection::default();
        assert!(
            unknown.gone(&c, &stored).is_empty(),
            "without a complete listing nothing is gone"
        );
    }
}
