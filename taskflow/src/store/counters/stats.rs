//! [`TaskStats`] from the counters: O(keys), whatever the number of stored tasks.

use std::collections::BTreeMap;

use super::{BUCKETS, DURATION_BOUNDS, MinuteCounts, StatusCount, greater, lesser};
use crate::store::{FunctionStats, TaskStats};

/// The statuses whose tasks ran to an end (the runs of [`FunctionStats`]).
const RUN_ENDS: [&str; 3] = ["success", "failed", "interrupted"];

impl TaskStats {
    /// Statistics from the counters: counts by status and per-function runs, successes,
    /// failures and mean duration over the stored tasks (`counts`); min, max and p95 duration
    /// over the runs that ended in `minutes` (the history window). The p95 comes from the
    /// duration histogram: it lies within the bucket that holds it, interpolated linearly.
    pub fn from_counters(counts: &[StatusCount], minutes: &[MinuteCounts]) -> TaskStats {
        let mut stats = TaskStats::zero();
        let mut functions: BTreeMap<&str, (FunctionStats, i64, f64)> = BTreeMap::new();
        for row in counts {
            let tasks = row.tasks.max(0) as u64;
            *stats.by_status.entry(row.status.clone()).or_default() += tasks;
            if !RUN_ENDS.contains(&row.status.as_str()) {
                continue;
            }
            let (function, timed, seconds) =
                functions.entry(&row.func_name).or_insert_with(|| (named(&row.func_name), 0, 0.0));
            function.runs += tasks;
            match row.status.as_str() {
                "success" => function.successes += tasks,
                "failed" => function.failures += tasks,
                _ => {}
            }
            *timed += row.timed;
            *seconds += row.seconds;
        }
        let mut ranges: BTreeMap<&str, MinuteCounts> = BTreeMap::new();
        for minute in minutes.iter().filter(|m| m.timed > 0) {
            ranges.entry(&minute.func_name).or_default().add(minute);
        }
        for (name, (mut function, timed, seconds)) in functions {
            function.success_rate = function.successes as f64 / function.runs.max(1) as f64;
            function.avg_duration = (timed > 0).then(|| seconds / timed as f64);
            if let Some(range) = ranges.get(name) {
                function.min_duration = range.min_duration;
                function.max_duration = range.max_duration;
                function.p95_duration =
                    quantile(&range.histogram, 0.95, range.min_duration, range.max_duration);
            }
            stats.functions.push(function);
        }
        stats
    }
}

/// Empty figures for the function `name`.
fn named(name: &str) -> FunctionStats {
    FunctionStats { func_name: name.to_owned(), ..FunctionStats::default() }
}

/// The `q` quantile of the durations counted in `histogram`, interpolated within its bucket
/// and kept within `[min, max]` when they are known; `None` for an empty histogram.
pub fn quantile(
    histogram: &[i64; BUCKETS],
    q: f64,
    min: Option<f64>,
    max: Option<f64>,
) -> Option<f64> {
    let total: i64 = histogram.iter().map(|n| (*n).max(0)).sum();
    if total == 0 {
        return None;
    }
    let rank = (total as f64 * q).ceil().max(1.0);
    let mut below = 0.0;
    for (bucket, n) in histogram.iter().enumerate() {
        let n = (*n).max(0) as f64;
        if n > 0.0 && below + n >= rank {
            let low = if bucket == 0 { 0.0 } else { DURATION_BOUNDS[bucket - 1] };
            let high = DURATION_BOUNDS.get(bucket).copied().or(max).unwrap_or(low);
            let low = greater(Some(low), min).unwrap_or(low);
            let high = lesser(Some(high), max).unwrap_or(high).max(low);
            return Some(low + (high - low) * (rank - below) / n);
        }
        below += n;
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(pairs: &[(usize, i64)]) -> [i64; BUCKETS] {
        let mut histogram = [0; BUCKETS];
        for (bucket, n) in pairs {
            histogram[*bucket] = *n;
        }
        histogram
    }

    #[test]
    fn the_quantile_lies_in_the_bucket_that_holds_it() {
        // 100 runs: 94 at or under 1 ms, 6 between 0.5 s and 1 s.
        let h = histogram(&[(0, 94), (9, 6)]);
        let p95 = quantile(&h, 0.95, Some(0.0002), Some(0.9)).unwrap();
        assert!(p95 > 0.5 && p95 <= 0.9, "{p95}");
        let p50 = quantile(&h, 0.5, Some(0.0002), Some(0.9)).unwrap();
        assert!((0.0002..=0.001).contains(&p50), "{p50}");
        assert_eq!(quantile(&[0; BUCKETS], 0.95, None, None), None);
        // Past the last bound: up to the known maximum.
        let long = histogram(&[(BUCKETS - 1, 1)]);
        assert_eq!(quantile(&long, 0.95, Some(4000.0), Some(4000.0)), Some(4000.0));
    }

    #[test]
    fn stats_come_from_counts_and_minutes() {
        let count = |status: &str, tasks, seconds| StatusCount {
            func_name: "f".into(),
            queue: "q".into(),
            status: status.into(),
            tasks,
            timed: if seconds > 0.0 { tasks } else { 0 },
            seconds,
        };
        let counts = [count("success", 3, 3.0), count("failed", 1, 1.0), count("pending", 5, 0.0)];
        let mut minute = MinuteCounts {
            func_name: "f".into(),
            timed: 4,
            min_duration: Some(0.5),
            max_duration: Some(2.0),
            ..MinuteCounts::default()
        };
        minute.histogram[9] = 3;
        minute.histogram[10] = 1;
        let stats = TaskStats::from_counters(&counts, &[minute]);
        assert_eq!(stats.by_status["pending"], 5);
        assert_eq!(stats.by_status["running"], 0);
        let f = &stats.functions[0];
        assert_eq!((f.runs, f.successes, f.failures), (4, 3, 1));
        assert_eq!(f.success_rate, 0.75);
        assert_eq!(f.avg_duration, Some(1.0));
        assert_eq!((f.min_duration, f.max_duration), (Some(0.5), Some(2.0)));
        assert!(f.p95_duration.unwrap() > 1.0 && f.p95_duration.unwrap() <= 2.0);
    }
}
