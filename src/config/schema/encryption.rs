//! `[encryption]`: the age recipients every backup is encrypted to, and where restore and verify find the
//! identity (docs/configuration.md "`[encryption]`"). Fails closed: a recipient that does not parse, an
//! empty list or an unreadable recipients file is a configuration error, never an unencrypted backup.

use crate::config::EncryptionConfig;
use crate::config::reader::{Reader, Schema, Section};
use crate::encryption::Recipients;

/// The keys `[encryption]` accepts.
pub(super) static SCHEMA: Schema = Schema {
    name: "encryption",
    keys: &[&["recipients", "recipients_file", "identity_file"]],
    tables: &[],
};

/// `[encryption]`; `None` when it is invalid (the problems are in the reader).
pub(super) fn read(reader: &mut Reader<'_>, section: Section<'_>) -> Option<EncryptionConfig> {
    reader.check_keys(section);
    let inline = reader.string_array(section, "recipients");
    let file = reader.path(section, "recipients_file");
    let identity_file = reader.path(section, "identity_file").map(|at| at.value);
    let recipients = match (inline, file) {
        (Some(_), Some(at)) => {
            reader.error(
                at.offset,
                &at.key,
                "set either `recipients` or `recipients_file`, not both",
            );
            return None;
        }
        (Some(at), None) => match Recipients::parse(at.value.iter().map(String::as_str)) {
            Ok(recipients) => recipients,
            Err(message) => {
                reader.error(at.offset, &at.key, message);
                return None;
            }
        },
        (None, Some(at)) => {
            let parsed = std::fs::read_to_string(&at.value)
                .map_err(|e| format!("cannot read {}: {e}", at.value.display()))
                .and_then(|text| Recipients::parse_file_text(&text));
            match parsed {
                Ok(recipients) => recipients,
                Err(message) => {
                    reader.error(at.offset, &at.key, message);
                    return None;
                }
            }
        }
        (None, None) => {
            if !section.contains("recipients") && !section.contains("recipients_file") {
                reader.error(
                    section.offset,
                    &section.key_path("recipients"),
                    "missing; set recipients = [\"age1...\"] or recipients_file = \"PATH\" (public keys \
                     from `age-keygen`); with [encryption], no backup is stored unencrypted",
                );
            }
            return None;
        }
    };
    Some(EncryptionConfig {
        recipients,
        identity_file,
    })
}
