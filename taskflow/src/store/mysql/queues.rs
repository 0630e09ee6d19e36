//! The queues' shared state (`taskflow_queues`) and their counts (through
//! `taskflow_tasks_queue_active`).

use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;

use super::{MysqlStore, micros, unavailable};
use crate::instance::Instance;
use crate::queue::{QueueChange, QueueCounts, QueueState};
use crate::store::StoreError;

/// A row of `taskflow_queues`: name, paused, concurrency, max_pending, updated_at.
type Row = (String, bool, Option<i64>, Option<i64>, i64);

const COLUMNS: &str = "name, paused, concurrency, max_pending, updated_at";

impl MysqlStore {
    pub(super) async fn read_queue_states(&self) -> Result<Vec<QueueState>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .query(format!("SELECT {COLUMNS} FROM taskflow_queues"))
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(state).collect())
    }

    pub(super) async fn change_queue(
        &self,
        queue: &str,
        change: QueueChange,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT IGNORE INTO taskflow_queues (name, updated_at) VALUES (?, ?)",
            (queue, micros(now)),
        )
        .await
        .map_err(unavailable)?;
        // The row locked while it changes: concurrent changes of different fields apply one
        // after the other, neither lost.
        let mut tx = conn.start_transaction(Default::default()).await.map_err(unavailable)?;
        let found: Option<Row> = tx
            .exec_first(
                format!("SELECT {COLUMNS} FROM taskflow_queues WHERE name = ? FOR UPDATE"),
                (queue,),
            )
            .await
            .map_err(unavailable)?;
        let next = change.apply(queue, found.map(state), now);
        let max_pending = next.max_pending.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        tx.exec_drop(
            "UPDATE taskflow_queues SET paused = ?, concurrency = ?, max_pending = ?,
                updated_at = ? WHERE name = ?",
            (next.paused, next.concurrency, max_pending, micros(next.updated_at), queue),
        )
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(next)
    }

    pub(super) async fn count_queue(&self, queue: &str, cap: u64) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let count: Option<i64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM (SELECT 1 FROM taskflow_tasks
                 WHERE queue = ? AND status = 'pending' LIMIT ?) AS pending",
                (queue, cap),
            )
            .await
            .map_err(unavailable)?;
        Ok(count.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    pub(super) async fn count_queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        let mut conn = self.conn().await?;
        let now = chrono::Utc::now().timestamp_micros();
        let rows: Vec<(String, i64, i64, i64)> = conn
            .exec(
                "SELECT queue, CAST(SUM(status = 'pending') AS SIGNED),
                    CAST(SUM(status = 'running') AS SIGNED),
                    CAST(SUM(status = 'pending' AND (wait_until IS NULL OR wait_until <= ?))
                        AS SIGNED)
                 FROM taskflow_tasks WHERE status IN ('pending', 'running') GROUP BY queue",
                (now,),
            )
            .await
            .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(queue, pending, running, due)| QueueCounts {
                queue,
                pending: u64::try_from(pending).unwrap_or(0),
                running: u64::try_from(running).unwrap_or(0),
                due: u64::try_from(due).unwrap_or(0),
            })
            .collect())
    }
}

fn state((name, paused, concurrency, max_pending, updated): Row) -> QueueState {
    QueueState {
        name,
        paused,
        concurrency: concurrency.and_then(|n| u32::try_from(n).ok()),
        max_pending: max_pending.and_then(|n| u64::try_from(n).ok()),
        updated_at: DateTime::from_timestamp_micros(updated).unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
    }
}

impl MysqlStore {
    pub(super) async fn beat(&self, instance: &Instance) -> Result<(), StoreError> {
        let info = serde_json::to_string(instance)
            .map_err(|e| StoreError::Unavailable(format!("mysql: {e}")))?;
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "DELETE FROM taskflow_instances WHERE expires_at <= ?",
            (micros(instance.seen_at),),
        )
        .await
        .map_err(unavailable)?;
        conn.exec_drop(
            "INSERT INTO taskflow_instances (id, info, expires_at) VALUES (?, ?, ?)
             ON DUPLICATE KEY UPDATE info = VALUES(info), expires_at = VALUES(expires_at)",
            (&instance.id, info, micros(instance.expires_at)),
        )
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn live_instances(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Instance>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<String> = conn
            .exec(
                "SELECT info FROM taskflow_instances WHERE expires_at > ? ORDER BY id",
                (micros(now),),
            )
            .await
            .map_err(unavailable)?;
        Ok(crate::store::decode_instances(rows))
    }

    pub(super) async fn forget(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("DELETE FROM taskflow_instances WHERE id = ?", (id,))
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
