//! Upkeep of the tasks: lease renewal, rescue of tasks whose runner died, and pruning of
//! finished tasks (leadership is in `fetch`).

use super::*;

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
        for row in rows.into_iter().map(Cells::of) {
            let mut record = match row.record() {
                Ok(record) => record,
                Err(err) => {
                    tracing::error!(error = %err, "taskflow: cannot reclaim an unreadable task");
                    continue;
                }
            };
            let outcome = reclaim(&mut record, now, max_recoveries);
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
            removed += self
                .affected(
                    &format!("DELETE FROM taskflow_tasks WHERE end_time < ? AND {finished}"),
                    vec![Value::Int(micros(cutoff))],
                )
                .await?;
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
                removed += self
                    .affected(
                        &format!("DELETE FROM taskflow_tasks WHERE end_time <= ? AND {finished}"),
                        vec![Value::Int(cutoff)],
                    )
                    .await?;
            }
        }
        Ok(removed as usize)
    }
}
