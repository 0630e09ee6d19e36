//! [`TaskEvent`]: one change in a task's life, as observers and the live feed receive it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::TaskId;

/// What happened to a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EventKind {
    /// Stored as pending.
    Enqueued,
    /// An attempt started.
    Started,
    /// An attempt failed; a retry follows, due later.
    Retrying,
    /// The task snoozed: it runs again later without using an attempt.
    Snoozed,
    /// Finished without error.
    Succeeded,
    /// Failed on its last attempt.
    Failed,
    /// Stopped by a shutdown.
    Interrupted,
    /// Cancelled.
    Cancelled,
    /// Wrote a log line.
    Log,
    /// Its progress report was written to the store (`message`: the report's, if any).
    Progress,
}

/// One lifecycle event, with the task's tags.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskEvent {
    /// What happened.
    pub kind: EventKind,
    /// The task.
    pub task_id: TaskId,
    /// Its name.
    pub func_name: Arc<str>,
    /// Its queue.
    pub queue: Arc<str>,
    /// Its tags.
    pub tags: Arc<BTreeMap<String, String>>,
    /// The attempt (0 = first run).
    pub attempt: u32,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The error of a failure, or the line of a log event.
    pub message: Option<String>,
}
