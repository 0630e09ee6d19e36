//! The counters' changes gathered while a transaction runs, by the statements that change
//! tasks (each knows the rows it changes), and added to the stored counters once, before the
//! transaction commits: a batch of a thousand outcomes costs a few upserts, not thousands,
//! and no trigger runs on the task table.

use std::collections::HashMap;

use super::{MinuteCounts, StatusCount, bucket_of, minute_start};

/// A task's counted state: its status as stored and its duration.
pub(crate) type State<'a> = (&'a str, Option<f64>);

/// The statuses an ended task may have.
const ENDED: [&str; 4] = ["success", "failed", "interrupted", "cancelled"];

/// Whether `status` (as stored) is an ending one.
pub(crate) fn is_ended(status: &str) -> bool {
    ENDED.contains(&status)
}

/// Counter changes not stored yet: count deltas by function, queue and status, and minute
/// events by minute, function and queue. Lookups borrow the names, so recording a change
/// allocates nothing once its keys have been seen. A clone is a savepoint's copy: a writer
/// that rolls back to a savepoint puts it back.
#[derive(Clone, Debug, Default)]
pub(crate) struct Moves {
    /// Function, queue, status: tasks, timed, seconds.
    counts: Nested<Nested<Nested<(i64, i64, f64)>>>,
    /// Minute, function, queue.
    minutes: HashMap<i64, Nested<Nested<MinuteCounts>>>,
    /// Whether anything was recorded since the last take.
    touched: bool,
}

/// A map by name.
type Nested<V> = HashMap<String, V>;

/// The value of `key` in `map`, inserted empty if missing; no allocation when present.
fn entry<'m, V: Default>(map: &'m mut Nested<V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

impl Moves {
    /// Whether nothing is gathered.
    pub(crate) fn is_empty(&self) -> bool {
        !self.touched
    }

    /// Forgets what is gathered (its transaction rolled back).
    #[cfg(feature = "sqlite")]
    pub(crate) fn clear(&mut self) {
        self.take();
    }

    /// A task of `func_name` in `queue` stored in `state`, created in unix minute `created`;
    /// one stored ended ends at `ended` (unix minute).
    pub(crate) fn inserted(
        &mut self,
        func_name: &str,
        queue: &str,
        state: State<'_>,
        created: i64,
        ended: i64,
    ) {
        self.count(func_name, queue, state, 1);
        self.minute(created, func_name, queue).enqueued += 1;
        if is_ended(state.0) {
            self.ended(ended, func_name, queue, state);
        }
    }

    /// A task of `func_name` in `queue`, in `state`, deleted.
    pub(crate) fn deleted(&mut self, func_name: &str, queue: &str, state: State<'_>) {
        self.count(func_name, queue, state, -1);
    }

    /// A task of `func_name` in `queue` changed from `before` to `after`; when that ends it,
    /// it ended in unix minute `at`.
    pub(crate) fn changed(
        &mut self,
        func_name: &str,
        queue: &str,
        before: State<'_>,
        after: State<'_>,
        at: i64,
    ) {
        if before.0 == after.0 && same(before.1, after.1) {
            return;
        }
        self.count(func_name, queue, before, -1);
        self.count(func_name, queue, after, 1);
        if matches!(before.0, "pending" | "running") && is_ended(after.0) {
            self.ended(at, func_name, queue, after);
        }
    }

    /// `retries` retries of a task of `func_name` in `queue` begun in unix minute `at`.
    pub(crate) fn retried(&mut self, func_name: &str, queue: &str, retries: i64, at: i64) {
        if retries > 0 {
            self.minute(at, func_name, queue).retried += retries;
        }
    }

    /// Takes what is gathered: count deltas and minute events (in no particular order). The
    /// keys stay, zeroed, so that the next transaction's changes allocate nothing.
    pub(crate) fn take(&mut self) -> (Vec<StatusCount>, Vec<MinuteCounts>) {
        let mut counts = Vec::new();
        for (func_name, queues) in &mut self.counts {
            for (queue, statuses) in queues {
                for (status, sums) in statuses {
                    let (tasks, timed, seconds) = std::mem::take(sums);
                    if tasks != 0 || timed != 0 {
                        counts.push(StatusCount {
                            func_name: func_name.clone(),
                            queue: queue.clone(),
                            status: status.clone(),
                            tasks,
                            timed,
                            seconds,
                        });
                    }
                }
            }
        }
        let minutes = self
            .minutes
            .drain()
            .flat_map(|(_, functions)| functions.into_values().flat_map(HashMap::into_values))
            .collect();
        self.touched = false;
        (counts, minutes)
    }

    fn count(&mut self, func_name: &str, queue: &str, (status, duration): State<'_>, sign: i64) {
        self.touched = true;
        let statuses = entry(entry(&mut self.counts, func_name), queue);
        let (tasks, timed, seconds) = entry(statuses, status);
        *tasks += sign;
        if let Some(duration) = duration {
            *timed += sign;
            *seconds += sign as f64 * duration;
        }
    }

    fn ended(&mut self, at: i64, func_name: &str, queue: &str, (status, duration): State<'_>) {
        let minute = self.minute(at, func_name, queue);
        match status {
            "success" => minute.succeeded += 1,
            "failed" => minute.failed += 1,
            "interrupted" => minute.interrupted += 1,
            _ => minute.cancelled += 1,
        }
        if let (Some(duration), false) = (duration, status == "cancelled") {
            minute.timed += 1;
            minute.seconds += duration;
            minute.min_duration = super::lesser(minute.min_duration, Some(duration));
            minute.max_duration = super::greater(minute.max_duration, Some(duration));
            minute.histogram[bucket_of(duration)] += 1;
        }
    }

    fn minute(&mut self, at: i64, func_name: &str, queue: &str) -> &mut MinuteCounts {
        self.touched = true;
        let queues = entry(self.minutes.entry(at).or_default(), func_name);
        if !queues.contains_key(queue) {
            queues
                .insert(queue.to_owned(), MinuteCounts::empty(minute_start(at), func_name, queue));
        }
        queues.get_mut(queue).expect("inserted above")
    }
}

/// Whether two stored durations are the same (both absent, or equal).
fn same(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b || (a.is_nan() && b.is_nan()),
        (a, b) => a.is_none() && b.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_moves_its_count_and_ends_once() {
        let mut moves = Moves::default();
        moves.inserted("f", "q", ("pending", None), 10, 10);
        moves.changed("f", "q", ("pending", None), ("running", None), 11);
        moves.changed("f", "q", ("running", None), ("success", Some(0.2)), 12);
        moves.changed("f", "q", ("success", Some(0.2)), ("success", Some(0.2)), 13);
        let (mut counts, mut minutes) = moves.take();
        counts.retain(|count| count.tasks != 0);
        assert_eq!(counts.len(), 1);
        assert_eq!((counts[0].status.as_str(), counts[0].timed), ("success", 1));
        minutes.sort_by_key(|minute| minute.minute);
        assert_eq!(minutes.len(), 2);
        assert_eq!((minutes[0].enqueued, minutes[1].succeeded), (1, 1));
        assert_eq!(minutes[1].histogram[bucket_of(0.2)], 1);
        assert!(moves.is_empty());
    }

    #[test]
    fn a_task_stored_ended_counts_its_end_and_a_cancel_is_untimed() {
        let mut moves = Moves::default();
        moves.inserted("f", "q", ("failed", Some(1.0)), 5, 7);
        moves.changed("f", "q", ("pending", Some(3.0)), ("cancelled", Some(3.0)), 8);
        let (_, minutes) = moves.take();
        let at = |minute: i64| minutes.iter().find(|m| m.minute == minute_start(minute)).unwrap();
        assert_eq!((at(7).failed, at(7).timed), (1, 1));
        assert_eq!((at(8).cancelled, at(8).timed), (1, 0));
    }
}
