//! [`Fetch`]: what one fetch asks a store for.

use chrono::{DateTime, Utc};

use super::Lease;
use crate::queue::Rate;
use crate::record::TaskRecord;

/// How much waiting one priority level is worth. A store fetches the available tasks of a
/// queue by *rank*, the time the task became due less `priority × PRIORITY_STEP`, earliest
/// first, in enqueue order among equal ranks. So a priority-10 task starts before priority-0
/// tasks that have waited less than ten minutes, and a task's standing rises by one priority
/// level for every minute it waits: a steady stream of high-priority work delays a
/// low-priority task by at most `difference × PRIORITY_STEP`, never forever.
///
/// ```
/// assert_eq!(taskflow::PRIORITY_STEP, std::time::Duration::from_secs(60));
/// ```
pub const PRIORITY_STEP: std::time::Duration = std::time::Duration::from_secs(60);

/// [`PRIORITY_STEP`] in microseconds, as the SQL stores' indexes spell it (`60000000`).
pub(crate) const PRIORITY_STEP_MICROS: i64 = PRIORITY_STEP.as_micros() as i64;

/// A pending task's rank in fetch order, in microseconds: see [`PRIORITY_STEP`].
pub(crate) fn rank(record: &TaskRecord) -> i64 {
    let due = super::due_at(record).timestamp_micros();
    due.saturating_sub(i64::from(record.priority).saturating_mul(PRIORITY_STEP_MICROS))
}

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
    /// Caps on single tasks, by function name (`#[task(concurrency = N)]`): at most `N` of
    /// that function's tasks in the queue `running` after the fetch, across every instance.
    /// The fetch passes over a capped function's tasks and takes the next ones.
    pub task_limits: &'a [(&'a str, u32)],
    /// The queue's rate limit, if any: the fetch takes no more tasks than the queue's token
    /// bucket (kept in the store) holds at `now`, and takes a token per task.
    pub rate: Option<Rate>,
}

impl<'a> Fetch<'a> {
    /// A fetch of up to `limit` tasks of `queue` due at `now`, leased under `lease`.
    pub fn new(queue: &'a str, limit: usize, now: DateTime<Utc>, lease: &'a Lease) -> Self {
        Fetch { queue, limit, now, lease, global_limit: None, task_limits: &[], rate: None }
    }

    /// Limits the queue's starts to `rate`: see [`Fetch::rate`].
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Caps single functions' running tasks: see [`Fetch::task_limits`].
    pub fn task_limits(mut self, limits: &'a [(&'a str, u32)]) -> Self {
        self.task_limits = limits;
        self
    }

    /// Whether the fetch counts the queue's running tasks first: a global or per-task limit.
    pub fn counts_running(&self) -> bool {
        self.global_limit.is_some() || !self.task_limits.is_empty()
    }

    /// Whether fetchers of the queue on every instance must take turns: the fetch counts
    /// running tasks ([`Fetch::counts_running`]) or takes from the shared rate bucket.
    pub fn takes_turns(&self) -> bool {
        self.counts_running() || self.rate.is_some()
    }

    /// How many the fetch may take from a bucket holding `tokens`, when it may take `room`.
    pub fn within_rate(&self, room: usize, tokens: Option<f64>) -> usize {
        within_rate(room, tokens)
    }

    /// What each capped function may still take, given its tasks `running` in the queue
    /// now (functions missing from `running` run none).
    pub fn task_room<'f>(&'f self, running: &[(String, u64)]) -> TaskRoom<'f> {
        TaskRoom::new(self.task_limits, running)
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

/// How many of `room` a fetch may take from a bucket holding `tokens` (no bucket: all).
pub(crate) fn within_rate(room: usize, tokens: Option<f64>) -> usize {
    match tokens {
        Some(tokens) => room.min(tokens.max(0.0).floor() as usize),
        None => room,
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

/// What each function capped by [`Fetch::task_limits`] may still take in one fetch.
#[derive(Clone, Debug)]
pub struct TaskRoom<'a> {
    left: Vec<(&'a str, u64)>,
}

impl<'a> TaskRoom<'a> {
    /// The room `limits` leave each capped function with its tasks `running` in the queue
    /// now (functions missing from `running` run none).
    pub fn new(limits: &[(&'a str, u32)], running: &[(String, u64)]) -> Self {
        let left = limits
            .iter()
            .map(|(func, limit)| {
                let now = running.iter().find(|(f, _)| f == func).map_or(0, |(_, n)| *n);
                (*func, u64::from(*limit).saturating_sub(now))
            })
            .collect();
        TaskRoom { left }
    }

    /// The capped functions with no room left: a fetch leaves their tasks out.
    pub fn full(&self) -> Vec<&'a str> {
        self.left.iter().filter(|(_, left)| *left == 0).map(|(func, _)| *func).collect()
    }

    /// Takes room for one task of `func`; `false` when `func` is capped and has none.
    pub fn take(&mut self, func: &str) -> bool {
        match self.left.iter_mut().find(|(f, _)| *f == func) {
            Some((_, 0)) => false,
            Some((_, left)) => {
                *left -= 1;
                true
            }
            None => true,
        }
    }

    /// Of `candidates` (in fetch order, each with its function), the ones there is room for;
    /// and whether any were passed over (a fetch then looks further, without the functions
    /// now full).
    pub fn pick<T>(&mut self, candidates: Vec<(T, String)>) -> (Vec<T>, bool) {
        let mut passed_over = false;
        let mut picked = Vec::with_capacity(candidates.len());
        for (candidate, func) in candidates {
            if self.take(&func) {
                picked.push(candidate);
            } else {
                passed_over = true;
            }
        }
        (picked, passed_over)
    }
}
