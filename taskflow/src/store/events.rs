//! [`EventLog`]: the cluster's shared log of lifecycle events, for a store that several
//! instances share, so that an open dashboard (or any SSE client) on one instance sees what
//! happens on all of them. Each event gets a sequence number from the store (the SSE event
//! id on every instance, so `Last-Event-ID` holds across them); the log keeps the newest
//! [`KEEP_EVENTS`] or so and drops older ones as it grows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::StoreError;
use crate::event::TaskEvent;

/// About how many events a log keeps (older ones are dropped as new ones come).
pub const KEEP_EVENTS: u64 = 10_000;

/// Whether this append should also drop what is beyond [`KEEP_EVENTS`]: every hundredth
/// append of this process does (the SQL logs; Redis trims as it adds).
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn trim_due() -> bool {
    static APPENDS: AtomicU64 = AtomicU64::new(0);
    APPENDS.fetch_add(1, Ordering::Relaxed).is_multiple_of(100)
}

/// The shared event log of a store.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends `events`, in order, numbered after every event already appended, and
    /// announces them to the other instances.
    async fn append(&self, events: &[TaskEvent]) -> Result<(), StoreError>;

    /// Up to `limit` events numbered after `seq`, in order. Numbers are increasing but may
    /// have gaps; on a SQL store a number may also commit after a higher one (two instances
    /// appending at once), so a reader gives a gap a moment before passing it.
    async fn after(&self, seq: u64, limit: usize) -> Result<Vec<(u64, TaskEvent)>, StoreError>;

    /// A signal that another instance appended events, where the store can send one
    /// (`LISTEN/NOTIFY`, pub/sub); `None` where readers poll.
    fn appended(&self) -> Option<Arc<tokio::sync::Notify>>;
}
