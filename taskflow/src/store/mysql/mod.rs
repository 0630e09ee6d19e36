//! [`MysqlStore`]: tasks in MySQL 8 or MariaDB 10.6+, shared by every instance of an app.

mod cancel;
mod complete;
mod counters;
mod deltas;
mod events;
mod fetch;
mod fold;
mod inserts;
mod queues;
mod reads;
mod rewrite;
mod row;
mod run_key;
mod running;
mod schedules;
mod schema;
mod sessions;
mod upkeep;

use self::row::{COLUMNS, Cells, INSERT, encode, micros, text, time};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts, Value};

use super::counters::moves::Moves;
use super::counters::{MinuteCounts, StatusCount};
use super::inserts::{Insert, InsertQueue};
use super::reclaim::reclaim;
use super::{
    Change, DEFAULT_PAGE, Enqueued, Fetch, FunctionStats, Lease, P95_WINDOW, Reclaimed, Retention,
    Rewrite, ScheduleChange, Store, StoreError, StoredSchedule, TaskPage, TaskQuery, TaskStats,
    Transition, WriteTicket, p95,
};
use crate::id::TaskId;
use crate::instance::Instance;
use crate::queue::{QueueChange, QueueCounts, QueueState};
use crate::record::{LogEntry, LogLevel, Progress, TaskRecord, TaskSource, TaskStatus};

/// Tasks in a MySQL 8 or MariaDB (10.6 or later) database, shared by several instances.
///
/// The same guarantees as [`PostgresStore`](crate::PostgresStore), with this server's means: a
/// conditional `UPDATE` claims a task, `FOR UPDATE SKIP LOCKED` reclaims crashed runners'
/// tasks, a unique index on a generated column (the key while the task is active) enforces
/// idempotency keys, a named lock serialises migrations. There is no `LISTEN`: instances
/// poll for tasks no instance has taken ([`TaskManagerBuilder::poll_every`](crate::TaskManagerBuilder::poll_every)).
///
/// ```rust,no_run
/// # async fn run() -> taskflow::Result<()> {
/// use taskflow::{MysqlStore, TaskManager};
///
/// let store = MysqlStore::connect("mysql://app:secret@db:3306/app").await?;
/// let manager = TaskManager::builder().store(store).build().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MysqlStore {
    pool: Pool,
    /// New tasks waiting to be inserted together; `close` waits for them.
    inserts: InsertQueue<Pool>,
    wake: Arc<tokio::sync::Notify>,
    url: Arc<str>,
    /// The queues whose row in `taskflow_queues` this store has made sure of (rows are never
    /// deleted), so that a fetch taking turns on one inserts it once, not at every fetch.
    queue_rows: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// What this store's fetches know of the tasks they leased, for their outcomes.
    running: Arc<running::RunningRows>,
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore").field("url", &super::redact_url(&self.url)).finish()
    }
}

fn unavailable(err: mysql_async::Error) -> StoreError {
    StoreError::Unavailable(format!("mysql: {err}"))
}

fn is_duplicate(err: &mysql_async::Error) -> bool {
    matches!(err, mysql_async::Error::Server(server) if server.code == 1062)
}

/// Inserts a task; when an active task holds its key, records the id as that task's alias.
async fn insert(
    pool: Pool,
    values: Vec<Value>,
    id: TaskId,
    key: Option<String>,
) -> Result<(), StoreError> {
    let mut conn = pool.get_conn().await.map_err(unavailable)?;
    let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(unavailable)?;
    let inserted = tx.exec_drop(INSERT, values.clone()).await;
    if inserted.is_ok() {
        let mut moves = Moves::default();
        deltas::inserted(&mut moves, &values, Utc::now());
        deltas::append(&mut tx, &mut moves).await.map_err(unavailable)?;
        return tx.commit().await.map_err(unavailable);
    }
    tx.rollback().await.map_err(unavailable)?;
    match inserted {
        Ok(()) => Ok(()),
        Err(err) if is_duplicate(&err) && key.is_some() => {
            let holder: Option<String> = conn
                .exec_first("SELECT id FROM taskflow_tasks WHERE active_key = ?", (key,))
                .await
                .map_err(unavailable)?;
            let Some(holder) = holder else {
                return Err(StoreError::Unavailable(format!(
                    "mysql: task {id}: its idempotency key was taken and released meanwhile; enqueue it again"
                )));
            };
            conn.exec_drop(
                "INSERT IGNORE INTO taskflow_aliases (alias, task_id) VALUES (?, ?)",
                (id.to_string(), holder),
            )
            .await
            .map_err(unavailable)
        }
        Err(err) => Err(unavailable(err)),
    }
}

impl MysqlStore {
    /// The default number of pooled connections.
    pub const DEFAULT_POOL_SIZE: usize = 16;

    /// Connects to `url` (`mysql://user:password@host:3306/database`) with
    /// [`MysqlStore::DEFAULT_POOL_SIZE`] connections and creates or migrates the schema.
    pub async fn connect(url: &str) -> Result<MysqlStore, StoreError> {
        Self::connect_with_pool_size(url, Self::DEFAULT_POOL_SIZE).await
    }

    /// Like [`MysqlStore::connect`], with at most `size` pooled connections.
    pub async fn connect_with_pool_size(url: &str, size: usize) -> Result<MysqlStore, StoreError> {
        let opts = mysql_async::Opts::from_url(url).map_err(|err| StoreError::Open {
            path: super::redact_url(url),
            reason: err.to_string(),
        })?;
        let size = size.max(1);
        let constraints = mysql_async::PoolConstraints::new(1, size).unwrap_or_default();
        // No reset when a connection goes back to the pool: the store leaves no session state
        // behind (transactions end, the migration lock is released), and a reset would cost a
        // round trip and empty the connection's prepared-statement cache every time.
        let pool_opts = mysql_async::PoolOpts::default()
            .with_constraints(constraints)
            .with_reset_connection(false);
        let pool = Pool::new(mysql_async::OptsBuilder::from_opts(opts).pool_opts(pool_opts));
        schema::migrate(&pool, url).await?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StoreError::Open {
            path: super::redact_url(url),
            reason: "must be called inside a tokio runtime".to_owned(),
        })?;
        Ok(MysqlStore {
            inserts: InsertQueue::new(pool.clone(), runtime),
            pool,
            wake: Arc::new(tokio::sync::Notify::new()),
            url: url.into(),
            queue_rows: Arc::default(),
            running: Arc::default(),
        })
    }

    async fn conn(&self) -> Result<mysql_async::Conn, StoreError> {
        self.pool.get_conn().await.map_err(unavailable)
    }

    async fn rows(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Cells>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<mysql_async::Row> = conn.exec(sql, params).await.map_err(unavailable)?;
        Ok(rows.into_iter().map(Cells::of).collect())
    }

    async fn affected(&self, sql: &str, params: Vec<Value>) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(sql, params).await.map_err(unavailable)?;
        Ok(conn.affected_rows())
    }
}

impl MysqlStore {
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
        let values = encode(&record, hold);
        let (done, ticket) = WriteTicket::new();
        let insert = Insert { values, id, key, run_key, done };
        Ok((insert, Enqueued { id, created: true, write: Some(ticket) }))
    }
}

fn s(text: &str) -> Value {
    Value::Bytes(text.as_bytes().to_vec())
}

#[async_trait]
impl Store for MysqlStore {
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

    async fn resolve(&self, id: &TaskId) -> Result<Option<TaskId>, StoreError> {
        self.resolve_alias(id).await
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.load(id).await
    }

    async fn transition(
        &self,
        id: &TaskId,
        lease: &Lease,
        change: Transition,
    ) -> Result<bool, StoreError> {
        let change = Change { id: *id, lease: lease.clone(), transition: change };
        let applied = complete::many(&self.pool, &self.running, vec![change]).await.pop();
        applied.unwrap_or(Ok(false))
    }

    async fn transition_many(&self, changes: Vec<Change>) -> Vec<Result<bool, StoreError>> {
        complete::many(&self.pool, &self.running, changes).await
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

    fn event_log(&self) -> Option<&dyn super::events::EventLog> {
        Some(self)
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

    fn enqueued_elsewhere(&self) -> Option<Arc<tokio::sync::Notify>> {
        // No notifications on this server: a signal that never fires turns on polling.
        Some(Arc::clone(&self.wake))
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inserts.close().await;
        self.pool.clone().disconnect().await.map_err(unavailable)
    }
}

/// Decodes `values` as a stored row; for the fuzz targets.
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_values(values: Vec<Value>) {
    let id = match values.first() {
        Some(Value::Bytes(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        _ => "?".to_owned(),
    };
    let _ = Cells { values, id }.record();
}
