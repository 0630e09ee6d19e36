//! [`MemoryStore`]: every task in a map behind one lock. For tests and for apps that accept
//! losing their task history on restart.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{Enqueued, Lease, Store, StoreError, TaskQuery, Transition};
use crate::id::TaskId;
use crate::record::{LogEntry, TaskRecord, TaskStatus};

/// A store that keeps tasks in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tasks: HashMap<TaskId, TaskRecord>,
    /// Idempotency key -> the task that holds it while active.
    keys: HashMap<String, TaskId>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn holds(record: &TaskRecord, lease: &Lease) -> bool {
    record.status == TaskStatus::Running && record.lease_owner.as_deref() == Some(&*lease.owner)
}

#[async_trait]
impl Store for MemoryStore {
    fn enqueue(&self, record: TaskRecord) -> Result<Enqueued, StoreError> {
        let mut state = self.lock();
        let id = record.task_id;
        if let Some(key) = &record.idempotency_key {
            let active =
                state.keys.get(key).and_then(|id| state.tasks.get(id)).filter(|existing| {
                    !matches!(existing.status, TaskStatus::Failed | TaskStatus::Cancelled)
                });
            if let Some(existing) = active {
                return Ok(Enqueued { id: existing.task_id, created: false });
            }
            state.keys.insert(key.clone(), id);
        }
        state.tasks.insert(id, record);
        Ok(Enqueued { id, created: true })
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.lock().tasks.get(id).cloned())
    }

    async fn claim(&self, id: &TaskId, lease: &Lease) -> Result<Option<TaskRecord>, StoreError> {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(id) else {
            return Ok(None);
        };
        if record.status != TaskStatus::Pending {
            return Ok(None);
        }
        record.status = TaskStatus::Running;
        record.start_time.get_or_insert_with(chrono::Utc::now);
        record.lease_owner = Some(lease.owner.to_string());
        record.lease_expires_at = Some(lease.expires_at);
        Ok(Some(record.clone()))
    }

    async fn transition(
        &self,
        id: &TaskId,
        lease: &Lease,
        change: Transition,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(id).filter(|r| holds(r, lease)) else {
            return Ok(false);
        };
        match change {
            Transition::AttemptFailed { retries_used, error, stacktrace } => {
                record.retries_used = retries_used;
                record.error = Some(error);
                record.stacktrace = Some(stacktrace);
            }
            Transition::Finished { status, end_time, retries_used, result, error, stacktrace } => {
                record.status = status;
                record.end_time = Some(end_time);
                record.duration = record
                    .start_time
                    .map(|start| (end_time - start).num_microseconds().unwrap_or(0) as f64 / 1e6);
                record.retries_used = retries_used;
                record.result = result;
                if error.is_some() {
                    record.error = error;
                    record.stacktrace = stacktrace;
                }
                record.lease_owner = None;
                record.lease_expires_at = None;
            }
            Transition::Requeue => {
                record.status = TaskStatus::Pending;
                record.lease_owner = None;
                record.lease_expires_at = None;
            }
        }
        Ok(true)
    }

    async fn append_logs(&self, id: &TaskId, logs: Vec<LogEntry>) -> Result<(), StoreError> {
        if let Some(record) = self.lock().tasks.get_mut(id) {
            record.logs.extend(logs);
        }
        Ok(())
    }

    async fn cancel_pending(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(id) else {
            return Ok(None);
        };
        let before = record.status;
        if before == TaskStatus::Pending {
            record.status = TaskStatus::Cancelled;
            record.end_time = Some(chrono::Utc::now());
        }
        Ok(Some(before))
    }

    async fn list(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>, StoreError> {
        let state = self.lock();
        let mut found: Vec<&TaskRecord> = state
            .tasks
            .values()
            .filter(|r| query.status.is_none_or(|s| r.status == s))
            .filter(|r| query.func_name.as_deref().is_none_or(|f| r.func_name == f))
            .collect();
        found.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(found.into_iter().take(query.limit.unwrap_or(100)).cloned().collect())
    }
}
