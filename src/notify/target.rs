//! One `[[notify]]` entry as configured: where it delivers, in which format, and which events it wants
//! (CONTRACT.md "`[[notify]]`"). Read by `config::schema::notify`.

use std::collections::BTreeSet;
use std::fmt;

use super::event::EventKind;
use crate::secret::Secret;

/// The formats d1vault can deliver in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotifyType {
    /// The event as JSON, POSTed, signed with HMAC-SHA256 when `secret` is set.
    Webhook,
    /// healthchecks.io pings: `URL/start`, `URL`, `URL/fail`.
    Healthchecks,
    /// A Slack incoming webhook (`{"text": ...}`).
    Slack,
    /// A Discord webhook (`{"content": ...}`).
    Discord,
    /// An ntfy topic URL: the message as the body, with a title and a priority.
    Ntfy,
    /// A local program: the event JSON on standard input.
    Command,
}

impl NotifyType {
    /// Every type, in the order the configuration reference lists them.
    pub const ALL: [NotifyType; 6] = [
        NotifyType::Webhook,
        NotifyType::Healthchecks,
        NotifyType::Slack,
        NotifyType::Discord,
        NotifyType::Ntfy,
        NotifyType::Command,
    ];

    /// The name of the type in `type` and in `d1vault_notifications_total{type}`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyType::Webhook => "webhook",
            NotifyType::Healthchecks => "healthchecks",
            NotifyType::Slack => "slack",
            NotifyType::Discord => "discord",
            NotifyType::Ntfy => "ntfy",
            NotifyType::Command => "command",
        }
    }

    /// The type spelled `name`, if any.
    pub fn parse(name: &str) -> Option<NotifyType> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The events a target of this type gets when `on` is not written: everything for machines
    /// (webhook, healthchecks), the bad news for people (chat, command), as peers' users expect.
    pub fn default_on(self) -> BTreeSet<EventKind> {
        match self {
            NotifyType::Webhook => EventKind::CONFIGURABLE.into_iter().collect(),
            NotifyType::Healthchecks => [
                EventKind::Start,
                EventKind::Success,
                EventKind::Failure,
                EventKind::Unchanged,
            ]
            .into_iter()
            .collect(),
            NotifyType::Slack | NotifyType::Discord | NotifyType::Ntfy | NotifyType::Command => [
                EventKind::Failure,
                EventKind::Stale,
                EventKind::VerifyFailure,
            ]
            .into_iter()
            .collect(),
        }
    }

    /// Why this type cannot deliver `kind`, if it cannot: healthchecks.io notices a database going stale
    /// by itself, from pings that stop, so `stale` means nothing to it.
    pub fn refuses(self, kind: EventKind) -> Option<&'static str> {
        (self == NotifyType::Healthchecks && kind == EventKind::Stale).then_some(
            "healthchecks.io notices a stale database itself, from the pings that stop; \
             leave \"stale\" out for type = \"healthchecks\"",
        )
    }

    /// Whether several events go out as one message: people read chat, and a fleet run in which many
    /// databases fail must not post one message per database.
    pub fn groups(self) -> bool {
        matches!(
            self,
            NotifyType::Slack | NotifyType::Discord | NotifyType::Ntfy
        )
    }
}

impl fmt::Display for NotifyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[notify]]` entry, validated.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Its position among the file's `[[notify]]` entries (how logs and `notify test` name it: never by
    /// its URL, which is a secret).
    pub index: usize,
    /// The format.
    pub kind: NotifyType,
    /// Where to deliver (every type but `command`); a secret: it often holds a token.
    pub url: Option<Secret>,
    /// The webhook's HMAC key.
    pub secret: Option<Secret>,
    /// The program and its arguments (`command` only).
    pub command: Vec<String>,
    /// The events it wants.
    pub on: BTreeSet<EventKind>,
}

impl NotifyConfig {
    /// How logs and `d1vault notify test` name this target: `notify[0] (slack)`.
    pub fn label(&self) -> String {
        format!("notify[{}] ({})", self.index, self.kind)
    }

    /// Whether this target wants `kind` (the test event goes to every target).
    pub fn wants(&self, kind: EventKind) -> bool {
        kind == EventKind::Test || self.on.contains(&kind)
    }
}
