//! Upkeep of the tasks: lease renewal, rescue of tasks whose runner died, and pruning of
//! finished tasks (leadership is in `fetch`).

use std::sync::LazyLock;

use super::deltas;
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
            static RECLAIM: LazyLock<String> = LazyLock::new(|| {
                let reclaim = format!(
                    "UPDATE taskflow_tasks SET status = $2, end_time = $3, error = $4,
                        stacktrace = $5, recoveries = $6, lease_owner = NULL,
                        lease_expires_at = NULL
                     WHERE id = $1 RETURNING {COLUMNS}, {}",
                    deltas::was("running")
                );
                deltas::counted("", &reclaim, "SELECT id FROM changed")
            });
            tx.execute(
                RECLAIM.as_str(),
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
        static BY_AGE: LazyLock<String> = LazyLock::new(|| {
            let delete = format!(
                "DELETE FROM taskflow_tasks WHERE end_time IS NOT NULL AND end_time < $1
                   AND status IN ('success', 'failed', 'interrupted', 'cancelled')
                 RETURNING {}",
                deltas::GONE
            );
            deltas::counted("", &delete, "SELECT count(*) FROM changed")
        });
        static BY_COUNT: LazyLock<String> = LazyLock::new(|| {
            let delete = format!(
                "DELETE FROM taskflow_tasks WHERE id IN (
                    SELECT id FROM taskflow_tasks WHERE end_time IS NOT NULL
                      AND status IN ('success', 'failed', 'interrupted', 'cancelled')
                    ORDER BY end_time DESC OFFSET $1)
                 RETURNING {}",
                deltas::GONE
            );
            deltas::counted("", &delete, "SELECT count(*) FROM changed")
        });
        let mut removed: i64 = 0;
        if let Some(cutoff) = retention.age_cutoff(now) {
            let rows = self.query(BY_AGE.as_str(), &[&cutoff]).await?;
            removed += rows.first().map_or(0, |row| row.get::<_, i64>(0));
        }
        if let Some(max) = retention.max_finished {
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            let rows = self.query(BY_COUNT.as_str(), &[&max]).await?;
            removed += rows.first().map_or(0, |row| row.get::<_, i64>(0));
        }
        Ok(removed as usize)
    }
}
