//! Cancelling pending tasks (by id, or the one waiting under a run key), flagging running
//! ones for their runner, releasing held ones, and appending to a task's log.

use super::*;

/// Sets each task's `progress` field while it runs under the owner. ARGV: prefix, owner, then
/// id and progress JSON pairs.
static PROGRESS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r#"
local p, owner = ARGV[1], ARGV[2]
for i = 3, #ARGV, 2 do
  local t = p..':t:'..ARGV[i]
  local f = redis.call('HMGET', t, 'status', 'owner')
  if f[1] == 'running' and f[2] == owner then redis.call('HSET', t, 'progress', ARGV[i + 1]) end
end
return 0
"#,
    )
});

impl RedisStore {
    /// [`Store::record_progress`](crate::store::Store::record_progress) on this store: one
    /// script call for the batch.
    pub(super) async fn write_progress(
        &self,
        owner: &str,
        reports: &[(TaskId, Progress)],
    ) -> Result<(), StoreError> {
        if reports.is_empty() {
            return Ok(());
        }
        let mut invocation = PROGRESS.prepare_invoke();
        invocation.arg(&*self.prefix).arg(owner);
        for (id, progress) in reports {
            invocation.arg(id.to_string()).arg(serde_json::to_string(progress).unwrap_or_default());
        }
        let mut conn = self.conn.clone();
        let _: i64 = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    /// [`Store::cancel_pending`](crate::store::Store::cancel_pending) on this store.
    pub(super) async fn cancel_if_pending(
        &self,
        id: &TaskId,
    ) -> Result<Option<TaskStatus>, StoreError> {
        self.cancel_if(id, TaskStatus::Pending).await
    }

    /// [`Store::request_cancel`](crate::store::Store::request_cancel) on this store.
    pub(super) async fn flag_cancel(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        self.cancel_if(id, TaskStatus::Running).await
    }

    /// [`Store::cancel_requests`](crate::store::Store::cancel_requests) on this store.
    pub(super) async fn flagged(
        &self,
        owner: &str,
        ids: &[TaskId],
    ) -> Result<Vec<TaskId>, StoreError> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HMGET")
                .arg(self.key(&format!("t:{id}")))
                .arg("status")
                .arg("owner")
                .arg("cancel");
        }
        let mut conn = self.conn.clone();
        let found: Vec<Vec<Option<String>>> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let asked = |fields: &Vec<Option<String>>| {
            matches!(fields.as_slice(), [Some(status), Some(by), Some(flag)]
                if status == "running" && by == owner && flag == "1")
        };
        Ok(ids.iter().zip(&found).filter(|(_, fields)| asked(fields)).map(|(id, _)| *id).collect())
    }

    /// Cancels the task `id` if it is pending (`when` pending), or flags it for its runner if
    /// it is running (`when` running), in one script; returns its status before.
    async fn cancel_if(
        &self,
        id: &TaskId,
        when: TaskStatus,
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
            .arg(when.as_str())
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
