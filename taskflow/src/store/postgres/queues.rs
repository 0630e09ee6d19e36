//! The queues' shared state (`taskflow_queues`) and their counts (through
//! `taskflow_tasks_queue_active`).

use chrono::{DateTime, Utc};

use super::{PostgresStore, unavailable};
use crate::instance::Instance;
use crate::queue::{QueueChange, QueueCounts, QueueState};
use crate::store::StoreError;

const COLUMNS: &str = "name, paused, concurrency, max_pending, updated_at";

impl PostgresStore {
    pub(super) async fn read_queue_states(&self) -> Result<Vec<QueueState>, StoreError> {
        let rows = self.query(&format!("SELECT {COLUMNS} FROM taskflow_queues"), &[]).await?;
        Ok(rows.iter().map(state).collect())
    }

    pub(super) async fn change_queue(
        &self,
        queue: &str,
        change: QueueChange,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        // The row is created first, so that the read below locks it: concurrent changes of
        // different fields apply one after the other, neither lost.
        tx.execute(
            "INSERT INTO taskflow_queues (name, updated_at) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING",
            &[&queue, &now],
        )
        .await
        .map_err(unavailable)?;
        let found = tx
            .query_one(
                &format!("SELECT {COLUMNS} FROM taskflow_queues WHERE name = $1 FOR UPDATE"),
                &[&queue],
            )
            .await
            .map_err(unavailable)?;
        let next = change.apply(queue, Some(state(&found)), now);
        let concurrency = next.concurrency.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        let max_pending = next.max_pending.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        tx.execute(
            "UPDATE taskflow_queues SET paused = $2, concurrency = $3, max_pending = $4,
                updated_at = $5 WHERE name = $1",
            &[&queue, &next.paused, &concurrency, &max_pending, &next.updated_at],
        )
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(next)
    }

    pub(super) async fn count_queue(&self, queue: &str, cap: u64) -> Result<u64, StoreError> {
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT COUNT(*) FROM (SELECT 1 FROM taskflow_tasks
                 WHERE queue = $1 AND status = 'pending' LIMIT $2) AS pending",
                &[&queue, &cap],
            )
            .await?;
        Ok(rows.first().map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)))
    }

    pub(super) async fn count_queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        let rows = self
            .query(
                "SELECT queue,
                    COUNT(*) FILTER (WHERE status = 'pending'),
                    COUNT(*) FILTER (WHERE status = 'running'),
                    COUNT(*) FILTER (WHERE status = 'pending'
                        AND (wait_until IS NULL OR wait_until <= now()))
                 FROM taskflow_tasks WHERE status IN ('pending', 'running') GROUP BY queue",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| QueueCounts {
                queue: row.get(0),
                pending: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
                running: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                due: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
            })
            .collect())
    }
}

/// A row of [`COLUMNS`] as a queue state.
fn state(row: &tokio_postgres::Row) -> QueueState {
    let concurrency: Option<i32> = row.get(2);
    let max_pending: Option<i64> = row.get(3);
    QueueState {
        name: row.get(0),
        paused: row.get(1),
        concurrency: concurrency.and_then(|n| u32::try_from(n).ok()),
        max_pending: max_pending.and_then(|n| u64::try_from(n).ok()),
        updated_at: row.get(4),
    }
}

impl PostgresStore {
    pub(super) async fn beat(&self, instance: &Instance) -> Result<(), StoreError> {
        let info = serde_json::to_string(instance)
            .map_err(|e| StoreError::Unavailable(format!("postgres: {e}")))?;
        self.execute("DELETE FROM taskflow_instances WHERE expires_at <= $1", &[&instance.seen_at])
            .await?;
        self.execute(
            "INSERT INTO taskflow_instances (id, info, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET info = EXCLUDED.info, expires_at = EXCLUDED.expires_at",
            &[&instance.id, &info, &instance.expires_at],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn live_instances(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Instance>, StoreError> {
        let rows = self
            .query("SELECT info FROM taskflow_instances WHERE expires_at > $1 ORDER BY id", &[&now])
            .await?;
        Ok(crate::store::decode_instances(rows.iter().map(|row| row.get(0)).collect()))
    }

    pub(super) async fn forget(&self, id: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM taskflow_instances WHERE id = $1", &[&id]).await?;
        Ok(())
    }
}
