//! `GET /tasks/stream`: lifecycle events as Server-Sent Events. A client that reconnects with
//! `Last-Event-ID` gets what it missed while it is still kept; otherwise, and whenever it
//! falls too far behind, a `snapshot` event tells it to reload. Each client holds a fixed
//! window of the shared feed, so a slow browser cannot grow server memory.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::AdminState;
use crate::feed::FeedEvent;

struct Client {
    pending: std::collections::VecDeque<Event>,
    receiver: tokio::sync::broadcast::Receiver<Arc<FeedEvent>>,
    last_sent: u64,
    stopping: CancellationToken,
}

fn task_event(event: &FeedEvent) -> Event {
    let data = serde_json::to_string(&event.event).unwrap_or_else(|_| "{}".to_owned());
    Event::default().id(event.seq.to_string()).event("task").data(data)
}

fn snapshot(reason: &str) -> Event {
    Event::default().event("snapshot").data(json!({ "reason": reason }).to_string())
}

/// The SSE handler.
pub(crate) async fn stream(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let (receiver, replay) = state.manager.feed().subscribe(last_seen);
    let mut pending = std::collections::VecDeque::new();
    let mut last_sent = last_seen.unwrap_or(0);
    match replay {
        Some(events) => {
            for event in events {
                last_sent = event.seq;
                pending.push_back(task_event(&event));
            }
        }
        None => pending.push_back(snapshot(if last_seen.is_some() { "gap" } else { "connected" })),
    }
    let client = Client { pending, receiver, last_sent, stopping: state.manager.stopping_token() };
    let events = futures_util::stream::unfold(client, |mut client| async move {
        loop {
            if let Some(event) = client.pending.pop_front() {
                return Some((Ok(event), client));
            }
            let received = tokio::select! {
                received = client.receiver.recv() => received,
                () = client.stopping.cancelled() => return None,
            };
            match received {
                Ok(event) if event.seq <= client.last_sent => {}
                Ok(event) => {
                    client.last_sent = event.seq;
                    return Some((Ok(task_event(&event)), client));
                }
                Err(RecvError::Lagged(_)) => return Some((Ok(snapshot("lagged")), client)),
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
