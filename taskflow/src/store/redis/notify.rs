//! Wake-ups across instances: the scripts that make tasks available now (an enqueue due at
//! once, a request's tasks released) `PUBLISH` on `<prefix>:enqueued`, and each store listens
//! there on a connection of its own, so a producer on another instance fetches at once instead
//! of at its next poll. Messages carry nothing; a lost one costs one poll interval. Appends
//! to the event log `PUBLISH` the newest event's number on `<prefix>:events`, so every live
//! feed reads the log at once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The channel of the store with key prefix `prefix`.
pub(super) fn channel(prefix: &str) -> String {
    format!("{prefix}:enqueued")
}

/// The event log's channel of the store with key prefix `prefix`.
pub(super) fn events_channel(prefix: &str) -> String {
    format!("{prefix}:events")
}

/// Listens on both channels of `prefix` and fires `wake` (enqueues) or `events` (the event
/// log) at each message, and both after each (re)connect (what was published meanwhile is
/// lost), until `closing`.
pub(super) async fn listen(
    client: redis::Client,
    prefix: String,
    (wake, events): (Arc<Notify>, Arc<Notify>),
    closing: CancellationToken,
) {
    let (channel, events_channel) = (channel(&prefix), events_channel(&prefix));
    let mut pause = Duration::from_millis(100);
    while !closing.is_cancelled() {
        if let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe(&[&channel, &events_channel]).await.is_ok()
        {
            pause = Duration::from_millis(100);
            wake.notify_one();
            events.notify_one();
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) if message.get_channel_name() == events_channel => {
                            events.notify_one()
                        }
                        Some(_) => wake.notify_one(),
                        None => break, // the connection dropped: subscribe again
                    },
                    () = closing.cancelled() => return,
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = closing.cancelled() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
