//! What goes on the wire for each type: events rendered into [`Delivery`]s, one per event for machines
//! (webhook, healthchecks, command), one per batch for chat (slack, discord, ntfy), so that a fleet run
//! in which many databases fail posts one message.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::event::{Event, EventKind};
use super::target::{NotifyConfig, NotifyType};
use crate::secret::Secret;

/// The databases one chat message names before it says "and N more".
const MAX_LISTED: usize = 20;

/// One thing to send: an HTTP POST or a program to run.
#[derive(Debug, Clone)]
pub(crate) enum Delivery {
    /// POST `body` to `url`.
    Http {
        /// The full URL (a secret: the configured URL, perhaps with a suffix).
        url: Secret,
        /// `Content-Type`.
        content_type: &'static str,
        /// Extra headers (the webhook signature, ntfy's title and priority).
        headers: Vec<(&'static str, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// Run `argv` with `stdin` on its standard input.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
        /// The event JSON.
        stdin: Vec<u8>,
    },
}

/// The deliveries `target` makes for `events` (already filtered by its `on`), in order.
pub(crate) fn render(target: &NotifyConfig, events: &[Event]) -> Vec<Delivery> {
    if events.is_empty() {
        return Vec::new();
    }
    let url = || target.url.as_ref().map_or("", |u| u.expose()).trim();
    match target.kind {
        NotifyType::Webhook => events
            .iter()
            .map(|event| {
                let body = event.to_json();
                let headers = target
                    .secret
                    .as_ref()
                    .map(|key| vec![("X-D1vault-Signature", signature(key, &body))])
                    .unwrap_or_default();
                Delivery::Http {
                    url: Secret::new(url()),
                    content_type: "application/json",
                    headers,
                    body,
                }
            })
            .collect(),
        NotifyType::Healthchecks => events
            .iter()
            .map(|event| Delivery::Http {
                url: Secret::new(healthchecks_url(url(), event)),
                content_type: "text/plain; charset=utf-8",
                headers: Vec::new(),
                body: event.summary().into_bytes(),
            })
            .collect(),
        NotifyType::Command => events
            .iter()
            .map(|event| Delivery::Command {
                argv: target.command.clone(),
                stdin: event.to_json(),
            })
            .collect(),
        NotifyType::Slack => vec![chat_json(url(), "text", &chat_text(events))],
        NotifyType::Discord => {
            // Discord refuses content over 2,000 characters.
            let text: String = chat_text(events).chars().take(2000).collect();
            vec![chat_json(url(), "content", &text)]
        }
        NotifyType::Ntfy => {
            let alarm = events
                .iter()
                .any(|e| e.event.is_alarm() || e.stale == Some(true));
            vec![Delivery::Http {
                url: Secret::new(url()),
                content_type: "text/plain; charset=utf-8",
                headers: vec![
                    ("Title", title(events)),
                    (
                        "Priority",
                        if alarm { "high" } else { "default" }.to_string(),
                    ),
                    (
                        "Tags",
                        if alarm { "warning" } else { "floppy_disk" }.to_string(),
                    ),
                ],
                body: list(events).into_bytes(),
            }]
        }
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `key`: the `X-D1vault-Signature` header.
pub(crate) fn signature(key: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The healthchecks.io ping URL for `event`: `{database}` filled in, then `/start`, nothing, `/fail`, or
/// `/log` for the test event (which must neither start nor close a check's run).
fn healthchecks_url(base: &str, event: &Event) -> String {
    let base = base.replace("{database}", &event.database);
    let base = base.trim_end_matches('/');
    let suffix = match event.event {
        EventKind::Start => "/start",
        EventKind::Success | EventKind::Unchanged => "",
        EventKind::Failure | EventKind::VerifyFailure => "/fail",
        EventKind::Stale | EventKind::Test => "/log",
    };
    format!("{base}{suffix}")
}

/// A chat webhook's JSON body: `{field: text}`.
fn chat_json(url: &str, field: &str, text: &str) -> Delivery {
    Delivery::Http {
        url: Secret::new(url),
        content_type: "application/json",
        headers: Vec::new(),
        body: serde_json::to_vec(&serde_json::json!({ field: text })).expect("JSON"),
    }
}

/// The title of a message about `events`: one event's summary, or the counts of a batch.
fn title(events: &[Event]) -> String {
    let host = &events[0].host;
    if let [event] = events {
        return format!("d1vault on {host}: {}", event.summary());
    }
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for event in events {
        let label = match (event.event, event.stale) {
            (EventKind::Stale, Some(false)) => "recovered",
            (kind, _) => kind.as_str(),
        };
        *counts.entry(label).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!("d1vault on {host}: {}", counts.join(", "))
}

/// The events one per line, alarms first, at most [`MAX_LISTED`] of them.
fn list(events: &[Event]) -> String {
    let mut ordered: Vec<&Event> = events.iter().collect();
    ordered.sort_by_key(|e| !(e.event.is_alarm() || e.stale == Some(true)));
    let mut lines: Vec<String> = ordered
        .iter()
        .take(MAX_LISTED)
        .map(|e| format!("- {}", e.summary()))
        .collect();
    if events.len() > MAX_LISTED {
        lines.push(format!("... and {} more", events.len() - MAX_LISTED));
    }
    lines.join("\n")
}

/// A chat message: the title, then the list when there is more than one event.
fn chat_text(events: &[Event]) -> String {
    if events.len() == 1 {
        title(events)
    } else {
        format!("{}\n{}", title(events), list(events))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::test_time::utc;

    fn target(kind: NotifyType, url: &str) -> NotifyConfig {
        NotifyConfig {
            index: 0,
            kind,
            url: Some(Secret::new(url)),
            secret: None,
            command: Vec::new(),
            on: BTreeSet::new(),
        }
    }

    fn failure(database: &str) -> Event {
        let mut event = Event::new(EventKind::Failure, database, utc("2026-12-02T03:00:00Z"));
        event.error = Some("export failed".into());
        event
    }

    fn urls(deliveries: &[Delivery]) -> Vec<String> {
        deliveries
            .iter()
            .map(|d| match d {
                Delivery::Http { url, .. } => url.expose().to_string(),
                Delivery::Command { .. } => "command".into(),
            })
            .collect()
    }

    #[test]
    fn healthchecks_pings_follow_the_event_and_fill_in_the_database() {
        // Proves start, success, unchanged and failure reach /start, the bare URL and /fail, per database.
        let t = target(
            NotifyType::Healthchecks,
            "https://hc.example/ping/KEY/{database}/",
        );
        let at = utc("2026-12-02T03:00:00Z");
        let events = [
            Event::new(EventKind::Start, "blog", at),
            Event::new(EventKind::Success, "blog", at),
            Event::new(EventKind::Unchanged, "shop", at),
            failure("shop"),
            Event::new(EventKind::Test, "blog", at),
        ];
        assert_eq!(
            urls(&render(&t, &events)),
            [
                "https://hc.example/ping/KEY/blog/start",
                "https://hc.example/ping/KEY/blog",
                "https://hc.example/ping/KEY/shop",
                "https://hc.example/ping/KEY/shop/fail",
                "https://hc.example/ping/KEY/blog/log",
            ]
        );
    }

    #[test]
    fn chat_groups_a_batch_into_one_message_and_caps_the_list() {
        // Proves 25 failures become one Slack message that counts them, lists 20 and says how many more.
        let t = target(NotifyType::Slack, "https://hooks.slack.example/T/B/X");
        let events: Vec<Event> = (0..25).map(|i| failure(&format!("tenant-{i}"))).collect();
        let deliveries = render(&t, &events);
        assert_eq!(deliveries.len(), 1);
        let Delivery::Http { body, .. } = &deliveries[0] else {
            panic!("an HTTP delivery")
        };
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        let text = json["text"].as_str().unwrap();
        assert!(text.contains("25 failure"), "{text}");
        assert_eq!(text.matches("- tenant-").count(), 20, "{text}");
        assert!(text.ends_with("... and 5 more"), "{text}");
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_exact_body() {
        // Proves the header is HMAC-SHA256 over the body bytes, checked against RFC 4231's test case 2.
        let key = Secret::new("Jefe");
        assert_eq!(
            signature(&key, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
