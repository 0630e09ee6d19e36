//! [`Tasks`]: the collection a handler enqueues into, and [`NewTask`], one enqueued task as the
//! manager receives it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::context::TaskContext;
pub(crate) use crate::enqueue::Enqueuer;
pub use crate::enqueue::NewTask;
use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::options::EnqueueOptions;
use crate::store::WriteTicket;
use crate::task::{IntoTaskArgs, Task};

/// The task collection handlers enqueue into.
///
/// `add_task(f, args)` checks `args` against `f`'s parameters at compile time and returns the
/// task's id at once, with the task already stored as `pending`.
///
/// Where a `Tasks` comes from decides when its tasks start:
/// - In an axum handler (the [`Tasks`] extractor, with the manager's layer installed), after the
///   handler's response has been produced and handed to the server: see
///   [`TaskManager::layer`](crate::TaskManager::layer) for the exact moment.
/// - From [`TaskManager::tasks`](crate::TaskManager::tasks), at once.
/// - From [`Tasks::recording`], never: it only records, to unit-test handlers.
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
#[derive(Clone, Debug)]
pub struct Tasks {
    sink: Sink,
}

#[derive(Clone, Debug)]
enum Sink {
    Recording(Arc<Mutex<Vec<NewTask>>>),
    Immediate(Arc<dyn Enqueuer>),
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    Request(Arc<RequestBatch>),
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks::recording()
    }
}

impl Tasks {
    /// A collection that records enqueued tasks without storing or running them.
    pub fn recording() -> Self {
        Tasks { sink: Sink::Recording(Arc::default()) }
    }

    pub(crate) fn immediate(enqueuer: Arc<dyn Enqueuer>) -> Self {
        Tasks { sink: Sink::Immediate(enqueuer) }
    }

    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn for_request(batch: Arc<RequestBatch>) -> Self {
        Tasks { sink: Sink::Request(batch) }
    }

    /// Enqueues `task` with `args`: the value itself for a one-parameter fn, a tuple of the
    /// parameters in order for several, or the generated `Args` struct.
    ///
    /// When the store cannot take the task, the error is logged and, in a request, the
    /// response becomes a `503` (a `413` for a task over the manager's
    /// [`Limits`](crate::Limits)) so the client never holds an id that does not exist; use
    /// [`Tasks::try_add_task`] to handle it yourself. A durable store may only learn later,
    /// when it commits, that a write failed (a full disk): in a request that too turns the
    /// response into a `503`; outside a request it is logged and the task never starts (use
    /// [`TaskManager::submit`](crate::TaskManager::submit) to wait for the write).
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
        let new = new_task(task, args, options);
        let id = new.id;
        self.submit(new).unwrap_or_else(|err| self.refused(id, &err))
    }

    /// Enqueues `task` once for each of `args`, with its `#[task]` defaults, handing the
    /// store all of them at once: a shared-database store writes them in batches of up to
    /// 512 per transaction (or Redis pipeline), SQLite in its next group commit. Returns the
    /// ids, in order. Each task is checked, stored or refused on its own, and a refused one
    /// is reported as [`Tasks::add_task`] reports it.
    ///
    /// ```rust,standalone_crate
    /// # #[taskflow::task] async fn resize(image: u32) {}
    /// # async fn run() -> taskflow::Result<()> {
    /// let manager = taskflow::TaskManager::builder().build().await?;
    /// let ids = manager.add_tasks(resize, 0..1000);
    /// assert_eq!(ids.len(), 1000);
    /// # manager.shutdown(std::time::Duration::from_secs(5)).await;
    /// # Ok(())
    /// # }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(run()).unwrap();
    /// ```
    pub fn add_tasks<T: Task, A: IntoTaskArgs<T>>(
        &self,
        task: T,
        args: impl IntoIterator<Item = A>,
    ) -> Vec<TaskId> {
        self.add_tasks_with(task, args.into_iter().map(|args| (args, EnqueueOptions::new())))
    }

    /// Like [`Tasks::add_tasks`], each task with its own options (an idempotency key per
    /// task, say: one whose key an active task holds gets that task's id, as with
    /// [`Tasks::add_task_with`]).
    pub fn add_tasks_with<T: Task, A: IntoTaskArgs<T>>(
        &self,
        task: T,
        tasks: impl IntoIterator<Item = (A, EnqueueOptions)>,
    ) -> Vec<TaskId> {
        let news: Vec<NewTask> =
            tasks.into_iter().map(|(args, options)| new_task(task, args, options)).collect();
        let ids: Vec<TaskId> = news.iter().map(|new| new.id).collect();
        let results = self.submit_all(news);
        results
            .into_iter()
            .zip(ids)
            .map(|(result, id)| result.unwrap_or_else(|err| self.refused(id, &err)))
            .collect()
    }

    /// Like [`Tasks::add_task_with`], but returns the store's error instead of logging it:
    /// the errors the store knows at once (closed, unreachable, the arguments could not be
    /// serialised). Failures found at commit are reported as [`Tasks::add_task`] says.
    pub fn try_add_task<T: Task>(
        &self,
        task: T,
        args: impl IntoTaskArgs<T>,
        options: EnqueueOptions,
    ) -> Result<TaskId> {
        self.submit(new_task(task, args, options))
    }

    /// Logs why the task `id` was not stored and, in a request, makes the response say so;
    /// returns `id`.
    fn refused(&self, id: TaskId, err: &Error) -> TaskId {
        tracing::error!(task_id = %id, error = %err, "taskflow: could not enqueue task");
        if let Sink::Request(batch) = &self.sink {
            let mut state = batch.lock();
            match err {
                Error::TooLarge { .. } => {
                    state.rejection.get_or_insert(Rejection::TooLarge);
                }
                Error::QueueFull { queue, limit, retry_after } => {
                    state.rejection = Some(Rejection::QueueFull {
                        queue: queue.clone(),
                        limit: *limit,
                        retry_after: *retry_after,
                    });
                }
                _ => {}
            }
            state.errors.push(err.to_string());
        }
        id
    }

    fn submit(&self, new: NewTask) -> Result<TaskId, Error> {
        match &self.sink {
            Sink::Recording(recorded) => {
                let id = new.id;
                recorded.lock().unwrap_or_else(PoisonError::into_inner).push(new);
                Ok(id)
            }
            Sink::Immediate(enqueuer) => {
                let queue = new.queue().to_owned();
                let enqueued = Arc::clone(enqueuer).enqueue(new, false)?;
                if enqueued.created {
                    Arc::clone(enqueuer).start_when_durable(enqueued.id, &queue, enqueued.write);
                }
                Ok(enqueued.id)
            }
            Sink::Request(batch) => {
                // Held until the response is out, unless eager or the response already left.
                let held = !new.eager() && !batch.lock().released;
                let queue = new.queue().to_owned();
                let enqueued = Arc::clone(&batch.enqueuer).enqueue(new, held)?;
                let mut started = Vec::new();
                let id = batch.stored(enqueued, queue, held, &mut started);
                if let Some((id, queue, write)) = started.pop() {
                    Arc::clone(&batch.enqueuer).start_when_durable(id, &queue, write);
                }
                Ok(id)
            }
        }
    }

    /// Stores `news` together; one result per task, in order.
    fn submit_all(&self, news: Vec<NewTask>) -> Vec<Result<TaskId, Error>> {
        match &self.sink {
            Sink::Recording(recorded) => {
                let ids = news.iter().map(|new| Ok(new.id)).collect();
                recorded.lock().unwrap_or_else(PoisonError::into_inner).extend(news);
                ids
            }
            Sink::Immediate(enqueuer) => {
                let queues: Vec<String> = news.iter().map(|new| new.queue().to_owned()).collect();
                let mut started = Vec::new();
                let news = news.into_iter().map(|new| (new, false)).collect();
                let results = Arc::clone(enqueuer).enqueue_many(news);
                let ids = results
                    .into_iter()
                    .zip(queues)
                    .map(|(result, queue)| {
                        let enqueued = result?;
                        if enqueued.created {
                            started.push((enqueued.id, queue, enqueued.write));
                        }
                        Ok(enqueued.id)
                    })
                    .collect();
                Arc::clone(enqueuer).start_all_when_durable(started);
                ids
            }
            Sink::Request(batch) => {
                // Held until the response is out, unless eager or the response already left.
                let released = batch.lock().released;
                let news: Vec<(NewTask, bool)> = news
                    .into_iter()
                    .map(|new| {
                        let held = !new.eager() && !released;
                        (new, held)
                    })
                    .collect();
                let places: Vec<(String, bool)> =
                    news.iter().map(|(new, held)| (new.queue().to_owned(), *held)).collect();
                let mut started = Vec::new();
                let stored = Arc::clone(&batch.enqueuer).enqueue_many(news);
                let ids = stored
                    .into_iter()
                    .zip(places)
                    .map(|(result, (queue, held))| {
                        result.map(|enqueued| batch.stored(enqueued, queue, held, &mut started))
                    })
                    .collect();
                Arc::clone(&batch.enqueuer).start_all_when_durable(started);
                ids
            }
        }
    }

    /// Every task enqueued so far into a [`Tasks::recording`] collection, in order; empty for
    /// other collections.
    pub fn recorded(&self) -> Vec<NewTask> {
        match &self.sink {
            Sink::Recording(recorded) => {
                recorded.lock().unwrap_or_else(PoisonError::into_inner).clone()
            }
            _ => Vec::new(),
        }
    }
}

impl TaskContext {
    /// A task collection of the engine running this task, so a task can enqueue others;
    /// they start at once.
    pub fn tasks(&self) -> Option<Tasks> {
        self.enqueuer().map(|enqueuer| Tasks::immediate(Arc::clone(enqueuer)))
    }
}

pub(crate) fn new_task<T: Task>(
    task: T,
    args: impl IntoTaskArgs<T>,
    options: EnqueueOptions,
) -> NewTask {
    let _ = task;
    let args = serde_json::to_value(args.into_args()).map_err(|e| e.to_string());
    NewTask { id: TaskId::new(), task: T::options(), args, options }
}

/// Why a request's enqueue failed, beyond an unavailable store: what the response says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) enum Rejection {
    /// A task over the limits: `413`.
    TooLarge,
    /// A full queue: `429` with `Retry-After`.
    QueueFull { queue: String, limit: u64, retry_after: u64 },
}

/// The tasks one request enqueued, held back until its response has been handed to the server.
#[derive(Debug)]
pub(crate) struct RequestBatch {
    enqueuer: Arc<dyn Enqueuer>,
    enqueued: AtomicBool,
    state: Mutex<BatchState>,
}

#[derive(Debug, Default)]
struct BatchState {
    /// The tasks stored held back, to release with the response.
    held: Vec<TaskId>,
    /// Their queues, each once.
    held_queues: Vec<String>,
    writes: Vec<WriteTicket>,
    errors: Vec<String>,
    /// Why the response must fail, when one of `errors` says more than "unavailable".
    rejection: Option<Rejection>,
    released: bool,
}

#[cfg_attr(not(feature = "axum"), allow(dead_code))]
impl RequestBatch {
    pub(crate) fn new(enqueuer: Arc<dyn Enqueuer>) -> Self {
        RequestBatch { enqueuer, enqueued: AtomicBool::new(false), state: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, BatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Books a task the request stored: its write to wait for before the response, and
    /// either held back until the response is out or, when that already happened, let go and
    /// pushed onto `started` to start once durable. Returns its id.
    fn stored(
        &self,
        enqueued: crate::store::Enqueued,
        queue: String,
        held: bool,
        started: &mut Vec<(TaskId, String, Option<WriteTicket>)>,
    ) -> TaskId {
        self.enqueued.store(true, Ordering::Release);
        let mut state = self.lock();
        state.writes.extend(enqueued.write.clone());
        if !enqueued.created {
            return enqueued.id;
        }
        if held && !state.released {
            state.held.push(enqueued.id);
            if !state.held_queues.contains(&queue) {
                state.held_queues.push(queue);
            }
        } else {
            drop(state);
            if held {
                Arc::clone(&self.enqueuer).release(vec![enqueued.id], vec![queue.clone()]);
            }
            started.push((enqueued.id, queue, enqueued.write));
        }
        enqueued.id
    }

    /// Whether the request stored any task.
    pub(crate) fn enqueued_any(&self) -> bool {
        self.enqueued.load(Ordering::Acquire)
    }

    /// Errors met while enqueuing, and the rejection they make, if any.
    pub(crate) fn errors(&self) -> (Vec<String>, Option<Rejection>) {
        let state = self.lock();
        (state.errors.clone(), state.rejection.clone())
    }

    /// Waits until every task the request stored is durable.
    pub(crate) async fn durable(&self) -> Result<(), crate::store::StoreError> {
        let writes = std::mem::take(&mut self.lock().writes);
        for write in writes {
            write.wait().await?;
        }
        Ok(())
    }

    /// Starts the held-back tasks (in one store write for all of them); tasks enqueued later
    /// start at once.
    pub(crate) fn release(&self) {
        let (held, queues) = {
            let mut state = self.lock();
            state.released = true;
            (std::mem::take(&mut state.held), std::mem::take(&mut state.held_queues))
        };
        if !held.is_empty() {
            Arc::clone(&self.enqueuer).release(held, queues);
        }
    }
}
