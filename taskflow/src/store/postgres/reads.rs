//! Reads: one task (or the task an alias names), a page of the list, and the statistics.

use super::*;

impl PostgresStore {
    /// [`Store::get`](crate::store::Store::get) on this store.
    pub(super) async fn load(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let uuid = *id.as_uuid();
        let sql = format!(
            "SELECT {COLUMNS} FROM taskflow_tasks WHERE id = $1
             UNION ALL
             SELECT {COLUMNS} FROM taskflow_tasks
             WHERE id = (SELECT task_id FROM taskflow_aliases WHERE alias = $1)
             LIMIT 1"
        );
        let rows = self.query(&sql, &[&uuid]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let mut record = row::decode(row)?;
        let logs = self
            .query(
                "SELECT at, level, message, attempt, fields FROM taskflow_logs
                 WHERE task_id = $1 ORDER BY seq",
                &[record.task_id.as_uuid()],
            )
            .await?;
        record.logs = logs.iter().map(row::decode_log).collect::<Result<_, _>>()?;
        Ok(Some(record))
    }

    /// [`Store::resolve`](crate::store::Store::resolve) on this store.
    pub(super) async fn resolve_alias(&self, id: &TaskId) -> Result<Option<TaskId>, StoreError> {
        let rows = self
            .query(
                "SELECT id FROM taskflow_tasks WHERE id = $1
                 UNION ALL
                 SELECT t.id FROM taskflow_aliases a JOIN taskflow_tasks t ON t.id = a.task_id
                 WHERE a.alias = $1
                 LIMIT 1",
                &[id.as_uuid()],
            )
            .await?;
        Ok(rows.first().map(|row| TaskId::from(row.get::<_, uuid::Uuid>(0))))
    }

    /// [`Store::list`](crate::store::Store::list) on this store.
    pub(super) async fn page(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let mut values: Vec<Box<dyn ToSql + Send + Sync>> = Vec::new();
        let mut filters: Vec<String> = Vec::new();
        let mut bind = |value: Box<dyn ToSql + Send + Sync>| {
            values.push(value);
            format!("${}", values.len())
        };
        if let Some(status) = query.status {
            filters.push(format!("status = {}", bind(Box::new(status.as_str().to_owned()))));
        }
        if let Some(func_name) = &query.func_name {
            filters.push(format!("func_name = {}", bind(Box::new(func_name.clone()))));
        }
        if let Some(queue) = &query.queue {
            filters.push(format!("queue = {}", bind(Box::new(queue.clone()))));
        }
        if let Some((key, value)) = &query.tag {
            let (k, v) = (bind(Box::new(key.clone())), bind(Box::new(value.clone())));
            filters.push(format!("tags ->> {k} = {v}"));
        }
        if let Some(search) = &query.search {
            let escaped = crate::store::like_escape(search);
            let prefix = bind(Box::new(format!("{escaped}%")));
            let suffix = bind(Box::new(format!("%{escaped}")));
            let inside = bind(Box::new(format!("%{escaped}%")));
            filters.push(format!(
                "(id::TEXT LIKE {prefix} OR id::TEXT LIKE {suffix} OR func_name LIKE {inside})"
            ));
        }
        if let Some(since) = query.since {
            filters.push(format!("created_at >= {}", bind(Box::new(since))));
        }
        if let Some(until) = query.until {
            filters.push(format!("created_at < {}", bind(Box::new(until))));
        }
        if let Some(after) = &query.after {
            let seq: i64 = after.parse().map_err(|_| StoreError::InvalidCursor(after.clone()))?;
            let op = if query.oldest_first { ">" } else { "<" };
            filters.push(format!("seq {op} {}", bind(Box::new(seq))));
        }
        let mut sql = format!("SELECT {COLUMNS}, seq FROM taskflow_tasks");
        if !filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&filters.join(" AND "));
        }
        let order = if query.oldest_first { "ASC" } else { "DESC" };
        let fetch = bind(Box::new(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" ORDER BY seq {order} LIMIT {fetch}"));
        let refs: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
        let mut rows = self.query(&sql, &refs).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next =
            if more { rows.last().map(|row| row.get::<_, i64>(26).to_string()) } else { None };
        let tasks = crate::store::readable(&rows, row::decode)?;
        Ok(TaskPage { tasks, next })
    }

    /// [`Store::stats`](crate::store::Store::stats) on this store.
    pub(super) async fn compute_stats(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<TaskStats, StoreError> {
        // `None` binds NULL: no lower bound.
        let counts = self
            .query(
                "SELECT status, count(*) FROM taskflow_tasks WHERE ($1::TIMESTAMPTZ IS NULL OR created_at >= $1) GROUP BY status",
                &[&since],
            )
            .await?;
        let functions = self
            .query(
                "SELECT func_name, count(*), count(*) FILTER (WHERE status = 'success'),
                    count(*) FILTER (WHERE status = 'failed'),
                    avg(duration), min(duration), max(duration)
                 FROM taskflow_tasks
                 WHERE status IN ('success', 'failed', 'interrupted')
                   AND ($1::TIMESTAMPTZ IS NULL OR created_at >= $1)
                 GROUP BY func_name ORDER BY func_name",
                &[&since],
            )
            .await?;
        let mut stats = TaskStats::zero();
        for row in counts {
            let count: i64 = row.get(1);
            stats.by_status.insert(row.get(0), count.max(0) as u64);
        }
        for row in functions {
            let name: String = row.get(0);
            let p95 = self
                .query(
                    "SELECT percentile_disc(0.95) WITHIN GROUP (ORDER BY duration) FROM (
                        SELECT duration FROM taskflow_tasks
                        WHERE func_name = $1 AND duration IS NOT NULL
                          AND ($2::TIMESTAMPTZ IS NULL OR created_at >= $2)
                          AND status IN ('success', 'failed', 'interrupted')
                        ORDER BY seq DESC LIMIT $3) latest",
                    &[&name, &since, &(P95_WINDOW as i64)],
                )
                .await?;
            let (runs, successes, failures): (i64, i64, i64) = (row.get(1), row.get(2), row.get(3));
            stats.functions.push(FunctionStats {
                func_name: name,
                runs: runs.max(0) as u64,
                successes: successes.max(0) as u64,
                failures: failures.max(0) as u64,
                success_rate: successes as f64 / runs.max(1) as f64,
                avg_duration: row.get(4),
                min_duration: row.get(5),
                max_duration: row.get(6),
                p95_duration: p95.first().and_then(|r| r.get(0)),
            });
        }
        Ok(stats)
    }
}
