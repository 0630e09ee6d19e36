//! What this store's fetches know of the tasks they leased, kept until each one's outcome:
//! the outcome's write then counts the change without reading the row first (a running task's
//! function, queue, duration, retries and start change only through its lease holder's
//! outcome, and the outcome's write is fenced by that lease). A task not found here (this
//! process restarted, or too many are running) is read, locked, with its batch.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::deltas::Seen;
use crate::id::TaskId;
use crate::record::TaskRecord;

/// At most this many leased tasks are remembered; beyond, outcomes read their rows.
const MOST: usize = 100_000;

/// A leased task as its fetch left it.
pub(super) struct Known {
    /// The lease holder.
    pub(super) owner: String,
    /// Its start as stored (microseconds).
    pub(super) start: Option<f64>,
    /// What the counters see of it.
    pub(super) seen: Seen,
}

/// The tasks this store's fetches leased, by id.
#[derive(Default)]
pub(super) struct RunningRows(Mutex<HashMap<TaskId, Known>>);

impl std::fmt::Debug for RunningRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningRows").finish_non_exhaustive()
    }
}

impl RunningRows {
    /// Remembers `record`, just leased by `owner`.
    pub(super) fn started(&self, record: &TaskRecord, owner: &str) {
        let mut rows = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if rows.len() >= MOST {
            return;
        }
        let seen = Seen {
            func_name: record.func_name.clone(),
            queue: record.queue.clone(),
            status: "running".to_owned(),
            duration: record.duration,
            retries_used: i64::from(record.retries_used),
        };
        let start = record.start_time.map(|at| at.timestamp_micros() as f64);
        rows.insert(record.task_id, Known { owner: owner.to_owned(), start, seen });
    }

    /// Takes what is known of `id`, once.
    pub(super) fn take(&self, id: &TaskId) -> Option<Known> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(id)
    }
}
