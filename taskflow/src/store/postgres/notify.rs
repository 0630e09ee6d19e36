//! Announcements between instances: an enqueue `NOTIFY`s a channel that every instance
//! `LISTEN`s on, so an idle producer fetches at once instead of at its next poll; an append
//! to the event log `NOTIFY`s another (the newest event's number only), so every live feed
//! reads the log at once.

use std::sync::Arc;

use tokio_postgres::NoTls;

/// The channel on which instances announce tasks that no instance has taken yet.
pub(super) const CHANNEL: &str = "taskflow_enqueued";

/// The channel on which instances announce events appended to the log.
pub(super) const EVENTS_CHANNEL: &str = "taskflow_events";

/// Listens on [`CHANNEL`] and [`EVENTS_CHANNEL`] and fires `wake` or `events` at each
/// notification, and both after each (re)connect (notifications sent while disconnected are
/// lost), until `closing`.
pub(super) async fn listen(
    url: String,
    wake: Arc<tokio::sync::Notify>,
    events: Arc<tokio::sync::Notify>,
    closing: tokio_util::sync::CancellationToken,
) {
    let mut pause = std::time::Duration::from_millis(100);
    while !closing.is_cancelled() {
        if let Ok((client, mut connection)) = tokio_postgres::connect(&url, NoTls).await {
            let (notified, appended) = (Arc::clone(&wake), Arc::clone(&events));
            let driver = tokio::spawn(async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(tokio_postgres::AsyncMessage::Notification(note))) => {
                            if note.channel() == EVENTS_CHANNEL {
                                appended.notify_one();
                            } else {
                                notified.notify_one();
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return,
                    }
                }
            });
            let listening = format!("LISTEN {CHANNEL}; LISTEN {EVENTS_CHANNEL}");
            if client.batch_execute(&listening).await.is_ok() {
                pause = std::time::Duration::from_millis(100);
                wake.notify_one();
                events.notify_one();
                tokio::select! {
                    _ = driver => {}
                    () = closing.cancelled() => return,
                }
            } else {
                driver.abort();
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = closing.cancelled() => return,
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(5));
    }
}
