//! [`TaskManager`]: the facade of the engine. Enqueue, cancel, retry, wait for and shut down
//! tasks here; the [engine](crate::engine) does the running.

mod bulk;
mod queues;
mod schedules;

use std::sync::Arc;
use std::time::Duration;

use crate::engine::{Engine, StopReason, retry_record};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::id::TaskId;
use crate::options::EnqueueOptions;
use crate::record::{TaskRecord, TaskStatus};
use crate::registry::registry;
use crate::store::Store;
use crate::task::{IntoTaskArgs, Task};
use crate::tasks::{Enqueuer, Tasks};

/// Runs tasks: cheap to clone, every clone drives the same engine.
///
/// ```rust,standalone_crate
/// use std::time::Duration;
/// use taskflow::{TaskManager, TaskStatus};
///
/// #[taskflow::task(retries = 1)]
/// async fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> taskflow::Result<()> {
/// let manager = TaskManager::builder().concurrency(8).build().await?;
/// let id = manager.add_task(add, (2, 3));
/// let record = manager.wait_for(id, Duration::from_secs(5)).await?;
/// assert_eq!(record.status, TaskStatus::Success);
/// assert_eq!(record.result, Some(serde_json::json!(5)));
/// manager.shutdown(Duration::from_secs(5)).await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TaskManager {
    engine: Arc<Engine>,
}

/// How many times [`TaskManager::cancel`] looks again at a task that moves between pending
/// and running under it.
const CANCEL_ROUNDS: usize = 5;

/// What [`TaskManager::cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task had not started (or waited for a retry); it is now `cancelled` and will not
    /// run.
    Cancelled,
    /// The task is running, here or on another instance; it stops at its next await point
    /// and ends `cancelled`. (A sync fn already running on the blocking pool cannot be
    /// stopped; it ends `cancelled` when it returns and its result is discarded, unless it
    /// checks `task_context().is_cancelled()` and returns early.)
    Cancelling,
    /// The task had already finished with this status.
    AlreadyFinished(TaskStatus),
    /// No task has this id.
    NotFound,
}

impl TaskManager {
    pub(crate) fn from_engine(engine: Arc<Engine>) -> TaskManager {
        TaskManager { engine }
    }

    /// Starts recording lifecycle events for the live feed; in a cluster, tells the other
    /// instances at once (a heartbeat), so that they send theirs to the event log.
    #[cfg(feature = "axum")]
    pub(crate) fn serve_feed(&self) {
        let feed = self.feed();
        feed.enable();
        if feed.in_cluster() {
            let engine = Arc::clone(&self.engine);
            self.engine.runtime.spawn(async move { crate::maintenance::heartbeat(&engine).await });
        }
    }

    /// Cancelled when shutdown starts.
    #[cfg(feature = "axum")]
    pub(crate) fn stopping_token(&self) -> tokio_util::sync::CancellationToken {
        self.engine.stopping.clone()
    }

    /// What a request's task collection enqueues through.
    #[cfg(feature = "axum")]
    pub(crate) fn enqueuer(&self) -> Arc<dyn Enqueuer> {
        Arc::clone(&self.engine) as Arc<dyn Enqueuer>
    }

    /// The live event feed (the admin stream subscribes to it).
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn feed(&self) -> &Arc<crate::feed::Feed> {
        self.engine.observers.feed()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.engine.store
    }

    /// How long the per-minute history is kept ([`TaskManagerBuilder::history`]).
    ///
    /// [`TaskManagerBuilder::history`]: crate::TaskManagerBuilder::history
    pub fn history_window(&self) -> std::time::Duration {
        self.engine.history
    }

    /// How many attempts run on this instance now.
    pub fn running_count(&self) -> usize {
        self.engine.running.len()
    }

    /// Whether task arguments and results are sealed at rest (see
    /// `TaskManagerBuilder::encryption`, feature `encryption`).
    pub fn encrypts(&self) -> bool {
        self.engine.sealing.enabled()
    }

    /// Seals again with the primary key every stored task's arguments and result that an
    /// older key of the keyring sealed (feature `encryption`), so that the older key can then
    /// be dropped; returns how many tasks were rewritten. Goes through the whole store a page
    /// at a time (run it in a spawned task); a task that changes meanwhile is left for the
    /// next run. Values that do not open (a missing key, damage) are left as they are.
    #[cfg(feature = "encryption")]
    pub async fn reseal(&self) -> Result<usize> {
        let sealing = &self.engine.sealing;
        match (&sealing.keyring, &sealing.raw) {
            (Some(keyring), Some(raw)) => Ok(crate::store::reseal::reseal(keyring, &**raw).await?),
            _ => Ok(0),
        }
    }

    /// Whether this instance leads the cluster-wide maintenance (rescuing the tasks of dead
    /// instances, pruning): one instance per store does, another takes over within one lease
    /// when it dies.
    pub fn is_leader(&self) -> bool {
        self.engine.is_leading()
    }

    /// This process incarnation's runner id, which fences its writes.
    pub fn runner_id(&self) -> &str {
        &self.engine.runner
    }

    /// A task collection that starts each task as soon as it is enqueued, for code outside a
    /// request: startup hooks, scripts, other tasks.
    pub fn tasks(&self) -> Tasks {
        Tasks::immediate(Arc::clone(&self.engine) as Arc<dyn Enqueuer>)
    }

    /// Enqueues a task to start at once. See [`Tasks::add_task`].
    pub fn add_task<T: Task>(&self, task: T, args: impl IntoTaskArgs<T>) -> TaskId {
        self.tasks().add_task(task, args)
    }

    /// Enqueues a task with per-call options to start at once (or at its
    /// [`run_at`](EnqueueOptions::run_at)).
    pub fn add_task_with<T: Task>(
        &self,
        task: T,
        args: impl IntoTaskArgs<T>,
        options: EnqueueOptions,
    ) -> TaskId {
        self.tasks().add_task_with(task, args, options)
    }

    /// Stores a task, waits until the store has made it durable, then lets it start. Unlike
    /// [`TaskManager::add_task_with`], every store failure comes back as the error, including
    /// those a durable store only meets when it commits (a full disk). Returns the task's id,
    /// or the id of the active task that holds its idempotency key.
    pub async fn submit<T: Task>(
        &self,
        task: T,
        args: impl IntoTaskArgs<T>,
        options: EnqueueOptions,
    ) -> Result<TaskId> {
        let keyed = options.idempotency_key_str().is_some();
        let new = crate::tasks::new_task(task, args, options);
        let queue = new.queue().to_owned();
        let enqueued = self.engine.store_new(new, false)?;
        let mut id = enqueued.id;
        if let Some(write) = enqueued.write {
            write.wait().await?;
            // A remote store learns only now whether the key was free; a duplicate's id is an
            // alias, and the caller gets the id of the task that holds the key.
            if keyed && let Some(canonical) = self.engine.store.resolve(&id).await? {
                id = canonical;
            }
        }
        self.engine.queues.wake(&queue);
        Ok(id)
    }

    /// Stores a task through `client`, a transaction of yours (or a plain client) on the
    /// database of this manager's [`PostgresStore`](crate::PostgresStore): the task exists if
    /// and only if the transaction commits. On commit, a notification wakes the instances,
    /// one of which runs it. Returns the task's id, or the id of the active task that holds
    /// its idempotency key.
    ///
    /// ```rust,no_run
    /// # #[taskflow::task] async fn send_receipt(order: u64) {}
    /// # async fn pay(manager: taskflow::TaskManager, mut client: taskflow::tokio_postgres::Client) -> taskflow::Result<()> {
    /// let tx = client.transaction().await.expect("begin");
    /// tx.execute("UPDATE orders SET paid = true WHERE id = $1", &[&42i64]).await.expect("update");
    /// manager.add_task_in(&tx, send_receipt, 42, taskflow::EnqueueOptions::new()).await?;
    /// tx.commit().await.expect("commit"); // the receipt is sent only if the order is paid
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "postgres")]
    pub async fn add_task_in<T: Task>(
        &self,
        client: &impl tokio_postgres::GenericClient,
        task: T,
        args: impl IntoTaskArgs<T>,
        options: EnqueueOptions,
    ) -> Result<TaskId> {
        let new = crate::tasks::new_task(task, args, options);
        let mut record = crate::engine::new_record(new, self.engine.clock.now());
        self.engine.limits.check(&record)?;
        crate::trace::capture(&mut record.tags);
        let runner = self.engine.admit(&record)?;
        let record = self.engine.sealing.seal(record)?;
        let inserted = crate::store::postgres::insert_in(client, &record).await;
        if inserted.is_err() {
            runner.unadmit();
        }
        Ok(inserted?)
    }

    /// Cancels a task: a pending one (waiting to start, or for its retry) never runs, a
    /// running one stops at its next await point, on whichever instance runs it (one on
    /// another instance sharing the store sees the request within its poll interval).
    ///
    /// `id` may be any id an enqueue returned, including a duplicate idempotent enqueue's
    /// alias on a remote store.
    pub async fn cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        let store = &self.engine.store;
        let Some(id) = store.resolve(&id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        // A task between attempts moves between pending and running: a few rounds settle it.
        for _ in 0..CANCEL_ROUNDS {
            match store.cancel_pending(&id).await? {
                None => return Ok(CancelOutcome::NotFound),
                Some(TaskStatus::Pending) => {
                    if let Some(record) = store.get(&id).await? {
                        self.engine.context_for(&record).emit(EventKind::Cancelled, None);
                    }
                    return Ok(CancelOutcome::Cancelled);
                }
                Some(status) if status.is_finished() => {
                    return Ok(CancelOutcome::AlreadyFinished(status));
                }
                Some(_) => {}
            }
            if let Some(running) = self.engine.running.get(&id) {
                running.stop(StopReason::Cancel);
                return Ok(CancelOutcome::Cancelling);
            }
            match store.request_cancel(&id).await? {
                None => return Ok(CancelOutcome::NotFound),
                Some(TaskStatus::Running) => return Ok(CancelOutcome::Cancelling),
                Some(status) if status.is_finished() => {
                    return Ok(CancelOutcome::AlreadyFinished(status));
                }
                Some(_) => {}
            }
        }
        Ok(CancelOutcome::AlreadyFinished(
            store.get(&id).await?.map_or(TaskStatus::Running, |r| r.status),
        ))
    }

    /// Cancels the task that waits under the run key `key` (enqueued with
    /// [`EnqueueOptions::run_key`](crate::EnqueueOptions::run_key), not yet started), on
    /// whichever instance enqueued it; returns its id, or `None` when no task waits under
    /// the key (it has started, or never was).
    ///
    /// ```rust,standalone_crate
    /// # #[taskflow::task] async fn remind(user: u64) {}
    /// # #[tokio::main] async fn main() -> taskflow::Result<()> {
    /// use taskflow::{EnqueueOptions, TaskManager};
    ///
    /// let manager = TaskManager::in_memory();
    /// let at = chrono::Utc::now() + chrono::Duration::hours(1);
    /// let options = EnqueueOptions::new().run_key("remind-42").run_at(at);
    /// let first = manager.submit(remind, 42, options.clone()).await?;
    /// // Enqueued again under the same key: the first is replaced.
    /// let second = manager.submit(remind, 42, options).await?;
    /// assert_eq!(manager.cancel_scheduled("remind-42").await?, Some(second));
    /// assert_eq!(manager.cancel_scheduled("remind-42").await?, None);
    /// # let _ = first; manager.shutdown(std::time::Duration::from_secs(1)).await; Ok(()) }
    /// ```
    pub async fn cancel_scheduled(&self, key: &str) -> Result<Option<TaskId>> {
        let now = self.engine.clock.now();
        let Some(id) = self.engine.store.cancel_scheduled(key, now).await? else {
            return Ok(None);
        };
        if let Some(record) = self.engine.store.get(&id).await? {
            self.engine.context_for(&record).emit(EventKind::Cancelled, None);
        }
        Ok(Some(id))
    }

    /// Runs a `failed`, `interrupted` or `cancelled` task again as a new task: a fresh id,
    /// `source: retry`, `retry_of` linking to the original, which stays in history. Same
    /// function, arguments, tags, priority and retries; no idempotency key. Returns once the
    /// new task is stored.
    pub async fn retry(&self, id: TaskId) -> Result<TaskId> {
        let store = &self.engine.store;
        let original = store.get(&id).await?.ok_or(Error::TaskNotFound { id })?;
        if !matches!(
            original.status,
            TaskStatus::Failed | TaskStatus::Interrupted | TaskStatus::Cancelled
        ) {
            return Err(Error::NotRetryable { id, status: original.status });
        }
        let registered = registry()
            .get(&original.func_name)
            .ok_or_else(|| Error::UnknownTask { name: original.func_name.clone() })?;
        let record = retry_record(original, registered.options(), self.engine.clock.now());
        let queue = record.queue.clone();
        let context = self.engine.context_for(&record);
        let enqueued = store.enqueue(record)?;
        if let Some(write) = enqueued.write {
            write.read_back(Arc::clone(store), enqueued.id).wait().await?;
        }
        context.emit(EventKind::Enqueued, Some(format!("retry of {id}")));
        self.engine.queues.wake(&queue);
        Ok(enqueued.id)
    }

    /// Waits until the task has finished (or `timeout` passes) and returns its record.
    pub async fn wait_for(&self, id: TaskId, timeout: Duration) -> Result<TaskRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.engine.store.get(&id).await? {
                Some(record) if record.status.is_finished() => return Ok(record),
                Some(_) => {}
                None => return Err(Error::TaskNotFound { id }),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout { id, waited: timeout });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Stops the manager: nothing new starts; running attempts get `grace` to finish, then
    /// are stopped and marked `interrupted` (or put back to `pending` with
    /// `requeue_on_interrupt`). Tasks that had not started, and tasks waiting for a retry,
    /// stay `pending` in the store. Logs are flushed.
    pub async fn shutdown(&self, grace: Duration) {
        let engine = &self.engine;
        engine.stopping.cancel();
        engine.tracker.close();
        if tokio::time::timeout(grace, engine.tracker.wait()).await.is_err() {
            engine.running.stop_all(StopReason::Shutdown);
            // Stopped tasks only write their final status now; a sync fn stuck on the blocking
            // pool cannot be stopped and is not waited for past this bound.
            let _ = tokio::time::timeout(Duration::from_secs(10), engine.tracker.wait()).await;
        }
        crate::maintenance::resign(engine).await;
        crate::maintenance::forget_instance(engine).await;
        if let Err(err) = engine.store.close().await {
            tracing::error!(error = %err, "taskflow: could not close the task store cleanly");
        }
    }
}

impl std::fmt::Debug for TaskManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskManager").field("runner", &self.engine.runner).finish_non_exhaustive()
    }
}
