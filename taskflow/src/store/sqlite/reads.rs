//! Reads on the reader connection (or the writer, for a task it may still hold staged): one
//! task, a page of the list, and the statistics.

use super::*;

impl SqliteStore {
    /// [`Store::get`](crate::store::Store::get) on this store.
    pub(super) async fn load(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.to_string();
        let (task, logs) = self
            .writer
            .call(move |conn| {
                let task = select(conn, SELECT_ONE, [&id], COLUMN_COUNT)?.pop();
                let logs = match task {
                    Some(_) => select(conn, SELECT_LOGS, [&id], 6)?,
                    None => Vec::new(),
                };
                Ok((task, logs))
            })
            .await?;
        let Some(task) = task else { return Ok(None) };
        let mut record = row::decode(&task, false)?;
        record.logs = logs.iter().map(row::decode_log).collect::<Result<_, _>>()?;
        Ok(Some(record))
    }

    /// [`Store::list`](crate::store::Store::list) on this store.
    pub(super) async fn page(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let (sql, values) = query::page(query, limit)?;
        let mut rows = self
            .reader
            .call(move |conn| select(conn, &sql, params_from_iter(values), COLUMN_COUNT + 1))
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more { rows.last().map(|row| row.seq()).transpose()? } else { None };
        let tasks = crate::store::readable(&rows, |row| row::decode(row, false))?;
        Ok(TaskPage { tasks, next: next.map(|seq| seq.to_string()) })
    }

    /// [`Store::stats`](crate::store::Store::stats) on this store.
    pub(super) async fn compute_stats(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<TaskStats, StoreError> {
        let window = since.is_some();
        let since = since.map_or(i64::MIN, micros);
        let (counts, functions, p95s) = self
            .reader
            .call(move |conn| {
                let counts = if window {
                    select(
                        conn,
                        "SELECT status, count(*) FROM tasks WHERE created_at >= ?1 GROUP BY status",
                        [since],
                        2,
                    )?
                } else {
                    // Counted from the status index alone.
                    select(conn, "SELECT status, count(*) FROM tasks GROUP BY status", [], 2)?
                };
                let functions = select(
                    conn,
                    "SELECT func_name, count(*), sum(status = 'success'), sum(status = 'failed'),
                        avg(duration), min(duration), max(duration)
                     FROM tasks
                     WHERE status IN ('success', 'failed', 'interrupted') AND created_at >= ?1
                     GROUP BY func_name ORDER BY func_name",
                    [since],
                    7,
                )?;
                let mut p95s = Vec::new();
                for function in &functions {
                    let name = function.text_lossy(0);
                    let durations = select(
                        conn,
                        "SELECT duration FROM tasks
                         WHERE func_name = ?1 AND duration IS NOT NULL AND created_at >= ?2
                           AND status IN ('success', 'failed', 'interrupted')
                         ORDER BY seq DESC LIMIT ?3",
                        params![name, since, P95_WINDOW as i64],
                        1,
                    )?;
                    // A damaged duration (text, a blob) is left out of the percentile.
                    let mut durations: Vec<f64> =
                        durations.iter().filter_map(|row| row.value(0).ok()).collect();
                    p95s.push(p95(&mut durations));
                }
                Ok((counts, functions, p95s))
            })
            .await?;
        let mut stats = TaskStats::zero();
        for row in counts {
            let count: i64 = row.value(1)?;
            *stats.by_status.entry(row.text_lossy(0)).or_default() += count.max(0) as u64;
        }
        for (row, p95_duration) in functions.iter().zip(p95s) {
            let runs: i64 = row.value(1)?;
            let successes: i64 = row.value(2)?;
            let failures: i64 = row.value(3)?;
            stats.functions.push(FunctionStats {
                func_name: row.text_lossy(0),
                runs: runs.max(0) as u64,
                successes: successes.max(0) as u64,
                failures: failures.max(0) as u64,
                success_rate: successes as f64 / runs.max(1) as f64,
                // min and max of a column holding a damaged text value may be that text.
                avg_duration: row.value(4).ok().flatten(),
                min_duration: row.value(5).ok().flatten(),
                max_duration: row.value(6).ok().flatten(),
                p95_duration,
            });
        }
        Ok(stats)
    }
}

/// Runs `sql` with `params` and copies out every row's first `columns` values.
pub(super) fn select(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    columns: usize,
) -> Result<Vec<RawRow>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(unavailable)?;
    let mut rows = statement.query(params).map_err(unavailable)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        found.push(RawRow::read(row, columns).map_err(unavailable)?);
    }
    Ok(found)
}

const SELECT_ONE: &str = concat!("SELECT ", columns!(), " FROM tasks WHERE id = ?1");
const SELECT_LOGS: &str =
    concat!("SELECT task_id, ", log_columns!(), " FROM task_logs WHERE task_id = ?1 ORDER BY seq");
