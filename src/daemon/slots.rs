//! The `daemon.max_concurrent` backup slots, handed out longest-unprotected first. When more runs wait
//! than slots come free (a fleet due at once, a window too short for it, a budget that queues exports),
//! the database whose data is oldest in storage starts next: one never backed up first, then the one
//! whose newest backup (or unchanged check) is oldest; equals in arrival order. So a window that cannot
//! hold every run leaves waiting the databases that are best protected already, not the worst.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

/// The slots; shared by every database task behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Slots {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// `max_concurrent` in force: a reload may change it, and a shrink takes effect as runs end.
    limit: usize,
    /// Slots held now (may exceed `limit` right after a shrink).
    in_use: usize,
    /// Runs waiting, most urgent on top.
    waiting: BinaryHeap<Waiter>,
    /// Arrival counter, to keep equals in arrival order.
    arrivals: u64,
}

/// A run waiting for a slot.
#[derive(Debug)]
struct Waiter {
    /// Since when storage holds the database's current data (`None`: it has no backup).
    protected_since: Option<DateTime<Utc>>,
    arrival: u64,
    grant: oneshot::Sender<()>,
}

impl Waiter {
    /// Smaller is more urgent: no backup before any backup, older before newer, earlier arrival first.
    fn urgency(&self) -> (Option<DateTime<Utc>>, u64) {
        (self.protected_since, self.arrival)
    }
}

// BinaryHeap is a max-heap: the most urgent waiter (smallest key) must compare greatest.
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> Ordering {
        other.urgency().cmp(&self.urgency())
    }
}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.urgency() == other.urgency()
    }
}

impl Eq for Waiter {}

/// A held slot; dropping it frees the slot for the most urgent waiter.
#[derive(Debug)]
pub(crate) struct SlotPermit {
    slots: Arc<Slots>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        self.slots.release();
    }
}

impl Slots {
    /// `limit` slots, none held.
    pub(crate) fn new(limit: usize) -> Arc<Slots> {
        Arc::new(Slots {
            state: Mutex::new(State {
                limit: limit.max(1),
                in_use: 0,
                waiting: BinaryHeap::new(),
                arrivals: 0,
            }),
        })
    }

    /// Waits for a slot for a database whose current data storage has held since `protected_since`
    /// (`None`: never backed up). Cancel-safe: a waiter dropped after it was granted a slot frees it.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        protected_since: Option<DateTime<Utc>>,
    ) -> SlotPermit {
        let granted = {
            let mut state = self.lock();
            if state.in_use < state.limit && state.waiting.is_empty() {
                state.in_use += 1;
                None
            } else {
                let (grant, granted) = oneshot::channel();
                state.arrivals += 1;
                let arrival = state.arrivals;
                state.waiting.push(Waiter {
                    protected_since,
                    arrival,
                    grant,
                });
                Some(granted)
            }
        };
        if let Some(granted) = granted {
            let mut waiting = Waiting {
                granted: Some(granted),
                slots: self,
            };
            let granted = waiting.granted.as_mut().expect("set above");
            // The sender lives in the heap until it grants; the slots outlive every task.
            let _ = granted.await;
            waiting.granted = None; // received: the slot is this permit's now
        }
        SlotPermit {
            slots: self.clone(),
        }
    }

    /// Applies a reloaded `max_concurrent`: growing grants waiters at once; shrinking lets running
    /// backups finish and grants nothing until fewer than `limit` are held.
    pub(crate) fn resize(&self, limit: usize) {
        let mut state = self.lock();
        state.limit = limit.max(1);
        grant_waiters(&mut state);
    }

    /// How many runs wait for a slot now.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    fn release(&self) {
        let mut state = self.lock();
        state.in_use -= 1;
        grant_waiters(&mut state);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding it; recover the state rather than poison every task.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hands free slots to the most urgent waiters still waiting (a dropped waiter's grant fails: skip it).
fn grant_waiters(state: &mut State) {
    while state.in_use < state.limit {
        let Some(waiter) = state.waiting.pop() else {
            return;
        };
        if waiter.grant.send(()).is_ok() {
            state.in_use += 1;
        }
    }
}

/// A waiting `acquire`: if it is dropped after its slot was granted but before it saw the grant, the
/// slot goes back.
struct Waiting<'a> {
    granted: Option<oneshot::Receiver<()>>,
    slots: &'a Slots,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut granted) = self.granted.take() {
            granted.close();
            if granted.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_time::utc;

    #[tokio::test(start_paused = true)]
    async fn waiters_get_slots_longest_unprotected_first_and_a_dropped_grant_comes_back() {
        // Proves the order: with one slot held, waiters that arrive as "backed up yesterday", "never",
        // "backed up a week ago" and "yesterday" again start as never, a week ago, then the two from
        // yesterday in arrival order; a waiter cancelled while waiting takes no slot; a grow grants at once.
        let slots = Slots::new(1);
        let held = slots.acquire(None).await;
        let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let yesterday = Some(utc("2026-01-09T03:00:00Z"));
        let week_ago = Some(utc("2026-01-03T03:00:00Z"));
        for (label, since) in [
            ("yesterday-1", yesterday),
            ("never", None),
            ("week-ago", week_ago),
            ("yesterday-2", yesterday),
        ] {
            let (slots, tx) = (slots.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = slots.acquire(since).await;
                tx.send(label).unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            });
            tokio::task::yield_now().await;
        }
        let cancelled = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire(None).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(slots.waiting(), 5);
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(order.recv().await.unwrap());
        }
        assert_eq!(seen, ["never", "week-ago", "yesterday-1", "yesterday-2"]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(slots.waiting(), 0);
        // Every slot is free again (the cancelled waiter did not keep one): two can be held at once
        // after a grow, and a third waits.
        slots.resize(2);
        let a = slots.acquire(None).await;
        let _b = slots.acquire(None).await;
        let third = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire(None).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(slots.waiting(), 1);
        slots.resize(1);
        drop(a);
        tokio::task::yield_now().await;
        assert_eq!(
            slots.waiting(),
            1,
            "after a shrink to 1, one held slot is the limit"
        );
        drop(_b);
        let _c = tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("granted once below the limit")
            .unwrap();
    }
}
