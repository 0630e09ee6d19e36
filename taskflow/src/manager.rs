//! [`TaskManager`]: owns the store, the executor and the observers, and runs every task
//! through its lifecycle: claim, attempts with retries and timeouts, logs, final status.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::context::TaskContext;
use crate::error::{Error, Result};
use crate::failure::{FailureKind, TaskFailure};
use crate::id::TaskId;
use crate::limits::{Limits, cut};
use crate::observer::{EventKind, Observers, TaskObserver};
use crate::options::EnqueueOptions;
use crate::record::{TaskRecord, TaskSource, TaskStatus};
use crate::registry::registry;
use crate::slots::{Permit, Slots};
use crate::store::{
    Deadline, Enqueued, Lease, MAX_RECOVERIES, MemoryStore, PendingTask, Retention, Store,
    StoreTimeouts, Transition, WriteTicket,
};
use crate::task::{IntoTaskArgs, Task};
use crate::tasks::{NewTask, Tasks};

/// The default number of attempts that may run at once.
pub const DEFAULT_CONCURRENCY: usize = 64;

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
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    slots: Arc<Slots>,
    runner: Arc<str>,
    observers: Observers,
    runtime: tokio::runtime::Handle,
    tracker: TaskTracker,
    /// Cancelled when shutdown starts: queued and delayed tasks stop waiting.
    stopping: CancellationToken,
    accepting: AtomicBool,
    running: Mutex<HashMap<TaskId, Arc<RunningTask>>>,
    lease: Duration,
    retention: Retention,
    prune_every: Duration,
    /// A shared store's signal that tasks were enqueued elsewhere (`None`: not shared).
    wake: Option<Arc<tokio::sync::Notify>>,
    /// The tasks this instance has queued or is running.
    queued: Mutex<std::collections::HashSet<TaskId>>,
    /// How often pending tasks that nobody runs are polled for, without a signal.
    poll_every: Duration,
    /// The most a task may carry.
    pub(crate) limits: Limits,
}

/// A task between claim and final status, as the manager tracks it.
struct RunningTask {
    stop: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Cancel,
    Shutdown,
}

/// What [`TaskManager::cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task had not started; it is now `cancelled` and will not run.
    Cancelled,
    /// The task is running; it stops at its next await point and ends `cancelled`. (A sync
    /// fn already running on the blocking pool cannot be stopped; it ends `cancelled` when it
    /// returns and its result is discarded.)
    Cancelling,
    /// The task had already finished with this status.
    AlreadyFinished(TaskStatus),
    /// No task has this id.
    NotFound,
}

/// Builds a [`TaskManager`].
pub struct TaskManagerBuilder {
    store: Option<Arc<dyn Store>>,
    concurrency: usize,
    observers: Vec<Arc<dyn TaskObserver>>,
    lease: Duration,
    retention: Retention,
    prune_every: Duration,
    recover: bool,
    poll_every: Duration,
    store_timeouts: StoreTimeouts,
    limits: Limits,
    #[cfg(feature = "sqlite")]
    sqlite: Option<std::path::PathBuf>,
}

impl TaskManager {
    /// A builder: the in-memory store, [`DEFAULT_CONCURRENCY`], no observers.
    pub fn builder() -> TaskManagerBuilder {
        TaskManagerBuilder {
            store: None,
            concurrency: DEFAULT_CONCURRENCY,
            observers: Vec::new(),
            lease: Duration::from_secs(60),
            retention: Retention::default(),
            prune_every: Duration::from_secs(60),
            recover: true,
            poll_every: Duration::from_secs(5),
            store_timeouts: StoreTimeouts::default(),
            limits: Limits::default(),
            #[cfg(feature = "sqlite")]
            sqlite: None,
        }
    }

    /// A manager on a fresh in-memory store, for tests. Must be called inside a tokio runtime.
    ///
    /// # Panics
    ///
    /// When two tasks in the binary share a name (use the builder to get that as an error).
    pub fn in_memory() -> TaskManager {
        match TaskManager::builder().start() {
            Ok(manager) => {
                manager.spawn_maintenance();
                manager
            }
            Err(err) => panic!("taskflow: {err}"),
        }
    }

    /// Cancelled when shutdown starts.
    #[cfg(feature = "axum")]
    pub(crate) fn stopping_token(&self) -> CancellationToken {
        self.inner.stopping.clone()
    }

    /// The live event feed (the admin stream subscribes to it).
    pub(crate) fn feed(&self) -> &Arc<crate::feed::Feed> {
        self.inner.observers.feed()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// How many started tasks wait for a free slot (the concurrency limit).
    pub fn waiting_for_slot(&self) -> usize {
        self.inner.slots.waiting()
    }

    /// This process incarnation's runner id, which fences its writes.
    pub fn runner_id(&self) -> &str {
        &self.inner.runner
    }

    /// A task collection that starts each task as soon as it is enqueued, for code outside a
    /// request: startup hooks, scripts, other tasks.
    pub fn tasks(&self) -> Tasks {
        Tasks::immediate(self.clone())
    }

    /// Enqueues a task to start at once. See [`Tasks::add_task`].
    pub fn add_task<T: Task>(&self, task: T, args: impl IntoTaskArgs<T>) -> TaskId {
        self.tasks().add_task(task, args)
    }

    /// Enqueues a task with per-call options to start at once.
    pub fn add_task_with<T: Task>(
        &self,
        task: T,
        args: impl IntoTaskArgs<T>,
        options: EnqueueOptions,
    ) -> TaskId {
        self.tasks().add_task_with(task, args, options)
    }

    /// Stores a task, waits until the store has made it durable, then starts it. Unlike
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
        let (enqueued, dispatch) = self.store_new(new)?;
        let mut id = enqueued.id;
        if let Some(write) = enqueued.write {
            write.wait().await?;
            // A remote store learns only now whether the key was free; a duplicate's id is an
            // alias, and the caller gets the id of the task that holds the key.
            if keyed && let Some(canonical) = self.inner.store.resolve(&id).await? {
                id = canonical;
            }
        }
        if let Some(dispatch) = dispatch {
            self.dispatch(dispatch);
        }
        Ok(id)
    }

    /// Starts `dispatch` once `write` has made it durable; logs a failed write.
    pub(crate) fn dispatch_when_durable(&self, dispatch: Dispatch, write: WriteTicket) {
        let manager = self.clone();
        self.inner.runtime.spawn(async move {
            match write.wait().await {
                Ok(()) => manager.dispatch(dispatch),
                Err(err) => {
                    manager.untrack_queued(&dispatch.id);
                    tracing::error!(task_id = %dispatch.id, error = %err, "taskflow: the task could not be stored; it will not run");
                }
            }
        });
    }

    /// Stores a new task. Returns what the store answered and whether the caller should
    /// dispatch it (it was created and is pending).
    pub(crate) fn store_new(&self, new: NewTask) -> Result<(Enqueued, Option<Dispatch>)> {
        let task = new.task;
        let record = new_record(new);
        let (status, priority, scheduled_at) =
            (record.status, record.priority, record.scheduled_at);
        self.inner.limits.check(&record)?;
        let tags = (!self.inner.observers.is_empty()).then(|| Arc::new(record.tags.clone()));
        let mut enqueued = self.inner.store.enqueue(record)?;
        let id = enqueued.id;
        enqueued.write =
            enqueued.write.map(|write| write.read_back(Arc::clone(&self.inner.store), id));
        if !enqueued.created || status != TaskStatus::Pending {
            return Ok((enqueued, None));
        }
        if let Some(tags) = tags {
            let context = TaskContext::new(
                enqueued.id,
                task.name().into(),
                tags,
                self.inner.observers.clone(),
                None,
                self.inner.limits,
            );
            context.emit(EventKind::Enqueued, None);
        }
        let timeout = task.attempt_timeout();
        let dispatch = Dispatch { id: enqueued.id, priority, scheduled_at, timeout };
        self.track_queued(dispatch.id);
        Ok((enqueued, Some(dispatch)))
    }

    /// Remembers that this instance will run `id`, so that polling for pending tasks nobody
    /// runs leaves it alone.
    fn track_queued(&self, id: TaskId) {
        self.inner.queued.lock().unwrap_or_else(PoisonError::into_inner).insert(id);
    }

    fn untrack_queued(&self, id: &TaskId) {
        self.inner.queued.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
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
        let record = new_record(crate::tasks::new_task(task, args, options));
        Ok(crate::store::postgres::insert_in(client, &record).await?)
    }

    /// Dispatches the pending tasks of a shared store that no instance has taken: enqueued in
    /// a database transaction, or left behind by an instance that stopped before starting
    /// them. Claims are atomic, so instances racing for one task run it once.
    async fn poll_pending(&self) {
        match self.inner.store.pending(POLL_BATCH).await {
            Ok(pending) => {
                for task in pending {
                    let known = self
                        .inner
                        .queued
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains(&task.id);
                    if !known {
                        self.dispatch(Dispatch::from(task));
                    }
                }
            }
            Err(err) => tracing::error!(error = %err, "taskflow: could not poll pending tasks"),
        }
    }

    /// Starts running a stored pending task (after its delay, once a slot is free).
    pub(crate) fn dispatch(&self, dispatch: Dispatch) {
        if !self.inner.accepting.load(Ordering::Acquire) {
            self.untrack_queued(&dispatch.id);
            return; // shutting down: it stays pending for the next start
        }
        self.track_queued(dispatch.id);
        let manager = self.clone();
        let future = async move {
            let id = dispatch.id;
            manager.clone().run(dispatch).await;
            manager.untrack_queued(&id);
        };
        self.inner.tracker.spawn_on(future, &self.inner.runtime);
    }

    /// Cancels a task: a pending one never runs, a running one stops at its next await point.
    ///
    /// `id` may be any id an enqueue returned, including a duplicate idempotent enqueue's
    /// alias on a remote store.
    pub async fn cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        let Some(id) = self.inner.store.resolve(&id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        match self.inner.store.cancel_pending(&id).await? {
            None => Ok(CancelOutcome::NotFound),
            Some(TaskStatus::Pending) => {
                if let Some(record) = self.inner.store.get(&id).await? {
                    self.context_for(&record).emit(EventKind::Cancelled, None);
                }
                Ok(CancelOutcome::Cancelled)
            }
            Some(status) if status.is_finished() => Ok(CancelOutcome::AlreadyFinished(status)),
            Some(_) => {
                let running = self.lock_running().get(&id).cloned();
                match running {
                    Some(running) => {
                        *running.reason.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(StopReason::Cancel);
                        running.stop.cancel();
                        Ok(CancelOutcome::Cancelling)
                    }
                    None => Ok(CancelOutcome::AlreadyFinished(
                        self.inner.store.get(&id).await?.map_or(TaskStatus::Running, |r| r.status),
                    )),
                }
            }
        }
    }

    /// Runs a `failed`, `interrupted` or `cancelled` task again as a new task: a fresh id,
    /// `source: retry`, `retry_of` linking to the original, which stays in history. Same
    /// function, arguments, tags, priority and retries; no idempotency key. Returns once the
    /// new task is stored.
    pub async fn retry(&self, id: TaskId) -> Result<TaskId> {
        let original = self.inner.store.get(&id).await?.ok_or(Error::TaskNotFound { id })?;
        if !matches!(
            original.status,
            TaskStatus::Failed | TaskStatus::Interrupted | TaskStatus::Cancelled
        ) {
            return Err(Error::NotRetryable { id, status: original.status });
        }
        let registered = registry()
            .get(&original.func_name)
            .ok_or_else(|| Error::UnknownTask { name: original.func_name.clone() })?;
        let options = registered.options();
        let record = TaskRecord {
            task_id: TaskId::new(),
            status: TaskStatus::Pending,
            created_at: Utc::now(),
            start_time: None,
            end_time: None,
            duration: None,
            retries_used: 0,
            error: None,
            stacktrace: None,
            logs: Vec::new(),
            source: TaskSource::Retry,
            result: None,
            idempotency_key: None,
            scheduled_at: None,
            retry_of: Some(id),
            requeue_on_interrupt: options.requeues_on_interrupt(),
            recoveries: 0,
            lease_owner: None,
            lease_expires_at: None,
            ..original
        };
        let priority = record.priority;
        let context = self.context_for(&record);
        let enqueued = self.inner.store.enqueue(record)?;
        if let Some(write) = enqueued.write {
            write.read_back(Arc::clone(&self.inner.store), enqueued.id).wait().await?;
        }
        context.emit(EventKind::Enqueued, Some(format!("retry of {id}")));
        let timeout = options.attempt_timeout();
        self.dispatch(Dispatch { id: enqueued.id, priority, scheduled_at: None, timeout });
        Ok(enqueued.id)
    }

    /// Waits until the task has finished (or `timeout` passes) and returns its record.
    pub async fn wait_for(&self, id: TaskId, timeout: Duration) -> Result<TaskRecord> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.inner.store.get(&id).await? {
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

    /// Stops the manager: no new task starts; running tasks get `grace` to finish, then are
    /// stopped and marked `interrupted` (or put back to `pending` with `requeue_on_interrupt`).
    /// Tasks that had not started stay `pending` in the store. Logs are flushed.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.accepting.store(false, Ordering::Release);
        self.inner.stopping.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait()).await.is_err() {
            for running in self.lock_running().values() {
                *running.reason.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(StopReason::Shutdown);
                running.stop.cancel();
            }
            // Stopped tasks only write their final status now; a sync fn stuck on the blocking
            // pool cannot be stopped and is not waited for past this bound.
            let _ = tokio::time::timeout(Duration::from_secs(10), self.inner.tracker.wait()).await;
        }
        if let Err(err) = self.inner.store.close().await {
            tracing::error!(error = %err, "taskflow: could not close the task store cleanly");
        }
    }

    /// Reclaims tasks whose runner died and dispatches every pending task.
    async fn recover(&self) -> Result<()> {
        let reclaimed = self.inner.store.reclaim_expired(Utc::now(), MAX_RECOVERIES).await?;
        if !reclaimed.interrupted.is_empty() || !reclaimed.poisoned.is_empty() {
            tracing::warn!(
                interrupted = reclaimed.interrupted.len(),
                poisoned = reclaimed.poisoned.len(),
                requeued = reclaimed.requeued.len(),
                "taskflow: recovered tasks left running by a process that died"
            );
        }
        for pending in self.inner.store.pending(usize::MAX).await? {
            self.dispatch(Dispatch::from(pending));
        }
        Ok(())
    }

    /// Spawns a loop that calls `work` on this manager every `every` until shutdown (or until
    /// the manager is dropped). Each maintenance duty has a loop of its own, so a slow one (a
    /// prune of a million rows, a store that hangs until its bound) never delays another:
    /// leases are renewed and dead runners' tasks reclaimed on time whatever pruning costs.
    fn spawn_periodic<F>(&self, every: Duration, wake: Option<Arc<Notify>>, work: F)
    where
        F: for<'a> Fn(&'a TaskManager) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>
            + Send
            + 'static,
    {
        let weak = Arc::downgrade(&self.inner);
        let stopping = self.inner.stopping.clone();
        let wake = wake.unwrap_or_default();
        self.inner.runtime.spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = wake.notified() => {}
                    () = stopping.cancelled() => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                work(&TaskManager { inner }).await;
            }
        });
    }

    /// Starts the maintenance loops: lease renewal and reclaim every third of a lease,
    /// retention every `prune_every`, and polling for pending tasks. Every store is polled: a
    /// shared one for tasks other instances left or added in a transaction (and woken by its
    /// signal), any store for a task whose dispatch was dropped (a claim that failed past
    /// shutdown's start, a write reported late).
    fn spawn_maintenance(&self) {
        let tick = (self.inner.lease / 3).max(Duration::from_millis(10));
        self.spawn_periodic(tick, None, |m| Box::pin(m.renew_leases()));
        self.spawn_periodic(tick, None, |m| Box::pin(m.reclaim_expired()));
        self.spawn_periodic(self.inner.prune_every, None, |m| Box::pin(m.prune()));
        let wake = self.inner.wake.clone();
        self.spawn_periodic(self.inner.poll_every, wake, |m| Box::pin(m.poll_pending()));
    }

    async fn renew_leases(&self) {
        let ids: Vec<TaskId> = self.lock_running().keys().copied().collect();
        if ids.is_empty() {
            return;
        }
        let until = self.new_lease(None).expires_at;
        if let Err(err) = self.inner.store.renew_leases(&self.inner.runner, &ids, until).await {
            tracing::error!(error = %err, "taskflow: could not renew task leases");
        }
    }

    async fn reclaim_expired(&self) {
        match self.inner.store.reclaim_expired(Utc::now(), MAX_RECOVERIES).await {
            Ok(reclaimed) => {
                for pending in reclaimed.requeued {
                    self.dispatch(Dispatch::from(pending));
                }
            }
            Err(err) => tracing::error!(error = %err, "taskflow: could not reclaim expired tasks"),
        }
    }

    async fn prune(&self) {
        if let Err(err) = self.inner.store.prune(&self.inner.retention, Utc::now()).await {
            tracing::error!(error = %err, "taskflow: could not prune finished tasks");
        }
    }

    fn lock_running(&self) -> MutexGuard<'_, HashMap<TaskId, Arc<RunningTask>>> {
        self.inner.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new_lease(&self, extra: Option<Duration>) -> Lease {
        let span = self.inner.lease + extra.unwrap_or_default();
        Lease {
            owner: Arc::clone(&self.inner.runner),
            expires_at: Utc::now()
                + chrono::Duration::from_std(span).unwrap_or(chrono::Duration::MAX),
        }
    }

    fn context_for(&self, record: &TaskRecord) -> TaskContext {
        TaskContext::new(
            record.task_id,
            record.func_name.as_str().into(),
            Arc::new(record.tags.clone()),
            self.inner.observers.clone(),
            Some(self.clone()),
            self.inner.limits,
        )
    }

    async fn run(self, dispatch: Dispatch) {
        let stopping = self.inner.stopping.clone();
        if let Some(at) = dispatch.scheduled_at {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stopping.cancelled() => return,
            }
        }
        let permit = tokio::select! {
            permit = self.inner.slots.acquire(dispatch.priority) => permit,
            () = stopping.cancelled() => return,
        };
        if stopping.is_cancelled() {
            return;
        }
        let Some((record, lease)) = self.claim(&dispatch).await else { return };
        let running =
            Arc::new(RunningTask { stop: CancellationToken::new(), reason: Mutex::new(None) });
        self.lock_running().insert(record.task_id, Arc::clone(&running));
        let id = record.task_id;
        // Boxed: the attempt's state is large, and the spawned future stays small.
        Box::pin(self.run_claimed(record, lease, permit, &running)).await;
        self.lock_running().remove(&id);
    }

    /// Claims `dispatch`'s task under a new lease. A failed claim is tried again with backoff
    /// until the store answers (or shutdown), and a claim whose reply was lost is found by
    /// reading the task back: a task this runner holds runs, a pending one is claimed again.
    /// `None` when the task is not for this runner (cancelled, or another runner has it).
    async fn claim(&self, dispatch: &Dispatch) -> Option<(TaskRecord, Lease)> {
        let store = &self.inner.store;
        let mut pause = Duration::from_millis(50);
        let mut lease = self.new_lease(dispatch.timeout);
        loop {
            match store.claim(&dispatch.id, &lease).await {
                Ok(Some(record)) => return Some((record, lease)),
                Ok(None) => return None, // cancelled meanwhile, or another runner has it
                Err(err) => {
                    tracing::error!(task_id = %dispatch.id, error = %err, "taskflow: could not claim task; trying again");
                }
            }
            loop {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = self.inner.stopping.cancelled() => return None, // it stays pending
                }
                pause = (pause * 2).min(Duration::from_secs(5));
                match store.get(&dispatch.id).await {
                    // The claim went through and only its reply was lost: the task runs
                    // under this very lease (its expiry, to the microsecond every store
                    // keeps, tells it from a claim by another dispatch of this runner).
                    Ok(Some(record))
                        if record.status == TaskStatus::Running
                            && record.lease_owner.as_deref() == Some(&*self.inner.runner)
                            && record.lease_expires_at.map(|at| at.timestamp_micros())
                                == Some(lease.expires_at.timestamp_micros())
                            && !self.lock_running().contains_key(&dispatch.id) =>
                    {
                        return Some((record, lease));
                    }
                    Ok(Some(record)) if record.status == TaskStatus::Pending => break,
                    Ok(_) => return None,
                    Err(err) => {
                        tracing::error!(task_id = %dispatch.id, error = %err, "taskflow: could not read task back after a failed claim; trying again");
                    }
                }
            }
            lease = self.new_lease(dispatch.timeout);
        }
    }

    async fn run_claimed(
        &self,
        record: TaskRecord,
        lease: Lease,
        permit: Permit,
        running: &RunningTask,
    ) {
        let context = self.context_for(&record);
        let registered = registry().get(&record.func_name);
        let options = registered.map(|r| r.options());
        let mut permit = Some(permit);
        let mut attempt = record.retries_used;
        loop {
            let context = context.with_attempt(attempt);
            context.emit(EventKind::Started, None);
            let invocation = match registered {
                None => Err(TaskFailure::new(
                    FailureKind::InvalidTask,
                    Error::UnknownTask { name: record.func_name.clone() }.to_string(),
                )),
                Some(task) => task
                    .invoke_stored(&record.args)
                    .map_err(|err| TaskFailure::new(FailureKind::InvalidTask, err.to_string())),
            };
            let outcome = match invocation {
                Err(failure) => Err(failure),
                Ok(invocation) => {
                    let span = tracing::info_span!(
                        "task",
                        task_id = %record.task_id,
                        name = %record.func_name,
                        attempt,
                        tags = ?record.tags,
                    );
                    let timeout = options.and_then(|o| o.attempt_timeout());
                    let attempt_future = invocation.run_in(context.clone(), span.clone());
                    let timed = async {
                        match timeout {
                            None => attempt_future.await,
                            Some(limit) => {
                                match tokio::time::timeout(limit, attempt_future).await {
                                    Ok(outcome) => outcome,
                                    Err(_) => Err(TaskFailure::new(
                                        FailureKind::Timeout,
                                        format!("timed out after {limit:?}"),
                                    )),
                                }
                            }
                        }
                    }
                    .instrument(span);
                    tokio::select! {
                        outcome = timed => outcome,
                        () = running.stop.cancelled() => {
                            self.flush_logs(&record.task_id, &context).await;
                            self.stop(&record, &lease, &context, running, attempt).await;
                            return;
                        }
                    }
                }
            };
            match outcome {
                Ok(result) => {
                    // The slot limits running user code, not store writes: free it first.
                    drop(permit.take());
                    self.flush_logs(&record.task_id, &context).await;
                    self.finish(
                        &record,
                        &lease,
                        &context,
                        TaskStatus::Success,
                        attempt,
                        result,
                        None,
                    )
                    .await;
                    return;
                }
                Err(failure)
                    if attempt < record.max_retries && failure.kind != FailureKind::InvalidTask =>
                {
                    drop(permit.take()); // free the slot while recording and waiting
                    self.flush_logs(&record.task_id, &context).await;
                    let limit = self.inner.limits.max_error_bytes;
                    let change = Transition::AttemptFailed {
                        retries_used: attempt + 1,
                        error: cut(failure.message.clone(), limit),
                        stacktrace: cut(failure.stacktrace.clone(), limit),
                    };
                    if !self.write(&record.task_id, &lease, change).await {
                        return; // the lease was lost: another runner owns the task now
                    }
                    context.emit(EventKind::Retrying, Some(failure.message));
                    attempt += 1;
                    let wait = options.map(|o| o.retry_delay(attempt)).unwrap_or_default();
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = running.stop.cancelled() => {
                            self.stop(&record, &lease, &context, running, attempt).await;
                            return;
                        }
                        () = self.inner.stopping.cancelled() => {
                            *running.reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(StopReason::Shutdown);
                            self.stop(&record, &lease, &context, running, attempt).await;
                            return;
                        }
                    }
                    permit = Some(tokio::select! {
                        p = self.inner.slots.acquire(record.priority) => p,
                        () = running.stop.cancelled() => {
                            self.stop(&record, &lease, &context, running, attempt).await;
                            return;
                        }
                    });
                }
                Err(failure) => {
                    drop(permit.take());
                    self.flush_logs(&record.task_id, &context).await;
                    self.finish(
                        &record,
                        &lease,
                        &context,
                        TaskStatus::Failed,
                        attempt,
                        None,
                        Some(failure),
                    )
                    .await;
                    return;
                }
            }
        }
    }

    /// Ends a task stopped by `cancel` or by shutdown.
    async fn stop(
        &self,
        record: &TaskRecord,
        lease: &Lease,
        context: &TaskContext,
        running: &RunningTask,
        attempt: u32,
    ) {
        let reason = *running.reason.lock().unwrap_or_else(PoisonError::into_inner);
        match reason {
            Some(StopReason::Cancel) => {
                self.finish(record, lease, context, TaskStatus::Cancelled, attempt, None, None)
                    .await;
            }
            _ if record.requeue_on_interrupt => {
                if self.write(&record.task_id, lease, Transition::Requeue).await {
                    context.emit(EventKind::Interrupted, Some("requeued".to_owned()));
                }
            }
            _ => {
                let failure = TaskFailure::new(FailureKind::Error, "interrupted by shutdown");
                self.finish(
                    record,
                    lease,
                    context,
                    TaskStatus::Interrupted,
                    attempt,
                    None,
                    Some(failure),
                )
                .await;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        record: &TaskRecord,
        lease: &Lease,
        context: &TaskContext,
        status: TaskStatus,
        attempt: u32,
        result: Option<serde_json::Value>,
        failure: Option<TaskFailure>,
    ) {
        let limit = self.inner.limits.max_error_bytes;
        let failure = failure.map(|f| TaskFailure {
            message: cut(f.message, limit),
            stacktrace: cut(f.stacktrace, limit),
            ..f
        });
        let message = failure.as_ref().map(|f| f.message.clone());
        let change = Transition::Finished {
            status,
            end_time: Utc::now(),
            retries_used: attempt,
            result,
            error: failure.as_ref().map(|f| f.message.clone()),
            stacktrace: failure.map(|f| f.stacktrace),
        };
        if self.write(&record.task_id, lease, change).await {
            let kind = match status {
                TaskStatus::Success => EventKind::Succeeded,
                TaskStatus::Cancelled => EventKind::Cancelled,
                TaskStatus::Interrupted => EventKind::Interrupted,
                _ => EventKind::Failed,
            };
            context.emit(kind, message);
        }
    }

    /// Writes a fenced change. A store error is retried with backoff, never dropped, until the
    /// store answers; `false` when the lease no longer holds the task.
    async fn write(&self, id: &TaskId, lease: &Lease, change: Transition) -> bool {
        let mut pause = Duration::from_millis(50);
        loop {
            match self.inner.store.transition(id, lease, change.clone()).await {
                Ok(applied) => {
                    if !applied {
                        tracing::warn!(task_id = %id, "taskflow: lease lost; the task's new owner keeps it");
                    }
                    return applied;
                }
                Err(err) => {
                    tracing::error!(task_id = %id, error = %err, "taskflow: could not record task state; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn flush_logs(&self, id: &TaskId, context: &TaskContext) {
        let logs = context.take_logs();
        if logs.is_empty() {
            return;
        }
        let mut pause = Duration::from_millis(50);
        while let Err(err) = self.inner.store.append_logs(id, logs.clone()).await {
            tracing::error!(task_id = %id, error = %err, "taskflow: could not store task logs; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

/// The record of a task about to be stored: `pending`, or `failed` at once when its
/// arguments could not be serialised.
pub(crate) fn new_record(new: NewTask) -> TaskRecord {
    let now = Utc::now();
    let priority = new.priority();
    let max_retries = new.max_retries();
    let NewTask { id, task, args, options } = new;
    let (status, args, error) = match args {
        Ok(args) => (TaskStatus::Pending, args, None),
        Err(reason) => (
            TaskStatus::Failed,
            serde_json::Value::Null,
            Some(format!("the arguments could not be serialised to JSON: {reason}")),
        ),
    };
    let scheduled_at = options
        .start_delay()
        .filter(|d| !d.is_zero())
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| now + d);
    TaskRecord {
        task_id: id,
        func_name: task.name().to_owned(),
        status,
        created_at: now,
        start_time: None,
        end_time: error.as_ref().map(|_| now),
        duration: None,
        retries_used: 0,
        max_retries,
        stacktrace: error.clone(),
        error,
        logs: Vec::new(),
        tags: options.tags_map().clone(),
        source: TaskSource::Manual,
        priority,
        args,
        result: None,
        idempotency_key: options.idempotency_key_str().map(str::to_owned),
        scheduled_at,
        retry_of: None,
        requeue_on_interrupt: task.requeues_on_interrupt(),
        recoveries: 0,
        lease_owner: None,
        lease_expires_at: None,
    }
}

/// How many pending tasks one poll of a shared store dispatches at most.
const POLL_BATCH: usize = 1000;

/// A created pending task, ready to be started.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dispatch {
    pub(crate) id: TaskId,
    pub(crate) priority: i32,
    pub(crate) scheduled_at: Option<DateTime<Utc>>,
    /// The attempt timeout, which the lease must outlive.
    pub(crate) timeout: Option<Duration>,
}

impl From<PendingTask> for Dispatch {
    fn from(task: PendingTask) -> Self {
        let timeout = registry().get(&task.func_name).and_then(|t| t.options().attempt_timeout());
        Dispatch { id: task.id, priority: task.priority, scheduled_at: task.scheduled_at, timeout }
    }
}

impl std::fmt::Debug for TaskManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskManager").field("runner", &self.inner.runner).finish_non_exhaustive()
    }
}

impl TaskManagerBuilder {
    /// Uses `store` instead of the in-memory default.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Uses the SQLite database at `path` (created if missing) as the store, opened by
    /// `build` with the default [`SqliteOptions`](crate::SqliteOptions).
    #[cfg(feature = "sqlite")]
    pub fn sqlite(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.sqlite = Some(path.as_ref().to_path_buf());
        self
    }

    /// Uses a store shared with other code.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// How many attempts may run at once (at least 1). Tasks beyond it wait, by priority.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Adds an observer of lifecycle events.
    pub fn observer(mut self, observer: impl TaskObserver) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// How long a runner's hold on a running task lasts beyond the task's timeout.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long finished tasks are kept (default: [`Retention::default`]).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How often retention is applied (default: every minute).
    pub fn prune_every(mut self, every: Duration) -> Self {
        self.prune_every = every.max(Duration::from_millis(10));
        self
    }

    /// How often to look for pending tasks that nobody runs (on a shared store: that no
    /// instance has taken, besides the store's own signal), default every 5 seconds.
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every.max(Duration::from_millis(10));
        self
    }

    /// With a store shared by several instances (PostgreSQL, MySQL, Redis): how long each of
    /// its operations may take before it is an error ([`StoreTimeouts::default`]: 5 s for
    /// one task's operations and durable enqueues, 60 s for statistics and maintenance). A
    /// database that hangs then answers enqueues with `503` within the bound, and the app
    /// keeps serving. An embedded store (SQLite, memory) has no such bound.
    pub fn store_timeouts(mut self, timeouts: StoreTimeouts) -> Self {
        self.store_timeouts = timeouts;
        self
    }

    /// The most a task may carry (arguments, tags, idempotency key) and produce (error text,
    /// log lines); default [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether `build` recovers the store: reclaims tasks whose runner died and dispatches
    /// pending tasks (default: yes).
    pub fn recover(mut self, recover: bool) -> Self {
        self.recover = recover;
        self
    }

    /// Starts the manager: checks the registry (two tasks sharing a name is an error),
    /// reclaims tasks left `running` by a dead process (requeued, failed as a poison pill, or
    /// `interrupted`), dispatches every pending task, and starts the maintenance loop (lease
    /// renewal, crash reclaim, retention).
    pub async fn build(#[allow(unused_mut)] mut self) -> Result<TaskManager> {
        #[cfg(feature = "sqlite")]
        if let Some(path) = self.sqlite.take() {
            self.store = Some(Arc::new(crate::store::SqliteStore::open(path)?));
        }
        let recover = self.recover;
        let manager = self.start()?;
        if recover {
            manager.recover().await?;
        }
        manager.spawn_maintenance();
        Ok(manager)
    }

    fn start(self) -> Result<TaskManager> {
        registry().check()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let mut store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let wake = store.enqueued_elsewhere();
        if wake.is_some() {
            store = Arc::new(Deadline::new(store, self.store_timeouts));
        }
        Ok(TaskManager {
            inner: Arc::new(Inner {
                store,
                slots: Slots::new(self.concurrency),
                runner: format!("{}-{}", std::process::id(), TaskId::new()).into(),
                observers: Observers::new(self.observers),
                runtime,
                tracker: TaskTracker::new(),
                stopping: CancellationToken::new(),
                accepting: AtomicBool::new(true),
                running: Mutex::new(HashMap::new()),
                lease: self.lease,
                retention: self.retention,
                prune_every: self.prune_every,
                wake,
                queued: Mutex::default(),
                poll_every: self.poll_every,
                limits: self.limits,
            }),
        })
    }
}
