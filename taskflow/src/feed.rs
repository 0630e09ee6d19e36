//! The live feed of lifecycle events: numbered, kept in a fixed window for clients that
//! reconnect or fall behind, and announced to subscribers by sequence number only.
//!
//! Publishing costs one short lock and a copy of the event's small fields (tags and names are
//! shared, messages are cut to [`SUMMARY_BYTES`]); nothing is serialised until a client reads
//! it, and then once for all clients. Subscribers are woken through a `watch` of the newest
//! number and read what they missed from the window in one go, so a flood of events wakes
//! each client once per batch, not once per event, and a client that fell out of the window
//! gets a snapshot instead of a backlog.
//!
//! On a store that several instances share (one with an
//! [`EventLog`](crate::store::events::EventLog)), the feed is the cluster's: this instance's
//! events wait in an outbox that the relay appends to the store's log, and the window holds
//! what the relay reads back from the log, every instance's events numbered by the log, so an
//! event has one id on every instance. Events go to the log while any instance serves a feed
//! (its heartbeat says so), and to no one otherwise.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::event::TaskEvent;
use crate::limits::cut;

/// How many recent events the feed keeps for clients that reconnect or read late.
pub(crate) const FEED_CAPACITY: usize = 4096;

/// The most of an event's message (an error, a log line) the feed keeps.
pub(crate) const SUMMARY_BYTES: usize = 512;

/// One event of the feed with its sequence number (the SSE event id).
#[derive(Debug)]
pub(crate) struct FeedEvent {
    pub(crate) seq: u64,
    event: TaskEvent,
    frame: OnceLock<String>,
}

impl FeedEvent {
    /// The event as one Server-Sent Events message (`id`, `event: task`, JSON `data` on one
    /// line), encoded by the first reader for all of them.
    pub(crate) fn sse_frame(&self) -> &str {
        self.frame.get_or_init(|| {
            // Compact JSON escapes every newline, so the data is a single line.
            let json = serde_json::to_string(&self.event).unwrap_or_else(|_| "{}".into());
            format!("id: {}\nevent: task\ndata: {json}\n\n", self.seq)
        })
    }
}

/// How long events keep going to the cluster's log after a feed was last seen served.
pub(crate) const WANTED_HOLD: Duration = Duration::from_secs(60);

/// How long the relay gives a gap in the log's numbers (an append by another instance that
/// has not committed yet) before it reads past it.
pub(crate) const GAP_WAIT: Duration = Duration::from_secs(1);

/// The feed of one manager; off until something subscribes for the first time.
#[derive(Debug)]
pub(crate) struct Feed {
    enabled: AtomicBool,
    /// The store has an event log: the window is filled from it.
    cluster: AtomicBool,
    /// Until when (milliseconds after `born`) events go to the cluster's log: some instance
    /// was seen serving a feed within [`WANTED_HOLD`] of it (heartbeats may arrive out of
    /// order, and one instance's feed outlives a missed read).
    wanted_until: AtomicU64,
    born: std::time::Instant,
    /// This instance's events, until the relay appends them to the log.
    outbox: Mutex<VecDeque<TaskEvent>>,
    outbox_filled: tokio::sync::Notify,
    recent: Mutex<VecDeque<Arc<FeedEvent>>>,
    newest: watch::Sender<u64>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            enabled: AtomicBool::new(false),
            cluster: AtomicBool::new(false),
            wanted_until: AtomicU64::new(0),
            born: std::time::Instant::now(),
            outbox: Mutex::default(),
            outbox_filled: tokio::sync::Notify::new(),
            recent: Mutex::new(VecDeque::with_capacity(FEED_CAPACITY)),
            newest: watch::Sender::new(0),
        }
    }
}

/// What a subscriber reads after the events it has seen.
#[derive(Debug)]
pub(crate) enum Catchup {
    /// The events after the ones seen, in order (possibly none).
    Events(Vec<Arc<FeedEvent>>),
    /// Some of the events after the ones seen are no longer kept; resynchronise, then go on
    /// after `newest`.
    Gap { newest: u64 },
}

impl Feed {
    /// Whether events are being recorded.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Starts recording events (the admin router does, when built).
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Makes this the cluster's feed: the window is filled from the store's event log.
    pub(crate) fn join_cluster(&self) {
        self.cluster.store(true, Ordering::Relaxed);
    }

    /// Whether this is the cluster's feed.
    pub(crate) fn in_cluster(&self) -> bool {
        self.cluster.load(Ordering::Relaxed)
    }

    /// Records that some instance of the cluster serves a feed (as a heartbeat says): events
    /// go to the log for [`WANTED_HOLD`] from now.
    pub(crate) fn wanted_now(&self) {
        let until = self.born.elapsed().saturating_add(WANTED_HOLD).as_millis() as u64;
        self.wanted_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether published events are kept (locally, or for the cluster's log).
    pub(crate) fn records(&self) -> bool {
        self.enabled()
            || (self.in_cluster()
                && (self.born.elapsed().as_millis() as u64)
                    < self.wanted_until.load(Ordering::Relaxed))
    }

    /// Numbers a summary of `event`, keeps it, and wakes subscribers; in a cluster, puts it
    /// in the outbox for the relay instead.
    pub(crate) fn publish(&self, event: &TaskEvent) {
        if !self.records() {
            return;
        }
        let mut summary = event.clone();
        summary.message = summary.message.map(|m| cut(m, SUMMARY_BYTES));
        if self.in_cluster() {
            let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
            // Bounded, like the window: a log that is down drops the oldest.
            if outbox.len() == FEED_CAPACITY {
                outbox.pop_front();
            }
            outbox.push_back(summary);
            drop(outbox);
            self.outbox_filled.notify_one();
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = recent.back().map_or(*self.newest.borrow(), |e| e.seq) + 1;
        self.keep(&mut recent, seq, summary);
    }

    /// Keeps `event` as number `seq` (above every kept one) and wakes subscribers.
    fn keep(&self, recent: &mut VecDeque<Arc<FeedEvent>>, seq: u64, event: TaskEvent) {
        if recent.len() == FEED_CAPACITY {
            recent.pop_front();
        }
        recent.push_back(Arc::new(FeedEvent { seq, event, frame: OnceLock::new() }));
        // Under the lock, so the announced number is always in the window.
        self.newest.send_replace(seq);
    }

    /// Keeps an event read from the cluster's log, numbered `seq` there; one numbered no
    /// higher than the newest kept is left out.
    pub(crate) fn insert(&self, seq: u64, event: TaskEvent) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.back().is_some_and(|newest| newest.seq >= seq) {
            return;
        }
        self.keep(&mut recent, seq, event);
    }

    /// This instance's events waiting for the log, taken.
    pub(crate) fn take_outbox(&self) -> Vec<TaskEvent> {
        let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
        Vec::from(std::mem::take(&mut *outbox))
    }

    /// Resolves once an event waits in the outbox.
    pub(crate) async fn outbox_filled(&self) {
        self.outbox_filled.notified().await;
    }

    /// A receiver of the newest sequence number.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// The newest sequence number published so far (0: none).
    pub(crate) fn newest(&self) -> u64 {
        *self.newest.borrow()
    }

    /// The events after `seen`, or a gap when some of them were dropped from the window.
    /// (Numbers from the cluster's log may skip: the window is searched, not indexed.)
    pub(crate) fn after(&self, seen: u64) -> Catchup {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let newest = recent.back().map_or(0, |e| e.seq);
        let oldest = recent.front().map_or(newest + 1, |e| e.seq);
        if seen >= newest {
            return Catchup::Events(Vec::new());
        }
        if seen + 1 < oldest && recent.len() == FEED_CAPACITY {
            return Catchup::Gap { newest };
        }
        let skip = recent.partition_point(|e| e.seq <= seen);
        Catchup::Events(recent.iter().skip(skip).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::event::EventKind;
    use crate::id::TaskId;

    fn event(message: &str) -> TaskEvent {
        TaskEvent {
            kind: EventKind::Log,
            task_id: TaskId::new(),
            func_name: "f".into(),
            queue: "default".into(),
            tags: Arc::new(BTreeMap::new()),
            attempt: 0,
            at: chrono::Utc::now(),
            message: Some(message.to_owned()),
        }
    }

    #[test]
    fn readers_catch_up_from_the_window_or_are_told_of_a_gap() {
        let feed = Feed::default();
        feed.publish(&event("ignored: not enabled"));
        assert_eq!(feed.newest(), 0);
        feed.enable();
        for n in 0..FEED_CAPACITY + 10 {
            feed.publish(&event(&n.to_string()));
        }
        let newest = feed.newest();
        assert_eq!(newest, (FEED_CAPACITY + 10) as u64);
        assert!(matches!(feed.after(3), Catchup::Gap { newest: n } if n == newest));
        let Catchup::Events(tail) = feed.after(newest - 2) else { panic!("in the window") };
        assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [newest - 1, newest]);
        let Catchup::Events(none) = feed.after(newest) else { panic!("nothing new") };
        assert!(none.is_empty());
        let Catchup::Events(all) = feed.after(10) else { panic!("the oldest kept is 11") };
        assert_eq!(all.len(), FEED_CAPACITY);
    }

    #[test]
    fn summaries_are_small() {
        let feed = Feed::default();
        feed.enable();
        feed.publish(&event(&"m".repeat(100_000)));
        let Catchup::Events(events) = feed.after(0) else { panic!() };
        let frame = events[0].sse_frame();
        assert!(frame.len() < 2 * SUMMARY_BYTES, "{}", frame.len());
        assert!(frame.starts_with("id: 1\nevent: task\ndata: {"), "{frame}");
        assert_eq!(frame.matches('\n').count(), 4, "one data line: {frame}");
    }
}
