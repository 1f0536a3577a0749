//! Notifications: telling people and machines about backups (`[[notify]]`, CONTRACT.md).
//!
//! A backup or the daemon builds an [`Event`] and hands it to the [`Notifier`], which delivers it after the
//! fact, off the backup's path: one bounded queue and worker per target, each delivery bounded in time and
//! retried a few times, the result logged (never the URL) and counted in `d1vault_notifications_total`.
//! A dead or hanging receiver costs a backup nothing.
//!
//! * `event`: what is told; `target`: one `[[notify]]` entry as configured;
//! * `message`: what goes on the wire for each type (grouping for chat);
//! * `deliver`: one delivery with its time limit and retries; `dispatch`: the queues and workers.

mod deliver;
mod dispatch;
mod event;
mod message;
mod target;

pub use deliver::{DeliveryError, DeliveryPolicy};
pub use dispatch::{NotificationCounts, Notifier, NotifierOptions, NotifyResult, send_now};
pub use event::{Event, EventKind, host_name};
pub use target::{NotifyConfig, NotifyType};
