//! `[[notify]]`: where d1vault tells about backups, in which format, and which events
//! (docs/configuration.md "`[[notify]]`"). The URL and the webhook secret are secrets like the API
//! token: `${VAR}` or `*_file`, and never quoted in a problem message.

use std::collections::BTreeSet;

use toml_edit::TableLike;

use crate::config::reader::{At, Reader, Schema, Section};
use crate::notify::{EventKind, NotifyConfig, NotifyType};

/// The keys a `[[notify]]` accepts.
pub(super) static SCHEMA: Schema = Schema {
    name: "notify",
    keys: &[&[
        "type",
        "url",
        "url_file",
        "on",
        "secret",
        "secret_file",
        "command",
    ]],
    tables: &[],
};

/// Every valid `[[notify]]` of the file, in file order (none when the file has no such key).
pub(super) fn read_all(reader: &mut Reader<'_>, root: Section<'_>) -> Vec<NotifyConfig> {
    let tables: Vec<(usize, &dyn TableLike)> = match root.get("notify") {
        None => return Vec::new(),
        Some((item, offset)) => match reader.array_of_tables("notify", item, offset) {
            Ok(tables) => tables,
            Err(_) => return Vec::new(),
        },
    };
    let names: Vec<String> = (0..tables.len()).map(|i| format!("notify[{i}]")).collect();
    let mut targets = Vec::new();
    for (index, ((offset, table), name)) in tables.into_iter().zip(&names).enumerate() {
        let section = Section {
            name,
            offset,
            table,
            schema: &SCHEMA,
        };
        if let Some(target) = read(reader, section, index) {
            targets.push(target);
        }
    }
    targets
}

/// One `[[notify]]`, the `index`th of the file.
fn read(reader: &mut Reader<'_>, section: Section<'_>, index: usize) -> Option<NotifyConfig> {
    reader.check_keys(section);
    let names: Vec<&str> = NotifyType::ALL.iter().map(|t| t.as_str()).collect();
    let expected = names.join("\", \"");
    let kind = reader
        .required_string(
            section,
            "type",
            &format!("set type to one of \"{expected}\""),
        )
        .and_then(|at| match NotifyType::parse(at.value.trim()) {
            Some(kind) => Some(kind),
            None => {
                let message = format!(
                    "unknown type {:?}; expected one of \"{expected}\"",
                    at.value
                );
                reader.error(at.offset, &at.key, message);
                None
            }
        })?;

    let url = reader.secret(section, "url").ok()?;
    let secret = reader.secret(section, "secret").ok()?;
    let command = reader.string_array(section, "command");
    if section.contains("command") && command.is_none() {
        return None;
    }
    let url_key = if section.contains("url_file") {
        "url_file"
    } else {
        "url"
    };
    let mut valid = true;
    if kind == NotifyType::Command {
        if command.is_none() {
            reader.error(
                section.offset,
                &section.key_path("command"),
                "missing; set command = [\"/path/to/program\", \"arg\"] (the event JSON arrives on \
                 its standard input)",
            );
            valid = false;
        }
        if url.is_some() {
            not_for(reader, section, url_key, kind);
            valid = false;
        }
    } else {
        if command.is_some() {
            not_for(reader, section, "command", kind);
            valid = false;
        }
        match &url {
            None => {
                reader.error(
                    section.offset,
                    &section.key_path("url"),
                    "missing; set url = \"${VARIABLE}\" or url_file = \"PATH\" (the URL is a secret)",
                );
                valid = false;
            }
            // The URL itself is not quoted: it is a secret.
            Some(url) if !is_http_url(url.expose()) => {
                reader.error(
                    section.key_offset(url_key),
                    &section.key_path(url_key),
                    "is not an http:// or https:// URL",
                );
                valid = false;
            }
            Some(_) => {}
        }
    }
    if let Some(command) = &command
        && command.value.is_empty()
    {
        reader.error(command.offset, &command.key, "must name a program");
        valid = false;
    }
    if secret.is_some() && kind != NotifyType::Webhook {
        let key = if section.contains("secret") {
            "secret"
        } else {
            "secret_file"
        };
        not_for(reader, section, key, kind);
        valid = false;
    }

    let on = match reader.string_array(section, "on") {
        Some(at) => events(reader, &at, kind)?,
        None if section.contains("on") => return None,
        None => kind.default_on(),
    };
    valid.then_some(NotifyConfig {
        index,
        kind,
        url,
        secret,
        command: command.map(|c| c.value).unwrap_or_default(),
        on,
    })
}

/// Reports `key` as meaningless for `kind`.
fn not_for(reader: &mut Reader<'_>, section: Section<'_>, key: &str, kind: NotifyType) {
    let hint = match key {
        "url" | "url_file" => "a command target runs `command` and has no URL",
        "command" => "only type = \"command\" runs a program",
        _ => "only type = \"webhook\" signs its body",
    };
    reader.error(
        section.key_offset(key),
        &section.key_path(key),
        format!("not used by type = \"{kind}\": {hint}"),
    );
}

/// The events named in `on`, each checked against the type; `None` when one was reported.
fn events(
    reader: &mut Reader<'_>,
    at: &At<Vec<String>>,
    kind: NotifyType,
) -> Option<BTreeSet<EventKind>> {
    let known: Vec<&str> = EventKind::CONFIGURABLE.iter().map(|k| k.as_str()).collect();
    let mut events = BTreeSet::new();
    let mut valid = true;
    for (i, name) in at.value.iter().enumerate() {
        let key = format!("{}[{i}]", at.key);
        match EventKind::parse(name.trim()) {
            Some(event) => match kind.refuses(event) {
                Some(why) => {
                    reader.error(at.offset, &key, why);
                    valid = false;
                }
                None => {
                    events.insert(event);
                }
            },
            None => {
                let message = format!(
                    "unknown event {name:?}; expected some of \"{}\"",
                    known.join("\", \"")
                );
                reader.error(at.offset, &key, message);
                valid = false;
            }
        }
    }
    if valid && events.is_empty() {
        reader.error(
            at.offset,
            &at.key,
            "names no event; leave `on` out for this type's defaults, or remove the [[notify]]",
        );
        valid = false;
    }
    valid.then_some(events)
}

/// Whether `text` is an `http://` or `https://` URL with a host.
fn is_http_url(text: &str) -> bool {
    reqwest::Url::parse(text.trim())
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
}
