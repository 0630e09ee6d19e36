//! New tasks: stored under the one lock, alone or with a schedule's change.

use chrono::{DateTime, Utc};

use super::{MemoryStore, State};
use crate::record::{TaskRecord, TaskStatus};
use crate::store::{Enqueued, StoreError};

/// What a store under the lock let go of, dropped once the lock is released.
pub(super) type Dropped = (Option<TaskRecord>, Option<TaskRecord>);

impl MemoryStore {
    /// Stores a new task, held back from fetching until `held`, if given.
    pub(super) fn store(
        &self,
        record: TaskRecord,
        held: Option<DateTime<Utc>>,
    ) -> Result<Enqueued, StoreError> {
        let mut state = self.lock();
        let (enqueued, dropped) = state.insert(record, held);
        drop(state);
        drop(dropped);
        Ok(enqueued)
    }
}

impl State {
    /// Stores `record` unless an active task holds its idempotency key (then answers that
    /// one); returns what it let go of, for the caller to drop after the lock.
    pub(super) fn insert(
        &mut self,
        record: TaskRecord,
        held: Option<DateTime<Utc>>,
    ) -> (Enqueued, Dropped) {
        let id = record.task_id;
        if let Some(key) = &record.idempotency_key {
            let active = self.keys.get(key).and_then(|id| self.tasks.get(id)).filter(|existing| {
                !matches!(existing.status, TaskStatus::Failed | TaskStatus::Cancelled)
            });
            if let Some(existing) = active {
                let enqueued = Enqueued { id: existing.task_id, created: false, write: None };
                return (enqueued, (None, None));
            }
            self.keys.insert(key.clone(), id);
        }
        let finished = record.status.is_finished();
        let mut replaced = None;
        if let Some(key) = record.run_key.clone().filter(|_| !finished) {
            if let Some(waiting) = self.waiting_under(&key) {
                replaced =
                    self.cancel(waiting, record.created_at, Some(super::super::replaced(&id)));
            }
            self.run_keys.insert(key, id);
        }
        self.tally.insert(&record, Utc::now());
        self.tasks.insert(id, Box::new(record));
        let order = self.next_order;
        self.next_order += 1;
        self.order.insert(id, order);
        if let Some(until) = held.filter(|_| !finished) {
            self.held.insert(id, until);
        }
        let evicted = if finished { self.finished(id) } else { None };
        (Enqueued { id, created: true, write: None }, (evicted, replaced))
    }
}

impl MemoryStore {
    /// [`Store::rewrite_values`](crate::store::Store::rewrite_values) on this store.
    pub(super) fn rewrite(&self, rewrite: &crate::store::Rewrite) -> bool {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(&rewrite.id) else { return false };
        let args_hold = rewrite.args.as_ref().is_none_or(|(from, _)| record.args == *from);
        let result_hold =
            rewrite.result.as_ref().is_none_or(|(from, _)| record.result.as_ref() == Some(from));
        if !args_hold || !result_hold {
            return false;
        }
        if let Some((_, to)) = &rewrite.args {
            record.args = to.clone();
        }
        if let Some((_, to)) = &rewrite.result {
            record.result = Some(to.clone());
        }
        true
    }
}
