//! [`Fetch`]: what one fetch asks a store for.

use chrono::{DateTime, Utc};

use super::Lease;

/// What one fetch asks the store for: [`Store::fetch`](super::Store::fetch).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Fetch<'a> {
    /// The queue to take tasks from.
    pub queue: &'a str,
    /// At most this many.
    pub limit: usize,
    /// The time that decides which tasks are due.
    pub now: DateTime<Utc>,
    /// The lease the taken tasks are held under.
    pub lease: &'a Lease,
    /// At most this many of the queue's tasks `running` after the fetch, across every
    /// instance (the queue's global concurrency), if set.
    pub global_limit: Option<usize>,
}

impl<'a> Fetch<'a> {
    /// A fetch of up to `limit` tasks of `queue` due at `now`, leased under `lease`.
    pub fn new(queue: &'a str, limit: usize, now: DateTime<Utc>, lease: &'a Lease) -> Self {
        Fetch { queue, limit, now, lease, global_limit: None }
    }

    /// Caps the queue's running tasks across every instance at `limit`.
    pub fn global_limit(mut self, limit: usize) -> Self {
        self.global_limit = Some(limit);
        self
    }

    /// How many this fetch may take when `running` of the queue's tasks run already.
    pub fn room(&self, running: u64) -> usize {
        room(self.limit, self.global_limit, running)
    }
}

/// How many tasks a fetch of `limit` may take under `global` when `running` run already.
pub(crate) fn room(limit: usize, global: Option<usize>, running: u64) -> usize {
    match global {
        Some(global) => {
            let free = (global as u64).saturating_sub(running);
            limit.min(usize::try_from(free).unwrap_or(usize::MAX))
        }
        None => limit,
    }
}
