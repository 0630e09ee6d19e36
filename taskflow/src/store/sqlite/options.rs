//! How an SQLite store is opened: its durability and its size limit.

/// When an enqueued task counts as stored, which is when the response that carries its id
/// may leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// The task is committed before the response leaves: it survives the process crashing or
    /// being killed. The WAL is synced at checkpoints, not at every commit (`synchronous =
    /// NORMAL`), so a power loss or OS crash can lose the last commits. Concurrent requests
    /// share commits.
    #[default]
    Committed,
    /// As [`Durability::Committed`], and every commit is synced to disk (`synchronous =
    /// FULL`): tasks survive power loss too, at the cost of one fsync per group of requests.
    Fsync,
    /// The response does not wait: the task is committed a moment later, in the background.
    /// Lowest latency; a crash in that moment (usually well under a millisecond, longer under
    /// heavy load) loses tasks whose ids clients already hold, and a write error is only
    /// logged, never reported to the request.
    Async,
}

/// Settings for [`SqliteStore::open_with`](super::SqliteStore::open_with).
#[derive(Clone, Debug, Default)]
pub struct SqliteOptions {
    pub(super) durability: Durability,
    pub(super) max_size: Option<u64>,
}

impl SqliteOptions {
    /// The defaults: [`Durability::Committed`], no size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// When an enqueued task counts as stored.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Caps the database file at about `bytes`; writes beyond it fail as a full disk would
    /// (and are reported the same way).
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }
}
