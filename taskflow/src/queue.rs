//! Named queues: [`Queue`], the settings a builder gives one, and the state every instance
//! shares through the store ([`QueueState`], changed with [`QueueChange`]).
//!
//! Each task belongs to one queue (`#[task(queue = "emails")]`, or
//! [`EnqueueOptions::queue`](crate::EnqueueOptions::queue) per call; [`DEFAULT_QUEUE`]
//! otherwise). An instance runs the queues it is told to, each with its own producer and its
//! own concurrency, and may enqueue into any declared queue.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The queue of a task that names none. It always exists and takes the builder's
/// [`concurrency`](crate::TaskManagerBuilder::concurrency).
pub const DEFAULT_QUEUE: &str = "default";

/// The longest queue name, in bytes.
pub const MAX_QUEUE_NAME: usize = 64;

/// Whether `name` can name a queue: 1 to [`MAX_QUEUE_NAME`] bytes of ASCII letters, digits,
/// `_`, `-` and `.` (it goes into keys, URLs and metric labels as it is). The `#[task]` macro
/// applies the same rule at compile time.
///
/// ```
/// assert!(taskflow::is_valid_queue_name("emails.high-priority_2"));
/// assert!(!taskflow::is_valid_queue_name("e mails"));
/// assert!(!taskflow::is_valid_queue_name(""));
/// ```
pub fn is_valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The settings of one named queue, given to
/// [`TaskManagerBuilder::queue`](crate::TaskManagerBuilder::queue).
///
/// ```
/// use taskflow::Queue;
///
/// let emails = Queue::new().concurrency(4).max_pending(10_000).global_concurrency(8);
/// assert_eq!(emails.concurrency_limit(), Some(4));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    concurrency: Option<usize>,
    global_concurrency: Option<usize>,
    max_pending: Option<u64>,
    rate: Option<Rate>,
}

impl Queue {
    /// A queue with the builder's concurrency, no global limit and no bound on waiting tasks.
    pub fn new() -> Self {
        Queue::default()
    }

    /// How many of its tasks this instance runs at once (default: the builder's
    /// [`concurrency`](crate::TaskManagerBuilder::concurrency)). Zero is an error at `build()`.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = Some(concurrency);
        self
    }

    /// How many of its tasks run at once across every instance sharing the store, counted in
    /// the store at each fetch (with one instance, the same as a concurrency limit). Zero is
    /// an error at `build()`.
    pub fn global_concurrency(mut self, concurrency: usize) -> Self {
        self.global_concurrency = Some(concurrency);
        self
    }

    /// How many `pending` tasks the queue may hold: an enqueue beyond it fails with
    /// [`Error::QueueFull`](crate::Error::QueueFull) and stores nothing (see
    /// [`TaskManagerBuilder::queue`](crate::TaskManagerBuilder::queue) for how it is counted).
    /// Zero is an error at `build()`.
    pub fn max_pending(mut self, max_pending: u64) -> Self {
        self.max_pending = Some(max_pending);
        self
    }

    /// Starts at most `n` of its tasks per `per` (a token bucket holding up to `n` tokens, so
    /// up to `n` may start at once after a quiet spell; see [`Queue::burst`]). Counted in the
    /// store at each fetch, so the rate holds across every instance sharing it (and on one
    /// instance alone). Tasks over the rate wait; none fails. Zero `n` or `per` is an error at
    /// `build()`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let calls = taskflow::Queue::new().rate_limit(10, Duration::from_secs(1)).burst(2);
    /// assert_eq!(calls.rate().unwrap().per_second(), 10.0);
    /// ```
    pub fn rate_limit(mut self, n: u32, per: Duration) -> Self {
        self.rate = Some(Rate { limit: n, per, burst: n });
        self
    }

    /// How many tokens the rate limit's bucket holds (default: its `n`): how many tasks may
    /// start at once after a quiet spell. Without a rate limit, nothing.
    pub fn burst(mut self, burst: u32) -> Self {
        if let Some(rate) = &mut self.rate {
            rate.burst = burst;
        }
        self
    }

    /// The rate limit set, if any.
    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// The per-instance concurrency set, if any.
    pub fn concurrency_limit(&self) -> Option<usize> {
        self.concurrency
    }

    /// The global concurrency set, if any.
    pub fn global_concurrency_limit(&self) -> Option<usize> {
        self.global_concurrency
    }

    /// The bound on pending tasks, if any.
    pub fn max_pending_limit(&self) -> Option<u64> {
        self.max_pending
    }
}

/// A queue's rate limit: at most `limit` starts per `per`, from a token bucket of `burst`
/// tokens ([`Queue::rate_limit`]). Stores keep the bucket (its tokens and when they were
/// counted) with the queue's shared state and take from it in each fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Starts per `per`.
    pub limit: u32,
    /// The span `limit` is counted over.
    pub per: Duration,
    /// The most tokens the bucket holds.
    pub burst: u32,
}

impl Rate {
    /// Tokens added per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.limit) / self.per.as_secs_f64()
    }

    /// The tokens in the bucket at `now_us` (microseconds since the epoch), from the stored
    /// `(tokens, counted at)` (a full bucket when nothing was stored).
    pub fn refill(&self, stored: Option<(f64, i64)>, now_us: i64) -> f64 {
        let burst = f64::from(self.burst);
        match stored {
            None => burst,
            Some((tokens, at)) => {
                let elapsed = now_us.saturating_sub(at).max(0) as f64 / 1e6;
                (tokens + elapsed * self.per_second()).min(burst)
            }
        }
    }

    /// How long one token takes to come.
    pub fn interval(&self) -> Duration {
        self.per.checked_div(self.limit.max(1)).unwrap_or(self.per)
    }
}

/// What the store keeps about a queue, shared by every instance: whether it is paused, and
/// the limits changed at run time (which override the builder's until changed again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// The queue.
    pub name: String,
    /// Whether fetching from it is stopped (running tasks finish).
    pub paused: bool,
    /// The per-instance concurrency set at run time, if any.
    pub concurrency: Option<u32>,
    /// The bound on pending tasks set at run time, if any.
    pub max_pending: Option<u64>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One change to a queue's shared state: [`Store::update_queue`](crate::Store::update_queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueChange {
    /// Pause (`true`) or resume (`false`) it.
    Paused(bool),
    /// Set (or, `None`, clear) its per-instance concurrency.
    Concurrency(Option<u32>),
    /// Set (or, `None`, clear) its bound on pending tasks.
    MaxPending(Option<u64>),
}

impl QueueChange {
    /// The state after this change, from `state` (or the defaults for a queue with none).
    pub fn apply(self, name: &str, state: Option<QueueState>, now: DateTime<Utc>) -> QueueState {
        let mut state = state.unwrap_or_else(|| QueueState {
            name: name.to_owned(),
            paused: false,
            concurrency: None,
            max_pending: None,
            updated_at: now,
        });
        match self {
            QueueChange::Paused(paused) => state.paused = paused,
            QueueChange::Concurrency(concurrency) => state.concurrency = concurrency,
            QueueChange::MaxPending(max_pending) => state.max_pending = max_pending,
        }
        state.updated_at = now;
        state
    }
}

/// How many tasks of one queue are where, as the store counts them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// `pending`: waiting to start, due or not (retries waiting for their time included).
    pub pending: u64,
    /// Of those, the ones due now: available to the next fetch. (On Redis, a task whose
    /// delay has passed counts once a fetch of any queue has made it available, which every
    /// running queue's producer does at least every poll interval.)
    #[serde(default)]
    pub due: u64,
    /// `running`.
    pub running: u64,
}

/// How long a caller refused with [`Error::QueueFull`](crate::Error::QueueFull) should wait:
/// the interval at which the queue's count is read again, in whole seconds, at least one.
pub(crate) fn retry_after(poll: Duration) -> u64 {
    poll.as_secs_f64().ceil().max(1.0) as u64
}

/// A queue as [`TaskManager::queues`](crate::TaskManager::queues) reports it: its settings in
/// force on this instance, its shared state, and the store's counts.
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// The queue.
    pub name: String,
    /// Whether this instance runs (fetches from) it.
    pub runs_here: bool,
    /// Whether it is paused, for every instance.
    pub paused: bool,
    /// Its per-instance concurrency in force.
    pub concurrency: usize,
    /// Its global concurrency, if any.
    pub global_concurrency: Option<usize>,
    /// Its bound on pending tasks in force, if any.
    pub max_pending: Option<u64>,
    /// Its rate limit in starts per second, if any.
    pub rate_per_second: Option<f64>,
    /// Its rate limit's burst, if any.
    pub rate_burst: Option<u32>,
    /// Its `pending` tasks, in the store.
    pub pending: u64,
    /// Of those, the ones due now ([`QueueCounts::due`]).
    pub due: u64,
    /// Its `running` tasks, in the store (every instance).
    pub running: u64,
    /// Its attempts running on this instance.
    pub running_here: usize,
}
