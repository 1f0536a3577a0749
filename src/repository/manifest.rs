//! The storage layout and `manifest.json` (format 1, CONTRACT.md). The manifest is written last: its presence
//! is what makes a backup exist for `list`, retention, `restore` and `verify`.

use chrono::{DateTime, NaiveDateTime, Utc};
use d1_dump::DumpOptions;
use serde::{Deserialize, Serialize};

/// `manifest.json` as stored. Field names and meanings are binding; fields may be added, never changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format ([`FORMAT`]); a reader refuses a newer one rather than misread it.
    pub format: u32,
    /// The tool and version that wrote the backup ([`crate::TOOL`]).
    pub tool: String,
    /// Which database was backed up, and from what kind of source.
    pub database: ManifestDatabase,
    /// The backup id: the start time in UTC, `YYYYMMDDTHHMMSSZ`; also the directory name.
    pub backup_id: String,
    /// When the backup started (whole seconds, UTC).
    #[serde(with = "utc_seconds")]
    pub started_at: DateTime<Utc>,
    /// When the dump was stored, just before this manifest was written.
    #[serde(with = "utc_seconds")]
    pub finished_at: DateTime<Utc>,
    /// D1 Time Travel bookmark at export start; `None` for SQLite sources.
    pub bookmark: Option<String>,
    /// The dump options the export used (`manifest.export`).
    pub export: DumpOptions,
    /// The stored dump object and the SQL it holds.
    pub dump: ManifestDump,
    /// Every table in the dump with its row count, in dump order; `verify` compares against it.
    pub tables: Vec<TableCount>,
    /// The dump's virtual tables (FTS5) with their rows, in dump order; `verify` compares against it.
    /// Omitted when there are none, so manifests of databases without them stay as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_tables: Vec<VirtualTableCount>,
    /// Names in the database's migrations table, in applied order.
    pub migrations: Vec<String>,
    /// How the dump is encrypted (`[encryption]`); omitted for an unencrypted backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<ManifestEncryption>,
}

/// `manifest.encryption`: the dump is an age file; only these recipients' identities open it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEncryption {
    /// `"age"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The public keys it was encrypted to (`age1...`): `list` shows them, so that an operator knows
    /// which identity a backup needs after a key rotation.
    pub recipients: Vec<String>,
}

/// `manifest.database`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestDatabase {
    /// The database name as configured (`[[database]] name`).
    pub name: String,
    /// The D1 database id; `None` for SQLite sources.
    pub id: Option<String>,
    /// `"d1"` or `"sqlite"`.
    pub source: String,
}

/// `manifest.dump`: the stored object and the SQL it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestDump {
    /// The dump's storage key, inside this backup's directory.
    pub key: String,
    /// `"zstd"`, `"gzip"` or `"none"`.
    pub compression: String,
    /// Bytes stored.
    pub size: u64,
    /// sha256 (hex) of the stored bytes.
    pub sha256: String,
    /// Bytes of SQL text.
    pub raw_size: u64,
    /// sha256 (hex) of the SQL text.
    pub raw_sha256: String,
}

/// Rows of one table, counted while the dump streamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    /// The table name as stored in `sqlite_schema`.
    pub name: String,
    /// Rows (INSERT statements) the dump holds for it.
    pub rows: u64,
}

/// One virtual table of the dump (`manifest.virtual_tables`), counted while the dump streamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualTableCount {
    /// The virtual table's name.
    pub name: String,
    /// Its module (`fts5`).
    pub module: String,
    /// Its rows as `SELECT count(*)` on it counts them (for an external-content table, its content
    /// table's rows).
    pub rows: u64,
}

/// The current manifest format number.
pub const FORMAT: u32 = 1;

/// File name of the completion marker inside a backup's directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The dump file names d1vault writes in a backup's directory: one per compression, each optionally with
/// age's `.age` suffix (`[encryption]`). Prune deletes only these and [`MANIFEST_FILE`]; anything else under a
/// backup directory was not written by d1vault and is never deleted.
pub const DUMP_FILES: [&str; 6] = [
    "dump.sql",
    "dump.sql.zst",
    "dump.sql.gz",
    "dump.sql.age",
    "dump.sql.zst.age",
    "dump.sql.gz.age",
];

/// Whether `file` (a name directly inside a backup directory) is one d1vault writes: prune may delete
/// only such objects.
pub fn is_d1vault_file(file: &str) -> bool {
    file == MANIFEST_FILE || DUMP_FILES.contains(&file)
}

/// The manifest `compression` a dump file name stands for (`dump.sql.zst[.age]` is `"zstd"`), or `None`
/// when `file` is not a dump name d1vault writes.
pub fn compression_of_dump_file(file: &str) -> Option<&'static str> {
    if !DUMP_FILES.contains(&file) {
        return None;
    }
    Some(match file.strip_suffix(".age").unwrap_or(file) {
        "dump.sql.zst" => "zstd",
        "dump.sql.gz" => "gzip",
        _ => "none",
    })
}

/// Backup id for a start time: the UTC start time as `YYYYMMDDTHHMMSSZ`.
pub fn backup_id(started_at: DateTime<Utc>) -> String {
    started_at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Parses a backup id back into its start time; `None` if `id` is not of that form.
pub fn parse_backup_id(id: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(id, "%Y%m%dT%H%M%SZ")
        .ok()
        .filter(|_| id.len() == 16)
        .map(|t| t.and_utc())
}

/// Joins key segments with `/`, skipping an empty prefix.
pub fn join_key(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// `<prefix>/<database>/`: everything stored for one database lives under this key prefix.
pub fn database_prefix(prefix: &str, database: &str) -> String {
    format!("{}/", join_key(&[prefix, database]))
}

/// The stored dump's file name: `dump.sql.zst`, `dump.sql.gz` or `dump.sql`, with `.age` when encrypted.
pub fn dump_file_name(compression: crate::config::Compression, encrypted: bool) -> String {
    let suffix = if encrypted {
        crate::encryption::SUFFIX
    } else {
        ""
    };
    format!("{}{suffix}", compression.dump_file_name())
}

/// `<prefix>/<database>/<backup id>/<file>`.
pub fn object_key(prefix: &str, database: &str, backup_id: &str, file: &str) -> String {
    join_key(&[prefix, database, backup_id, file])
}

impl Manifest {
    /// Parses and checks a stored manifest; the error says what is wrong with it.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, String> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid: {e}"))?;
        if manifest.format != FORMAT {
            return Err(format!(
                "manifest format {} is not supported by {} (expected {FORMAT})",
                manifest.format,
                crate::TOOL
            ));
        }
        if parse_backup_id(&manifest.backup_id).is_none() {
            return Err(format!(
                "manifest has a malformed backup_id {:?}",
                manifest.backup_id
            ));
        }
        Ok(manifest)
    }

    /// Checks that this manifest describes the backup directory `<prefix>/<database>/<backup_id>/` it was
    /// read from, so that a copied or hand-edited manifest cannot make d1vault list, verify, restore or
    /// prune another backup's (or another database's) dump: `database.name` and `backup_id` name the
    /// directory, `dump.key` is a dump file d1vault writes inside it, and `dump.compression` matches that
    /// file's suffix. The error says what does not match and what the layout expects.
    pub fn check_location(
        &self,
        prefix: &str,
        database: &str,
        backup_id: &str,
    ) -> Result<(), String> {
        if self.database.name != database {
            return Err(format!(
                "the manifest names database {:?} but is stored under {database:?}",
                self.database.name
            ));
        }
        if self.backup_id != backup_id {
            return Err(format!(
                "the manifest names backup {:?} but is stored under {backup_id:?}",
                self.backup_id
            ));
        }
        let directory = format!("{}/", join_key(&[prefix, database, backup_id]));
        let file = self.dump.key.strip_prefix(&directory);
        let Some(compression) = file.and_then(compression_of_dump_file) else {
            return Err(format!(
                "the manifest's dump.key {:?} is not this backup's dump: the layout puts it at \
                 {directory}dump.sql[.zst|.gz][.age] (if the backups were copied from another prefix, copy \
                 them back or restore from where they were written)",
                self.dump.key
            ));
        };
        if self.dump.compression != compression {
            return Err(format!(
                "the manifest says compression {:?} but its dump {:?} is {compression:?}",
                self.dump.compression, self.dump.key
            ));
        }
        Ok(())
    }

    /// The manifest as pretty-printed JSON, as stored.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        out.push(b'\n');
        out
    }

    /// The newest migration this backup contains, for `list`.
    pub fn newest_migration(&self) -> Option<&str> {
        self.migrations.last().map(String::as_str)
    }
}

/// Manifest times as the contract writes them, `2026-11-29T03:00:12Z` (UTC, whole seconds); any RFC 3339
/// time is accepted when reading.
mod utc_seconds {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        time: &DateTime<Utc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// A valid manifest of `blog` (backup `20261129T030012Z`) whose dump is `key`, for tests anywhere in the
/// crate.
#[cfg(test)]
pub(crate) fn example_manifest(key: &str, compression: &str) -> Manifest {
    let json = serde_json::json!({
        "format": 1, "tool": "d1vault 0.1.0",
        "database": { "name": "blog", "id": null, "source": "d1" },
        "backup_id": "20261129T030012Z",
        "started_at": "2026-11-29T03:00:12Z", "finished_at": "2026-11-29T03:00:19Z", "bookmark": null,
        "export": { "no_data": false, "no_schema": false, "tables": [] },
        "dump": { "key": key, "compression": compression,
                  "size": 1, "sha256": "ab", "raw_size": 1, "raw_sha256": "cd" },
        "tables": [], "migrations": []
    });
    Manifest::from_json(&serde_json::to_vec(&json).unwrap()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn backup_id_round_trips_and_rejects_other_shapes() {
        let t = Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 12).unwrap();
        assert_eq!(backup_id(t), "20261129T030012Z");
        assert_eq!(parse_backup_id("20261129T030012Z"), Some(t));
        assert_eq!(parse_backup_id("20261129T030012"), None);
        assert_eq!(parse_backup_id("latest"), None);
    }

    #[test]
    fn keys_skip_an_empty_prefix() {
        assert_eq!(
            object_key("", "blog", "X", "manifest.json"),
            "blog/X/manifest.json"
        );
        assert_eq!(
            object_key("prod/", "blog", "X", "dump.sql"),
            "prod/blog/X/dump.sql"
        );
        assert_eq!(database_prefix("", "blog"), "blog/");
    }

    fn example(key: &str, compression: &str) -> Manifest {
        example_manifest(key, compression)
    }

    #[test]
    fn a_manifest_must_describe_the_directory_it_is_stored_in() {
        // Proves check_location accepts every dump name d1vault writes with its compression and rejects
        // another database's or backup's dump, a key outside the layout, and a compression that does not
        // match the key's suffix.
        let id = "20261129T030012Z";
        for (file, compression) in [
            ("dump.sql.zst", "zstd"),
            ("dump.sql.gz", "gzip"),
            ("dump.sql", "none"),
            ("dump.sql.zst.age", "zstd"),
            ("dump.sql.gz.age", "gzip"),
            ("dump.sql.age", "none"),
        ] {
            let m = example(&format!("prod/blog/{id}/{file}"), compression);
            assert_eq!(m.check_location("prod", "blog", id), Ok(()), "{file}");
            assert_eq!(m.check_location("/prod/", "blog", id), Ok(()), "{file}");
        }
        let err = |key: &str, compression: &str, prefix: &str, db: &str, backup: &str| {
            example(key, compression)
                .check_location(prefix, db, backup)
                .unwrap_err()
        };
        let other_db = err(
            &format!("prod/shop/{id}/dump.sql.zst"),
            "zstd",
            "prod",
            "blog",
            id,
        );
        assert!(other_db.contains("dump.key"), "{other_db}");
        let other_id = err(
            "prod/blog/20261128T030012Z/dump.sql.zst",
            "zstd",
            "prod",
            "blog",
            id,
        );
        assert!(other_id.contains("dump.key"), "{other_id}");
        for key in [
            format!("prod/blog/{id}/manifest.json"),
            format!("prod/blog/{id}/sub/dump.sql"),
            format!("prod/blog/{id}/dump.sql.bz2"),
            format!("other/blog/{id}/dump.sql.zst"),
            "/etc/passwd".to_string(),
        ] {
            err(&key, "zstd", "prod", "blog", id);
        }
        let mismatch = err(
            &format!("prod/blog/{id}/dump.sql.zst"),
            "gzip",
            "prod",
            "blog",
            id,
        );
        assert!(mismatch.contains("compression"), "{mismatch}");
        let named = err(
            &format!("prod/blog/{id}/dump.sql.zst"),
            "zstd",
            "prod",
            "shop",
            id,
        );
        assert!(named.contains("database"), "{named}");
        let moved = err(
            &format!("prod/blog/{id}/dump.sql.zst"),
            "zstd",
            "prod",
            "blog",
            "20261129T030013Z",
        );
        assert!(moved.contains("backup"), "{moved}");
        assert!(is_d1vault_file("manifest.json") && is_d1vault_file("dump.sql.gz.age"));
        assert!(!is_d1vault_file("notes.txt") && !is_d1vault_file("sub/dump.sql"));
    }

    #[test]
    fn virtual_tables_are_listed_only_when_there_are_some() {
        // Proves `virtual_tables` is left out of a manifest without virtual tables (old manifests and
        // outside checks stay as they were) and round-trips as CONTRACT.md names it when present.
        let mut m = example("prod/blog/20261129T030012Z/dump.sql.zst", "zstd");
        assert!(m.virtual_tables.is_empty());
        let text = String::from_utf8(m.to_json()).unwrap();
        assert!(!text.contains("virtual_tables"), "{text}");
        m.virtual_tables = vec![VirtualTableCount {
            name: "posts_fts".into(),
            module: "fts5".into(),
            rows: 4,
        }];
        let json: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(
            json["virtual_tables"],
            serde_json::json!([{ "name": "posts_fts", "module": "fts5", "rows": 4 }])
        );
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn contract_example_parses() {
        let json = br#"{
          "format": 1, "tool": "d1vault 0.1.0",
          "database": { "name": "blog", "id": null, "source": "d1" },
          "backup_id": "20261129T030012Z",
          "started_at": "2026-11-29T03:00:12Z", "finished_at": "2026-11-29T03:00:19Z",
          "bookmark": "00000085-0000024c-00004c6d-8e61117bf38d7adb71b934ebbf891683",
          "export": { "no_data": false, "no_schema": false, "tables": [] },
          "dump": { "key": "prod/blog/20261129T030012Z/dump.sql.zst", "compression": "zstd",
                    "size": 1234, "sha256": "ab", "raw_size": 5678, "raw_sha256": "cd" },
          "tables": [ { "name": "posts", "rows": 50 } ],
          "migrations": [ "0001_init.sql" ],
          "future_field": true
        }"#;
        let m = Manifest::from_json(json).unwrap();
        assert_eq!(m.tables[0].rows, 50);
        assert_eq!(m.newest_migration(), Some("0001_init.sql"));
        let again = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(again, m);
        let text = String::from_utf8(m.to_json()).unwrap();
        assert!(
            text.contains("\"started_at\": \"2026-11-29T03:00:12Z\""),
            "{text}"
        );
        assert!(Manifest::from_json(b"{\"format\": 2}").is_err());
    }
}
