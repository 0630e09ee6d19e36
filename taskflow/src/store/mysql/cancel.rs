//! Cancelling pending tasks (by id, or the one waiting under a run key), flagging running
//! ones for their runner, releasing held ones, and appending to a task's log.

use super::deltas::{self, SEEN, Seen};
use super::*;
use crate::store::counters::minute_of;

impl MysqlStore {
    /// [`Store::record_progress`](crate::store::Store::record_progress) on this store: one
    /// statement for the batch.
    pub(super) async fn write_progress(
        &self,
        owner: &str,
        reports: &[(TaskId, Progress)],
    ) -> Result<(), StoreError> {
        if reports.is_empty() {
            return Ok(());
        }
        let cases = vec!["WHEN ? THEN ?"; reports.len()].join(" ");
        let marks = vec!["?"; reports.len()].join(", ");
        let mut values = Vec::with_capacity(reports.len() * 3 + 1);
        for (id, progress) in reports {
            values.push(Value::from(id.to_string()));
            values.push(Value::from(serde_json::to_string(progress).unwrap_or_default()));
        }
        values.extend(reports.iter().map(|(id, _)| Value::from(id.to_string())));
        values.push(Value::from(owner));
        let mut conn = self.conn().await?;
        conn.exec_drop(
            format!(
                "UPDATE taskflow_tasks SET progress = CASE id {cases} END
                 WHERE id IN ({marks}) AND status = 'running' AND lease_owner = ?"
            ),
            values,
        )
        .await
        .map_err(unavailable)
    }

    /// [`Store::cancel_pending`](crate::store::Store::cancel_pending) on this store.
    pub(super) async fn cancel_if_pending(
        &self,
        id: &TaskId,
    ) -> Result<Option<TaskStatus>, StoreError> {
        self.locked_cancel(id, TaskStatus::Pending).await
    }

    /// [`Store::request_cancel`](crate::store::Store::request_cancel) on this store.
    pub(super) async fn flag_cancel(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        self.locked_cancel(id, TaskStatus::Running).await
    }

    /// [`Store::cancel_requests`](crate::store::Store::cancel_requests) on this store.
    pub(super) async fn flagged(
        &self,
        owner: &str,
        ids: &[TaskId],
    ) -> Result<Vec<TaskId>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let mut values: Vec<Value> = ids.iter().map(|id| Value::from(id.to_string())).collect();
        values.push(Value::from(owner));
        let mut conn = self.conn().await?;
        let found: Vec<String> = conn
            .exec(
                format!(
                    "SELECT id FROM taskflow_tasks WHERE id IN ({marks}) AND status = 'running'
                        AND lease_owner = ? AND cancel_requested"
                ),
                values,
            )
            .await
            .map_err(unavailable)?;
        Ok(found.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// Cancels the task `id` if it is pending (`when` pending), or flags it for its runner if
    /// it is running (`when` running), in one transaction; returns its status before.
    async fn locked_cancel(
        &self,
        id: &TaskId,
        when: TaskStatus,
    ) -> Result<Option<TaskStatus>, StoreError> {
        // InnoDB may pick this transaction as a deadlock's victim (a fetch locking the same
        // rows through another index): it was rolled back, and runs again.
        let mut tries = 0;
        loop {
            match self.cancel_once(id, when).await {
                Err(Attempt::Lost(err))
                    if tries < super::fetch::DEADLOCK_RETRIES
                        && super::fetch::is_lock_conflict(&err) =>
                {
                    tries += 1;
                }
                Err(Attempt::Lost(err)) => return Err(unavailable(err)),
                Err(Attempt::Failed(err)) => return Err(err),
                Ok(status) => return Ok(status),
            }
        }
    }

    async fn cancel_once(
        &self,
        id: &TaskId,
        when: TaskStatus,
    ) -> Result<Option<TaskStatus>, Attempt> {
        let mut conn = self.conn().await.map_err(Attempt::Failed)?;
        let mut tx = conn.start_transaction(Default::default()).await?;
        let found: Option<mysql_async::Row> = tx
            .exec_first(
                format!(
                    "SELECT id, status, {SEEN} FROM taskflow_tasks
                     WHERE id = COALESCE((SELECT task_id FROM taskflow_aliases WHERE alias = ?), ?)
                     FOR UPDATE"
                ),
                (id.to_string(), id.to_string()),
            )
            .await?;
        let Some(found) = found else { return Ok(None) };
        let values = found.unwrap();
        let (target, status) = (deltas::lossy(values.first()), deltas::lossy(values.get(1)));
        let seen = Seen::read(&values, 2);
        let status: TaskStatus = status.parse().map_err(|reason| {
            Attempt::Failed(StoreError::Corrupt { id: id.to_string(), reason })
        })?;
        match when {
            _ if status != when => {}
            TaskStatus::Pending => {
                let now = Utc::now();
                tx.exec_drop(
                    "UPDATE taskflow_tasks SET status = 'cancelled', end_time = ?,
                        wait_until = NULL WHERE id = ?",
                    (micros(now), target),
                )
                .await?;
                let mut moves = Moves::default();
                seen.moved(&mut moves, "cancelled", minute_of(now));
                deltas::append(&mut tx, &mut moves).await?;
            }
            // Running: flagged for its runner.
            _ => {
                let flag = "UPDATE taskflow_tasks SET cancel_requested = 1 WHERE id = ?";
                tx.exec_drop(flag, (target,)).await?;
            }
        }
        tx.commit().await?;
        Ok(Some(status))
    }

    /// [`Store::cancel_scheduled`](crate::store::Store::cancel_scheduled) on this store.
    pub(super) async fn cancel_waiting_key(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError> {
        run_key::cancel_scheduled(&self.pool, key, now).await
    }

    /// [`Store::release_held`](crate::store::Store::release_held) on this store.
    pub(super) async fn let_go(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!(
            "UPDATE taskflow_tasks SET wait_until = IF(scheduled_at > created_at, scheduled_at, NULL)
             WHERE id IN ({marks}) AND status = 'pending'"
        );
        self.affected(&sql, ids.iter().map(|id| s(&id.to_string())).collect()).await?;
        Ok(())
    }

    /// [`Store::append_logs`](crate::store::Store::append_logs) on this store.
    pub(super) async fn push_logs(
        &self,
        id: &TaskId,
        logs: Vec<LogEntry>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(Default::default()).await.map_err(unavailable)?;
        for entry in logs {
            tx.exec_drop(
                "INSERT INTO taskflow_logs (task_id, at, level, message, attempt, fields)
                 SELECT ?, ?, ?, ?, ?, ? FROM DUAL
                 WHERE EXISTS (SELECT 1 FROM taskflow_tasks WHERE id = ?)",
                vec![
                    s(&id.to_string()),
                    Value::Int(micros(entry.at)),
                    s(entry.level.as_str()),
                    s(&entry.message),
                    Value::Int(entry.attempt.into()),
                    s(&serde_json::Value::Object(entry.fields).to_string()),
                    s(&id.to_string()),
                ],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }
}

/// Why one try of a transaction did not commit.
enum Attempt {
    /// The server refused a statement: a deadlock's victim may run again.
    Lost(mysql_async::Error),
    /// Anything else.
    Failed(StoreError),
}

impl From<mysql_async::Error> for Attempt {
    fn from(err: mysql_async::Error) -> Self {
        Attempt::Lost(err)
    }
}
