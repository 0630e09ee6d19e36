//! The counters kept in code, by the memory store, by the rules the SQL stores follow
//! (`moves`). Lookups borrow the names, so counting a change allocates nothing once a function
//! and queue have been seen.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::{MinuteCounts, StatusCount, bucket_of, minute_of, minute_start};
use crate::record::{TaskRecord, TaskStatus};

/// What of a task's counters can change while it is stored (its name and queue cannot).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Phase {
    status: TaskStatus,
    duration: Option<f64>,
    retries_used: u32,
}

impl Phase {
    /// The phase of `record`.
    pub(crate) fn of(record: &TaskRecord) -> Phase {
        Phase {
            status: record.status,
            duration: record.duration,
            retries_used: record.retries_used,
        }
    }
}

/// One queue's counts of one function, by status (in [`TaskStatus::ALL`] order).
type ByStatus = [(i64, i64, f64); TaskStatus::ALL.len()];

/// Counts by function, queue and status, and per-minute events.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: HashMap<String, HashMap<String, ByStatus>>,
    minutes: BTreeMap<i64, HashMap<String, HashMap<String, MinuteCounts>>>,
}

impl Tally {
    /// Counts `record`, just stored (one stored finished ends as it is stored).
    pub(crate) fn insert(&mut self, record: &TaskRecord, now: DateTime<Utc>) {
        self.count(record, Phase::of(record), 1);
        self.minute(record.created_at, record).enqueued += 1;
        if record.status.is_finished() {
            self.ended(record, now);
        }
    }

    /// Takes away `record`, just removed.
    pub(crate) fn remove(&mut self, record: &TaskRecord) {
        self.count(record, Phase::of(record), -1);
    }

    /// Counts `record` going from `before` to what it is now, at `now`.
    pub(crate) fn change(&mut self, record: &TaskRecord, before: Phase, now: DateTime<Utc>) {
        let after = Phase::of(record);
        if before == after {
            return;
        }
        self.count(record, before, -1);
        self.count(record, after, 1);
        if !before.status.is_finished() && after.status.is_finished() {
            self.ended(record, now);
        }
        if after.retries_used > before.retries_used {
            self.minute(now, record).retried += i64::from(after.retries_used - before.retries_used);
        }
    }

    /// The counts.
    pub(crate) fn counts(&self) -> Vec<StatusCount> {
        let mut counts = Vec::new();
        for (func_name, queues) in &self.counts {
            for (queue, by_status) in queues {
                for (status, (tasks, timed, seconds)) in TaskStatus::ALL.iter().zip(by_status) {
                    if *tasks != 0 {
                        counts.push(StatusCount {
                            func_name: func_name.clone(),
                            queue: queue.clone(),
                            status: status.as_str().to_owned(),
                            tasks: *tasks,
                            timed: *timed,
                            seconds: *seconds,
                        });
                    }
                }
            }
        }
        counts
    }

    /// The minutes from the one of `since` on in steps of `step` minutes, oldest first.
    pub(crate) fn minutes(&self, since: DateTime<Utc>, step: u32) -> Vec<MinuteCounts> {
        let mut found = Vec::new();
        for functions in self.minutes.range(minute_of(since)..).map(|(_, f)| f) {
            found.extend(functions.values().flat_map(HashMap::values).cloned());
        }
        super::regroup(found, since, step)
    }

    /// Forgets the minutes before the one of `before`; how many entries went.
    pub(crate) fn trim(&mut self, before: DateTime<Utc>) -> usize {
        let keep = self.minutes.split_off(&minute_of(before));
        let gone = self.minutes.values().flat_map(HashMap::values).map(HashMap::len).sum();
        self.minutes = keep;
        gone
    }

    /// Merges the minutes older than [`FINE_MINUTES`](super::FINE_MINUTES) before `now` into
    /// one entry per [`ROLLUP`](super::ROLLUP) minutes, at the span's first minute.
    pub(crate) fn roll_up(&mut self, now: DateTime<Utc>) {
        let coarse = minute_of(now) - super::FINE_MINUTES;
        let old: Vec<i64> = self
            .minutes
            .range(..coarse)
            .map(|(minute, _)| *minute)
            .filter(|minute| minute.rem_euclid(super::ROLLUP) != 0)
            .collect();
        for minute in old {
            let Some(functions) = self.minutes.remove(&minute) else { continue };
            let first = minute - minute.rem_euclid(super::ROLLUP);
            let into = self.minutes.entry(first).or_default();
            for (func_name, queues) in functions {
                let by_queue = into.entry(func_name).or_default();
                for (queue, mut counts) in queues {
                    match by_queue.get_mut(&queue) {
                        Some(sum) => sum.add(&counts),
                        None => {
                            counts.minute = minute_start(first);
                            by_queue.insert(queue, counts);
                        }
                    }
                }
            }
        }
    }

    fn count(&mut self, record: &TaskRecord, phase: Phase, sign: i64) {
        let queues = entry(&mut self.counts, &record.func_name);
        let by_status = entry(queues, &record.queue);
        let index = TaskStatus::ALL.iter().position(|s| *s == phase.status).unwrap_or_default();
        let (tasks, timed, seconds) = &mut by_status[index];
        *tasks += sign;
        if let Some(duration) = phase.duration {
            *timed += sign;
            *seconds += sign as f64 * duration;
        }
    }

    fn ended(&mut self, record: &TaskRecord, now: DateTime<Utc>) {
        let minute = self.minute(record.end_time.unwrap_or(now), record);
        match record.status {
            TaskStatus::Success => minute.succeeded += 1,
            TaskStatus::Failed => minute.failed += 1,
            TaskStatus::Interrupted => minute.interrupted += 1,
            _ => minute.cancelled += 1,
        }
        if let (Some(duration), false) = (record.duration, record.status == TaskStatus::Cancelled) {
            minute.timed += 1;
            minute.seconds += duration;
            minute.min_duration = super::lesser(minute.min_duration, Some(duration));
            minute.max_duration = super::greater(minute.max_duration, Some(duration));
            minute.histogram[bucket_of(duration)] += 1;
        }
    }

    fn minute(&mut self, at: DateTime<Utc>, record: &TaskRecord) -> &mut MinuteCounts {
        let minute = minute_of(at);
        let queues = entry(self.minutes.entry(minute).or_default(), &record.func_name);
        if !queues.contains_key(&record.queue) {
            let empty = MinuteCounts::empty(minute_start(minute), &record.func_name, &record.queue);
            queues.insert(record.queue.clone(), empty);
        }
        queues.get_mut(&record.queue).expect("inserted above")
    }
}

/// The value of `key` in `map`, inserted empty if missing; no allocation when present.
fn entry<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}
