//! The live feed of lifecycle events: numbered, kept for a while for clients that reconnect,
//! and broadcast to every subscriber (the admin stream).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use crate::observer::TaskEvent;

/// How many recent events the feed keeps for reconnecting clients, and how far a subscriber
/// may fall behind before it is told to resynchronise.
pub(crate) const FEED_CAPACITY: usize = 1024;

/// One event of the feed with its sequence number (the SSE event id).
#[derive(Clone, Debug)]
pub(crate) struct FeedEvent {
    pub(crate) seq: u64,
    pub(crate) event: TaskEvent,
}

/// The feed of one manager; off until something subscribes for the first time.
#[derive(Debug)]
pub(crate) struct Feed {
    enabled: AtomicBool,
    state: Mutex<FeedState>,
    sender: broadcast::Sender<Arc<FeedEvent>>,
}

#[derive(Debug, Default)]
struct FeedState {
    next_seq: u64,
    recent: VecDeque<Arc<FeedEvent>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            enabled: AtomicBool::new(false),
            state: Mutex::new(FeedState { next_seq: 1, recent: VecDeque::new() }),
            sender: broadcast::channel(FEED_CAPACITY).0,
        }
    }
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

    /// Numbers `event`, keeps it, and sends it to subscribers.
    pub(crate) fn publish(&self, event: &TaskEvent) {
        if !self.enabled() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let numbered = Arc::new(FeedEvent { seq: state.next_seq, event: event.clone() });
        state.next_seq += 1;
        if state.recent.len() == FEED_CAPACITY {
            state.recent.pop_front();
        }
        state.recent.push_back(Arc::clone(&numbered));
        // Sent under the lock, so subscribers see events in sequence order.
        let _ = self.sender.send(numbered);
    }

    /// A subscription, and the kept events after `last_seen` when all of them are still
    /// kept (`None`: some were dropped, the client must resynchronise).
    pub(crate) fn subscribe(
        &self,
        last_seen: Option<u64>,
    ) -> (broadcast::Receiver<Arc<FeedEvent>>, Option<Vec<Arc<FeedEvent>>>) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = self.sender.subscribe();
        let replay = last_seen.and_then(|seen| {
            let oldest = state.recent.front().map_or(state.next_seq, |e| e.seq);
            (seen + 1 >= oldest && seen < state.next_seq)
                .then(|| state.recent.iter().filter(|e| e.seq > seen).cloned().collect())
        });
        (receiver, replay)
    }
}
