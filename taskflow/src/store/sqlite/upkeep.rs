//! Upkeep of the task table: lease renewal, rescue of tasks whose runner died, and pruning of
//! finished tasks (leadership, trivial here, is in `fetch`).

use super::*;
use crate::store::counters::minute_of;

impl SqliteStore {
    /// [`Store::renew_leases`](crate::store::Store::renew_leases) on this store.
    pub(super) async fn extend_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let owner = owner.to_owned();
        let ids: Vec<String> = ids.iter().map(TaskId::to_string).collect();
        let expires = micros(expires_at);
        self.writer
            .call(move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "UPDATE tasks SET lease_expires_at = ?3
                         WHERE id = ?1 AND status = 'running' AND lease_owner = ?2",
                    )
                    .map_err(unavailable)?;
                for id in ids {
                    statement.execute(params![id, owner, expires]).map_err(unavailable)?;
                }
                Ok(())
            })
            .await
    }

    /// [`Store::reclaim_expired`](crate::store::Store::reclaim_expired) on this store.
    pub(super) async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        let (reclaimed, released) = self
            .writer
            .call(move |conn| {
                let cutoff = micros(now);
                const EXPIRED: &str = concat!(
                    "SELECT ",
                    columns!(),
                    " FROM tasks WHERE status = 'running' AND lease_expires_at < ?1"
                );
                let mut expired = Vec::new();
                for row in select(conn, EXPIRED, [cutoff], COLUMN_COUNT)? {
                    match row::decode(&row, false) {
                        Ok(record) => expired.push(record),
                        Err(err) => {
                            tracing::error!(error = %err, "taskflow: cannot reclaim an unreadable task");
                        }
                    }
                }
                let mut reclaimed = Reclaimed::default();
                let mut released = Vec::new();
                let mut update = conn
                    .prepare_cached(
                        "UPDATE tasks SET status = ?2, end_time = ?3, error = ?4, stacktrace = ?5,
                            recoveries = ?6, lease_owner = NULL, lease_expires_at = NULL
                         WHERE id = ?1 AND status = 'running' AND lease_expires_at < ?7",
                    )
                    .map_err(unavailable)?;
                for mut record in expired {
                    let before = record.status.as_str();
                    let outcome = reclaim(&mut record, now, max_recoveries);
                    let changed = update
                        .execute(params![
                            record.task_id.to_string(),
                            record.status.as_str(),
                            record.end_time.map(micros),
                            record.error,
                            record.stacktrace,
                            record.recoveries,
                            cutoff,
                        ])
                        .map_err(unavailable)?;
                    if changed == 0 {
                        continue;
                    }
                    let ended = minute_of(record.end_time.unwrap_or(now));
                    let (from, to) = ((before, record.duration), (record.status.as_str(), record.duration));
                    conn.moves().changed(&record.func_name, &record.queue, from, to, ended);
                    if let (ReclaimAs::Poisoned, Some(key)) = (&outcome, &record.idempotency_key) {
                        released.push((key.clone(), record.task_id));
                    }
                    reclaimed.add(outcome, record);
                }
                Ok((reclaimed, released))
            })
            .await?;
        for (key, id) in released {
            release(&self.keys, &key, &id);
        }
        for id in reclaimed.interrupted.iter().chain(&reclaimed.poisoned) {
            self.active.forget(id);
        }
        Ok(reclaimed)
    }

    /// [`Store::prune`](crate::store::Store::prune) on this store.
    pub(super) async fn prune_finished(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        // Everything that ended before the cutoff goes: the older of the age limit and the end
        // time of the newest finished task beyond the count limit.
        let mut cutoff = retention.age_cutoff(now).map(|at| micros(at) - 1);
        if let Some(max) = retention.max_finished {
            let offset = max.min(i64::MAX as usize) as i64;
            let sql = format!(
                "SELECT end_time FROM tasks INDEXED BY tasks_finished
                 WHERE end_time IS NOT NULL AND status IN {FINISHED}
                 ORDER BY end_time DESC LIMIT 1 OFFSET ?1"
            );
            let beyond = self.reader.call(move |conn| select(conn, &sql, [offset], 1)).await?;
            if let Some(row) = beyond.first() {
                let end: i64 = row.value(0)?;
                cutoff = Some(cutoff.map_or(end, |age| age.max(end)));
            }
        }
        let Some(cutoff) = cutoff else { return Ok(0) };
        // In chunks, each its own job: a large prune never holds up enqueues for long.
        let mut removed = 0;
        loop {
            let sql = format!(
                "DELETE FROM tasks WHERE seq IN (
                    SELECT seq FROM tasks INDEXED BY tasks_finished
                    WHERE end_time IS NOT NULL AND end_time <= ?1 AND status IN {FINISHED}
                    LIMIT {PRUNE_CHUNK})
                 RETURNING id, idempotency_key, func_name, queue, duration, status"
            );
            let rows = self
                .writer
                .call(move |conn| {
                    let rows = select(conn, &sql, [cutoff], 6)?;
                    let mut moves = conn.moves();
                    for row in &rows {
                        let duration = row.value::<Option<f64>>(4).ok().flatten();
                        let (func, queue) = (row.text_lossy(2), row.text_lossy(3));
                        moves.deleted(&func, &queue, (&row.text_lossy(5), duration));
                    }
                    Ok(rows)
                })
                .await?;
            for row in &rows {
                let (id, key): (String, Option<String>) = (row.value(0)?, row.value(1)?);
                if let (Some(key), Ok(id)) = (key, id.parse::<TaskId>()) {
                    release(&self.keys, &key, &id);
                }
            }
            removed += rows.len();
            if rows.len() < PRUNE_CHUNK {
                return Ok(removed);
            }
        }
    }
}
