//! `d1vault init [PATH]`: writes a commented starter configuration, as `restic init` and `wrangler init`
//! start a user off: the shipped R2 example (`config/r2.toml`), which `check-config` accepts once its
//! variables are set. With `CLOUDFLARE_API_TOKEN` and `CLOUDFLARE_ACCOUNT_ID` in the environment (as
//! wrangler reads them; `CLOUDFLARE_API_BASE_URL` too), the account's D1 databases are listed and written
//! in place of the example ones. It never overwrites a file.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Failure;
use crate::cloudflare::{Client, DatabaseInfo, RateLimiter};
use crate::config::{CloudflareConfig, DEFAULT_API_BASE_URL};
use crate::secret::Secret;

/// The starter configuration: the shipped R2 example, compiled in.
const STARTER: &str = include_str!("../../config/r2.toml");

/// Databases asked for per list page (the API's largest page).
const PER_PAGE: u64 = 1000;

/// Writes the starter configuration to `path`, refusing an existing file; with Cloudflare credentials in
/// the environment, lists the account's databases into it first (a listing that fails writes nothing).
pub async fn run(path: &Path) -> Result<(), Failure> {
    let listed = match account_from_env() {
        Some(account) => Some(list_databases(&account).await?),
        None => None,
    };
    let text = match &listed {
        Some(databases) => with_databases(STARTER, databases),
        None => STARTER.to_string(),
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Failure::usage(format!(
                "{} exists; d1vault init never overwrites a file (pass another path)",
                path.display()
            )),
            _ => Failure::failed(format!("writing {}: {e}", path.display())),
        })?;
    file.write_all(text.as_bytes())
        .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
    println!("wrote {}", path.display());
    if let Some(databases) = &listed {
        println!(
            "listed the account's {} D1 database(s) into it: remove the ones not to back up",
            databases.len()
        );
    }
    println!(
        "next: set the variables it names at its top, edit [[database]], then run \
         `d1vault --config {} check-config`",
        path.display()
    );
    Ok(())
}

/// The account wrangler would use: `CLOUDFLARE_ACCOUNT_ID`, `CLOUDFLARE_API_TOKEN` and, when set,
/// `CLOUDFLARE_API_BASE_URL`; `None` unless both of the first two are set.
fn account_from_env() -> Option<CloudflareConfig> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    Some(CloudflareConfig {
        account_id: var("CLOUDFLARE_ACCOUNT_ID")?,
        api_token: Secret::new(var("CLOUDFLARE_API_TOKEN")?),
        api_base_url: var("CLOUDFLARE_API_BASE_URL")
            .unwrap_or_else(|| DEFAULT_API_BASE_URL.to_string()),
        requests_per_5min: 1000,
        export_timeout: Duration::from_secs(60),
    })
}

/// Every D1 database of the account, by name.
async fn list_databases(account: &CloudflareConfig) -> Result<Vec<DatabaseInfo>, Failure> {
    let limiter = Arc::new(RateLimiter::new(
        account.requests_per_5min,
        Duration::from_secs(300),
    ));
    let client = Client::new(account, limiter).map_err(|e| Failure::failed(e.to_string()))?;
    let mut databases = crate::fleet::list_all(&client, PER_PAGE)
        .await
        .map_err(|e| {
            Failure::failed(format!(
                "listing the D1 databases of account {} (CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID \
                 are set): {e}; nothing was written (unset them for the plain example)",
                account.account_id
            ))
        })?;
    databases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(databases)
}

/// `starter` with its example `[[database]]` tables replaced by one per listed database (name and id).
fn with_databases(starter: &str, databases: &[DatabaseInfo]) -> String {
    let head = starter
        .find("\n[[database]]")
        .map_or(starter, |at| &starter[..=at]);
    let mut text = head.to_string();
    text.push_str(
        "# The account's D1 databases when `d1vault init` ran. Remove the ones not to back up; for many\n\
         # per-tenant databases, a [[fleet]] with match = \"tenant-*\" follows the account instead.\n",
    );
    if databases.is_empty() {
        text.push_str("# (the account had none)\n");
    }
    for db in databases {
        // TOML strings, quoted and escaped as TOML writes them.
        let name = toml_edit::Value::from(db.name.as_str());
        let id = toml_edit::Value::from(db.uuid.as_str());
        text.push_str(&format!("\n[[database]]\nname = {name}\nid = {id}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listed_databases_replace_the_examples() {
        // Proves the example [[database]] tables go, the rest of the starter stays, and odd names are
        // written as valid TOML.
        let listed = vec![
            DatabaseInfo {
                uuid: "11111111-2222-3333-4444-555555555555".into(),
                name: "shop".into(),
                version: None,
            },
            DatabaseInfo {
                uuid: "66666666-7777-8888-9999-000000000000".into(),
                name: "a \"quoted\" name".into(),
                version: None,
            },
        ];
        let text = with_databases(STARTER, &listed);
        assert!(text.contains("[storage]") && text.contains("[defaults]"));
        assert!(!text.contains("name = \"blog\""), "{text}");
        assert!(text.contains("name = \"shop\"\nid = \"11111111-2222-3333-4444-555555555555\""));
        let parsed: toml_edit::DocumentMut = text.parse().expect("valid TOML");
        let names: Vec<&str> = parsed["database"]
            .as_array_of_tables()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["shop", "a \"quoted\" name"]);
    }
}
