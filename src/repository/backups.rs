//! The complete backups in storage, read from their manifests. A backup without a manifest does not exist
//! for any command: this is the only place that decides what exists. A manifest is trusted only when it
//! parses, has a supported `format`, and describes the directory it is stored in
//! ([`Manifest::check_location`]); a present manifest that fails this makes the backup *unreadable*: not
//! listed, counted or restored, and never deleted.

use std::collections::BTreeMap;

use tracing::warn;

use crate::repository::manifest::{self, MANIFEST_FILE, Manifest};
use crate::storage::{ObjectInfo, Storage, StorageError};

/// Everything stored for one backup directory `<prefix>/<database>/<id>/`.
#[derive(Debug, Clone)]
pub struct StoredBackup {
    /// The database directory name (the configured database name).
    pub database: String,
    /// The backup directory name: the backup id.
    pub backup_id: String,
    /// The manifest, if present and valid: only then is the backup complete.
    pub manifest: Option<Manifest>,
    /// Why a `manifest.json` that is present was not accepted (it does not parse, has a newer `format`,
    /// lacks a field, or does not describe this directory). Such a backup is neither complete nor
    /// incomplete: it is not listed, counted or restored, and prune never deletes it.
    pub unreadable: Option<String>,
    /// Every object under the backup's directory (dump, manifest, leftovers).
    pub objects: Vec<ObjectInfo>,
}

impl StoredBackup {
    /// The key prefix of this backup's directory, `<prefix>/<database>/<id>/`.
    pub fn directory(&self, prefix: &str) -> String {
        format!(
            "{}/",
            manifest::join_key(&[prefix, &self.database, &self.backup_id])
        )
    }

    /// The key of this backup's `manifest.json` (whether or not it exists).
    pub fn manifest_key(&self, prefix: &str) -> String {
        manifest::object_key(
            prefix,
            &self.database,
            &self.backup_id,
            manifest::MANIFEST_FILE,
        )
    }

    /// The objects directly in the directory under a name d1vault writes (dump, manifest): the only ones
    /// prune may delete.
    pub fn d1vault_objects(&self, prefix: &str) -> Vec<&ObjectInfo> {
        let directory = self.directory(prefix);
        self.objects
            .iter()
            .filter(|o| {
                o.key
                    .strip_prefix(&directory)
                    .is_some_and(manifest::is_d1vault_file)
            })
            .collect()
    }

    /// Every other object under the directory: d1vault did not write it, so it is never deleted.
    pub fn foreign_objects(&self, prefix: &str) -> Vec<&ObjectInfo> {
        let directory = self.directory(prefix);
        self.objects
            .iter()
            .filter(|o| {
                !o.key
                    .strip_prefix(&directory)
                    .is_some_and(manifest::is_d1vault_file)
            })
            .collect()
    }
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
    scan_under(storage, prefix, &list_prefix, database).await
}

/// What storage holds for backup `backup_id` of `database` (`None`: not a single object), read the same
/// way as [`scan`]; for commands that name one backup (`restore --backup`, `verify --backup`).
pub async fn find(
    storage: &dyn Storage,
    prefix: &str,
    database: &str,
    backup_id: &str,
) -> Result<Option<StoredBackup>, StorageError> {
    if manifest::parse_backup_id(backup_id).is_none() {
        return Ok(None);
    }
    let directory = format!("{}/", manifest::join_key(&[prefix, database, backup_id]));
    Ok(scan_under(storage, prefix, &directory, Some(database))
        .await?
        .into_iter()
        .find(|b| b.backup_id == backup_id))
}

/// [`scan`] over the objects under `list_prefix` only.
async fn scan_under(
    storage: &dyn Storage,
    prefix: &str,
    list_prefix: &str,
    database: Option<&str>,
) -> Result<Vec<StoredBackup>, StorageError> {
    let objects = storage.list(list_prefix).await?;
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
        let (manifest, unreadable) = if objects.iter().any(|o| o.key == manifest_key) {
            let bytes = storage.get_bytes(&manifest_key).await?;
            match Manifest::from_json(&bytes)
                .and_then(|m| m.check_location(prefix, &db, &id).map(|()| m))
            {
                Ok(m) => (Some(m), None),
                Err(e) => {
                    warn!(key = %manifest_key, error = %e, "unreadable manifest; the backup is not counted and never pruned");
                    (None, Some(e))
                }
            }
        } else {
            (None, None)
        };
        backups.push(StoredBackup {
            database: db,
            backup_id: id,
            manifest,
            unreadable,
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

/// What storage says about the newest backup of `database` that has a `manifest.json`, without reading
/// the manifests of older backups: the question "does the newest backup still hold the current data?"
/// (`skip_unchanged`) costs one listing and one read however many backups are kept.
#[derive(Debug, Clone, PartialEq)]
pub enum NewestManifest {
    /// No backup directory of the database has a manifest.
    None,
    /// The newest manifest is present but not trusted (see the module documentation): the id and why.
    Unreadable {
        /// The backup id whose manifest was refused.
        backup_id: String,
        /// Why it was refused.
        reason: String,
    },
    /// The newest complete backup's manifest.
    Complete(Box<Manifest>),
}

/// The newest backup of `database` under `prefix` that has a manifest, read as [`scan`] reads it.
/// Directories without a manifest (an upload that failed or is still running) are passed over, as they
/// are not backups; an unreadable newest manifest is reported, never skipped for an older one.
pub async fn newest_manifest(
    storage: &dyn Storage,
    prefix: &str,
    database: &str,
) -> Result<NewestManifest, StorageError> {
    let objects = storage
        .list(&manifest::database_prefix(prefix, database))
        .await?;
    let newest = objects
        .iter()
        .filter_map(|o| {
            let rest = o
                .key
                .strip_prefix(&manifest::database_prefix(prefix, database))?;
            let id = rest.strip_suffix(&format!("/{MANIFEST_FILE}"))?;
            manifest::parse_backup_id(id)?;
            (o.key == manifest::object_key(prefix, database, id, MANIFEST_FILE)).then_some(id)
        })
        .max();
    let Some(id) = newest else {
        return Ok(NewestManifest::None);
    };
    let key = manifest::object_key(prefix, database, id, MANIFEST_FILE);
    let bytes = storage.get_bytes(&key).await?;
    Ok(
        match Manifest::from_json(&bytes)
            .and_then(|m| m.check_location(prefix, database, id).map(|()| m))
        {
            Ok(m) => NewestManifest::Complete(Box::new(m)),
            Err(reason) => NewestManifest::Unreadable {
                backup_id: id.to_string(),
                reason,
            },
        },
    )
}

/// `" (did you mean "blog"?)"` when `name` is a likely typo of a database that has backups under
/// `prefix`, else nothing. Lists the prefix, so it is for the failure path of a command a person typed,
/// never for the daemon; a failed listing gives no hint rather than another error.
pub async fn name_hint(storage: &dyn Storage, prefix: &str, name: &str) -> String {
    let Ok(names) = database_names(storage, prefix).await else {
        return String::new();
    };
    let known: Vec<&str> = names.iter().map(String::as_str).collect();
    crate::config::closest_name(name, &known)
        .filter(|known| *known != name)
        .map(|known| format!(" (did you mean {known:?}?)"))
        .unwrap_or_default()
}

/// The names of the database directories under `prefix` that hold at least one backup directory
/// (complete or not), sorted: what storage keeps, whether or not anything still backs it up. One
/// listing of the prefix; no manifest is read.
pub async fn database_names(
    storage: &dyn Storage,
    prefix: &str,
) -> Result<std::collections::BTreeSet<String>, StorageError> {
    let base = manifest::join_key(&[prefix]);
    let list_prefix = if base.is_empty() {
        String::new()
    } else {
        format!("{base}/")
    };
    let mut names = std::collections::BTreeSet::new();
    for object in storage.list(&list_prefix).await? {
        let Some(rest) = object.key.strip_prefix(&list_prefix) else {
            continue;
        };
        let mut parts = rest.splitn(3, '/');
        if let (Some(db), Some(id), Some(_file)) = (parts.next(), parts.next(), parts.next())
            && manifest::parse_backup_id(id).is_some()
        {
            names.insert(db.to_string());
        }
    }
    Ok(names)
}
