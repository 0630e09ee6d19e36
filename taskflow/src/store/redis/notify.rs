//! Wake-ups across instances: the scripts that make tasks available now (an enqueue due at
//! once, a request's tasks released) `PUBLISH` on `<prefix>:enqueued`, and each store listens
//! there on a connection of its own, so a producer on another instance fetches at once instead
//! of at its next poll. Messages carry nothing; a lost one costs one poll interval.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The channel of the store with key prefix `prefix`.
pub(super) fn channel(prefix: &str) -> String {
    format!("{prefix}:enqueued")
}

/// Listens on `channel` and fires `wake` at each message, and after each (re)connect (what
/// was published meanwhile is lost), until `closing`.
pub(super) async fn listen(
    client: redis::Client,
    channel: String,
    wake: Arc<Notify>,
    closing: CancellationToken,
) {
    let mut pause = Duration::from_millis(100);
    while !closing.is_cancelled() {
        if let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            pause = Duration::from_millis(100);
            wake.notify_one();
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    message = messages.next() => match message {
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
