//! Upkeep of the tasks: lease renewal, rescue of tasks whose runner died, and pruning of
//! finished tasks (leadership is in `fetch`).

use super::deltas::{self, SEEN, Seen};
use super::*;
use crate::store::counters::minute_of;

/// Finished tasks deleted per pruning transaction at most.
const PRUNE_CHUNK: usize = 2_000;

impl MysqlStore {
    /// [`Store::renew_leases`](crate::store::Store::renew_leases) on this store.
    pub(super) async fn extend_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!(
            "UPDATE taskflow_tasks SET lease_expires_at = ?
             WHERE status = 'running' AND lease_owner = ? AND id IN ({marks})"
        );
        let mut values = vec![Value::Int(micros(expires_at)), s(owner)];
        values.extend(ids.iter().map(|id| s(&id.to_string())));
        self.affected(&sql, values).await?;
        Ok(())
    }

    /// [`Store::reclaim_expired`](crate::store::Store::reclaim_expired) on this store.
    pub(super) async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(Default::default()).await.map_err(unavailable)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM taskflow_tasks
             WHERE status = 'running' AND lease_expires_at < ?
             FOR UPDATE SKIP LOCKED"
        );
        let rows: Vec<mysql_async::Row> =
            tx.exec(sql, (micros(now),)).await.map_err(unavailable)?;
        let mut reclaimed = Reclaimed::default();
        let mut moves = Moves::default();
        for row in rows.into_iter().map(Cells::of) {
            let mut record = match row.record() {
                Ok(record) => record,
                Err(err) => {
                    tracing::error!(error = %err, "taskflow: cannot reclaim an unreadable task");
                    continue;
                }
            };
            let before = record.status.as_str();
            let outcome = reclaim(&mut record, now, max_recoveries);
            let (from, to) = ((before, record.duration), (record.status.as_str(), record.duration));
            let ended = minute_of(record.end_time.unwrap_or(now));
            moves.changed(&record.func_name, &record.queue, from, to, ended);
            tx.exec_drop(
                "UPDATE taskflow_tasks SET status = ?, end_time = ?, error = ?, stacktrace = ?,
                    recoveries = ?, lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = ?",
                vec![
                    s(record.status.as_str()),
                    time(record.end_time),
                    text(record.error.clone()),
                    text(record.stacktrace.clone()),
                    Value::Int(record.recoveries.into()),
                    s(&record.task_id.to_string()),
                ],
            )
            .await
            .map_err(unavailable)?;
            reclaimed.add(outcome, record);
        }
        deltas::append(&mut tx, &mut moves).await.map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(reclaimed)
    }

    /// [`Store::prune`](crate::store::Store::prune) on this store.
    pub(super) async fn prune_finished(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        let finished = "status IN ('success', 'failed', 'interrupted', 'cancelled')";
        if let Some(cutoff) = retention.age_cutoff(now) {
            let only = format!("end_time < ? AND {finished}");
            removed += self.delete_counted(&only, Value::Int(micros(cutoff))).await?;
        }
        if let Some(max) = retention.max_finished {
            // The end time of the newest finished task beyond `max`: everything up to it goes.
            let cutoff = self
                .rows(
                    &format!(
                        "SELECT end_time FROM taskflow_tasks WHERE end_time IS NOT NULL AND {finished}
                         ORDER BY end_time DESC LIMIT 1 OFFSET ?"
                    ),
                    vec![Value::UInt(max as u64)],
                )
                .await?;
            if let Some(cutoff) = cutoff.first().and_then(|r| r.int(0, "end_time").ok().flatten()) {
                let only = format!("end_time <= ? AND {finished}");
                removed += self.delete_counted(&only, Value::Int(cutoff)).await?;
            }
        }
        Ok(removed as usize)
    }

    /// Deletes the tasks `only` selects (with its one parameter `value`), in chunks, each in a
    /// transaction that takes their counts away; how many went.
    async fn delete_counted(&self, only: &str, value: Value) -> Result<u64, StoreError> {
        let mut removed = 0;
        loop {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(Default::default()).await.map_err(unavailable)?;
            let rows: Vec<mysql_async::Row> = tx
                .exec(
                    format!(
                        "SELECT seq, {SEEN} FROM taskflow_tasks WHERE {only}
                         LIMIT {PRUNE_CHUNK} FOR UPDATE"
                    ),
                    vec![value.clone()],
                )
                .await
                .map_err(unavailable)?;
            let mut moves = Moves::default();
            let mut seqs = Vec::with_capacity(rows.len());
            for row in rows {
                let values = row.unwrap();
                let Some(seq) = deltas::number(values.first()) else { continue };
                seqs.push((seq as i64).to_string());
                let seen = Seen::read(&values, 1);
                moves.deleted(&seen.func_name, &seen.queue, (&seen.status, seen.duration));
            }
            if !seqs.is_empty() {
                let list = seqs.join(", ");
                tx.exec_drop(format!("DELETE FROM taskflow_tasks WHERE seq IN ({list})"), ())
                    .await
                    .map_err(unavailable)?;
            }
            deltas::append(&mut tx, &mut moves).await.map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            removed += seqs.len() as u64;
            if seqs.len() < PRUNE_CHUNK {
                return Ok(removed);
            }
        }
    }
}
