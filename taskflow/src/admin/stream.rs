//! `GET /tasks/stream`: lifecycle events as Server-Sent Events. A client that reconnects with
//! `Last-Event-ID` gets what it missed while it is still kept; otherwise, and whenever it
//! falls too far behind (out of the feed's window), a `snapshot` event tells it to reload.
//!
//! Clients share the feed's one window and hold at most one batch of it, so a slow browser
//! cannot grow server memory. Each event is encoded once for all clients, and what a client
//! missed since its last read goes out as one chunk: a flood of events costs each client one
//! wake-up and one write per batch interval, not per event.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AdminState;
use crate::feed::{Catchup, Feed};

/// The shortest time between two reads of the feed by one client.
const BATCH_INTERVAL: Duration = Duration::from_millis(20);

/// A comment line sent after this long without events, so proxies keep the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct Client {
    feed: Arc<Feed>,
    /// What to send next: whole SSE messages.
    pending: String,
    newest: watch::Receiver<u64>,
    last_sent: u64,
    next_read: Instant,
    stopping: CancellationToken,
}

fn snapshot(out: &mut String, reason: &str) {
    let _ = write!(out, "event: snapshot\ndata: {{\"reason\":\"{reason}\"}}\n\n");
}

impl Client {
    /// Queues what the feed holds after `last_sent`, or a snapshot when some of it is gone.
    fn catch_up(&mut self, gap_reason: &str) {
        match self.feed.after(self.last_sent) {
            Catchup::Events(events) => {
                for event in events {
                    self.last_sent = event.seq;
                    self.pending.push_str(event.sse_frame());
                }
            }
            Catchup::Gap { newest } => {
                self.last_sent = newest;
                snapshot(&mut self.pending, gap_reason);
            }
        }
    }

    /// Waits until there is something newer than `last_sent` and the batch interval has
    /// passed, then queues it; queues a keep-alive comment after [`KEEP_ALIVE`] of quiet.
    /// `false` when the manager stops.
    async fn next_batch(&mut self) -> bool {
        let quiet_until = Instant::now() + KEEP_ALIVE;
        while *self.newest.borrow_and_update() <= self.last_sent {
            tokio::select! {
                changed = self.newest.changed() => if changed.is_err() { return false },
                () = tokio::time::sleep_until(quiet_until) => {
                    self.pending.push_str(":\n\n");
                    return true;
                }
                () = self.stopping.cancelled() => return false,
            }
        }
        tokio::select! {
            () = tokio::time::sleep_until(self.next_read) => {}
            () = self.stopping.cancelled() => return false,
        }
        self.next_read = Instant::now() + BATCH_INTERVAL;
        self.catch_up("lagged");
        true
    }
}

/// The SSE handler.
#[utoipa::path(get, path = "/stream", operation_id = "streamEvents", tag = "tasks", params(
    ("last-event-id" = Option<u64>, Header, description = "The last event seen: the stream goes on after it."),
), responses(
    (status = 200, description = "Lifecycle events as Server-Sent Events, until the client or the server stops.",
        content_type = "text/event-stream", body = String),
))]
pub(crate) async fn stream(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let last_seen: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let feed = Arc::clone(state.manager.feed());
    let newest = feed.subscribe();
    let published = feed.newest();
    let mut client = Client {
        feed,
        pending: String::new(),
        newest,
        last_sent: published,
        next_read: Instant::now(),
        stopping: state.manager.stopping_token(),
    };
    let cluster = state.manager.feed().in_cluster();
    match last_seen {
        // In a cluster, ids are the log's on every instance: this one has not read that far
        // yet, and goes on after it.
        Some(seen) if seen > published && cluster => client.last_sent = seen,
        // An id from before a restart (numbers start again).
        Some(seen) if seen > published => snapshot(&mut client.pending, "gap"),
        Some(seen) => {
            client.last_sent = seen;
            client.catch_up("gap");
        }
        None => snapshot(&mut client.pending, "connected"),
    }
    let chunks = futures_util::stream::unfold(client, |mut client| async move {
        while client.pending.is_empty() {
            if !client.next_batch().await {
                return None;
            }
        }
        let chunk = Bytes::from(std::mem::take(&mut client.pending));
        Some((Ok::<_, Infallible>(chunk), client))
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
