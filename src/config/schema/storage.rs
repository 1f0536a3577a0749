//! `[storage]`: where backups go, an S3-compatible bucket or a directory (docs/configuration.md
//! "`[storage]`", CONTRACT.md "Storage layout").

use super::http_url;
use crate::config::preflight::Expect;
use crate::config::reader::{Reader, Schema, Section, closest, parse_size};
use crate::config::{FilesystemConfig, S3Config, StorageConfig};

/// Keys of both storage types.
const COMMON_KEYS: &[&str] = &["type", "prefix"];
/// Keys of `type = "s3"` only.
const S3_KEYS: &[&str] = &[
    "bucket",
    "endpoint",
    "region",
    "force_path_style",
    "access_key_id",
    "access_key_id_file",
    "secret_access_key",
    "secret_access_key_file",
    "part_size",
    "max_parts_in_flight",
    "object_lock",
];
/// Keys of `type = "filesystem"` only.
const FILESYSTEM_KEYS: &[&str] = &["path"];

/// The keys `[storage]` accepts, whatever its type.
pub(super) static SCHEMA: Schema = Schema {
    name: "storage",
    keys: &[COMMON_KEYS, S3_KEYS, FILESYSTEM_KEYS],
    tables: &[&super::object_lock::SCHEMA],
};

const DEFAULT_REGION: &str = "auto";
const MIB: u64 = 1024 * 1024;
/// 8 MiB, as the AWS CLI: with two parts in flight and one filling, about 24 MiB of buffers per upload, and
/// room for 78 GiB objects within S3's 10,000 parts (a D1 database holds at most 10 GB).
const DEFAULT_PART_SIZE: u64 = 8 * MIB;
/// S3's smallest allowed multipart part (except the last one).
const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest allowed multipart part.
const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
const DEFAULT_MAX_PARTS_IN_FLIGHT: usize = 2;
/// Each part in flight is held in memory; this bounds the worst case.
const MAX_PARTS_IN_FLIGHT: i64 = 64;

/// `[storage]` of either type; `None` when the type or a required key is missing or invalid.
pub(super) fn read(reader: &mut Reader<'_>, section: Section<'_>) -> Option<StorageConfig> {
    let kind = match section.get("type") {
        None => {
            reader.error(
                section.offset,
                "storage.type",
                "missing; set type = \"s3\" or type = \"filesystem\"",
            );
            None
        }
        Some(_) => match reader.string(section, "type") {
            None => None,
            Some(at) => match at.value.as_str() {
                "s3" | "filesystem" => Some(at.value),
                other => {
                    let mut message =
                        format!("unknown storage type {other:?}; use \"s3\" or \"filesystem\"");
                    if let Some(s) = closest(other, &["s3", "filesystem"]) {
                        message = format!("unknown storage type {other:?}; did you mean {s:?}?");
                    }
                    reader.error(at.offset, &at.key, message);
                    None
                }
            },
        },
    };
    // Keys of the other storage type are reported as such rather than as unknown.
    let (own, other, other_name): (&[&str], &[&str], &str) = match kind.as_deref() {
        Some("s3") => (S3_KEYS, FILESYSTEM_KEYS, "filesystem"),
        Some(_) => (FILESYSTEM_KEYS, S3_KEYS, "s3"),
        None => (S3_KEYS, FILESYSTEM_KEYS, ""),
    };
    if kind.is_some() {
        for (key, _) in section.table.iter() {
            if other.contains(&key) {
                reader.error(
                    section.key_offset(key),
                    &section.key_path(key),
                    format!("`{key}` applies only to type = \"{other_name}\""),
                );
            }
        }
    }
    reader.check_keys_among(section, &[COMMON_KEYS, own, other]);

    let prefix = match reader.string(section, "prefix") {
        Some(at) => match clean_prefix(&at.value) {
            Ok(prefix) => prefix,
            Err(message) => {
                reader.error(at.offset, &at.key, message);
                String::new()
            }
        },
        None => String::new(),
    };

    match kind.as_deref() {
        Some("s3") => s3(reader, section, prefix).map(StorageConfig::S3),
        Some(_) => {
            let path = if section.get("path").is_none() {
                reader.error(
                    section.offset,
                    "storage.path",
                    "missing; type = \"filesystem\" needs path = \"/var/backups/d1\"",
                );
                None
            } else {
                reader.path(section, "path")
            };
            if let Some(at) = &path {
                reader.expect_path(at, Expect::StorageRoot);
            }
            Some(StorageConfig::Filesystem(FilesystemConfig {
                path: path?.value,
                prefix,
            }))
        }
        None => None,
    }
}

/// The keys of `type = "s3"`, with their defaults applied.
fn s3(reader: &mut Reader<'_>, section: Section<'_>, prefix: String) -> Option<S3Config> {
    let bucket = reader.required_string(section, "bucket", "type = \"s3\" needs bucket = \"NAME\"");
    let endpoint = match reader.nonempty_string(section, "endpoint") {
        Some(at) => match http_url(&at.value) {
            Ok(url) => Some(url),
            Err(message) => {
                reader.error(at.offset, &at.key, message);
                None
            }
        },
        None => None,
    };
    let region = reader.nonempty_string(section, "region").map_or_else(
        || DEFAULT_REGION.to_string(),
        |at| at.value.trim().to_string(),
    );
    let force_path_style = reader
        .boolean(section, "force_path_style")
        .is_some_and(|at| at.value);
    let access_key_id = reader.secret(section, "access_key_id");
    let secret_access_key = reader.secret(section, "secret_access_key");
    let half_set = matches!(
        (&access_key_id, &secret_access_key),
        (Ok(a), Ok(b)) if a.is_some() != b.is_some()
    );
    if half_set {
        let a = matches!(access_key_id, Ok(Some(_)));
        let (present, missing) = if a {
            ("access_key_id", "secret_access_key")
        } else {
            ("secret_access_key", "access_key_id")
        };
        reader.error(
            section.offset,
            &section.key_path(missing),
            format!(
                "missing; {present} is set, so set {missing} (or {missing}_file) too, or remove both \
                 to use the AWS default credential chain"
            ),
        );
    }
    let mut part_size = DEFAULT_PART_SIZE;
    if let Some((item, offset)) = section.get("part_size") {
        let key = section.key_path("part_size");
        let parsed = if let Some(n) = item.as_integer() {
            u64::try_from(n).map_err(|_| format!("{n} is negative"))
        } else if item.as_str().is_some() {
            let text = reader.string_value(item, offset, &key);
            text.map(|t| parse_size(&t)).unwrap_or(Err(String::new()))
        } else {
            reader.wrong_type(offset, &key, "a size such as \"16MiB\"", item);
            Err(String::new())
        };
        match parsed {
            Ok(size) if (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size) => part_size = size,
            Ok(size) => reader.error(
                offset,
                &key,
                format!("{size} bytes is out of range: S3 parts must be between 5MiB and 5GiB"),
            ),
            Err(message) if !message.is_empty() => reader.error(offset, &key, message),
            Err(_) => {}
        }
    }
    let max_parts_in_flight = reader
        .integer_in(section, "max_parts_in_flight", 1, MAX_PARTS_IN_FLIGHT)
        .map_or(DEFAULT_MAX_PARTS_IN_FLIGHT, |at| at.value as usize);
    let object_lock = super::object_lock::read(reader, section);
    Some(S3Config {
        bucket: bucket?.value.trim().to_string(),
        prefix,
        endpoint,
        region,
        force_path_style,
        access_key_id: access_key_id.ok()?,
        secret_access_key: secret_access_key.ok()?,
        part_size: usize::try_from(part_size).ok()?,
        max_parts_in_flight,
        object_lock,
    })
}

/// A storage key prefix without leading or trailing slashes; `.`/`..`/empty segments are refused so a
/// prefix can never escape the filesystem root or collide with another.
fn clean_prefix(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "{text:?} is not a usable prefix: no empty, `.` or `..` segments (write e.g. \"prod\" or \
             \"team/prod\")"
        ));
    }
    Ok(trimmed.to_string())
}
