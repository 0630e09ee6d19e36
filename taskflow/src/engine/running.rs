//! [`Running`]: the attempts this instance is running, so that a cancel or a shutdown can stop
//! them and lease renewal knows which tasks to renew.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::id::TaskId;

/// Why a running attempt was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    Cancel,
    Shutdown,
}

/// One running attempt, as the engine tracks it.
#[derive(Debug, Default)]
pub(crate) struct RunningTask {
    pub(crate) stop: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl RunningTask {
    /// Stops the attempt at its next await point, for `reason`.
    pub(crate) fn stop(&self, reason: StopReason) {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
        self.stop.cancel();
    }

    pub(crate) fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The attempts running here, by task.
#[derive(Debug, Default)]
pub(crate) struct Running {
    tasks: Mutex<HashMap<TaskId, Arc<RunningTask>>>,
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, HashMap<TaskId, Arc<RunningTask>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tracks a new attempt of `id`.
    pub(crate) fn insert(&self, id: TaskId) -> Arc<RunningTask> {
        let running = Arc::new(RunningTask::default());
        self.lock().insert(id, Arc::clone(&running));
        running
    }

    pub(crate) fn remove(&self, id: &TaskId) {
        self.lock().remove(id);
    }

    pub(crate) fn get(&self, id: &TaskId) -> Option<Arc<RunningTask>> {
        self.lock().get(id).cloned()
    }

    /// The tasks running here, for lease renewal.
    pub(crate) fn ids(&self) -> Vec<TaskId> {
        self.lock().keys().copied().collect()
    }

    /// How many attempts run here now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Stops every attempt for `reason`.
    pub(crate) fn stop_all(&self, reason: StopReason) {
        for running in self.lock().values() {
            running.stop(reason);
        }
    }
}
