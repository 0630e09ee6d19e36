//! Typed, durable background tasks for axum services, declared with [`#[task]`](macro@task).
//!
//! A handler enqueues work that runs after its response is sent. Enqueuing is checked like a
//! function call: `tasks.add_task(send_email, 42)` on a fn taking a `String` does not compile.
//!
//! ```
//! use taskflow::{task, Tasks};
//!
//! #[task(retries = 2)]
//! async fn send_email(address: String) -> Result<(), std::io::Error> {
//!     println!("sending to {address}");
//!     Ok(())
//! }
//!
//! let tasks = Tasks::recording();
//! let id = tasks.add_task(send_email, "a@b.c".to_string());
//! assert_eq!(tasks.recorded()[0].id, id);
//! ```
//!
//! The pieces:
//! - [`macro@task`] turns a fn into a task: an argument struct, a typed `enqueue` stub, an impl
//!   of [`Task`] and a registration in the [`registry()`].
//! - [`Tasks`] is what handlers enqueue into; [`EnqueueOptions`] are per-call overrides.
//! - [`registry()`] finds a stored task's fn from its name and runs it from JSON arguments.

#[cfg(feature = "axum")]
pub mod admin;
mod builder;
mod context;
mod engine;
mod enqueue;
mod error;
mod event;
mod failure;
// Without the `axum` feature, nothing serves the feed (the admin API reads it).
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
mod feed;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod id;
mod instance;
mod invocation;
mod limits;
mod maintenance;
mod manager;
#[cfg(feature = "metrics")]
pub mod metrics;
mod observer;
mod options;
mod progress;
mod queue;
mod record;
mod registry;
mod schedule;
#[cfg(feature = "encryption")]
mod seal;
pub mod store;
mod task;
mod task_error;
mod tasks;
mod trace;
mod trim;
#[cfg(feature = "axum")]
mod web;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[cfg(feature = "axum")]
pub use crate::admin::Admin;
pub use crate::builder::{DEFAULT_HISTORY, TaskManagerBuilder};
pub use crate::context::{TaskContext, task_context};
pub use crate::engine::DEFAULT_CONCURRENCY;
pub use crate::error::{Error, Result};
pub use crate::failure::{FailureKind, TaskFailure};
pub use crate::id::TaskId;
pub use crate::instance::Instance;
pub use crate::invocation::{Invocation, TaskOutcome};
pub use crate::limits::Limits;
pub use crate::maintenance::{ScheduleProblem, Scheduler, Tick};
pub use crate::manager::{CancelOutcome, TaskManager};
#[cfg(feature = "metrics")]
pub use crate::metrics::MetricsObserver;
pub use crate::observer::{EventKind, MemoryObserver, StdoutObserver, TaskEvent, TaskObserver};
pub use crate::options::{EnqueueOptions, TaskOptions};
pub use crate::queue::{
    DEFAULT_QUEUE, MAX_QUEUE_NAME, Queue, QueueChange, QueueCounts, QueueInfo, QueueState, Rate,
    is_valid_queue_name,
};
pub use crate::record::{LogEntry, LogLevel, Progress, TaskRecord, TaskSource, TaskStatus};
pub use crate::registry::{RegisteredTask, Registry, registry};
pub use crate::schedule::{
    DueSlots, MIN_INTERVAL, Overlap, Schedule, ScheduleError, ScheduleSpec, Tz,
};
#[cfg(feature = "encryption")]
pub use crate::seal::{KEY_LEN, Key, KeyError, Keyring, OpenError};
#[cfg(feature = "mysql")]
pub use crate::store::MysqlStore;
#[cfg(feature = "postgres")]
pub use crate::store::PostgresStore;
#[cfg(feature = "redis")]
pub use crate::store::RedisStore;
/// Fault injection for tests (feature `fault-injection`).
#[cfg(feature = "fault-injection")]
pub use crate::store::faults;
#[cfg(feature = "sqlite")]
pub use crate::store::{Durability, SqliteOptions, SqliteStore};
pub use crate::store::{
    FunctionStats, MemoryStore, PRIORITY_STEP, Retention, Store, StoreError, StoreTimeouts,
    TaskPage, TaskQuery, TaskStats,
};
pub use crate::task::{IntoTaskArgs, Task};
pub use crate::task_error::TaskError;
pub use crate::tasks::{NewTask, Tasks};
pub use crate::trace::{TRACEPARENT, TRACESTATE, TraceLink};
#[cfg(feature = "axum")]
pub use crate::web::{MissingTaskLayer, TaskLayer, TaskService};
/// The PostgreSQL client taskflow uses, for [`TaskManager::add_task_in`].
#[cfg(feature = "postgres")]
pub use tokio_postgres;

#[doc = include_str!("docs/task.md")]
pub use taskflow_macros::task;

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
