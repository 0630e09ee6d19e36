//! The feed relay, on a store with an event log: appends this instance's events to the
//! cluster's log (whatever gathered since the last append, in one call) and, while this
//! instance serves a feed, reads every instance's events back into the feed's window in the
//! log's order. It wakes for the outbox, for the store's signal that another instance
//! appended (`LISTEN/NOTIFY`, pub/sub), and every [`POLL`] otherwise (MySQL/MariaDB has no
//! signal). Every [`WANTED_EVERY`], unless this instance serves a feed itself, it reads the
//! instances' heartbeats: events go to the log only while some instance serves a feed (and
//! for a while after one was last seen to). A gap in the log's numbers, an append that has
//! not committed yet, is given [`GAP_WAIT`] before the relay reads past it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::Engine;
use crate::feed::GAP_WAIT;

/// The longest the relay sleeps without a signal.
const POLL: Duration = Duration::from_millis(250);

/// How many events one read takes.
const PAGE: usize = 1_000;

/// How often the relay reads whether some instance serves a feed (heartbeats say so).
const WANTED_EVERY: Duration = Duration::from_secs(1);

/// Runs until shutdown (or until the engine is dropped).
pub(crate) async fn relay(engine: std::sync::Weak<Engine>) {
    let Some(strong) = engine.upgrade() else { return };
    let feed = Arc::clone(strong.observers.feed());
    let stopping = strong.stopping.clone();
    let appended = strong.store.event_log().and_then(|log| log.appended());
    drop(strong);
    let mut reader = Reader::default();
    let mut asked: Option<Instant> = None;
    loop {
        let signal = async {
            match &appended {
                Some(signal) => signal.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = feed.outbox_filled() => {}
            () = signal => {}
            () = tokio::time::sleep(POLL) => {}
            () = stopping.cancelled() => return,
        }
        let Some(engine) = engine.upgrade() else { return };
        let Some(log) = engine.store.event_log() else { return };
        // An instance that serves a feed sends its events anyway: no need to ask.
        if !feed.enabled() && asked.is_none_or(|at| at.elapsed() >= WANTED_EVERY) {
            asked = Some(Instant::now());
            if let Ok(instances) = engine.store.instances(engine.clock.now()).await
                && instances.iter().any(|instance| instance.serves_feed)
            {
                feed.wanted_now();
            }
        }
        let outbox = feed.take_outbox();
        if !outbox.is_empty()
            && let Err(err) = log.append(&outbox).await
        {
            tracing::warn!(error = %err, dropped = outbox.len(), "taskflow: could not append events to the cluster's log; the live feed misses them");
        }
        if feed.enabled() {
            reader.read(log, &feed).await;
        }
    }
}

/// Where the relay has read the log to.
#[derive(Default)]
struct Reader {
    /// The last number taken (0: none yet).
    last: u64,
    /// Since when the next number has been missing.
    gap_since: Option<Instant>,
}

impl Reader {
    /// Takes what the log holds after `last` into the feed, in order, stopping at a gap
    /// younger than [`GAP_WAIT`].
    async fn read(&mut self, log: &dyn crate::store::events::EventLog, feed: &crate::feed::Feed) {
        loop {
            let events = match log.after(self.last, PAGE).await {
                Ok(events) => events,
                Err(err) => {
                    tracing::debug!(error = %err, "taskflow: could not read the cluster's event log");
                    return;
                }
            };
            let full = events.len() == PAGE;
            for (seq, event) in events {
                if self.last != 0 && seq != self.last + 1 {
                    let since = *self.gap_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < GAP_WAIT {
                        return;
                    }
                }
                self.gap_since = None;
                self.last = seq;
                feed.insert(seq, event);
            }
            if !full {
                return;
            }
        }
    }
}
