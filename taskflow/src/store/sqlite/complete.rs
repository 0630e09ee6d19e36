//! Fenced changes to running tasks and their logs, on the writer thread (so concurrent
//! outcomes share a commit).

use super::*;

impl SqliteStore {
    /// [`Store::transition`](crate::store::Store::transition) on this store.
    pub(super) async fn apply(
        &self,
        id: &TaskId,
        lease: &Lease,
        change: Transition,
    ) -> Result<bool, StoreError> {
        let task_id = *id;
        let owner = lease.owner.to_string();
        let seq = self.active.get(id);
        let ends = matches!(change, Transition::Finished { .. });
        let releases_key = matches!(
            change,
            Transition::Finished { status: TaskStatus::Failed | TaskStatus::Cancelled, .. }
        );
        let keys = Arc::clone(&self.keys);
        let applied = self
            .writer
            .call(move |conn| {
                let id = task_id.to_string();
                let (sql, values): (&str, Vec<Sql>) = match change {
                    Transition::Finished {
                        status,
                        end_time,
                        retries_used,
                        result,
                        error,
                        stacktrace,
                    } => (
                        concat!(
                            "UPDATE tasks SET status = ?4, end_time = ?5,
                                duration = (?5 - start_time) / 1000000.0, retries_used = ?6,
                                result = ?7,
                                stacktrace = CASE WHEN ?8 IS NULL THEN stacktrace ELSE ?9 END,
                                error = COALESCE(?8, error),
                                lease_owner = NULL, lease_expires_at = NULL
                             WHERE seq = ",
                            row_of!(3),
                            " AND id = ?1 AND status = 'running' AND lease_owner = ?2"
                        ),
                        vec![
                            status.as_str().to_owned().into(),
                            micros(end_time).into(),
                            retries_used.into(),
                            result.as_ref().map_or(Sql::Null, super::row::stored_value),
                            error.into(),
                            stacktrace.into(),
                        ],
                    ),
                    Transition::Reschedule { due, retries_used, error, stacktrace } => (
                        concat!(
                            "UPDATE tasks SET status = 'pending', scheduled_at = ?4,
                                wait_until = ?4, retries_used = ?5,
                                stacktrace = CASE WHEN ?6 IS NULL THEN stacktrace ELSE ?7 END,
                                error = COALESCE(?6, error),
                                lease_owner = NULL, lease_expires_at = NULL
                             WHERE seq = ",
                            row_of!(3),
                            " AND id = ?1 AND status = 'running' AND lease_owner = ?2"
                        ),
                        vec![
                            micros(due).into(),
                            retries_used.into(),
                            error.into(),
                            stacktrace.into(),
                        ],
                    ),
                    Transition::Requeue => (
                        concat!(
                            "UPDATE tasks SET status = 'pending', lease_owner = NULL,
                                lease_expires_at = NULL
                             WHERE seq = ",
                            row_of!(3),
                            " AND id = ?1 AND status = 'running' AND lease_owner = ?2"
                        ),
                        Vec::new(),
                    ),
                };
                let mut statement = conn.prepare_cached(sql).map_err(unavailable)?;
                let fixed = [Sql::Text(id.clone()), Sql::Text(owner), seq.into()];
                let changed = statement
                    .execute(params_from_iter(fixed.iter().chain(&values)))
                    .map_err(unavailable)?;
                if changed == 0 || !releases_key {
                    return Ok(changed > 0);
                }
                let key: Option<String> = conn
                    .query_row("SELECT idempotency_key FROM tasks WHERE id = ?1", [&id], |r| {
                        r.get(0)
                    })
                    .map_err(unavailable)?;
                if let Some(key) = key {
                    release(&keys, &key, &task_id);
                }
                Ok(true)
            })
            .await?;
        if ends {
            self.active.forget(id);
        }
        Ok(applied)
    }

    /// [`Store::append_logs`](crate::store::Store::append_logs) on this store.
    pub(super) async fn push_logs(
        &self,
        id: &TaskId,
        logs: Vec<LogEntry>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let rows: Vec<[Sql; 5]> = logs.iter().map(row::encode_log).collect();
        self.writer
            .call(move |conn| {
                const SQL: &str = concat!(
                    "INSERT INTO task_logs (task_id, ",
                    log_columns!(),
                    ") SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM tasks WHERE id = ?1)"
                );
                let mut statement = conn.prepare_cached(SQL).map_err(unavailable)?;
                for [at, level, message, attempt, fields] in rows {
                    statement
                        .execute(params![id, at, level, message, attempt, fields])
                        .map_err(unavailable)?;
                }
                Ok(())
            })
            .await
    }
}
