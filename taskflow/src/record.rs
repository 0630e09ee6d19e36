//! [`TaskRecord`]: everything known about one task, as stored and as served as JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::TaskId;

/// Where a task is in its life.
///
/// `pending -> running -> success | failed`; a task waiting for a retry stays `running`;
/// `interrupted` when a shutdown or crash stopped it while it ran; `cancelled` when cancelled
/// before or while it ran. JSON uses these lowercase words.
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Stored, waiting to run.
    Pending,
    /// Claimed by a runner: an attempt runs, or it waits for its next retry.
    Running,
    /// Finished without error.
    Success,
    /// Failed on its last allowed attempt.
    Failed,
    /// Stopped by a shutdown or a crash while it ran.
    Interrupted,
    /// Cancelled.
    Cancelled,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Success,
        TaskStatus::Failed,
        TaskStatus::Interrupted,
        TaskStatus::Cancelled,
    ];

    /// The lowercase word used in JSON and in the store.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Success => "success",
            TaskStatus::Failed => "failed",
            TaskStatus::Interrupted => "interrupted",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the task has ended and will not run again by itself.
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Success
                | TaskStatus::Failed
                | TaskStatus::Interrupted
                | TaskStatus::Cancelled
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status `{s}`: expected one of pending, running, success, failed, interrupted, cancelled"
                )
            })
    }
}

/// How a task came to be enqueued.
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskSource {
    /// Enqueued by code: `add_task` or `enqueue`.
    Manual,
    /// Enqueued by a schedule.
    Scheduled,
    /// A retry of an earlier task, asked for through the API.
    Retry,
}

/// The level of a task log entry.
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that the task survived.
    Warn,
    /// Something failed.
    Error,
}

impl TaskSource {
    /// Every source.
    pub const ALL: [TaskSource; 3] = [TaskSource::Manual, TaskSource::Scheduled, TaskSource::Retry];

    /// The lowercase word used in JSON and in stores.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskSource::Manual => "manual",
            TaskSource::Scheduled => "scheduled",
            TaskSource::Retry => "retry",
        }
    }

    /// The source `word` names, if any.
    pub fn parse(word: &str) -> Option<TaskSource> {
        TaskSource::ALL.into_iter().find(|source| source.as_str() == word)
    }
}

impl LogLevel {
    /// Every level, least severe first.
    pub const ALL: [LogLevel; 5] =
        [LogLevel::Trace, LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error];

    /// The lowercase word used in JSON and in stores.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// The level `word` names, if any.
    pub fn parse(word: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|level| level.as_str() == word)
    }
}

/// One structured line of a task's log, written with [`task_log!`](crate::task_log).
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When it was written.
    pub at: DateTime<Utc>,
    /// Its level.
    pub level: LogLevel,
    /// The message.
    pub message: String,
    /// The attempt that wrote it (0 = first run).
    pub attempt: u32,
    /// The named fields, as JSON.
    pub fields: Map<String, Value>,
}

/// Everything known about one task. Serialises with the JSON keys of fastapi-taskflow
/// (`task_id`, `func_name`, `status`, ...) plus taskflow's own; `Json(record)` is its "to_dict".
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task's id.
    pub task_id: TaskId,
    /// The task's registered name.
    pub func_name: String,
    /// Where it is in its life.
    pub status: TaskStatus,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When its first attempt started.
    pub start_time: Option<DateTime<Utc>>,
    /// When it finished.
    pub end_time: Option<DateTime<Utc>>,
    /// Seconds from `start_time` to `end_time`.
    pub duration: Option<f64>,
    /// How many retries ran (0 when the first attempt settled it).
    pub retries_used: u32,
    /// How many retries it may use.
    pub max_retries: u32,
    /// The message of the last failure.
    pub error: Option<String>,
    /// The last failure's chain of causes, or a panic's message and location.
    pub stacktrace: Option<String>,
    /// Its structured log.
    pub logs: Vec<LogEntry>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// How it was enqueued.
    pub source: TaskSource,
    /// Higher runs first.
    pub priority: i32,
    /// The queue it belongs to ([`DEFAULT_QUEUE`](crate::DEFAULT_QUEUE) unless the task or
    /// the enqueue names another).
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Its arguments: a JSON object keyed by parameter name.
    pub args: Value,
    /// The JSON of its returned value.
    pub result: Option<Value>,
    /// Its idempotency key.
    pub idempotency_key: Option<String>,
    /// Its run key: while it waits for its first start, enqueueing another task with this
    /// key replaces it (see [`EnqueueOptions::run_key`](crate::EnqueueOptions::run_key)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_key: Option<String>,
    /// It does not start before this time (a per-call `delay`).
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The task this one retries, for `source: retry`.
    pub retry_of: Option<TaskId>,
    /// Whether a shutdown or crash puts it back to `pending` instead of `interrupted`.
    pub requeue_on_interrupt: bool,
    /// How many times it was recovered after its process died while it ran.
    #[serde(default)]
    pub recoveries: u32,
    /// The runner that holds it while it runs.
    pub lease_owner: Option<String>,
    /// When that runner's hold lapses unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How far it got, as its code last reported (kept across retries).
    #[serde(default)]
    pub progress: Option<Progress>,
}

/// How far a task has got, as its code last reported through
/// [`TaskContext::progress`](crate::TaskContext::progress).
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all (`done` may pass it; readers clamp).
    pub total: u64,
    /// What it is doing, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it reported this.
    pub updated_at: DateTime<Utc>,
}

fn default_queue() -> String {
    crate::queue::DEFAULT_QUEUE.to_owned()
}

impl TaskRecord {
    /// The current attempt number (0 = first run).
    pub fn attempt(&self) -> u32 {
        self.retries_used
    }
}
