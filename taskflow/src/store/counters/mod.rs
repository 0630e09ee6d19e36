//! Counters kept up to date by the same writes that change tasks, so that statistics cost the
//! same to read at a million stored tasks as at ten.
//!
//! Two shapes, on every store:
//! - [`StatusCount`]: how many stored tasks share a function, queue and status, with the sum
//!   of their durations. A task's insert adds it, each change of its status moves it, its
//!   deletion (pruning, a cleanup) takes it away, so the counts always equal a recount of the
//!   rows. The SQL stores gather the changes of a transaction's statements (`moves`) and
//!   add them up before it commits, Redis counts in the scripts that change a task, the
//!   memory store in code.
//! - [`MinuteCounts`]: what happened in one minute to one function's tasks in one queue:
//!   enqueued, each way of ending, retries, and the durations of the runs that ended (sum,
//!   min, max and a histogram over [`DURATION_BOUNDS`]). These are events, kept for the
//!   history window ([`Store::trim_history`](super::Store::trim_history)) whatever is pruned.
//!
//! A shared SQL store spreads its counters over shards (one per database connection, give or
//! take) so that concurrent writers do not queue on one hot row; readers add the shards up
//! ([`merge_counts`], [`merge_minutes`]).

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) mod moves;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) mod sql;
mod stats;
pub use self::stats::quantile;
mod tally;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

pub(crate) use self::tally::{Phase, Tally};

/// The upper bounds (seconds, inclusive) of the duration histogram's buckets; a last bucket
/// holds the longer runs.
pub const DURATION_BOUNDS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 1800.0,
];

/// How many buckets a duration histogram has: one per bound, and one past the last.
pub const BUCKETS: usize = DURATION_BOUNDS.len() + 1;

/// History younger than this many minutes stays per minute; older, a store may keep it per
/// [`ROLLUP`] minutes ([`Store::compact_counters`](super::Store::compact_counters)).
pub const FINE_MINUTES: i64 = 120;

/// The span, in minutes, of a rolled-up history row; it sits at its span's first minute.
pub const ROLLUP: i64 = 15;

/// Shards of a shared SQL store's counters (rows per key at most).
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) const SHARDS: u32 = 64;

/// The histogram bucket of a duration of `seconds`.
pub fn bucket_of(seconds: f64) -> usize {
    DURATION_BOUNDS.iter().position(|bound| seconds <= *bound).unwrap_or(BUCKETS - 1)
}

/// How many stored tasks share a function, a queue and a status, and their durations.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct StatusCount {
    /// The task name.
    pub func_name: String,
    /// The queue.
    pub queue: String,
    /// The status, as stored (`pending`, `running`, ...).
    pub status: String,
    /// How many tasks.
    pub tasks: i64,
    /// How many of them have a duration.
    pub timed: i64,
    /// The sum of those durations, in seconds.
    pub seconds: f64,
}

/// What happened in one minute to the tasks of one function in one queue.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct MinuteCounts {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// The task name.
    pub func_name: String,
    /// The queue.
    pub queue: String,
    /// Tasks created (bucketed by their creation).
    pub enqueued: i64,
    /// Tasks that ended `success` (bucketed by their end, as all endings).
    pub succeeded: i64,
    /// Tasks that ended `failed`.
    pub failed: i64,
    /// Tasks that ended `interrupted`.
    pub interrupted: i64,
    /// Tasks that ended `cancelled`.
    pub cancelled: i64,
    /// Retries begun (bucketed by when the store recorded them).
    pub retried: i64,
    /// Runs that ended with a duration (`success`, `failed`, `interrupted`).
    pub timed: i64,
    /// The sum of their durations, in seconds.
    pub seconds: f64,
    /// The shortest of them.
    pub min_duration: Option<f64>,
    /// The longest of them.
    pub max_duration: Option<f64>,
    /// How many of them fell in each bucket of [`DURATION_BOUNDS`].
    pub histogram: [i64; BUCKETS],
}

/// The unix minute (minutes since 1970) of `at`.
pub(crate) fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// The unix minute of a stored time in microseconds since 1970 (as SQLite and MariaDB keep
/// times).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn minute_of_micros(micros: i64) -> i64 {
    micros.div_euclid(60_000_000)
}

/// The start of unix minute `minute`.
pub(crate) fn minute_start(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(minute.saturating_mul(60), 0).unwrap_or_default()
}

/// `rows` with the shards of each key added up, by key.
pub fn merge_counts(rows: impl IntoIterator<Item = StatusCount>) -> Vec<StatusCount> {
    let mut merged: BTreeMap<(String, String, String), StatusCount> = BTreeMap::new();
    for row in rows {
        let key = (row.func_name.clone(), row.queue.clone(), row.status.clone());
        match merged.get_mut(&key) {
            Some(sum) => {
                sum.tasks += row.tasks;
                sum.timed += row.timed;
                sum.seconds += row.seconds;
            }
            None => {
                merged.insert(key, row);
            }
        }
    }
    merged.into_values().filter(|row| row.tasks != 0 || row.timed != 0).collect()
}

/// `rows` with the shards of each minute, function and queue added up, oldest first.
pub fn merge_minutes(rows: impl IntoIterator<Item = MinuteCounts>) -> Vec<MinuteCounts> {
    let mut merged: BTreeMap<(DateTime<Utc>, String, String), MinuteCounts> = BTreeMap::new();
    for row in rows {
        let key = (row.minute, row.func_name.clone(), row.queue.clone());
        match merged.get_mut(&key) {
            Some(sum) => sum.add(&row),
            None => {
                merged.insert(key, row);
            }
        }
    }
    merged.into_values().collect()
}

/// `minutes` in steps of `step` minutes counted from the minute of `since` (each entry's
/// `minute` its step's first), shards added up, oldest first.
pub fn regroup(
    minutes: impl IntoIterator<Item = MinuteCounts>,
    since: DateTime<Utc>,
    step: u32,
) -> Vec<MinuteCounts> {
    let first = minute_of(since);
    let step = i64::from(step.max(1));
    merge_minutes(minutes.into_iter().map(|mut minute| {
        let offset = (minute_of(minute.minute) - first).div_euclid(step) * step;
        minute.minute = minute_start(first + offset);
        minute
    }))
}

impl MinuteCounts {
    /// An empty bucket for `minute`, `func_name` and `queue`.
    pub(crate) fn empty(minute: DateTime<Utc>, func_name: &str, queue: &str) -> MinuteCounts {
        MinuteCounts {
            minute,
            func_name: func_name.to_owned(),
            queue: queue.to_owned(),
            ..MinuteCounts::default()
        }
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &MinuteCounts) {
        self.enqueued += other.enqueued;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.interrupted += other.interrupted;
        self.cancelled += other.cancelled;
        self.retried += other.retried;
        self.timed += other.timed;
        self.seconds += other.seconds;
        self.min_duration = lesser(self.min_duration, other.min_duration);
        self.max_duration = greater(self.max_duration, other.max_duration);
        for (sum, n) in self.histogram.iter_mut().zip(other.histogram) {
            *sum += n;
        }
    }

    /// Tasks that ended this minute, every way.
    pub fn ended(&self) -> i64 {
        self.succeeded + self.failed + self.interrupted + self.cancelled
    }
}

/// The smaller of two optional durations.
pub(crate) fn lesser(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The greater of two optional durations.
pub(crate) fn greater(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_upper_bound() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(0.001), 0);
        assert_eq!(bucket_of(0.0011), 1);
        assert_eq!(bucket_of(1.0), 9);
        assert_eq!(bucket_of(1800.0), 16);
        assert_eq!(bucket_of(1800.5), BUCKETS - 1);
        assert_eq!(bucket_of(-1.0), 0);
    }

    #[test]
    fn merging_adds_shards_and_drops_empty_keys() {
        let row = |status: &str, tasks| StatusCount {
            func_name: "f".into(),
            queue: "default".into(),
            status: status.into(),
            tasks,
            timed: tasks,
            seconds: tasks as f64,
        };
        let merged = merge_counts([
            row("success", 2),
            row("pending", 1),
            row("success", 3),
            row("pending", -1),
        ]);
        assert_eq!(merged, vec![row("success", 5)]);
    }
}
