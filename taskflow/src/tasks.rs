//! [`Tasks`]: the collection a handler enqueues into, and [`NewTask`], one enqueued task as the
//! store receives it.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::id::TaskId;
use crate::options::{EnqueueOptions, TaskOptions};
use crate::task::{IntoTaskArgs, Task};

/// One enqueued task, before it is stored: its id, the task's declared options, its JSON
/// arguments and the per-call options.
#[derive(Clone, Debug)]
pub struct NewTask {
    /// The id returned to the caller.
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
        self.options
            .retries_override()
            .unwrap_or(self.task.max_retries())
    }

    /// The effective priority.
    pub fn priority(&self) -> i32 {
        self.options
            .priority_override()
            .unwrap_or(self.task.default_priority())
    }

    /// Whether the task starts at enqueue rather than after the response.
    pub fn eager(&self) -> bool {
        self.options
            .eager_override()
            .unwrap_or(self.task.is_eager())
    }
}

/// The task collection handlers enqueue into.
///
/// `add_task(f, args)` checks `args` against `f`'s parameters at compile time and returns the
/// new task's id at once. [`Tasks::recording`] gives a collection that only records what was
/// enqueued, to unit-test handlers without running anything.
///
/// ```
/// use taskflow::{task, EnqueueOptions, Tasks};
///
/// #[task]
/// fn greet(name: String, times: u8) {
///     let _ = (name, times);
/// }
///
/// let tasks = Tasks::recording();
/// let id = tasks.add_task(greet, ("Ada".to_string(), 2));
/// greet::enqueue_with(&tasks, EnqueueOptions::new().tag("team", "core"), "Bob".into(), 1);
///
/// let recorded = tasks.recorded();
/// assert_eq!(recorded[0].id, id);
/// assert_eq!(recorded[0].name(), "greet");
/// assert_eq!(recorded[0].args, Ok(serde_json::json!({"name": "Ada", "times": 2})));
/// assert_eq!(recorded[1].options.tags_map()["team"], "core");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    recorded: Arc<Mutex<Vec<NewTask>>>,
}

impl Tasks {
    /// A collection that records enqueued tasks without running them.
    pub fn recording() -> Self {
        Self::default()
    }

    /// Enqueues `task` with `args`: the value itself for a one-parameter fn, a tuple of the
    /// parameters in order for several, or the generated `Args` struct.
    pub fn add_task<T: Task>(&self, task: T, args: impl IntoTaskArgs<T>) -> TaskId {
        self.add_task_with(task, args, EnqueueOptions::new())
    }

    /// Enqueues `task` with per-call options that override its `#[task]` defaults.
    pub fn add_task_with<T: Task>(
        &self,
        task: T,
        args: impl IntoTaskArgs<T>,
        options: EnqueueOptions,
    ) -> TaskId {
        let _ = task;
        let args = serde_json::to_value(args.into_args()).map_err(|e| e.to_string());
        let new = NewTask {
            id: TaskId::new(),
            task: T::options(),
            args,
            options,
        };
        let id = new.id;
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(new);
        id
    }

    /// Every task enqueued so far, in order.
    pub fn recorded(&self) -> Vec<NewTask> {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
