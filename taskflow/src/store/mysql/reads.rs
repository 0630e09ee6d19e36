//! Reads: one task (or the task an alias names), a page of the list, and the statistics.

use super::*;

impl MysqlStore {
    /// [`Store::get`](crate::store::Store::get) on this store.
    pub(super) async fn load(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM taskflow_tasks WHERE id = ?
             UNION ALL
             SELECT {COLUMNS} FROM taskflow_tasks
             WHERE id = (SELECT task_id FROM taskflow_aliases WHERE alias = ?)
             LIMIT 1"
        );
        let rows = self.rows(&sql, vec![s(&id.to_string()), s(&id.to_string())]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let mut record = row.record()?;
        let logs = self
            .rows(
                "SELECT at, level, message, attempt, fields FROM taskflow_logs
                 WHERE task_id = ? ORDER BY seq",
                vec![s(&record.task_id.to_string())],
            )
            .await?;
        for log in logs {
            let level = log.required(log.text(1, "level")?, "level")?;
            let fields = log.json(4, "fields")?.unwrap_or_default();
            record.logs.push(LogEntry {
                at: log.required(log.time(0, "at")?, "at")?,
                level: LogLevel::parse(&level).ok_or_else(|| log.corrupt("level", &level))?,
                message: log.required(log.text(2, "message")?, "message")?,
                attempt: log.count(3, "attempt")?,
                fields: match fields {
                    serde_json::Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                },
            });
        }
        Ok(Some(record))
    }

    /// [`Store::resolve`](crate::store::Store::resolve) on this store.
    pub(super) async fn resolve_alias(&self, id: &TaskId) -> Result<Option<TaskId>, StoreError> {
        let rows = self
            .rows(
                "SELECT id FROM taskflow_tasks WHERE id = ?
                 UNION ALL
                 SELECT t.id FROM taskflow_aliases a JOIN taskflow_tasks t ON t.id = a.task_id
                 WHERE a.alias = ?
                 LIMIT 1",
                vec![s(&id.to_string()), s(&id.to_string())],
            )
            .await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let text = row.required(row.text(0, "id")?, "id")?;
        text.parse().map(Some).map_err(|_| row.corrupt("id", &text))
    }

    /// [`Store::list`](crate::store::Store::list) on this store.
    pub(super) async fn page(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let mut values = Vec::new();
        let mut filters = Vec::new();
        if let Some(status) = query.status {
            filters.push("status = ?");
            values.push(s(status.as_str()));
        }
        if let Some(func_name) = &query.func_name {
            filters.push("func_name = ?");
            values.push(s(func_name));
        }
        if let Some(queue) = &query.queue {
            filters.push("queue = ?");
            values.push(s(queue));
        }
        if let Some((key, value)) = &query.tag {
            filters.push("JSON_UNQUOTE(JSON_EXTRACT(tags, ?)) = ?");
            let path = crate::store::tag_path(key);
            values.push(s(&path));
            values.push(s(value));
        }
        if let Some(search) = &query.search {
            let escaped = crate::store::like_escape(search);
            filters.push("(id LIKE ? OR id LIKE ? OR func_name LIKE ?)");
            values.push(s(&format!("{escaped}%")));
            values.push(s(&format!("%{escaped}")));
            values.push(s(&format!("%{escaped}%")));
        }
        if let Some(since) = query.since {
            filters.push("created_at >= ?");
            values.push(Value::Int(micros(since)));
        }
        if let Some(until) = query.until {
            filters.push("created_at < ?");
            values.push(Value::Int(micros(until)));
        }
        if let Some(after) = &query.after {
            let seq: i64 = after.parse().map_err(|_| StoreError::InvalidCursor(after.clone()))?;
            filters.push(if query.oldest_first { "seq > ?" } else { "seq < ?" });
            values.push(Value::Int(seq));
        }
        let mut sql = format!("SELECT {COLUMNS}, seq FROM taskflow_tasks");
        if !filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&filters.join(" AND "));
        }
        let order = if query.oldest_first { "ASC" } else { "DESC" };
        sql.push_str(&format!(" ORDER BY seq {order} LIMIT ?"));
        values.push(Value::UInt(limit.saturating_add(1) as u64));
        let mut rows = self.rows(&sql, values).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = match (more, rows.last()) {
            (true, Some(row)) => row.int(26, "seq")?.map(|seq| seq.to_string()),
            _ => None,
        };
        let tasks = crate::store::readable(&rows, Cells::record)?;
        Ok(TaskPage { tasks, next })
    }

    /// [`Store::stats`](crate::store::Store::stats) on this store.
    pub(super) async fn compute_stats(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<TaskStats, StoreError> {
        let since = since.map_or(i64::MIN, micros);
        let counts = self
            .rows(
                "SELECT status, count(*) FROM taskflow_tasks WHERE created_at >= ? GROUP BY status",
                vec![Value::Int(since)],
            )
            .await?;
        let functions = self
            .rows(
                "SELECT func_name, count(*), sum(status = 'success'), sum(status = 'failed'),
                    avg(duration), min(duration), max(duration)
                 FROM taskflow_tasks
                 WHERE status IN ('success', 'failed', 'interrupted') AND created_at >= ?
                 GROUP BY func_name ORDER BY func_name",
                vec![Value::Int(since)],
            )
            .await?;
        let mut stats = TaskStats::zero();
        for row in counts {
            let status = row.required(row.text(0, "status")?, "status")?;
            stats.by_status.insert(status, row.int(1, "count")?.unwrap_or(0).max(0) as u64);
        }
        for row in functions {
            let name = row.required(row.text(0, "func_name")?, "func_name")?;
            let durations = self
                .rows(
                    "SELECT duration FROM taskflow_tasks
                     WHERE func_name = ? AND duration IS NOT NULL AND created_at >= ?
                       AND status IN ('success', 'failed', 'interrupted')
                     ORDER BY seq DESC LIMIT ?",
                    vec![s(&name), Value::Int(since), Value::UInt(P95_WINDOW as u64)],
                )
                .await?;
            let mut durations: Vec<f64> =
                durations.iter().filter_map(|r| r.real(0, "duration").ok().flatten()).collect();
            let runs = row.int(1, "runs")?.unwrap_or(0).max(0) as u64;
            let successes = row.int(2, "successes")?.unwrap_or(0).max(0) as u64;
            stats.functions.push(FunctionStats {
                func_name: name,
                runs,
                successes,
                failures: row.int(3, "failures")?.unwrap_or(0).max(0) as u64,
                success_rate: successes as f64 / runs.max(1) as f64,
                avg_duration: row.real(4, "avg")?,
                min_duration: row.real(5, "min")?,
                max_duration: row.real(6, "max")?,
                p95_duration: p95(&mut durations),
            });
        }
        Ok(stats)
    }
}
