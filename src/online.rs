//! `check-config --online`: what only asking can tell, with no lasting side effect. The Cloudflare token
//! (one list request), each configured D1 database (one lookup each), each fleet's members (the account
//! listed), and storage write access (a probe object created and deleted under the prefix).

use crate::config::{Config, Source};
use crate::sources::BackupSources;

/// One online check: what was checked, and what it found (`Err`: a problem, in words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineCheck {
    /// What was checked, as `check-config` prints it.
    pub what: String,
    /// What it found.
    pub result: Result<String, String>,
}

/// Runs every online check `config` calls for, in a fixed order: storage, the token, the databases.
pub async fn check(config: &Config, sources: &BackupSources) -> Vec<OnlineCheck> {
    let mut checks = vec![OnlineCheck {
        what: format!("storage {}", sources.storage.describe()),
        result: probe_storage(sources).await,
    }];
    let Some(client) = &sources.cloudflare else {
        return checks;
    };
    let token = client.list_databases(1, 1).await;
    let token_ok = token.is_ok();
    checks.push(OnlineCheck {
        what: format!("Cloudflare API token (account {})", client.account_id()),
        result: token
            .map(|_| "accepted".to_string())
            .map_err(|e| e.to_string()),
    });
    if !token_ok {
        // Every further request would fail the same way.
        return checks;
    }
    for db in &config.databases {
        let Source::D1 { id } = &db.source else {
            continue;
        };
        let lookup = id.as_deref().unwrap_or(&db.name);
        checks.push(OnlineCheck {
            what: format!("D1 database {}", db.name),
            result: client
                .get_database(lookup)
                .await
                .map(|info| format!("found (id {})", info.uuid))
                .map_err(|e| e.to_string()),
        });
    }
    if !config.fleets.is_empty() {
        let result = crate::fleet::discover(config, sources).await;
        for fleet in &config.fleets {
            checks.push(OnlineCheck {
                what: format!("fleet {}", fleet.pattern.as_str()),
                result: match &result {
                    Ok(resolution) => Ok(format!(
                        "{} members",
                        resolution
                            .members
                            .iter()
                            .filter(|m| m.config.fleet == Some(fleet.index))
                            .count()
                    )),
                    Err(e) => Err(e.to_string()),
                },
            });
        }
    }
    checks
}

/// Creates and deletes a small object under the prefix: the credentials may write (and delete) there.
async fn probe_storage(sources: &BackupSources) -> Result<String, String> {
    sources.storage.check().await.map_err(|e| e.to_string())?;
    let key = crate::repository::manifest::join_key(&[
        &sources.prefix,
        &format!(".d1vault-probe-{}", uuid::Uuid::new_v4()),
    ]);
    sources
        .storage
        .put_probe(&key, b"d1vault check-config --online probe\n".to_vec())
        .await
        .map_err(|e| format!("cannot write there: {e}"))?;
    sources
        .storage
        .delete(&key)
        .await
        .map_err(|e| format!("wrote a probe object but cannot delete it ({key}): {e}"))?;
    Ok("write and delete ok".to_string())
}
