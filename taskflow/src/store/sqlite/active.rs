//! [`ActiveRows`]: where this process's active tasks sit in the table, so that their claim and
//! final writes find the row by its integer key instead of searching the index of random ids.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::id::TaskId;

/// The `seq` of every task this store inserted and that has not ended yet, and the next `seq`
/// to give. Only this process writes the file, so numbering rows here is safe.
#[derive(Debug)]
pub(super) struct ActiveRows {
    next: AtomicI64,
    seqs: Mutex<HashMap<TaskId, i64>>,
}

impl ActiveRows {
    /// Numbers new rows after `last`, the highest `seq` in the table.
    pub(super) fn after(last: i64) -> Self {
        ActiveRows { next: AtomicI64::new(last + 1), seqs: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TaskId, i64>> {
        self.seqs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives `id` the next `seq`; remembers it while the task is active.
    pub(super) fn insert(&self, id: TaskId, active: bool) -> i64 {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        if active {
            self.lock().insert(id, seq);
        }
        seq
    }

    /// The `seq` of `id`, when this store inserted it and it is still active.
    pub(super) fn get(&self, id: &TaskId) -> Option<i64> {
        self.lock().get(id).copied()
    }

    /// Forgets `id`: it ended, or its row was never written.
    pub(super) fn forget(&self, id: &TaskId) {
        self.lock().remove(id);
    }
}
