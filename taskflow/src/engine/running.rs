//! [`Running`]: the attempts this instance is running, so that a cancel or a shutdown can stop
//! them and lease renewal knows which tasks to renew.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::context::TaskContext;
use crate::id::TaskId;
use crate::progress::ProgressSlot;
use crate::record::Progress;

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
    /// The attempt's latest progress report, until written.
    pub(crate) progress: Arc<ProgressSlot>,
    /// The attempt's context, once it starts: what a written report is announced through.
    pub(crate) context: std::sync::OnceLock<TaskContext>,
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

    /// The progress reports not yet written, as of `now`, with the contexts to announce them.
    pub(crate) fn unwritten_progress(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(TaskId, Progress, TaskContext)> {
        self.lock()
            .iter()
            .filter_map(|(id, running)| {
                let context = running.context.get()?;
                Some((*id, running.progress.take(now)?, context.clone()))
            })
            .collect()
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
