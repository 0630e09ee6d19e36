//! Fenced changes to running tasks and their logs, on the writer thread (so concurrent
//! outcomes share a commit).

use super::active::Running;
use super::counters::returned;
use super::*;
use crate::store::counters::minute_of;

/// The running row a change applies to, as the counters need it: its `seq`, function, queue,
/// duration, retries used, idempotency key and start.
const BEFORE: &str = concat!(
    "SELECT seq, func_name, queue, duration, retries_used, idempotency_key, start_time FROM tasks
     WHERE seq = ",
    row_of!(3),
    " AND id = ?1 AND status = 'running' AND lease_owner = ?2"
);

/// A run's end, fenced by the lease.
const FINISH: &str = "UPDATE tasks SET status = ?4, end_time = ?5,
        duration = (?5 - start_time) / 1000000.0, retries_used = ?6, result = ?7,
        stacktrace = CASE WHEN ?8 IS NULL THEN stacktrace ELSE ?9 END,
        error = COALESCE(?8, error), lease_owner = NULL, lease_expires_at = NULL
    WHERE seq = ?3 AND id = ?1 AND status = 'running' AND lease_owner = ?2";

/// A failed run's retry, due later.
const RESCHEDULE: &str = "UPDATE tasks SET status = 'pending', scheduled_at = ?4,
        wait_until = ?4, retries_used = ?5,
        stacktrace = CASE WHEN ?6 IS NULL THEN stacktrace ELSE ?7 END,
        error = COALESCE(?6, error), lease_owner = NULL, lease_expires_at = NULL
    WHERE seq = ?3 AND id = ?1 AND status = 'running' AND lease_owner = ?2";

/// A run given back to the queue (its runner shut down before it started).
const REQUEUE: &str = "UPDATE tasks SET status = 'pending', lease_owner = NULL,
        lease_expires_at = NULL
    WHERE seq = ?3 AND id = ?1 AND status = 'running' AND lease_owner = ?2";

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
        let (seq, known) = self.active.outcome(id);
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
                // What the counters need of the row before the change: as this store's fetch
                // left it, or read (the writer is the only one: the row stays as read).
                let (seq, before) = match (seq, known) {
                    (Some(seq), Some(known)) => (seq, known),
                    _ => match running_row(conn, &id, &owner, seq)? {
                        Some(found) => found,
                        None => return Ok(false),
                    },
                };
                let now = minute_of(Utc::now());
                // The row's duration and end after the change (as the statement computes them).
                let (duration, end_time) = match &change {
                    Transition::Finished { end_time, .. } => {
                        let end = micros(*end_time);
                        let run = before.start_time.map(|start| {
                            (i128::from(end) - i128::from(start)) as f64 / 1_000_000.0
                        });
                        (run, Some(end))
                    }
                    _ => (before.duration, None),
                };
                let (sql, values, after, retries): (&str, Vec<Sql>, &str, Option<u32>) =
                    match change {
                        Transition::Finished {
                            status,
                            end_time,
                            retries_used,
                            result,
                            error,
                            stacktrace,
                        } => (
                            FINISH,
                            vec![
                                status.as_str().to_owned().into(),
                                micros(end_time).into(),
                                retries_used.into(),
                                result.as_ref().map_or(Sql::Null, super::row::stored_value),
                                error.into(),
                                stacktrace.into(),
                            ],
                            status.as_str(),
                            Some(retries_used),
                        ),
                        Transition::Reschedule { due, retries_used, error, stacktrace } => (
                            RESCHEDULE,
                            vec![
                                micros(due).into(),
                                retries_used.into(),
                                error.into(),
                                stacktrace.into(),
                            ],
                            "pending",
                            Some(retries_used),
                        ),
                        Transition::Requeue => (REQUEUE, Vec::new(), "pending", None),
                    };
                let mut statement = conn.prepare_cached(sql).map_err(unavailable)?;
                let fixed = [Sql::Text(id), Sql::Text(owner), Sql::Integer(seq)];
                let changed = statement
                    .execute(params_from_iter(fixed.iter().chain(&values)))
                    .map_err(unavailable)?;
                if changed == 0 {
                    return Ok(false);
                }
                let mut moves = conn.moves();
                let ended_at = end_time.map_or(now, super::counters::minute_at);
                let (from, to) = (("running", before.duration), (after, duration));
                moves.changed(&before.func_name, &before.queue, from, to, ended_at);
                if let Some(retries) = retries {
                    let more = i64::from(retries) - before.retries_used;
                    moves.retried(&before.func_name, &before.queue, more, now);
                }
                drop(moves);
                if releases_key && let Some(key) = before.idempotency_key {
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

/// The running row of `id` that `owner` holds (at `seq` when known), as an outcome's write
/// needs it: its `seq` and what its outcome changes; `None` when the lease is gone.
fn running_row(
    conn: &Connection,
    id: &str,
    owner: &str,
    seq: Option<i64>,
) -> Result<Option<(i64, Running)>, StoreError> {
    let text = |value: Sql| match value {
        Sql::Text(text) => Some(text),
        _ => None,
    };
    let number = |value: Sql| match value {
        Sql::Integer(n) => Some(n),
        _ => None,
    };
    conn.prepare_cached(BEFORE)
        .map_err(unavailable)?
        .query_row(params![id, owner, seq], |row| {
            let counted = returned(row, 1)?;
            let running = Running {
                func_name: counted.func_name,
                queue: counted.queue,
                duration: counted.duration,
                retries_used: number(row.get(4)?).unwrap_or(0),
                idempotency_key: text(row.get(5)?),
                start_time: number(row.get(6)?),
            };
            Ok((row.get::<_, i64>(0)?, running))
        })
        .optional()
        .map_err(unavailable)
}
