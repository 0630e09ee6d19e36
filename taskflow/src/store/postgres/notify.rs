//! Announcements between instances: an enqueue `NOTIFY`s a channel that every instance
//! `LISTEN`s on, so an idle producer fetches at once instead of at its next poll.

use std::sync::Arc;

use tokio_postgres::NoTls;

/// The channel on which instances announce tasks that no instance has taken yet.
pub(super) const CHANNEL: &str = "taskflow_enqueued";

/// Listens on [`CHANNEL`] and fires `wake` at each notification, and after each (re)connect
/// (notifications sent while disconnected are lost), until `closing`.
pub(super) async fn listen(
    url: String,
    wake: Arc<tokio::sync::Notify>,
    closing: tokio_util::sync::CancellationToken,
) {
    let mut pause = std::time::Duration::from_millis(100);
    while !closing.is_cancelled() {
        if let Ok((client, mut connection)) = tokio_postgres::connect(&url, NoTls).await {
            let notified = Arc::clone(&wake);
            let driver = tokio::spawn(async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                            notified.notify_one()
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return,
                    }
                }
            });
            if client.batch_execute(&format!("LISTEN {CHANNEL}")).await.is_ok() {
                pause = std::time::Duration::from_millis(100);
                wake.notify_one();
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
