//! Cancelling pending tasks (by id, or the one waiting under a run key), releasing held ones,
//! and appending to a task's log.

use super::*;

impl RedisStore {
    /// [`Store::cancel_pending`](crate::store::Store::cancel_pending) on this store.
    pub(super) async fn cancel_if_pending(
        &self,
        id: &TaskId,
    ) -> Result<Option<TaskStatus>, StoreError> {
        let now = Utc::now();
        let mut conn = self.conn.clone();
        let before: Option<String> = self
            .scripts
            .cancel
            .arg(&*self.prefix)
            .arg(id.to_string())
            .arg(rfc(now))
            .arg(micros(now))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        before
            .map(|s| s.parse().map_err(|reason| StoreError::Corrupt { id: id.to_string(), reason }))
            .transpose()
    }

    /// [`Store::cancel_scheduled`](crate::store::Store::cancel_scheduled) on this store.
    pub(super) async fn cancel_waiting_key(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError> {
        let mut conn = self.conn.clone();
        let cancelled: Option<String> = self
            .scripts
            .cancel_scheduled
            .arg(&*self.prefix)
            .arg(key)
            .arg(rfc(now))
            .arg(micros(now))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        cancelled
            .map(|id| {
                id.parse().map_err(|err| StoreError::Corrupt {
                    id: id.clone(),
                    reason: format!("run key `{key}`: {err}"),
                })
            })
            .transpose()
    }

    /// [`Store::append_logs`](crate::store::Store::append_logs) on this store.
    pub(super) async fn push_logs(
        &self,
        id: &TaskId,
        logs: Vec<LogEntry>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let exists: bool = conn.exists(self.key(&format!("t:{id}"))).await.map_err(unavailable)?;
        if !exists || logs.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> =
            logs.iter().map(|entry| serde_json::to_string(entry).unwrap_or_default()).collect();
        let _: () = conn.rpush(self.key(&format!("l:{id}")), lines).await.map_err(unavailable)?;
        Ok(())
    }
}
