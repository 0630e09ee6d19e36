//! Cancelling pending tasks (by id, or the one waiting under a run key), flagging running
//! ones for their runner, releasing held ones, and appending to a task's log.

use super::*;

impl PostgresStore {
    /// [`Store::record_progress`](crate::store::Store::record_progress) on this store: one
    /// statement for the batch.
    pub(super) async fn write_progress(
        &self,
        owner: &str,
        reports: &[(TaskId, Progress)],
    ) -> Result<(), StoreError> {
        let ids: Vec<uuid::Uuid> = reports.iter().map(|(id, _)| *id.as_uuid()).collect();
        let values: Vec<serde_json::Value> =
            reports.iter().map(|(_, p)| serde_json::to_value(p).unwrap_or_default()).collect();
        self.execute(
            "UPDATE taskflow_tasks SET progress = v.progress
             FROM unnest($1::uuid[], $2::jsonb[]) AS v(id, progress)
             WHERE taskflow_tasks.id = v.id AND status = 'running' AND lease_owner = $3",
            &[&ids, &values, &owner],
        )
        .await?;
        Ok(())
    }

    /// [`Store::request_cancel`](crate::store::Store::request_cancel) on this store.
    pub(super) async fn flag_cancel(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "WITH target AS (
                    SELECT id, status FROM taskflow_tasks WHERE id =
                        COALESCE((SELECT task_id FROM taskflow_aliases WHERE alias = $1), $1)),
                 flagged AS (
                    UPDATE taskflow_tasks SET cancel_requested = TRUE FROM target
                    WHERE taskflow_tasks.id = target.id AND taskflow_tasks.status = 'running'
                    RETURNING taskflow_tasks.id)
                 SELECT status FROM target",
            )
            .await
            .map_err(unavailable)?;
        let row = client.query_opt(&statement, &[id.as_uuid()]).await.map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let status: String = row.get(0);
        status
            .parse()
            .map(Some)
            .map_err(|reason| StoreError::Corrupt { id: id.to_string(), reason })
    }

    /// [`Store::cancel_requests`](crate::store::Store::cancel_requests) on this store.
    pub(super) async fn flagged(
        &self,
        owner: &str,
        ids: &[TaskId],
    ) -> Result<Vec<TaskId>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT id FROM taskflow_tasks WHERE id = ANY($1) AND status = 'running'
                    AND lease_owner = $2 AND cancel_requested",
            )
            .await
            .map_err(unavailable)?;
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        let rows = client.query(&statement, &[&ids, &owner]).await.map_err(unavailable)?;
        Ok(rows.iter().map(|row| TaskId::from(row.get::<_, uuid::Uuid>(0))).collect())
    }

    /// [`Store::cancel_pending`](crate::store::Store::cancel_pending) on this store.
    pub(super) async fn cancel_if_pending(
        &self,
        id: &TaskId,
    ) -> Result<Option<TaskStatus>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let found = tx
            .query_opt(
                "SELECT id, status FROM taskflow_tasks
                 WHERE id = COALESCE((SELECT task_id FROM taskflow_aliases WHERE alias = $1), $1)
                 FOR UPDATE",
                &[id.as_uuid()],
            )
            .await
            .map_err(unavailable)?;
        let Some(found) = found else { return Ok(None) };
        let target: uuid::Uuid = found.get(0);
        let status: String = found.get(1);
        let status: TaskStatus =
            status.parse().map_err(|reason| StoreError::Corrupt { id: id.to_string(), reason })?;
        if status == TaskStatus::Pending {
            static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                let cancel = format!(
                    "UPDATE taskflow_tasks SET status = 'cancelled', end_time = $2,
                        wait_until = NULL
                     WHERE id = $1 RETURNING {COLUMNS}, {}",
                    super::deltas::was("pending")
                );
                super::deltas::counted("", &cancel, "SELECT id FROM changed")
            });
            tx.execute(SQL.as_str(), &[&target, &Utc::now()]).await.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(status))
    }

    /// [`Store::cancel_scheduled`](crate::store::Store::cancel_scheduled) on this store.
    pub(super) async fn cancel_waiting_key(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError> {
        let client = self.client().await?;
        Ok(run_key::cancel_waiting(&**client, key, now, None).await?.map(TaskId::from))
    }

    /// [`Store::release_held`](crate::store::Store::release_held) on this store.
    pub(super) async fn let_go(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        self.execute(
            "UPDATE taskflow_tasks SET wait_until =
                CASE WHEN scheduled_at > created_at THEN scheduled_at END
             WHERE id = ANY($1) AND status = 'pending'",
            &[&ids],
        )
        .await?;
        Ok(())
    }

    /// [`Store::append_logs`](crate::store::Store::append_logs) on this store.
    pub(super) async fn push_logs(
        &self,
        id: &TaskId,
        logs: Vec<LogEntry>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let statement = tx
            .prepare_cached(
                "INSERT INTO taskflow_logs (task_id, at, level, message, attempt, fields)
                 SELECT $1, $2, $3, $4, $5, $6
                 WHERE EXISTS (SELECT 1 FROM taskflow_tasks WHERE id = $1)",
            )
            .await
            .map_err(unavailable)?;
        for entry in logs {
            let fields = serde_json::Value::Object(entry.fields);
            tx.execute(
                &statement,
                &[
                    id.as_uuid(),
                    &entry.at,
                    &entry.level.as_str(),
                    &entry.message,
                    &(entry.attempt as i32),
                    &fields,
                ],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }
}
