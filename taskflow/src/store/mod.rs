//! The store interface every backend implements, and the in-memory backend.
//!
//! The interface is shaped for shared databases from the start: a pending task is *claimed*
//! atomically by exactly one runner, which holds it under a *lease*; every write that ends or
//! changes an attempt is *fenced* by that lease, so a runner that lost its lease (a rescued
//! task) can never overwrite the task; idempotency keys are enforced by the store itself.

#[cfg(feature = "sqlite")]
mod cancels;
pub mod counters;
mod deadline;
mod error;
pub mod events;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub(crate) mod fetch;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
mod inserts;
mod memory;
#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod query;
mod reclaim;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "encryption")]
pub(crate) mod reseal;
pub(crate) mod schedules;
#[cfg(feature = "encryption")]
pub(crate) mod sealed;
mod shared;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
mod ticket;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub use self::counters::{MinuteCounts, StatusCount};
pub(crate) use self::deadline::Deadline;
pub use self::deadline::StoreTimeouts;
pub use self::error::StoreError;
pub use self::fetch::{Fetch, PRIORITY_STEP, TaskRoom};
pub use self::memory::MemoryStore;
#[cfg(feature = "mysql")]
pub use self::mysql::MysqlStore;
#[cfg(feature = "postgres")]
pub use self::postgres::PostgresStore;
pub use self::query::{DEFAULT_PAGE, FunctionStats, P95_WINDOW, TaskPage, TaskQuery, TaskStats};
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use self::schedules::{HISTORY, ScheduleChange, SlotOutcome, SlotRecord, StoredSchedule};
pub use self::shared::Rewrite;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use self::shared::fetch_order;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) use self::shared::like_escape;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
pub(crate) use self::shared::redact_url;
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) use self::shared::tag_path;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "redis"))]
pub(crate) use self::shared::{decode_instances, readable};
pub(crate) use self::shared::{due_at, p95, replaced};
#[cfg(feature = "sqlite")]
pub use self::sqlite::{Durability, SqliteOptions, SqliteStore};
pub use self::ticket::{Enqueued, WriteDone, WriteTicket};
pub(crate) use self::ticket::{in_order, unanswered};
use crate::id::TaskId;
use crate::instance::Instance;
use crate::queue::{QueueChange, QueueCounts, QueueState};
use crate::record::{LogEntry, Progress, TaskRecord, TaskStatus};

/// What [`Store::reclaim_expired`] did with tasks whose runner is gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Put back to `pending` (`requeue_on_interrupt`), to be fetched again.
    pub requeued: Vec<TaskId>,
    /// Marked `interrupted`.
    pub interrupted: Vec<TaskId>,
    /// Marked `failed`: they were running when their process died too many times.
    pub poisoned: Vec<TaskId>,
}

/// How long finished tasks are kept. Pending and running tasks are never pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Finished tasks older than this (by end time) are deleted.
    pub max_age: Option<std::time::Duration>,
    /// At most this many finished tasks are kept, the newest.
    pub max_finished: Option<usize>,
}

impl Default for Retention {
    /// Seven days, and at most 100,000 finished tasks.
    fn default() -> Self {
        Retention {
            max_age: Some(std::time::Duration::from_secs(7 * 24 * 3600)),
            max_finished: Some(100_000),
        }
    }
}

impl Retention {
    /// The end time before which finished tasks are too old, for `max_age` counted back from
    /// `now`; `None` without an age limit, or when the limit reaches back before any time a
    /// task can carry (nothing is that old).
    pub fn age_cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let age = chrono::Duration::from_std(self.max_age?).ok()?;
        now.checked_sub_signed(age)
    }
}

/// After this many recoveries from a dead process, a requeued task is failed as a poison pill.
pub(crate) const MAX_RECOVERIES: u32 = 3;

/// A runner's hold on a running task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The runner: unique per process incarnation.
    pub owner: Arc<str>,
    /// When the hold lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// One fenced change of a batch: [`Store::transition_many`].
#[derive(Clone, Debug)]
pub struct Change {
    /// The task.
    pub id: TaskId,
    /// The lease it must still be held under.
    pub lease: Lease,
    /// What changes.
    pub transition: Transition,
}

/// A fenced change to a running task: it applies only while the lease still holds it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Transition {
    /// The task ended.
    Finished {
        /// `success`, `failed`, `interrupted` or `cancelled`.
        status: TaskStatus,
        /// When it ended.
        end_time: DateTime<Utc>,
        /// Retries used in all.
        retries_used: u32,
        /// The result, on success.
        result: Option<Value>,
        /// The last failure's message, if any.
        error: Option<String>,
        /// The last failure's chain of causes, if any.
        stacktrace: Option<String>,
    },
    /// The task goes back to `pending` (interrupted with `requeue_on_interrupt`).
    Requeue,
    /// The attempt is over and the task waits in the store for its next one: back to
    /// `pending`, due at `due`, its lease released (a retry after a failure, or a snooze).
    Reschedule {
        /// When the next attempt is due.
        due: DateTime<Utc>,
        /// Retries used once the next attempt starts (unchanged by a snooze).
        retries_used: u32,
        /// The failure's message; `None` keeps the last one.
        error: Option<String>,
        /// The failure's chain of causes, with `error`.
        stacktrace: Option<String>,
    },
}

/// A task store. `TaskManager` runs every lifecycle change through it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new task, or, when an active task (not `failed` nor `cancelled`) has the same
    /// idempotency key, stores nothing and returns that task's id. Atomic in the store.
    ///
    /// With a run key, a task that waits under the same key (pending, never started) is
    /// cancelled in the same atomic step, its error naming the task that replaced it: at most one task
    /// waits under a run key, whatever the instances race.
    ///
    /// Synchronous, because `Tasks::add_task` returns the id at once: a durable backend stages
    /// the write and makes it durable in [`Store::flush`], which the request layer awaits
    /// before the response leaves.
    fn enqueue(&self, record: TaskRecord) -> Result<Enqueued, StoreError>;

    /// Stores a new task as [`Store::enqueue`] does, held back from [`Store::fetch`] until
    /// [`Store::release_held`] lets it go or, should that never come (the process died),
    /// until `until`: a request's tasks, which start once its response is out.
    fn enqueue_held(
        &self,
        record: TaskRecord,
        until: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError>;

    /// Stores new tasks, each with the time it is held back until (if it is), as
    /// [`Store::enqueue`] or [`Store::enqueue_held`] does each, in as few round trips as the
    /// backend allows: a
    /// shared-database store queues them all at once for its batched inserts (up to 512 per
    /// transaction or pipeline), where one-by-one calls may start a write between two. One
    /// result per record, in order; each task is stored or refused on its own (its
    /// idempotency key, its run key), as if enqueued alone. The default enqueues them one by
    /// one.
    fn enqueue_many(
        &self,
        records: Vec<(TaskRecord, Option<DateTime<Utc>>)>,
    ) -> Vec<Result<Enqueued, StoreError>> {
        records
            .into_iter()
            .map(|(record, held_until)| match held_until {
                Some(until) => self.enqueue_held(record, until),
                None => self.enqueue(record),
            })
            .collect()
    }

    /// Lets the held tasks `ids` be fetched (at their due time, if they have one).
    async fn release_held(&self, ids: &[TaskId]) -> Result<(), StoreError>;

    /// Makes every task enqueued before this call durable.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The task with this id.
    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError>;

    /// The id of the task that `id` names: `id` itself, or for an alias (a duplicate
    /// idempotent enqueue's id on a remote store) the id of the task holding the key; `None`
    /// when no task has it. Every other method taking an id accepts an alias too; this one
    /// gives the canonical id to report and to look up in-process state by.
    async fn resolve(&self, id: &TaskId) -> Result<Option<TaskId>, StoreError> {
        Ok(self.get(id).await?.map(|record| record.task_id))
    }

    /// Applies `change` if `lease` still holds the task; `false` when it does not.
    async fn transition(
        &self,
        id: &TaskId,
        lease: &Lease,
        change: Transition,
    ) -> Result<bool, StoreError>;

    /// Applies several fenced changes, each as [`Store::transition`] would, in as few round
    /// trips as the backend allows (one transaction, pipeline or script call per batch): the
    /// completer's batches. Returns one result per change, in order: whether its lease still
    /// held the task, or the error that kept it from being written. When a batch fails as a
    /// whole, every change gets the error and none was applied, except where the backend
    /// cannot tell (a reply lost with the connection): a change written anyway is then found
    /// no longer leased when retried alone, as after any lost reply. The default applies the
    /// changes concurrently, one by one.
    async fn transition_many(&self, changes: Vec<Change>) -> Vec<Result<bool, StoreError>> {
        let writes = changes.into_iter().map(|Change { id, lease, transition }| async move {
            self.transition(&id, &lease, transition).await
        });
        futures_util::future::join_all(writes).await
    }

    /// Appends log entries to a task.
    async fn append_logs(&self, id: &TaskId, logs: Vec<LogEntry>) -> Result<(), StoreError>;

    /// Cancels a `pending` task atomically (`id` may be an alias); returns its status *before* the call, so
    /// `Some(Pending)` means this call cancelled it (`None`: no such task).
    async fn cancel_pending(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError>;

    /// Asks whoever runs the task `id` (`running`, on any instance sharing the store) to stop
    /// it: a flag on the task, which that runner finds through [`Store::cancel_requests`] and
    /// which the next fetch of the task clears. Returns the task's status at the call (`None`:
    /// no such task); the flag is set only when that is `Some(Running)`.
    async fn request_cancel(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError>;

    /// Of `ids`, the tasks that run under `owner`'s lease and were asked to stop since their
    /// attempt started ([`Store::request_cancel`]).
    async fn cancel_requests(&self, owner: &str, ids: &[TaskId])
    -> Result<Vec<TaskId>, StoreError>;

    /// Records what the tasks that `owner` runs last reported of how far they got
    /// ([`TaskContext::progress`](crate::TaskContext::progress)), each only while `owner`
    /// still runs it; in as few round trips as the backend allows.
    async fn record_progress(
        &self,
        owner: &str,
        reports: &[(TaskId, Progress)],
    ) -> Result<(), StoreError>;

    /// Cancels the task that waits under the run key `key` (pending, never started), in one
    /// atomic step; returns its id, or `None` when no task waits under the key.
    async fn cancel_scheduled(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError>;

    /// One page of the tasks matching `query`. Their `logs` are left empty; [`Store::get`]
    /// returns them.
    async fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError>;

    /// Counts by status and per-function outcomes and durations, over tasks created at or
    /// after `since` (all when `None`).
    async fn stats(&self, since: Option<DateTime<Utc>>) -> Result<TaskStats, StoreError>;

    /// How many stored tasks there are by function, queue and status, with the sums of their
    /// durations ([`counters`]): kept by the writes that change tasks, so reading them costs
    /// the same at a million tasks as at ten. They always equal a recount of the rows.
    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError>;

    /// What happened to tasks ([`MinuteCounts`]) from the minute of `since` on, in steps of
    /// `step` minutes counted from it (at least one): one entry per step, function and queue
    /// that saw something, its `minute` the step's first. A step as long as the window gives
    /// totals per function and queue.
    async fn history(
        &self,
        since: DateTime<Utc>,
        step: u32,
    ) -> Result<Vec<MinuteCounts>, StoreError>;

    /// Keeps the counters short to read; the leader calls it every second. Where a store keeps
    /// counter changes apart from its counters (deltas, shards: [`counters`]) it folds them
    /// in (readers add what is not folded yet, so this changes no figure); where
    /// it can, it merges the history's minutes older than [`counters::FINE_MINUTES`] at `now`
    /// into one row per quarter hour (at the quarter's first minute), so that a day's window
    /// is read from a hundred rows per function and queue rather than 1,440. Figures do not
    /// change, only how finely older history is kept. Nothing to do by default.
    async fn compact_counters(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let _ = now;
        Ok(())
    }

    /// Forgets the history of the minutes before the one of `before`; how many entries went.
    async fn trim_history(&self, before: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Up to `fetch.limit` *available* tasks of the queue `fetch.queue`, each moved to
    /// `running` under `fetch.lease` in the same atomic step, so fetchers racing on a shared
    /// store get disjoint tasks. Available means `pending` and due at `fetch.now` (no
    /// `scheduled_at`, or one not after it). Order: lowest rank first, the time it became due
    /// (its `scheduled_at`, else its creation) less its priority times [`PRIORITY_STEP`],
    /// then enqueue order (so a higher priority goes first, and waiting ages a task up one
    /// priority level a minute). A task not yet due is
    /// never returned, however many wait ahead of it. Nothing while the queue is paused
    /// ([`Store::update_queue`]). With a `global_limit`, at most that many of the queue's
    /// tasks are `running` after the fetch, counted in the same atomic step, so fetchers on
    /// every instance together never exceed it.
    async fn fetch(&self, fetch: &Fetch<'_>) -> Result<Vec<TaskRecord>, StoreError>;

    /// When the earliest pending task of `queue` that is not available yet (due later, or held
    /// back) comes due: the producer sleeps until then rather than polling. It may be in the
    /// past (the next fetch makes it available), and `None` when no task waits.
    async fn next_due(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// The shared state of every queue that has one (a queue never changed has none).
    async fn queue_states(&self) -> Result<Vec<QueueState>, StoreError>;

    /// Applies `change` to the shared state of `queue` (creating it), atomically against
    /// concurrent changes of other fields; returns the state after it.
    async fn update_queue(
        &self,
        queue: &str,
        change: QueueChange,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError>;

    /// How many tasks are `pending` and `running`, per queue that has any.
    async fn queue_counts(&self) -> Result<Vec<QueueCounts>, StoreError>;

    /// How many tasks of `queue` are `pending`, counted no further than `cap`: the read a
    /// queue's `max_pending` is checked against, as cheap with a long queue as with a short
    /// one. The default takes it from [`Store::queue_counts`].
    async fn count_pending(&self, queue: &str, cap: u64) -> Result<u64, StoreError> {
        let counts = self.queue_counts().await?;
        Ok(counts.iter().find(|c| c.queue == queue).map_or(0, |c| c.pending).min(cap))
    }

    /// Records (or refreshes) `instance`'s heartbeat: [`Store::instances`] lists it until
    /// its `expires_at`. Entries expired by its `seen_at` may be removed meanwhile.
    async fn heartbeat(&self, instance: &Instance) -> Result<(), StoreError>;

    /// The instances whose last heartbeat has not expired at `now`, by id.
    async fn instances(&self, now: DateTime<Utc>) -> Result<Vec<Instance>, StoreError>;

    /// Removes the heartbeat of instance `id` (it shut down).
    async fn forget_instance(&self, id: &str) -> Result<(), StoreError>;

    /// Records that the admin session `id` is revoked (signed out) until `until`, when its
    /// cookie expires anyway, so that no instance sharing the store accepts it again; may drop
    /// revocations that have lapsed.
    async fn revoke_session(&self, id: &str, until: DateTime<Utc>) -> Result<(), StoreError>;

    /// Whether the admin session `id` is revoked at `now`.
    async fn session_revoked(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Every readable schedule, by name (a damaged one is logged and skipped, and stays in
    /// the store until redefined).
    async fn schedules(&self) -> Result<Vec<StoredSchedule>, StoreError>;

    /// Applies `change` to the schedule `name`, atomically against every other change on
    /// every instance sharing the store; returns the schedule after it (for a removal, what
    /// was removed), or `None` when nothing applied: no such schedule, or an
    /// [`Advance`](ScheduleChange::Advance) of a version it is no longer at. The tasks an
    /// advance or a trigger fires are stored in the same atomic write, or not at all.
    async fn change_schedule(
        &self,
        name: &str,
        change: ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSchedule>, StoreError>;

    /// Puts the tasks still `running` under exactly `lease` (its owner and its expiry, to the
    /// microsecond) back to `pending`, as they were: for a [`Store::fetch`] whose answer was
    /// lost, whose tasks never started. Returns how many.
    async fn release(&self, lease: &Lease) -> Result<usize, StoreError>;

    /// Applies `rewrite` in one atomic step if every field it names still holds the value it
    /// was read with; whether it did. Nothing else about the task changes.
    async fn rewrite_values(&self, rewrite: &Rewrite) -> Result<bool, StoreError>;

    /// Extends the leases that `owner` holds on `ids` to `expires_at`.
    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Tasks `running` under a lease that expired before `now` lost their runner (a crash, a
    /// kill, a power loss): each is requeued (`requeue_on_interrupt`, fewer than
    /// `max_recoveries` recoveries so far), failed as a poison pill (too many), or marked
    /// `interrupted`. Atomic per task: with several instances, exactly one reclaims it.
    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError>;

    /// Makes `owner` the holder of the leadership `name` until `until`, if no other owner
    /// holds it unexpired at `now` (an owner already holding it extends it); `true` when
    /// `owner` holds it after the call. Atomic in the store: with several instances, one
    /// leads at a time, and another takes over once the leader stops renewing.
    async fn elect(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Gives up the leadership `name` if `owner` holds it, so another instance takes over at
    /// once (at shutdown).
    async fn resign(&self, name: &str, owner: &str) -> Result<(), StoreError>;

    /// Deletes finished tasks beyond `retention`; returns how many.
    async fn prune(&self, retention: &Retention, now: DateTime<Utc>) -> Result<usize, StoreError>;

    /// For a store that several processes share: a signal that fires when tasks may have been
    /// enqueued that no instance has taken yet (a transactional enqueue), so managers fetch
    /// at once rather than at their next interval. `None` (the default)
    /// for a store that only this process writes.
    fn enqueued_elsewhere(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }

    /// For a store that several processes share: the cluster's shared log of lifecycle
    /// events, which the live feed of every instance reads. `None` (the default) for a store
    /// that only this process writes, whose feed is its own.
    fn event_log(&self) -> Option<&dyn events::EventLog> {
        None
    }

    /// Makes everything durable and releases the store (its file, its connections).
    async fn close(&self) -> Result<(), StoreError> {
        self.flush().await
    }
}
