//! The crate's error type.

/// Everything that can go wrong in taskflow outside a task's own body.
///
/// A task that fails is not an `Error`: its failure is recorded as a
/// [`TaskFailure`](crate::TaskFailure) on the task.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A string that should hold a task id is not a UUID.
    #[error("invalid task id `{input}`: expected a UUID")]
    InvalidTaskId {
        /// The offending input, cut to 64 characters.
        input: String,
    },
    /// A stored task names a function this binary does not register: it was removed or
    /// renamed, or the crate that defines it is not linked (see the registry docs).
    #[error(
        "task `{name}` is not registered in this binary: it was renamed or removed, or it is defined in a library crate that the binary never names (add `use my_tasks as _;` for that crate)"
    )]
    UnknownTask {
        /// The stored task name.
        name: String,
    },
    /// Stored JSON arguments do not match the task's parameters (a changed signature, or data
    /// written by hand).
    #[error("invalid arguments for task `{task}`: {}{message}", at_path(path))]
    InvalidArgs {
        /// The task name.
        task: String,
        /// Where in the arguments the mismatch is, such as `width` or `items[2].sku`;
        /// empty when it is the arguments as a whole (a missing field names itself in
        /// `message`).
        path: String,
        /// What serde found wrong.
        message: String,
    },
    /// Two `#[task]` fns in one binary share a name: stored tasks could not tell them apart.
    #[error(
        "two tasks are named `{name}`: one at {first}, one at {second}; give one of them `#[task(name = \"...\")]`"
    )]
    DuplicateTaskName {
        /// The shared name.
        name: String,
        /// Where the first is defined (`file:line`, module).
        first: String,
        /// Where the second is defined.
        second: String,
    },
    /// The task store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A task carries more than [`Limits`](crate::Limits) allows; nothing was stored. In a
    /// request, the axum layer answers `413 Payload Too Large`.
    #[error("task {what} too large: {size} over the limit of {limit}")]
    TooLarge {
        /// What is too large: `arguments` (bytes), `tags` (count), `tag key`, `tag value`,
        /// `idempotency key` (bytes).
        what: &'static str,
        /// Its size (for arguments over the limit: at least this).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The queue holds as many `pending` tasks as its `max_pending` allows; nothing was
    /// stored. In a request, the axum layer answers `429 Too Many Requests` with a
    /// `Retry-After` header.
    #[error(
        "queue `{queue}` is full: it holds its limit of {limit} pending tasks; try again in {retry_after} s"
    )]
    QueueFull {
        /// The queue.
        queue: String,
        /// Its `max_pending`.
        limit: u64,
        /// When its count is read again, in seconds: the `Retry-After` to send.
        retry_after: u64,
    },
    /// An enqueue names a queue that the manager does not declare (see
    /// [`TaskManagerBuilder::queue`](crate::TaskManagerBuilder::queue)); nothing was stored.
    #[error(
        "queue `{queue}` is not declared: declare it with `TaskManager::builder().queue(\"{queue}\", Queue::new())`"
    )]
    UnknownQueue {
        /// The queue named.
        queue: String,
    },
    /// The encryption settings cannot be used (a keyring with no primary key, say); the
    /// message never shows a key.
    #[error("encryption: {0}")]
    Encryption(String),
    /// No schedule of that name is stored.
    #[error("no schedule named `{0}` is stored")]
    UnknownSchedule(String),
    /// A schedule that cannot be built, or a stored one this binary cannot fire (its task is
    /// not registered here, its definition cannot be read).
    #[error("{0}")]
    Schedule(String),
    /// A registered task's `#[task(queue = "...")]` names a queue the builder does not
    /// declare: an error at `build()`, so its tasks cannot wait in a queue nobody runs.
    #[error(
        "task `{task}` (at {location}) goes to queue `{queue}`, which this manager does not declare: add `.queue(\"{queue}\", Queue::new())` to the builder"
    )]
    UndeclaredQueue {
        /// The task.
        task: String,
        /// Its queue.
        queue: String,
        /// Where the task is defined.
        location: String,
    },
    /// A queue's settings at `build()` (or changed at run time) are not valid.
    #[error("queue `{queue}`: {reason}")]
    InvalidQueue {
        /// The queue.
        queue: String,
        /// What is wrong, naming the setting.
        reason: String,
    },
    /// No task has this id.
    #[error("task {id} not found")]
    TaskNotFound {
        /// The id asked for.
        id: crate::TaskId,
    },
    /// A wait for a task to finish ran out of time.
    #[error("task {id} did not finish within {waited:?}")]
    Timeout {
        /// The task.
        id: crate::TaskId,
        /// How long the wait was.
        waited: std::time::Duration,
    },
    /// A `TaskManager` was started outside a tokio runtime.
    #[error("a TaskManager must be started inside a tokio runtime")]
    NoRuntime,
    /// Only a `failed`, `interrupted` or `cancelled` task can be retried.
    #[error("task {id} is {status}: only failed, interrupted or cancelled tasks can be retried")]
    NotRetryable {
        /// The task.
        id: crate::id::TaskId,
        /// Its status.
        status: crate::record::TaskStatus,
    },
}

fn at_path(path: &str) -> String {
    if path.is_empty() || path == "." { String::new() } else { format!("field `{path}`: ") }
}

/// `Result` with [`Error`] as its default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
