//! [`NewTask`], one enqueued task as the engine receives it, and [`Enqueuer`], what task
//! collections and task contexts enqueue through.

use std::sync::Arc;

use serde_json::Value;

use crate::error::Result;
use crate::id::TaskId;
use crate::options::{EnqueueOptions, TaskOptions};
use crate::store::{Enqueued, WriteTicket};

/// Where a collection's tasks go: the engine, seen through this trait so that collections (and
/// the task context, which hands them out) do not depend on it.
pub(crate) trait Enqueuer: Send + Sync + std::fmt::Debug {
    /// Stores `new`; when `held`, it is not started until [`Enqueuer::release`] (a request's
    /// tasks, which start once the response is out).
    fn enqueue(self: Arc<Self>, new: NewTask, held: bool) -> Result<Enqueued>;
    /// Stores each of `news` as [`Enqueuer::enqueue`] would (held when its flag says so),
    /// together: one result per task, in order.
    fn enqueue_many(self: Arc<Self>, news: Vec<(NewTask, bool)>) -> Vec<Result<Enqueued>>;
    /// Lets the task `id` of `queue` start once `write` (if any) has made it durable.
    fn start_when_durable(self: Arc<Self>, id: TaskId, queue: &str, write: Option<WriteTicket>);
    /// Lets the tasks `started` (each with its queue and pending write) start once their
    /// writes have made them durable: one waiter for all of them.
    fn start_all_when_durable(self: Arc<Self>, started: Vec<(TaskId, String, Option<WriteTicket>)>);
    /// Lets held tasks start (of the queues `queues`).
    fn release(self: Arc<Self>, ids: Vec<TaskId>, queues: Vec<String>);
}

/// One enqueued task, before it is stored: its id, the task's declared options, its JSON
/// arguments and the per-call options.
#[derive(Clone, Debug)]
pub struct NewTask {
    /// The id returned to the caller (unless an idempotency key matches an existing task).
    pub id: TaskId,
    /// The task's `#[task]` options, including its name.
    pub task: &'static TaskOptions,
    /// The arguments as a JSON object keyed by parameter name, or why they could not be
    /// serialised (a map with non-string keys, a `Serialize` impl that failed). Such a task is
    /// recorded as failed with that message rather than lost.
    pub args: Result<Value, String>,
    /// The per-call overrides.
    pub options: EnqueueOptions,
}

impl NewTask {
    /// The task name.
    pub fn name(&self) -> &'static str {
        self.task.name()
    }

    /// The effective number of retries: the per-call override, else the `#[task]` default.
    pub fn max_retries(&self) -> u32 {
        self.options.retries_override().unwrap_or(self.task.max_retries())
    }

    /// The effective priority.
    pub fn priority(&self) -> i32 {
        self.options.priority_override().unwrap_or(self.task.default_priority())
    }

    /// The effective queue: the per-call override, else the `#[task]` queue.
    pub fn queue(&self) -> &str {
        self.options.queue_override().unwrap_or(self.task.default_queue())
    }

    /// Whether the task starts at enqueue rather than after the response.
    pub fn eager(&self) -> bool {
        self.options.eager_override().unwrap_or(self.task.is_eager())
    }
}
