//! Cancelling pending tasks (by id, or the one waiting under a run key), flagging running
//! ones, and releasing held ones.

use super::counters::{Returned, minute_at, returned};
use super::*;

impl SqliteStore {
    /// [`Store::record_progress`](crate::store::Store::record_progress) on this store.
    pub(super) async fn write_progress(
        &self,
        owner: &str,
        reports: &[(TaskId, Progress)],
    ) -> Result<(), StoreError> {
        let owner = owner.to_owned();
        let reports: Vec<(String, String)> = reports
            .iter()
            .filter_map(|(id, p)| Some((id.to_string(), serde_json::to_string(p).ok()?)))
            .collect();
        self.writer
            .call(move |conn| {
                let mut update = conn
                    .prepare_cached(
                        "UPDATE tasks SET progress = ?2
                         WHERE id = ?1 AND status = 'running' AND lease_owner = ?3",
                    )
                    .map_err(unavailable)?;
                for (id, progress) in &reports {
                    update.execute(params![id, progress, owner]).map_err(unavailable)?;
                }
                Ok(())
            })
            .await
    }

    /// [`Store::request_cancel`](crate::store::Store::request_cancel) on this store: the
    /// flag is kept in memory, since every running task runs in this process.
    pub(super) async fn flag_cancel(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        let status = self.load(id).await?.map(|record| record.status);
        if status == Some(TaskStatus::Running) {
            self.cancels.flag(*id);
        }
        Ok(status)
    }

    /// [`Store::cancel_requests`](crate::store::Store::cancel_requests) on this store: the
    /// flagged of `ids` (rare), read to check that `owner` still runs them.
    pub(super) async fn flagged(
        &self,
        owner: &str,
        ids: &[TaskId],
    ) -> Result<Vec<TaskId>, StoreError> {
        let mut asked = Vec::new();
        for id in self.cancels.flagged(ids) {
            let record = self.load(&id).await?;
            if record.is_some_and(|r| {
                r.status == TaskStatus::Running && r.lease_owner.as_deref() == Some(owner)
            }) {
                asked.push(id);
            }
        }
        Ok(asked)
    }

    /// [`Store::cancel_pending`](crate::store::Store::cancel_pending) on this store.
    pub(super) async fn cancel_if_pending(
        &self,
        id: &TaskId,
    ) -> Result<Option<TaskStatus>, StoreError> {
        let task_id = *id;
        let (before, key) = self
            .writer
            .call(move |conn| {
                let id = task_id.to_string();
                let found: Option<(String, Option<String>, Returned)> = conn
                    .query_row(
                        "SELECT status, idempotency_key, func_name, queue, duration
                         FROM tasks WHERE id = ?1",
                        [&id],
                        |row| Ok((row.get(0)?, row.get(1)?, returned(row, 2)?)),
                    )
                    .optional()
                    .map_err(unavailable)?;
                let Some((status, key, counted)) = found else { return Ok((None, None)) };
                let status: TaskStatus = status
                    .parse()
                    .map_err(|reason| StoreError::Corrupt { id: id.clone(), reason })?;
                if status == TaskStatus::Pending {
                    let now = micros(Utc::now());
                    conn.execute(
                        "UPDATE tasks SET status = 'cancelled', end_time = ?2, wait_until = NULL
                         WHERE id = ?1",
                        params![id, now],
                    )
                    .map_err(unavailable)?;
                    counted.moved(&mut conn.moves(), "pending", "cancelled", minute_at(now));
                }
                Ok((Some(status), key))
            })
            .await?;
        if before == Some(TaskStatus::Pending) {
            self.active.forget(id);
        }
        if let (Some(TaskStatus::Pending), Some(key)) = (before, key) {
            release(&self.keys, &key, id);
        }
        Ok(before)
    }

    /// [`Store::cancel_scheduled`](crate::store::Store::cancel_scheduled) on this store.
    pub(super) async fn cancel_waiting_key(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError> {
        let key = key.to_owned();
        let cancelled = self
            .writer
            .call(move |conn| run_key::cancel_waiting(conn, &key, micros(now), None))
            .await?;
        let Some((id, idempotency_key)) = cancelled else { return Ok(None) };
        self.active.forget(&id);
        if let Some(idempotency_key) = idempotency_key {
            release(&self.keys, &idempotency_key, &id);
        }
        Ok(Some(id))
    }

    /// [`Store::release_held`](crate::store::Store::release_held) on this store.
    pub(super) async fn let_go(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        let ids: Vec<String> = ids.iter().map(TaskId::to_string).collect();
        self.writer
            .call(move |conn| {
                let mut release = conn
                    .prepare_cached(
                        "UPDATE tasks SET wait_until =
                            CASE WHEN scheduled_at > created_at THEN scheduled_at END
                         WHERE id = ?1 AND status = 'pending'",
                    )
                    .map_err(unavailable)?;
                for id in ids {
                    release.execute([id]).map_err(unavailable)?;
                }
                Ok(())
            })
            .await
    }
}
