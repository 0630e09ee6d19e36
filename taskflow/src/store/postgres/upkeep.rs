//! Upkeep of the tasks: lease renewal, rescue of tasks whose runner died, and pruning of
//! finished tasks (leadership is in `fetch`).

use super::*;

impl PostgresStore {
    /// [`Store::renew_leases`](crate::store::Store::renew_leases) on this store.
    pub(super) async fn extend_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        self.execute(
            "UPDATE taskflow_tasks SET lease_expires_at = $3
             WHERE id = ANY($1) AND status = 'running' AND lease_owner = $2",
            &[&ids, &owner, &expires_at],
        )
        .await?;
        Ok(())
    }

    /// [`Store::reclaim_expired`](crate::store::Store::reclaim_expired) on this store.
    pub(super) async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        // SKIP LOCKED: instances reclaiming at once take disjoint tasks.
        let sql = format!(
            "SELECT {COLUMNS} FROM taskflow_tasks
             WHERE status = 'running' AND lease_expires_at < $1
             FOR UPDATE SKIP LOCKED"
        );
        let rows = tx.query(&sql, &[&now]).await.map_err(unavailable)?;
        let mut reclaimed = Reclaimed::default();
        for row in rows {
            let mut record = match row::decode(&row) {
                Ok(record) => record,
                Err(err) => {
                    tracing::error!(error = %err, "taskflow: cannot reclaim an unreadable task");
                    continue;
                }
            };
            let outcome = reclaim(&mut record, now, max_recoveries);
            tx.execute(
                "UPDATE taskflow_tasks SET status = $2, end_time = $3, error = $4, stacktrace = $5,
                    recoveries = $6, lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = $1",
                &[
                    record.task_id.as_uuid(),
                    &record.status.as_str(),
                    &record.end_time,
                    &record.error,
                    &record.stacktrace,
                    &(record.recoveries as i32),
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
        if let Some(cutoff) = retention.age_cutoff(now) {
            removed += self
                .execute(
                    "DELETE FROM taskflow_tasks WHERE end_time IS NOT NULL AND end_time < $1
                       AND status IN ('success', 'failed', 'interrupted', 'cancelled')",
                    &[&cutoff],
                )
                .await?;
        }
        if let Some(max) = retention.max_finished {
            removed += self
                .execute(
                    "DELETE FROM taskflow_tasks WHERE id IN (
                        SELECT id FROM taskflow_tasks WHERE end_time IS NOT NULL
                          AND status IN ('success', 'failed', 'interrupted', 'cancelled')
                        ORDER BY end_time DESC OFFSET $1)",
                    &[&i64::try_from(max).unwrap_or(i64::MAX)],
                )
                .await?;
        }
        Ok(removed as usize)
    }
}
