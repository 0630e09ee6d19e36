//! [`CancelFlags`]: cancel requests for a store that one process owns (SQLite), where every
//! running task's runner is in this process, kept in memory rather than in the file.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::id::TaskId;

/// How long a request waits for its runner to ask: a task that ended before its runner
/// looked leaves its flag behind until then.
const KEEP: Duration = Duration::from_secs(300);

/// The running tasks asked to stop, with when.
#[derive(Debug, Default)]
pub(crate) struct CancelFlags(Mutex<HashMap<TaskId, Instant>>);

impl CancelFlags {
    /// Flags `id`.
    pub(crate) fn flag(&self, id: TaskId) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(id, Instant::now());
    }

    /// The flagged of `ids`; flags older than [`KEEP`] are dropped.
    pub(crate) fn flagged(&self, ids: &[TaskId]) -> Vec<TaskId> {
        let mut flags = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if flags.is_empty() {
            return Vec::new();
        }
        flags.retain(|_, at| at.elapsed() < KEEP);
        ids.iter().filter(|id| flags.contains_key(id)).copied().collect()
    }

    /// Unflags `ids`, flagged before `before`: a new attempt of theirs started, fetched by
    /// a fetch that began then (a flag set since asks to stop the new attempt).
    pub(crate) fn clear(&self, ids: impl Iterator<Item = TaskId>, before: Instant) {
        let mut flags = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !flags.is_empty() {
            for id in ids {
                if flags.get(&id).is_some_and(|at| *at < before) {
                    flags.remove(&id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_holds_for_its_task_until_cleared() {
        let flags = CancelFlags::default();
        let (a, b) = (TaskId::new(), TaskId::new());
        flags.flag(a);
        assert_eq!(flags.flagged(&[b]), Vec::<TaskId>::new());
        assert_eq!(flags.flagged(&[a, b]), vec![a]);
        assert_eq!(flags.flagged(&[a]), vec![a]);
        let fetch_began = Instant::now();
        flags.flag(b);
        flags.clear([a, b].into_iter(), fetch_began);
        assert_eq!(flags.flagged(&[a, b]), vec![b], "flagged after the fetch began");
    }
}
