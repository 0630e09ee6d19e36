//! [`PostgresStore`]: tasks in PostgreSQL, shared by every instance of an app.

mod cancel;
mod complete;
mod counters;
mod deltas;
mod events;
mod fetch;
mod inserts;
mod notify;
mod queues;
mod reads;
mod rewrite;
mod row;
mod run_key;
mod schedules;
mod schema;
mod sessions;
mod upkeep;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use self::inserts::insert;
pub(crate) use self::inserts::insert_in;
use self::notify::listen;
use self::row::{COLUMNS, Params};
use super::counters::{MinuteCounts, StatusCount};
use super::inserts::{Insert, InsertQueue};
use super::reclaim::reclaim;
use super::{
    Change, DEFAULT_PAGE, Enqueued, Fetch, FunctionStats, Lease, P95_WINDOW, Reclaimed, Retention,
    Rewrite, ScheduleChange, Store, StoreError, StoredSchedule, TaskPage, TaskQuery, TaskStats,
    Transition, WriteTicket,
};
use crate::id::TaskId;
use crate::instance::Instance;
use crate::queue::{QueueChange, QueueCounts, QueueState};
use crate::record::{LogEntry, Progress, TaskRecord, TaskStatus};

/// Tasks in a PostgreSQL database, shared by several instances.
///
/// - A pending task is claimed with a conditional `UPDATE` (one row lock: exactly one runner
///   wins); crashed runners' tasks are reclaimed with `FOR UPDATE SKIP LOCKED`, so with any
///   number of instances each is settled once.
/// - Idempotency keys are enforced by a partial unique index over active tasks. Because
///   `add_task` answers before the database does, a duplicate enqueue returns a fresh id that
///   the store records as an alias of the task that holds the key: that id finds the task.
/// - The schema is created and migrated at connect, under an advisory lock.
///
/// ```rust,no_run
/// # async fn run() -> taskflow::Result<()> {
/// use taskflow::{PostgresStore, TaskManager};
///
/// let store = PostgresStore::connect("postgres://app@db/app").await?;
/// let manager = TaskManager::builder().store(store).build().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// New tasks waiting to be inserted together; `close` waits for them.
    inserts: InsertQueue<Pool>,
    /// Fired by `NOTIFY taskflow_enqueued` from any instance.
    wake: Arc<tokio::sync::Notify>,
    /// Fired by `NOTIFY taskflow_events`: events were appended to the log.
    events: Arc<tokio::sync::Notify>,
    /// Stops the listener at close.
    closing: tokio_util::sync::CancellationToken,
    url: Arc<str>,
    /// When the counters' fold last vacuumed the delta tables (unix seconds).
    vacuumed: Arc<std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("url", &super::redact_url(&self.url)).finish()
    }
}

/// A database error as a store error, with the server's message.
fn unavailable(err: tokio_postgres::Error) -> StoreError {
    match err.as_db_error() {
        Some(db) => {
            StoreError::Unavailable(format!("postgres: {} ({})", db.message(), db.code().code()))
        }
        None => StoreError::Unavailable(format!("postgres: {err}")),
    }
}

fn pool_error(err: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("postgres: {err}"))
}

const ACTIVE_KEY: &str = "idempotency_key IS NOT NULL AND status NOT IN ('failed', 'cancelled')";

impl PostgresStore {
    /// The default number of pooled connections.
    pub const DEFAULT_POOL_SIZE: usize = 16;

    /// Connects to `url` (`postgres://user:password@host:port/database`) with
    /// [`PostgresStore::DEFAULT_POOL_SIZE`] connections, and creates or migrates the schema.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        Self::connect_with_pool_size(url, Self::DEFAULT_POOL_SIZE).await
    }

    /// Like [`PostgresStore::connect`], with at most `size` pooled connections.
    pub async fn connect_with_pool_size(
        url: &str,
        size: usize,
    ) -> Result<PostgresStore, StoreError> {
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(url.to_owned());
        config.pool = Some(deadpool_postgres::PoolConfig::new(size.max(1)));
        let pool = config.create_pool(Some(Runtime::Tokio1), NoTls).map_err(|err| {
            StoreError::Open { path: super::redact_url(url), reason: err.to_string() }
        })?;
        schema::migrate(&pool, url).await?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StoreError::Open {
            path: super::redact_url(url),
            reason: "must be called inside a tokio runtime".to_owned(),
        })?;
        let (wake, events) = (Arc::default(), Arc::default());
        let closing = tokio_util::sync::CancellationToken::new();
        let listener =
            listen(url.to_owned(), Arc::clone(&wake), Arc::clone(&events), closing.clone());
        runtime.spawn(listener);
        let inserts = InsertQueue::new(pool.clone(), runtime);
        let vacuumed = Arc::default();
        Ok(PostgresStore { pool, inserts, wake, events, closing, url: url.into(), vacuumed })
    }

    /// The insert of `record` for the insert queue (held back from fetching until `hold`, if
    /// given), and what enqueuing it answers.
    fn prepare(
        &self,
        record: TaskRecord,
        hold: Option<DateTime<Utc>>,
    ) -> Result<(Insert<Pool>, Enqueued), StoreError> {
        let id = record.task_id;
        let key = record.idempotency_key.clone();
        let run_key = record.run_key.clone().filter(|_| record.status == TaskStatus::Pending);
        let params = Params::of(&record, hold);

        let (done, ticket) = WriteTicket::new();
        let insert = Insert { values: params, id: *id.as_uuid(), key, run_key, done };
        // Whether the key was free is known only once the database answers; a duplicate's id
        // becomes an alias of the holder, so the caller's id always finds the task.
        Ok((insert, Enqueued { id, created: true, write: Some(ticket) }))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(unavailable)?;
        client.query(&statement, params).await.map_err(unavailable)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(unavailable)?;
        client.execute(&statement, params).await.map_err(unavailable)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn enqueue(&self, record: TaskRecord) -> Result<Enqueued, StoreError> {
        self.inserts.stage(self.prepare(record, None))
    }

    fn enqueue_held(
        &self,
        record: TaskRecord,
        until: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        self.inserts.stage(self.prepare(record, Some(until)))
    }

    fn enqueue_many(
        &self,
        records: Vec<(TaskRecord, Option<DateTime<Utc>>)>,
    ) -> Vec<Result<Enqueued, StoreError>> {
        let prepared = records.into_iter().map(|(record, hold)| self.prepare(record, hold));
        self.inserts.push_all(prepared.collect())
    }

    async fn release_held(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        self.let_go(ids).await
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.load(id).await
    }

    async fn resolve(&self, id: &TaskId) -> Result<Option<TaskId>, StoreError> {
        self.resolve_alias(id).await
    }

    async fn transition(
        &self,
        id: &TaskId,
        lease: &Lease,
        change: Transition,
    ) -> Result<bool, StoreError> {
        let (sql, params) = complete::statement(id, lease, change, true);
        Ok(self.execute(sql, &complete::refs(&params)).await? > 0)
    }

    async fn transition_many(&self, changes: Vec<Change>) -> Vec<Result<bool, StoreError>> {
        complete::many(&self.pool, changes).await
    }

    async fn append_logs(&self, id: &TaskId, logs: Vec<LogEntry>) -> Result<(), StoreError> {
        self.push_logs(id, logs).await
    }

    async fn cancel_pending(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        self.cancel_if_pending(id).await
    }

    async fn request_cancel(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        self.flag_cancel(id).await
    }

    async fn cancel_requests(
        &self,
        owner: &str,
        ids: &[TaskId],
    ) -> Result<Vec<TaskId>, StoreError> {
        self.flagged(owner, ids).await
    }

    async fn record_progress(
        &self,
        owner: &str,
        reports: &[(TaskId, Progress)],
    ) -> Result<(), StoreError> {
        self.write_progress(owner, reports).await
    }

    async fn cancel_scheduled(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError> {
        self.cancel_waiting_key(key, now).await
    }

    async fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        self.page(query).await
    }

    async fn stats(&self, since: Option<DateTime<Utc>>) -> Result<TaskStats, StoreError> {
        self.compute_stats(since).await
    }

    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        self.read_counts().await
    }

    async fn history(
        &self,
        since: DateTime<Utc>,
        step: u32,
    ) -> Result<Vec<MinuteCounts>, StoreError> {
        self.read_history(since, step).await
    }

    async fn compact_counters(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.fold_deltas(now).await
    }

    async fn trim_history(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.drop_history(before).await
    }

    async fn fetch(&self, fetch: &Fetch<'_>) -> Result<Vec<TaskRecord>, StoreError> {
        self.fetch_available(fetch).await
    }

    async fn next_due(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.next_waiting(queue).await
    }

    async fn queue_states(&self) -> Result<Vec<QueueState>, StoreError> {
        self.read_queue_states().await
    }

    async fn update_queue(
        &self,
        queue: &str,
        change: QueueChange,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError> {
        self.change_queue(queue, change, now).await
    }

    async fn queue_counts(&self) -> Result<Vec<QueueCounts>, StoreError> {
        self.count_queues().await
    }

    async fn count_pending(&self, queue: &str, cap: u64) -> Result<u64, StoreError> {
        self.count_queue(queue, cap).await
    }

    async fn heartbeat(&self, instance: &Instance) -> Result<(), StoreError> {
        self.beat(instance).await
    }

    async fn instances(&self, now: DateTime<Utc>) -> Result<Vec<Instance>, StoreError> {
        self.live_instances(now).await
    }

    async fn forget_instance(&self, id: &str) -> Result<(), StoreError> {
        self.forget(id).await
    }

    async fn revoke_session(&self, id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.revoke(id, until).await
    }

    async fn session_revoked(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.revoked(id, now).await
    }

    async fn schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        self.read_schedules().await
    }

    async fn change_schedule(
        &self,
        name: &str,
        change: ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSchedule>, StoreError> {
        self.apply_schedule(name, change, now).await
    }

    async fn release(&self, lease: &Lease) -> Result<usize, StoreError> {
        self.release_lease(lease).await
    }

    async fn rewrite_values(&self, rewrite: &Rewrite) -> Result<bool, StoreError> {
        self.rewrite(rewrite).await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.extend_leases(owner, ids, expires_at).await
    }

    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        self.rescue_expired(now, max_recoveries).await
    }

    async fn elect(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.elect_leader(name, owner, now, until).await
    }

    async fn resign(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.resign_leader(name, owner).await
    }

    async fn prune(&self, retention: &Retention, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.prune_finished(retention, now).await
    }

    fn event_log(&self) -> Option<&dyn super::events::EventLog> {
        Some(self)
    }

    fn enqueued_elsewhere(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(Arc::clone(&self.wake))
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closing.cancel();
        self.inserts.close().await;
        self.pool.close();
        Ok(())
    }
}
