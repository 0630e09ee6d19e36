//! [`TaskContext`]: what a running task knows about itself, available anywhere in its code
//! through [`task_context()`], and the buffer that [`task_log!`](crate::task_log) writes to.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};

use crate::enqueue::Enqueuer;
use crate::event::{EventKind, TaskEvent};
use crate::id::TaskId;
use crate::limits::{Limits, cut};
use crate::observer::Observers;
use crate::progress::ProgressSlot;
use crate::record::{LogEntry, LogLevel};

/// What a running task knows about itself.
///
/// ```
/// # async fn demo() {
/// #[taskflow::task]
/// async fn invoice(number: u32) {
///     let ctx = taskflow::task_context().expect("inside a task");
///     println!("{} attempt {} for user {:?}", ctx.func_name(), ctx.attempt(), ctx.tags().get("user_id"));
///     let _ = number;
/// }
/// assert!(taskflow::task_context().is_none()); // outside a task
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TaskContext {
    inner: Arc<ContextInner>,
    attempt: u32,
    /// Fires when the attempt is stopped (a cancel, on any instance, or a shutdown).
    stop: Option<tokio_util::sync::CancellationToken>,
    /// Where the attempt's progress reports wait to be written.
    progress: Option<Arc<ProgressSlot>>,
}

#[derive(Debug)]
struct ContextInner {
    task_id: TaskId,
    func_name: Arc<str>,
    queue: Arc<str>,
    tags: Arc<BTreeMap<String, String>>,
    logs: Mutex<Logs>,
    observers: Observers,
    /// Enqueues into the engine running this task.
    tasks: Option<Arc<dyn Enqueuer>>,
    limits: Limits,
}

/// The lines written since the last flush: at most `Limits::max_log_entries`, the oldest
/// dropped first and counted.
#[derive(Debug, Default)]
struct Logs {
    kept: VecDeque<LogEntry>,
    dropped: usize,
}

impl TaskContext {
    pub(crate) fn new(
        task_id: TaskId,
        (func_name, queue): (Arc<str>, Arc<str>),
        tags: Arc<BTreeMap<String, String>>,
        observers: Observers,
        tasks: Option<Arc<dyn Enqueuer>>,
        limits: Limits,
    ) -> Self {
        TaskContext {
            inner: Arc::new(ContextInner {
                task_id,
                func_name,
                queue,
                tags,
                logs: Mutex::new(Logs::default()),
                observers,
                tasks,
                limits,
            }),
            attempt: 0,
            stop: None,
            progress: None,
        }
    }

    /// The context of one attempt, stopped through `stop`, reporting into `progress`.
    pub(crate) fn with_attempt(
        &self,
        attempt: u32,
        stop: tokio_util::sync::CancellationToken,
        progress: Arc<ProgressSlot>,
    ) -> Self {
        TaskContext {
            inner: Arc::clone(&self.inner),
            attempt,
            stop: Some(stop),
            progress: Some(progress),
        }
    }

    /// Reports how far the task has got: `done` of `total` units. Cheap enough for a tight
    /// loop (a few atomic stores): the engine writes the latest report to the task's record
    /// once per poll interval, and as the attempt ends, where the API, the dashboard's
    /// progress bar and later attempts see it (a retry starts from the last report). Works
    /// from async and from blocking code.
    ///
    /// ```
    /// #[taskflow::task]
    /// async fn import(rows: u64) {
    ///     let ctx = taskflow::task_context().expect("inside a task");
    ///     for row in 0..rows {
    ///         // ... one row
    ///         ctx.progress(row + 1, rows);
    ///     }
    ///     ctx.progress_with(rows, rows, "indexing");
    /// }
    /// ```
    pub fn progress(&self, done: u64, total: u64) {
        if let Some(slot) = &self.progress {
            slot.report(done, total, None);
        }
    }

    /// Reports progress as [`TaskContext::progress`] does, with a message saying what the task
    /// is doing (kept to 256 bytes; later reports without one keep it).
    pub fn progress_with(&self, done: u64, total: u64, message: impl Into<String>) {
        if let Some(slot) = &self.progress {
            slot.report(done, total, Some(message.into()));
        }
    }

    /// Whether this attempt was asked to stop: cancelled (through the API or
    /// `TaskManager::cancel`, on any instance sharing the store) or stopped by a shutdown. An
    /// async task is stopped at its next await point anyway; blocking code (a sync task)
    /// cannot be, and checks this to return early.
    ///
    /// ```
    /// #[taskflow::task]
    /// fn crunch(rows: u32) -> Result<u32, String> {
    ///     let ctx = taskflow::task_context().expect("inside a task");
    ///     for row in 0..rows {
    ///         if ctx.is_cancelled() {
    ///             return Err(format!("stopped at row {row}"));
    ///         }
    ///     }
    ///     Ok(rows)
    /// }
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.stop.as_ref().is_some_and(tokio_util::sync::CancellationToken::is_cancelled)
    }

    /// The task's id.
    pub fn task_id(&self) -> TaskId {
        self.inner.task_id
    }

    /// The task's name.
    pub fn func_name(&self) -> &str {
        &self.inner.func_name
    }

    /// The attempt: 0 for the first run, 1 for the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The task's tags.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.inner.tags
    }

    /// What [`TaskContext::tasks`] enqueues through.
    pub(crate) fn enqueuer(&self) -> Option<&Arc<dyn Enqueuer>> {
        self.inner.tasks.as_ref()
    }

    pub(crate) fn log(&self, level: LogLevel, message: String, fields: Map<String, Value>) {
        let limits = &self.inner.limits;
        let message = cut(message, limits.max_log_message_bytes);
        let entry =
            LogEntry { at: chrono::Utc::now(), level, message, attempt: self.attempt, fields };
        self.emit(EventKind::Log, Some(entry.message.clone()));
        let mut logs = self.inner.logs.lock().unwrap_or_else(PoisonError::into_inner);
        if logs.kept.len() >= limits.max_log_entries {
            if logs.kept.pop_front().is_none() {
                // A limit of zero keeps nothing.
                logs.dropped += 1;
                return;
            }
            logs.dropped += 1;
        }
        logs.kept.push_back(entry);
    }

    /// Takes the log entries written since the last call; when some were dropped, a marker
    /// line saying how many comes first.
    pub(crate) fn take_logs(&self) -> Vec<LogEntry> {
        let logs =
            std::mem::take(&mut *self.inner.logs.lock().unwrap_or_else(PoisonError::into_inner));
        let mut taken = Vec::with_capacity(logs.kept.len() + 1);
        if logs.dropped > 0 {
            let at = logs.kept.front().map_or_else(chrono::Utc::now, |first| first.at);
            let message = format!(
                "[... {} earlier log lines dropped: at most {} are kept per attempt]",
                logs.dropped, self.inner.limits.max_log_entries
            );
            taken.push(LogEntry {
                at,
                level: LogLevel::Warn,
                message,
                attempt: self.attempt,
                fields: Map::new(),
            });
        }
        taken.extend(logs.kept);
        taken
    }

    /// Sends an event about this task to the observers and the live feed.
    pub(crate) fn emit(&self, kind: EventKind, message: Option<String>) {
        let observers = &self.inner.observers;
        if observers.is_empty() {
            return;
        }
        observers.send(&TaskEvent {
            kind,
            task_id: self.inner.task_id,
            func_name: Arc::clone(&self.inner.func_name),
            queue: Arc::clone(&self.inner.queue),
            tags: Arc::clone(&self.inner.tags),
            attempt: self.attempt,
            at: chrono::Utc::now(),
            message,
        });
    }
}

tokio::task_local! {
    static ASYNC_CONTEXT: TaskContext;
}

thread_local! {
    static SYNC_CONTEXT: RefCell<Option<TaskContext>> = const { RefCell::new(None) };
}

/// The context of the task whose code is running, sync or async, on whichever thread it runs;
/// `None` outside a task.
pub fn task_context() -> Option<TaskContext> {
    ASYNC_CONTEXT
        .try_with(TaskContext::clone)
        .ok()
        .or_else(|| SYNC_CONTEXT.with(|slot| slot.borrow().clone()))
}

/// Runs `future` with `context` as its task context.
pub(crate) async fn scope<F: std::future::Future>(context: TaskContext, future: F) -> F::Output {
    ASYNC_CONTEXT.scope(context, future).await
}

/// Runs `f` on this thread with `context` as its task context.
pub(crate) fn enter_sync<R>(context: Option<TaskContext>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<TaskContext>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SYNC_CONTEXT.with(|slot| *slot.borrow_mut() = previous);
        }
    }
    let previous = SYNC_CONTEXT.with(|slot| std::mem::replace(&mut *slot.borrow_mut(), context));
    let _restore = Restore(previous);
    f()
}

/// Appends to the current task's log; used by `task_log!`. Outside a task, only the tracing
/// event that `task_log!` also emits remains.
#[doc(hidden)]
pub fn append_log(level: LogLevel, message: String, fields: Vec<(&'static str, Value)>) {
    if let Some(context) = task_context() {
        let fields = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        context.log(level, message, fields);
    }
}

/// Writes a structured line to the running task's log.
///
/// `task_log!("message", key = value, ...)` logs at `info`; put a level first for another:
/// `task_log!(warn, "message", ...)` (`trace`, `debug`, `info`, `warn`, `error`). The message
/// may use inline format captures (`"{user_id}"`); each field value must be `Serialize` and is
/// stored as JSON. The line is appended to the task's `logs` and also emitted as a `tracing`
/// event inside the task's span, which carries its id, name, attempt and tags.
///
/// ```
/// #[taskflow::task]
/// async fn bill(user_id: u64, plan: String) {
///     taskflow::task_log!("Processing invoice", user_id = user_id, plan = plan);
///     taskflow::task_log!(warn, "card expires soon", user_id = user_id);
/// }
/// ```
#[macro_export]
macro_rules! task_log {
    (trace, $($rest:tt)+) => { $crate::__task_log!(TRACE, Trace, $($rest)+) };
    (debug, $($rest:tt)+) => { $crate::__task_log!(DEBUG, Debug, $($rest)+) };
    (info, $($rest:tt)+) => { $crate::__task_log!(INFO, Info, $($rest)+) };
    (warn, $($rest:tt)+) => { $crate::__task_log!(WARN, Warn, $($rest)+) };
    (error, $($rest:tt)+) => { $crate::__task_log!(ERROR, Error, $($rest)+) };
    ($($rest:tt)+) => { $crate::__task_log!(INFO, Info, $($rest)+) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __task_log {
    ($tracing_level:ident, $level:ident, $message:literal $(, $key:ident = $value:expr)* $(,)?) => {{
        let __taskflow_message = ::std::format!($message);
        match ($(&$value,)*) {
            ($($key,)*) => {
                $( let $key = $crate::__private::to_json($key); )*
                $crate::__private::tracing::event!(
                    target: "taskflow::task",
                    $crate::__private::tracing::Level::$tracing_level,
                    $( $key = %$key, )*
                    "{}",
                    __taskflow_message
                );
                $crate::__private::append_log(
                    $crate::LogLevel::$level,
                    __taskflow_message,
                    ::std::vec![$( (::std::stringify!($key), $key) ),*],
                );
            }
        }
    }};
}
