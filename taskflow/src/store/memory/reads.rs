//! Reads: a page of the list, and the statistics, computed from the map.

use super::*;

/// A function's figures so far, and its runs' (end time, duration).
type Outcomes = (FunctionStats, Vec<(DateTime<Utc>, f64)>);

impl MemoryStore {
    /// [`Store::list`](crate::store::Store::list) on this store.
    pub(super) async fn page(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let state = self.lock();
        let after = query.after.as_deref().map(parse_cursor).transpose()?;
        let mut found: Vec<&TaskRecord> = state
            .tasks
            .values()
            .map(|r| &**r)
            .filter(|r| query.matches(r))
            .filter(|r| {
                after.as_ref().is_none_or(|cursor| {
                    let key = (r.created_at.timestamp_micros(), r.task_id.to_string());
                    if query.oldest_first { key > *cursor } else { key < *cursor }
                })
            })
            .collect();
        found.sort_by_cached_key(|r| (r.created_at.timestamp_micros(), r.task_id.to_string()));
        if !query.oldest_first {
            found.reverse();
        }
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let more = found.len() > limit;
        let tasks: Vec<TaskRecord> = found
            .into_iter()
            .take(limit)
            .map(|r| TaskRecord { logs: Vec::new(), ..r.clone() })
            .collect();
        let next = more.then(|| tasks.last().map(cursor)).flatten();
        Ok(TaskPage { tasks, next })
    }

    /// [`Store::stats`](crate::store::Store::stats) on this store.
    pub(super) async fn compute_stats(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<TaskStats, StoreError> {
        let state = self.lock();
        let mut stats = TaskStats::zero();
        let mut functions: BTreeMap<&str, Outcomes> = BTreeMap::new();
        for record in state.tasks.values().filter(|r| since.is_none_or(|at| r.created_at >= at)) {
            *stats.by_status.entry(record.status.as_str().to_owned()).or_default() += 1;
            if !matches!(
                record.status,
                TaskStatus::Success | TaskStatus::Failed | TaskStatus::Interrupted
            ) {
                continue;
            }
            let (function, durations) = functions.entry(&record.func_name).or_default();
            function.runs += 1;
            function.successes += u64::from(record.status == TaskStatus::Success);
            function.failures += u64::from(record.status == TaskStatus::Failed);
            if let Some(duration) = record.duration {
                durations.push((record.created_at, duration));
            }
        }
        for (name, (mut function, mut durations)) in functions {
            function.func_name = name.to_owned();
            function.success_rate = function.successes as f64 / function.runs.max(1) as f64;
            if !durations.is_empty() {
                let all: Vec<f64> = durations.iter().map(|(_, d)| *d).collect();
                function.avg_duration = Some(all.iter().sum::<f64>() / all.len() as f64);
                function.min_duration = all.iter().copied().reduce(f64::min);
                function.max_duration = all.iter().copied().reduce(f64::max);
                durations.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
                let mut latest: Vec<f64> =
                    durations.iter().take(P95_WINDOW).map(|(_, d)| *d).collect();
                function.p95_duration = p95(&mut latest);
            }
            stats.functions.push(function);
        }
        Ok(stats)
    }
}

/// A list page's cursor: the last record's creation (micros) and id.
fn cursor(record: &TaskRecord) -> String {
    format!("{}_{}", record.created_at.timestamp_micros(), record.task_id)
}

/// A cursor back to its creation time and id.
fn parse_cursor(text: &str) -> Result<(i64, String), StoreError> {
    let bad = || StoreError::InvalidCursor(text.to_owned());
    let (micros, id) = text.split_once('_').ok_or_else(bad)?;
    Ok((micros.parse().map_err(|_| bad())?, id.to_owned()))
}
