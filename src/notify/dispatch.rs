//! The [`Notifier`]: one worker per `[[notify]]` target, fed through a bounded queue, so that a backup
//! hands its event over and goes on. A receiver that is down or hangs delays only its own queue; when the
//! queue is full, events are dropped and counted, never waited for.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::deliver::{DeliveryError, DeliveryPolicy, deliver};
use super::event::Event;
use super::message::render;
use super::target::{NotifyConfig, NotifyType};

/// Events waiting per target before new ones are dropped.
const QUEUE: usize = 1024;

/// How a delivery ended, as the `result` label of `d1vault_notifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NotifyResult {
    /// The receiver took it.
    Sent,
    /// Every attempt failed.
    Failed,
    /// The target's queue was full (its receiver is slow or hanging), or d1vault stopped first.
    Dropped,
}

impl NotifyResult {
    fn label(self) -> &'static str {
        match self {
            NotifyResult::Sent => "sent",
            NotifyResult::Failed => "failed",
            NotifyResult::Dropped => "dropped",
        }
    }
}

/// `d1vault_notifications_total{type,result}`, shared by the notifier and `/metrics`.
#[derive(Debug, Default)]
pub struct NotificationCounts(Mutex<BTreeMap<(NotifyType, NotifyResult), u64>>);

impl NotificationCounts {
    /// Counts `n` notifications of target type `kind` that ended as `result`.
    pub fn add(&self, kind: NotifyType, result: NotifyResult, n: u64) {
        *self
            .0
            .lock()
            .expect("counts lock")
            .entry((kind, result))
            .or_default() += n;
    }

    /// The count for `kind` and `result`.
    pub fn get(&self, kind: NotifyType, result: NotifyResult) -> u64 {
        let counts = self.0.lock().expect("counts lock");
        counts.get(&(kind, result)).copied().unwrap_or(0)
    }

    /// The series in Prometheus' text format (nothing before the first notification).
    pub fn render(&self) -> String {
        let counts = self.0.lock().expect("counts lock");
        if counts.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "# HELP d1vault_notifications_total Notifications since the daemon started, by target type and result (sent, failed after every attempt, dropped unsent).\n\
             # TYPE d1vault_notifications_total counter\n",
        );
        for ((kind, result), n) in counts.iter() {
            out.push_str(&format!(
                "d1vault_notifications_total{{type=\"{kind}\",result=\"{}\"}} {n}\n",
                result.label()
            ));
        }
        out
    }
}

/// How the notifier delivers: the per-notification [`DeliveryPolicy`], and how long a chat target
/// gathers events into one message.
#[derive(Debug, Clone, Copy)]
pub struct NotifierOptions {
    /// Attempts, their time limit and the backoff between them.
    pub policy: DeliveryPolicy,
    /// After a chat target's first event, how long it waits for more before it posts them together (a
    /// closing notifier posts at once).
    pub group_window: Duration,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            policy: DeliveryPolicy::default(),
            group_window: Duration::from_secs(60),
        }
    }
}

/// One target's queue.
struct Queue {
    config: Arc<NotifyConfig>,
    tx: mpsc::Sender<Event>,
    /// Set while events are being dropped, so that the warning is logged once per episode.
    dropping: AtomicBool,
}

/// Delivers events to every configured target, off the caller's path.
pub struct Notifier {
    queues: RwLock<Vec<Queue>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    counts: Arc<NotificationCounts>,
    options: NotifierOptions,
    client: reqwest::Client,
}

impl Notifier {
    /// A notifier for `targets`, counting into `counts`; spawns one worker per target (call it inside a
    /// tokio runtime).
    pub fn start(
        targets: &[NotifyConfig],
        options: NotifierOptions,
        counts: Arc<NotificationCounts>,
    ) -> Notifier {
        let notifier = Notifier {
            queues: RwLock::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
            counts,
            options,
            client: reqwest::Client::new(),
        };
        notifier.replace(targets);
        notifier
    }

    /// A notifier for a one-shot command (`backup`, `verify`): the default options, its own counts.
    pub fn for_command(targets: &[NotifyConfig]) -> Notifier {
        Notifier::start(targets, NotifierOptions::default(), Arc::default())
    }

    /// [`Notifier::finish`] within one delivery's worst case (plus a little): the bound on how long a
    /// receiver that hangs can delay a command's exit or the daemon's stop.
    pub async fn finish_in_time(&self) -> bool {
        let within = self.options.policy.worst_case() + Duration::from_secs(2);
        self.finish(within).await
    }

    /// Hands `event` to every target that wants it. Never waits: a full queue drops the event.
    pub fn send(&self, event: &Event) {
        for queue in self.queues.read().expect("queues lock").iter() {
            if !queue.config.wants(event.event) {
                continue;
            }
            match queue.tx.try_send(event.clone()) {
                Ok(()) => queue.dropping.store(false, Ordering::Relaxed),
                Err(_) => {
                    self.counts.add(queue.config.kind, NotifyResult::Dropped, 1);
                    if !queue.dropping.swap(true, Ordering::Relaxed) {
                        warn!(
                            notifier = %queue.config.label(),
                            "notifications dropped: this target's queue is full (its receiver is slow \
                             or not answering)"
                        );
                    }
                }
            }
        }
    }

    /// Takes `targets` from now on (a reload): the old targets' workers deliver what they hold, then end.
    pub fn replace(&self, targets: &[NotifyConfig]) {
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for target in targets {
            let (tx, rx) = mpsc::channel(QUEUE);
            let config = Arc::new(target.clone());
            workers.push(tokio::spawn(work(
                config.clone(),
                rx,
                self.client.clone(),
                self.options,
                self.counts.clone(),
            )));
            queues.push(Queue {
                config,
                tx,
                dropping: AtomicBool::new(false),
            });
        }
        *self.queues.write().expect("queues lock") = queues;
        self.workers.lock().expect("workers lock").extend(workers);
    }

    /// Stops taking events and waits up to `within` for the queued ones to be delivered; what is left
    /// then is dropped (and logged). Returns whether everything was delivered or given up on in time.
    pub async fn finish(&self, within: Duration) -> bool {
        self.queues.write().expect("queues lock").clear();
        let workers: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.workers.lock().expect("workers lock"));
        let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
        let all = futures_util::future::join_all(workers);
        if tokio::time::timeout(within, all).await.is_ok() {
            return true;
        }
        for abort in aborts {
            abort.abort();
        }
        warn!(
            waited_seconds = within.as_secs(),
            "gave up on notifications still undelivered at exit"
        );
        false
    }
}

/// One target's worker: takes events in order, gathers a chat target's events into one message, and
/// delivers each message under the policy.
async fn work(
    target: Arc<NotifyConfig>,
    mut rx: mpsc::Receiver<Event>,
    client: reqwest::Client,
    options: NotifierOptions,
    counts: Arc<NotificationCounts>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        if target.kind.groups() {
            let until = tokio::time::Instant::now() + options.group_window;
            while let Ok(Some(event)) = tokio::time::timeout_at(until, rx.recv()).await {
                batch.push(event);
            }
        }
        for delivery in render(&target, &batch) {
            let result = deliver(&client, &delivery, options.policy).await;
            report(&target, &counts, batch.len(), &result);
        }
    }
}

/// The log line and the count of one delivery (never the URL).
fn report(
    target: &NotifyConfig,
    counts: &NotificationCounts,
    events: usize,
    result: &Result<(), DeliveryError>,
) {
    match result {
        Ok(()) => {
            counts.add(target.kind, NotifyResult::Sent, 1);
            debug!(notifier = %target.label(), events, "notification sent");
        }
        Err(e) => {
            counts.add(target.kind, NotifyResult::Failed, 1);
            warn!(notifier = %target.label(), events, error = %e, "notification failed");
        }
    }
}

/// Sends `event` to every target at once, outside any queue, and returns each target's result in the
/// order of `targets`: `d1vault notify test`.
pub async fn send_now(
    targets: &[NotifyConfig],
    event: &Event,
    policy: DeliveryPolicy,
) -> Vec<Result<(), DeliveryError>> {
    let client = reqwest::Client::new();
    let sends = targets.iter().map(|target| {
        let client = &client;
        async move {
            for delivery in render(target, std::slice::from_ref(event)) {
                deliver(client, &delivery, policy).await?;
            }
            Ok(())
        }
    });
    futures_util::future::join_all(sends).await
}
