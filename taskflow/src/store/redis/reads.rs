//! Reads: one task (or the task an alias names), a page of the list, and the statistics.

use super::*;

impl RedisStore {
    pub(super) async fn fields(&self, id: &str) -> Result<HashMap<String, String>, StoreError> {
        let mut conn = self.conn.clone();
        let flat: Vec<Vec<u8>> =
            conn.hgetall(self.key(&format!("t:{id}"))).await.map_err(unavailable)?;
        pairs(id, flat)
    }

    /// The records of `ids`, in order, skipping any that vanished.
    pub(super) async fn records(&self, ids: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        let mut records = Vec::new();
        let mut conn = self.conn.clone();
        for chunk in ids.chunks(500) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hgetall(self.key(&format!("t:{id}")));
            }
            let all: Vec<Vec<Vec<u8>>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
            let present = chunk.iter().zip(all).filter(|(_, flat)| !flat.is_empty());
            records.extend(crate::store::readable(present, |(id, flat)| {
                decode(id, &pairs(id, flat)?)
            })?);
        }
        Ok(records)
    }

    /// [`Store::get`](crate::store::Store::get) on this store.
    pub(super) async fn load(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let mut key = id.to_string();
        let mut fields = self.fields(&key).await?;
        if fields.is_empty() {
            let mut conn = self.conn.clone();
            let holder: Option<String> =
                conn.get(self.key(&format!("a:{key}"))).await.map_err(unavailable)?;
            let Some(holder) = holder else { return Ok(None) };
            fields = self.fields(&holder).await?;
            if fields.is_empty() {
                return Ok(None);
            }
            key = holder;
        }
        let mut record = decode(&key, &fields)?;
        let mut conn = self.conn.clone();
        let logs: Vec<String> =
            conn.lrange(self.key(&format!("l:{key}")), 0, -1).await.map_err(unavailable)?;
        for line in logs {
            let entry: LogEntry = serde_json::from_str(&line).map_err(|e| StoreError::Corrupt {
                id: key.clone(),
                reason: format!("log line: {e}"),
            })?;
            record.logs.push(entry);
        }
        Ok(Some(record))
    }

    /// [`Store::resolve`](crate::store::Store::resolve) on this store.
    pub(super) async fn resolve_alias(&self, id: &TaskId) -> Result<Option<TaskId>, StoreError> {
        let mut conn = self.conn.clone();
        let key = id.to_string();
        let exists: bool = conn.exists(self.key(&format!("t:{key}"))).await.map_err(unavailable)?;
        if exists {
            return Ok(Some(*id));
        }
        let holder: Option<String> =
            conn.get(self.key(&format!("a:{key}"))).await.map_err(unavailable)?;
        let Some(holder) = holder else { return Ok(None) };
        let exists: bool =
            conn.exists(self.key(&format!("t:{holder}"))).await.map_err(unavailable)?;
        let parsed = holder.parse().map_err(|_| StoreError::Corrupt {
            id: key,
            reason: format!("alias points at `{holder}`, not a task id"),
        })?;
        Ok(exists.then_some(parsed))
    }

    /// [`Store::list`](crate::store::Store::list) on this store.
    pub(super) async fn page(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let index = match (&query.status, &query.func_name) {
            (Some(status), _) => self.key(&format!("s:{}", status.as_str())),
            (None, Some(func)) => self.key(&format!("f:{func}")),
            (None, None) => self.key("all"),
        };
        let mut bound: Option<i64> = query
            .after
            .as_ref()
            .map(|a| a.parse().map_err(|_| StoreError::InvalidCursor(a.clone())))
            .transpose()?;
        let mut found: Vec<(TaskRecord, i64)> = Vec::new();
        // One page and the row that tells whether another follows, when nothing is filtered
        // out; more per round trip, up to 500, when filters may drop some.
        let batch = (limit + 1).clamp(50, 500) as isize;
        let mut conn = self.conn.clone();
        loop {
            // The next batch of the index beyond the bound, in the query's order.
            let batch: Vec<(String, f64)> = if query.oldest_first {
                let min = bound.map_or("-inf".to_owned(), |b| format!("({b}"));
                conn.zrangebyscore_limit_withscores(&index, min, "+inf", 0, batch).await
            } else {
                let max = bound.map_or("+inf".to_owned(), |b| format!("({b}"));
                conn.zrevrangebyscore_limit_withscores(&index, max, "-inf", 0, batch).await
            }
            .map_err(unavailable)?;
            let Some(last) = batch.last() else { break };
            bound = Some(last.1 as i64);
            let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
            let seqs: HashMap<String, i64> =
                batch.iter().map(|(id, s)| (id.clone(), *s as i64)).collect();
            for record in self.records(&ids).await? {
                if query.matches(&record) {
                    let seq = seqs[&record.task_id.to_string()];
                    found.push((record, seq));
                }
            }
            if found.len() > limit {
                break;
            }
        }
        let more = found.len() > limit;
        found.truncate(limit);
        let next = if more { found.last().map(|(_, seq)| seq.to_string()) } else { None };
        Ok(TaskPage { tasks: found.into_iter().map(|(r, _)| r).collect(), next })
    }

    /// [`Store::stats`](crate::store::Store::stats) on this store.
    pub(super) async fn compute_stats(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<TaskStats, StoreError> {
        let mut stats = TaskStats::zero();
        let mut conn = self.conn.clone();
        let mut functions: Vec<String> =
            conn.smembers(self.key("funcs")).await.map_err(unavailable)?;
        functions.sort();
        for func in functions {
            let ids: Vec<String> =
                conn.zrevrange(self.key(&format!("f:{func}")), 0, -1).await.map_err(unavailable)?;
            let mut function = FunctionStats { func_name: func.clone(), ..Default::default() };
            let mut durations = Vec::new();
            for chunk in ids.chunks(500) {
                for record in self.records(chunk).await? {
                    if since.is_some_and(|at| record.created_at < at) {
                        continue;
                    }
                    *stats.by_status.entry(record.status.as_str().to_owned()).or_default() += 1;
                    if !matches!(
                        record.status,
                        TaskStatus::Success | TaskStatus::Failed | TaskStatus::Interrupted
                    ) {
                        continue;
                    }
                    function.runs += 1;
                    function.successes += u64::from(record.status == TaskStatus::Success);
                    function.failures += u64::from(record.status == TaskStatus::Failed);
                    if let Some(duration) = record.duration {
                        durations.push(duration);
                    }
                }
            }
            if function.runs == 0 {
                continue;
            }
            function.success_rate = function.successes as f64 / function.runs as f64;
            if !durations.is_empty() {
                function.avg_duration =
                    Some(durations.iter().sum::<f64>() / durations.len() as f64);
                function.min_duration = durations.iter().copied().reduce(f64::min);
                function.max_duration = durations.iter().copied().reduce(f64::max);
                let mut latest: Vec<f64> = durations.iter().take(P95_WINDOW).copied().collect();
                function.p95_duration = p95(&mut latest);
            }
            stats.functions.push(function);
        }
        Ok(stats)
    }
}
