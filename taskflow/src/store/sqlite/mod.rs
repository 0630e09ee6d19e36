//! [`SqliteStore`]: the embedded, durable default. One SQLite file in WAL mode, owned by one
//! process, written by a thread of its own that commits many callers' writes at once.

mod active;
mod cancel;
mod checkpoint;
mod complete;
mod counters;
mod fetch;
mod keys;
mod options;
mod query;
mod queues;
mod reads;
mod rewrite;
mod row;
mod run_key;
mod schedules;
mod schema;
mod sessions;
mod stage;
mod upkeep;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use self::active::ActiveRows;
use self::checkpoint::Checkpointer;
use self::keys::{load_keys, lock, release};
pub use self::options::{Durability, SqliteOptions};
use self::reads::select;
use self::row::{COLUMN_COUNT, RawRow, columns, log_columns, micros, placeholders};
use self::writer::{Writer, unavailable};
use super::cancels::CancelFlags;
use super::counters::{MinuteCounts, StatusCount};
use super::reclaim::{ReclaimAs, reclaim};
use super::{
    DEFAULT_PAGE, Enqueued, Fetch, FunctionStats, Lease, P95_WINDOW, Reclaimed, Retention, Rewrite,
    ScheduleChange, Store, StoreError, StoredSchedule, TaskPage, TaskQuery, TaskStats, Transition,
    WriteTicket, p95,
};
use crate::id::TaskId;
use crate::instance::Instance;
use crate::queue::{QueueChange, QueueCounts, QueueState};
use crate::record::{LogEntry, Progress, TaskRecord, TaskStatus};

/// Tasks in one SQLite file (WAL mode, bundled SQLite: nothing to install).
///
/// - **One owner.** The file is locked for this process (an advisory lock on `<path>.lock`)
///   until the store closes (at [`TaskManager::shutdown`](crate::TaskManager::shutdown)) or is
///   dropped.
///   So tasks found `running` at open lost their runner to a crash, and are recovered at
///   once. A second process, or a second store on the same file, gets a clear error. To
///   share tasks between processes use a server database.
/// - **Group commit.** Writes (and reads of single tasks, so they see every write before them)
///   run on the store's own thread, which takes every operation queued while the last
///   transaction ran and commits them together. Listing and statistics run on a second,
///   read-only connection, so a dashboard never holds up enqueues. An enqueue
///   returns at once with a [`WriteTicket`]; the request layer awaits it before the response
///   leaves ([`Durability`]). Checkpoints (copying the write-ahead log into the database
///   file, with its syncs) run on a third thread, outside the commits.
/// - **Idempotency** is enforced by a unique index over active tasks' keys, mirrored by an
///   index in memory so `enqueue` can answer at once.
/// - **Schema** versions are kept in the file; an older binary refuses a newer file.
///
/// ```rust,standalone_crate
/// use taskflow::{SqliteStore, TaskManager};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> taskflow::Result<()> {
/// # let dir = std::env::temp_dir().join(format!("taskflow-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let path = dir.join("tasks.db");
/// let manager = TaskManager::builder().store(SqliteStore::open(&path)?).build().await?;
/// manager.shutdown(std::time::Duration::from_secs(5)).await;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    writer: Writer,
    /// A read-only connection for listing and statistics, so that a dashboard's heavy query
    /// never holds up enqueues.
    reader: Writer,
    /// Idempotency key -> the active task holding it.
    keys: Arc<Mutex<HashMap<String, TaskId>>>,
    /// The rows of this process's active tasks.
    active: Arc<ActiveRows>,
    /// Running tasks asked to stop: all of them run in this process, which owns the file.
    cancels: CancelFlags,
    durability: Durability,
    path: PathBuf,
}

/// The `seq` of a task: parameter `?N` when this store knows it (see [`ActiveRows`]), else
/// found through the task's id in `?1`.
macro_rules! row_of {
    ($n:literal) => {
        concat!("COALESCE(?", $n, ", (SELECT seq FROM tasks WHERE id = ?1))")
    };
}
use row_of;

const FINISHED: &str = "('success', 'failed', 'interrupted', 'cancelled')";

/// How many finished tasks one pruning transaction deletes at most.
const PRUNE_CHUNK: usize = 2_000;

impl SqliteStore {
    /// Opens the database at `path`, creating it and its schema if needed, with the default
    /// [`SqliteOptions`].
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens the database at `path` with `options`.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let fail = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        let lock = schema::lock(&path)?;
        let conn = schema::open(&path, &options)?;
        // Nobody else can hold this file, so no task can still be running: let their leases
        // lapse now, for the manager's recovery to settle them at once.
        conn.execute("UPDATE tasks SET lease_expires_at = 0 WHERE status = 'running'", [])
            .map_err(|err| fail(err.to_string()))?;
        // Nor can a leader from before: this process leads.
        conn.execute("DELETE FROM leaders", []).map_err(|err| fail(err.to_string()))?;
        let keys = load_keys(&conn).map_err(|err| fail(err.to_string()))?;
        let last: i64 = conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM tasks", [], |row| row.get(0))
            .map_err(|err| fail(err.to_string()))?;
        let checkpointer = Checkpointer::spawn(schema::open_checkpointer(&path, &options)?, &path)?;
        let writer =
            Writer::spawn(conn, "taskflow-sqlite".to_owned(), true, Some(checkpointer), Some(lock))
                .map_err(|err| fail(format!("cannot start the store's thread: {err}")))?;
        let reader = schema::open_reader(&path)?;
        let reader = Writer::spawn(reader, "taskflow-sqlite-read".to_owned(), false, None, None)
            .map_err(|err| fail(format!("cannot start the store's reader thread: {err}")))?;
        Ok(SqliteStore {
            writer,
            reader,
            keys: Arc::new(Mutex::new(keys)),
            active: Arc::new(ActiveRows::after(last)),
            cancels: CancelFlags::default(),
            durability: options.durability,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn enqueue(&self, record: TaskRecord) -> Result<Enqueued, StoreError> {
        self.stage(record, None)
    }

    fn enqueue_held(
        &self,
        record: TaskRecord,
        until: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        self.stage(record, Some(micros(until)))
    }

    async fn release_held(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        self.let_go(ids).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.writer.call(|_| Ok(())).await
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
        self.apply(id, lease, change).await
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
        let began = std::time::Instant::now();
        let fetched = self.fetch_available(fetch).await?;
        self.cancels.clear(fetched.iter().map(|record| record.task_id), began);
        Ok(fetched)
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

    async fn close(&self) -> Result<(), StoreError> {
        let read = self.reader.close().await;
        // The writer's thread lets go of the file's lock once its connection is closed.
        let written = self.writer.close().await;
        written.and(read)
    }
}

/// Decodes `values` as a stored row (strict and lenient); for the fuzz targets.
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_values(values: Vec<Sql>) {
    let row = row::RawRow::from_values(values);
    let _ = row::decode(&row, true);
    let _ = row::decode(&row, false);
    let _ = row::decode_log(&row);
}
