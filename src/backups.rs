//! The complete backups in storage, read from their manifests. A backup without a manifest does not exist
//! for any command: this is the only place that decides what exists.

use std::collections::BTreeMap;

use tracing::warn;

use crate::manifest::{self, MANIFEST_FILE, Manifest};
use crate::storage::{ObjectInfo, Storage, StorageError};

/// Everything stored for one backup directory `<prefix>/<database>/<id>/`.
#[derive(Debug, Clone)]
pub struct StoredBackup {
    pub database: String,
    pub backup_id: String,
    /// The manifest, if present and valid: only then is the backup complete.
    pub manifest: Option<Manifest>,
    /// Every object under the backup's directory (dump, manifest, leftovers).
    pub objects: Vec<ObjectInfo>,
}

/// Reads every backup directory under `prefix` (all databases, or only `database`) with its manifest,
/// newest first within each database. Keys that do not fit the layout are ignored and never touched. A
/// listing failure fails the whole call: callers must not act on a partial view.
pub async fn scan(
    storage: &dyn Storage,
    prefix: &str,
    database: Option<&str>,
) -> Result<Vec<StoredBackup>, StorageError> {
    let list_prefix = match database {
        Some(db) => manifest::database_prefix(prefix, db),
        None => match manifest::join_key(&[prefix]) {
            p if p.is_empty() => String::new(),
            p => format!("{p}/"),
        },
    };
    let objects = storage.list(&list_prefix).await?;
    let base = manifest::join_key(&[prefix]);
    let mut groups: BTreeMap<(String, String), Vec<ObjectInfo>> = BTreeMap::new();
    for object in objects {
        let rest = if base.is_empty() {
            object.key.as_str()
        } else {
            match object
                .key
                .strip_prefix(&base)
                .and_then(|r| r.strip_prefix('/'))
            {
                Some(rest) => rest,
                None => continue,
            }
        };
        let mut parts = rest.splitn(3, '/');
        let (Some(db), Some(id), Some(_file)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if manifest::parse_backup_id(id).is_none() || database.is_some_and(|d| d != db) {
            continue;
        }
        groups
            .entry((db.to_string(), id.to_string()))
            .or_default()
            .push(object);
    }
    let mut backups = Vec::with_capacity(groups.len());
    for ((db, id), objects) in groups {
        let manifest_key = manifest::object_key(prefix, &db, &id, MANIFEST_FILE);
        let manifest = if objects.iter().any(|o| o.key == manifest_key) {
            let bytes = storage.get_bytes(&manifest_key).await?;
            match Manifest::from_json(&bytes) {
                Ok(m) if m.database.name == db && m.backup_id == id => Some(m),
                Ok(_) => {
                    warn!(key = %manifest_key, "manifest names another backup; ignoring it");
                    None
                }
                Err(e) => {
                    warn!(key = %manifest_key, error = %e, "unreadable manifest; the backup is not counted");
                    None
                }
            }
        } else {
            None
        };
        backups.push(StoredBackup {
            database: db,
            backup_id: id,
            manifest,
            objects,
        });
    }
    backups.sort_by(|a, b| {
        a.database
            .cmp(&b.database)
            .then(b.backup_id.cmp(&a.backup_id))
    });
    Ok(backups)
}

/// The complete backups (manifest present), newest first, optionally of one database.
pub async fn complete(
    storage: &dyn Storage,
    prefix: &str,
    database: Option<&str>,
) -> Result<Vec<Manifest>, StorageError> {
    let mut manifests: Vec<Manifest> = scan(storage, prefix, database)
        .await?
        .into_iter()
        .filter_map(|b| b.manifest)
        .collect();
    manifests.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then(a.database.name.cmp(&b.database.name))
    });
    Ok(manifests)
}
