//! Cancel requests for running tasks: a set of flagged ids, cleared by the next fetch.

use super::MemoryStore;
use crate::id::TaskId;
use crate::record::TaskStatus;

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
