//! `[cloudflare]`: how to reach the D1 REST API (docs/configuration.md "`[cloudflare]`").

use std::time::Duration;

use super::http_url;
use crate::config::reader::{At, Reader, Schema, Section};
use crate::config::{CloudflareConfig, DEFAULT_API_BASE_URL};

/// The keys `[cloudflare]` accepts.
pub(super) static SCHEMA: Schema = Schema {
    name: "cloudflare",
    keys: &[&[
        "account_id",
        "api_token",
        "api_token_file",
        "api_base_url",
        "requests_per_5min",
        "export_timeout",
    ]],
    tables: &[],
};

const DEFAULT_REQUESTS_PER_5MIN: u32 = 1000;
/// The variables wrangler reads the account and the token from; d1vault reads them when the file does not
/// set `account_id` / `api_token`.
pub(super) const ACCOUNT_ID_VARIABLE: &str = "CLOUDFLARE_ACCOUNT_ID";
/// See [`ACCOUNT_ID_VARIABLE`].
pub(super) const TOKEN_VARIABLE: &str = "CLOUDFLARE_API_TOKEN";
/// Cloudflare's documented global limit: 1,200 requests per 5 minutes per user.
const MAX_REQUESTS_PER_5MIN: i64 = 1200;
/// The budget's ceiling for an `api_base_url` on loopback (a d1-emulator), where Cloudflare's limit does
/// not apply.
const MAX_LOOPBACK_REQUESTS_PER_5MIN: i64 = 1_000_000;
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `[cloudflare]` with its defaults applied; `None` when a required key is missing or invalid.
pub(super) fn read(reader: &mut Reader<'_>, section: Section<'_>) -> Option<CloudflareConfig> {
    reader.check_keys(section);
    // A variable not set or a secret file missing makes the section unavailable, not the file invalid:
    // the commands that only read storage run without it (see `Config::cloudflare_unavailable`).
    let (account_id, api_token) = reader.deferring(|reader| {
        // As wrangler does: the environment's CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN when the
        // file does not say.
        let account_id = if section.contains("account_id") {
            reader.required_string(section, "account_id", "")
        } else if let Some(id) = reader.env(ACCOUNT_ID_VARIABLE).filter(|v| !v.trim().is_empty()) {
            Some(At {
                value: id,
                offset: section.offset,
                key: section.key_path("account_id"),
            })
        } else {
            reader.required_string(
                section,
                "account_id",
                "set account_id = \"${CLOUDFLARE_ACCOUNT_ID}\" (the 32-character id in the dashboard URL), \
                 or set CLOUDFLARE_ACCOUNT_ID in the environment",
            )
        };
        let token = match reader.secret(section, "api_token") {
            Ok(None) => Ok(reader.env_secret(TOKEN_VARIABLE)),
            other => other,
        };
        (account_id, token)
    });
    let api_token = match api_token {
        Ok(Some(token)) => Some(token),
        Ok(None) => {
            reader.error(
                section.offset,
                &section.key_path("api_token"),
                "missing; set api_token = \"${CLOUDFLARE_API_TOKEN}\" or api_token_file = \"PATH\" \
                 (a token with D1 edit permission), or set CLOUDFLARE_API_TOKEN in the environment",
            );
            None
        }
        Err(()) => None,
    };
    let mut api_base_url = DEFAULT_API_BASE_URL.to_string();
    if let Some(at) = reader.nonempty_string(section, "api_base_url") {
        match http_url(&at.value) {
            Ok(url) => api_base_url = url,
            Err(message) => reader.error(at.offset, &at.key, message),
        }
    }
    // Cloudflare's limit binds only Cloudflare's API: a d1-emulator on loopback (tests, scripts/bench-fleet)
    // may take a larger budget.
    let max = if is_loopback(&api_base_url) {
        MAX_LOOPBACK_REQUESTS_PER_5MIN
    } else {
        MAX_REQUESTS_PER_5MIN
    };
    let requests_per_5min = reader
        .integer_in(section, "requests_per_5min", 1, max)
        .map_or(DEFAULT_REQUESTS_PER_5MIN, |at| at.value as u32);
    let mut export_timeout = DEFAULT_EXPORT_TIMEOUT;
    if let Some(at) = reader.duration(section, "export_timeout") {
        if at.value.is_zero() {
            reader.error(at.offset, &at.key, "must be longer than zero");
        } else {
            export_timeout = at.value;
        }
    }
    Some(CloudflareConfig {
        account_id: account_id?.value.trim().to_string(),
        api_token: api_token?,
        api_base_url,
        requests_per_5min,
        export_timeout,
    })
}

/// Whether `url` names a loopback host (`127.0.0.0/8`, `::1`, `localhost`): an emulator, not Cloudflare.
fn is_loopback(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `[cloudflare]` from the environment alone (CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN, as wrangler
/// reads them) for a file without the section, every other key at its default; `None` unless both are set.
pub(super) fn from_env(reader: &mut Reader<'_>) -> Option<CloudflareConfig> {
    let account_id = reader
        .env(ACCOUNT_ID_VARIABLE)
        .filter(|v| !v.trim().is_empty())?;
    let api_token = reader.env_secret(TOKEN_VARIABLE)?;
    Some(CloudflareConfig {
        account_id: account_id.trim().to_string(),
        api_token,
        api_base_url: DEFAULT_API_BASE_URL.to_string(),
        requests_per_5min: DEFAULT_REQUESTS_PER_5MIN,
        export_timeout: DEFAULT_EXPORT_TIMEOUT,
    })
}
