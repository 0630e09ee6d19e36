//! What running tasks hear and say while they run: cancel requests (a set of flagged ids,
//! cleared by the next fetch) and their progress.

use super::MemoryStore;
use crate::id::TaskId;
use crate::record::{Progress, TaskStatus};
use crate::store::StoreError;

impl MemoryStore {
    /// [`Store::request_cancel`](crate::store::Store::request_cancel) on this store.
    pub(super) fn flag_cancel(&self, id: &TaskId) -> Option<TaskStatus> {
        let mut state = self.lock();
        let status = state.tasks.get(id)?.status;
        if status == TaskStatus::Running {
            state.cancels.insert(*id);
        }
        Some(status)
    }

    /// [`Store::cancel_requests`](crate::store::Store::cancel_requests) on this store.
    pub(super) fn flagged(&self, owner: &str, ids: &[TaskId]) -> Vec<TaskId> {
        let state = self.lock();
        ids.iter()
            .filter(|id| state.cancels.contains(id))
            .filter(|id| {
                state.tasks.get(id).is_some_and(|record| {
                    record.status == TaskStatus::Running
                        && record.lease_owner.as_deref() == Some(owner)
                })
            })
            .copied()
            .collect()
    }
}

impl MemoryStore {
    /// [`Store::record_progress`](crate::store::Store::record_progress) on this store.
    pub(super) async fn write_progress(
        &self,
        owner: &str,
        reports: &[(TaskId, Progress)],
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        for (id, progress) in reports {
            if let Some(record) = state.tasks.get_mut(id)
                && record.status == TaskStatus::Running
                && record.lease_owner.as_deref() == Some(owner)
            {
                record.progress = Some(progress.clone());
            }
        }
        Ok(())
    }
}
