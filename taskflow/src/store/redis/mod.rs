//! [`RedisStore`]: tasks in Redis, shared by every instance of an app.

mod cancel;
mod counters;
mod events;
mod fetch;
mod inserts;
mod notify;
mod queues;
mod reads;
mod rewrite;
mod row;
mod schedules;
mod scripts;
mod sessions;
mod upkeep;

#[cfg(feature = "fuzzing")]
pub(crate) use self::row::decode_fields;
use self::row::{decode, pairs, transition_args};
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use self::scripts::Scripts;

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
use crate::record::{LogEntry, Progress, TaskRecord, TaskStatus};

/// Tasks in Redis, shared by several instances.
///
/// Every change to a task is one Lua script, so it is atomic: enqueue with its idempotency
/// key, claim, fenced transitions, cancel, reclaim of expired leases (once, whichever instance
/// gets there first), deletion. Indexes are sorted sets by enqueue order. It needs a single
/// Redis node or a primary with replicas, not Redis Cluster (scripts reach keys they derive).
/// A task that becomes available now is announced on the channel `<prefix>:enqueued`, which
/// every instance listens on: an idle instance fetches at once rather than at its next poll.
///
/// **Persistence.** Redis keeps data in memory; the guarantees hold across a Redis restart
/// only as far as its persistence does. Run it with the append-only file on
/// (`appendonly yes`): with `appendfsync everysec` (the default) a Redis crash or power loss
/// can lose the last second of enqueues and state changes, with `appendfsync always` nothing
/// acknowledged is lost. RDB snapshots alone lose everything since the last snapshot. Tasks
/// in flight when Redis restarts without them are gone from the history, not run twice.
///
/// ```rust,no_run
/// # async fn run() -> taskflow::Result<()> {
/// use taskflow::{RedisStore, TaskManager};
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let manager = TaskManager::builder().store(store).build().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    runtime: tokio::runtime::Handle,
    /// New tasks waiting to be written together; `close` waits for them.
    inserts: InsertQueue<inserts::Enqueues>,
    /// Fired by another instance's enqueue (see [`notify`]).
    wake: Arc<tokio::sync::Notify>,
    /// Fired when any instance appends to the event log (see [`notify`]).
    events: Arc<tokio::sync::Notify>,
    /// Stops the listener at close.
    closing: tokio_util::sync::CancellationToken,
    scripts: Arc<Scripts>,
    fetch: Arc<fetch::FetchScripts>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn unavailable(err: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {err}"))
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn rfc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl RedisStore {
    /// Connects to `url` (`redis://host:6379/0`), keeping tasks under the prefix `taskflow`.
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        Self::connect_with_prefix(url, "taskflow").await
    }

    /// Like [`RedisStore::connect`], with keys under `prefix` (several apps, or tests, can
    /// share one Redis).
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let open = |reason: String| StoreError::Open { path: super::redact_url(url), reason };
        let client = redis::Client::open(url).map_err(|e| open(e.to_string()))?;
        let listener = client.clone();
        // Generous timeouts: a big page or a busy server is slow, not gone. Reconnects are
        // retried by the manager; what fails still reaches the caller as an error.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(30)))
            .set_connection_timeout(Some(std::time::Duration::from_secs(10)));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| open(e.to_string()))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| open("must be called inside a tokio runtime".to_owned()))?;
        let scripts = Arc::new(Scripts::new());
        let enqueues = inserts::Enqueues { conn: conn.clone(), scripts: Arc::clone(&scripts) };
        let store = RedisStore {
            conn,
            prefix: prefix.into(),
            inserts: InsertQueue::new(enqueues, runtime.clone()),
            runtime,
            wake: Arc::default(),
            events: Arc::default(),
            closing: tokio_util::sync::CancellationToken::new(),
            scripts,
            fetch: fetch::FetchScripts::new(),
        };
        store.adopt_pending().await.map_err(|e| open(e.to_string()))?;
        let signals = (Arc::clone(&store.wake), Arc::clone(&store.events));
        store.runtime.spawn(notify::listen(
            listener,
            prefix.to_owned(),
            signals,
            store.closing.clone(),
        ));
        Ok(store)
    }

    fn key(&self, parts: &str) -> String {
        format!("{}:{parts}", self.prefix)
    }

    /// The insert of `record` for the insert queue (held back from fetching until `hold`, if
    /// given), and what enqueuing it answers.
    fn prepare(
        &self,
        record: TaskRecord,
        hold: Option<DateTime<Utc>>,
    ) -> Result<(Insert<inserts::Enqueues>, Enqueued), StoreError> {
        let id = record.task_id;
        let args = self.enqueue_args(record, hold)?;
        let (done, ticket) = WriteTicket::new();
        // Run keys are handled by the script itself: every insert may share a pipeline.
        let insert = Insert { values: args, id, key: None, run_key: None, done };
        Ok((insert, Enqueued { id, created: true, write: Some(ticket) }))
    }

    /// The enqueue script's arguments for `record` (see [`scripts::enqueue`]).
    fn enqueue_args(
        &self,
        record: TaskRecord,
        hold: Option<DateTime<Utc>>,
    ) -> Result<Vec<String>, StoreError> {
        let id = record.task_id;
        // A record is enqueued before it runs, so it has no logs: they go to their own list.
        debug_assert!(record.logs.is_empty());
        let base = serde_json::to_string(&record)
            .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))?;
        let end = record.end_time.map(|at| (rfc(at), micros(at).to_string())).unwrap_or_default();
        let due = micros(crate::store::due_at(&record)).to_string();
        // What a replaced task records: only a task with a run key can replace one.
        let (replaced, now) = match &record.run_key {
            Some(_) => (crate::store::replaced(&id), rfc(record.created_at)),
            None => (String::new(), String::new()),
        };
        let args = vec![
            self.prefix.to_string(),
            id.to_string(),
            base,
            record.func_name.clone(),
            record.status.as_str().to_owned(),
            micros(record.created_at).to_string(),
            record.idempotency_key.clone().unwrap_or_default(),
            u8::from(record.requeue_on_interrupt).to_string(),
            end.0,
            end.1,
            record.error.unwrap_or_default(),
            record.priority.to_string(),
            due,
            hold.map(|at| micros(at).to_string()).unwrap_or_default(),
            record.run_key.unwrap_or_default(),
            replaced,
            now,
            record.queue,
        ];
        debug_assert_eq!(args.len(), scripts::TASK_ARGS);
        Ok(args)
    }
}

#[async_trait]
impl Store for RedisStore {
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
        self.release_held_tasks(ids).await
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
        let args = transition_args(&self.prefix, id, lease, change);
        let mut invocation = self.scripts.transition.prepare_invoke();
        for arg in &args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        let applied: i64 = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(applied == 1)
    }

    async fn transition_many(&self, changes: Vec<Change>) -> Vec<Result<bool, StoreError>> {
        if changes.is_empty() {
            return Vec::new();
        }
        let count = changes.len();
        let mut invocation = self.scripts.transition_many.prepare_invoke();
        invocation.arg(&*self.prefix);
        for Change { id, lease, transition } in changes {
            let args = transition_args(&self.prefix, &id, &lease, transition);
            // After the prefix: id, owner, kind, then the kind's arguments.
            invocation.arg(args.len() - 4);
            for arg in &args[1..] {
                invocation.arg(arg);
            }
        }
        let mut conn = self.conn.clone();
        match invocation.invoke_async::<Vec<i64>>(&mut conn).await {
            Ok(applied) if applied.len() == count => {
                applied.into_iter().map(|a| Ok(a == 1)).collect()
            }
            Ok(applied) => {
                let err = StoreError::Unavailable(format!(
                    "redis: {} answers to a batch of {count} changes",
                    applied.len()
                ));
                vec![Err(err); count]
            }
            Err(err) => vec![Err(unavailable(err)); count],
        }
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

    async fn trim_history(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.drop_history(before).await
    }

    async fn compact_counters(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.roll_up(now).await
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
        // Polled: a signal that never fires turns polling on.
        Some(Arc::clone(&self.wake))
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closing.cancel();
        self.inserts.close().await;
        Ok(())
    }
}
