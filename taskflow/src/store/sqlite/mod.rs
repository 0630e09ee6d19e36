//! [`SqliteStore`]: the embedded, durable default. One SQLite file in WAL mode, owned by one
//! process, written by a thread of its own that commits many callers' writes at once.

mod active;
mod checkpoint;
mod fetch;
mod query;
mod row;
mod run_key;
mod schema;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use self::active::ActiveRows;
use self::checkpoint::Checkpointer;
use self::row::{COLUMN_COUNT, RawRow, columns, log_columns, micros, placeholders};
use self::writer::{Writer, unavailable};
use super::reclaim::{ReclaimAs, reclaim};
use super::{
    DEFAULT_PAGE, Enqueued, FunctionStats, Lease, P95_WINDOW, Reclaimed, Retention, Store,
    StoreError, TaskPage, TaskQuery, TaskStats, Transition, WriteTicket, p95,
};
use crate::id::TaskId;
use crate::record::{LogEntry, TaskRecord, TaskStatus};

/// When an enqueued task counts as stored, which is when the response that carries its id
/// may leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// The task is committed before the response leaves: it survives the process crashing or
    /// being killed. The WAL is synced at checkpoints, not at every commit (`synchronous =
    /// NORMAL`), so a power loss or OS crash can lose the last commits. Concurrent requests
    /// share commits.
    #[default]
    Committed,
    /// As [`Durability::Committed`], and every commit is synced to disk (`synchronous =
    /// FULL`): tasks survive power loss too, at the cost of one fsync per group of requests.
    Fsync,
    /// The response does not wait: the task is committed a moment later, in the background.
    /// Lowest latency; a crash in that moment (usually well under a millisecond, longer under
    /// heavy load) loses tasks whose ids clients already hold, and a write error is only
    /// logged, never reported to the request.
    Async,
}

/// Settings for [`SqliteStore::open_with`].
#[derive(Clone, Debug, Default)]
pub struct SqliteOptions {
    durability: Durability,
    max_size: Option<u64>,
}

impl SqliteOptions {
    /// The defaults: [`Durability::Committed`], no size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// When an enqueued task counts as stored.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Caps the database file at about `bytes`; writes beyond it fail as a full disk would
    /// (and are reported the same way).
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }
}

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
    durability: Durability,
    path: PathBuf,
}

type Keys = Arc<Mutex<HashMap<String, TaskId>>>;

fn lock(keys: &Keys) -> MutexGuard<'_, HashMap<String, TaskId>> {
    keys.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Forgets `key` if `id` still holds it.
fn release(keys: &Keys, key: &str, id: &TaskId) {
    let mut keys = lock(keys);
    if keys.get(key) == Some(id) {
        keys.remove(key);
    }
}

/// The `seq` of a task: parameter `?N` when this store knows it (see [`ActiveRows`]), else
/// found through the task's id in `?1`.
macro_rules! row_of {
    ($n:literal) => {
        concat!("COALESCE(?", $n, ", (SELECT seq FROM tasks WHERE id = ?1))")
    };
}

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
            durability: options.durability,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stages `record` for the next commit, held back from fetching until `hold` (micros), if
    /// given.
    fn stage(&self, record: TaskRecord, hold: Option<i64>) -> Result<Enqueued, StoreError> {
        let id = record.task_id;
        let key = record
            .idempotency_key
            .clone()
            .filter(|_| !matches!(record.status, TaskStatus::Failed | TaskStatus::Cancelled));
        if let Some(key) = &key {
            let mut keys = lock(&self.keys);
            if let Some(existing) = keys.get(key) {
                let existing = *existing;
                drop(keys);
                // The holder may still be on its way to disk: answer once it is there.
                return Ok(Enqueued { id: existing, created: false, write: self.barrier()? });
            }
            keys.insert(key.clone(), id);
        }
        let values = row::encode(&record);
        let run_key = record.run_key.clone().filter(|_| record.status == TaskStatus::Pending);
        let now = micros(record.created_at);
        let seq = self.active.insert(record);
        let (reply, ticket) = match self.durability {
            Durability::Async => (None, None),
            Durability::Committed | Durability::Fsync => {
                let (tx, ticket) = WriteTicket::new();
                (Some(tx), Some(ticket))
            }
        };
        let keys = Arc::clone(&self.keys);
        let active = Arc::clone(&self.active);
        let job_key = key.clone();
        let submitted = self.writer.submit(Box::new(move |conn| {
            let inserted = match &run_key {
                None => insert(conn, seq, &values, hold).map(|()| None),
                Some(run_key) => run_key::replace(conn, run_key, &id, now, || {
                    insert(conn, seq, &values, hold)
                }),
            };
            let failed = inserted.as_ref().err().cloned();
            let done: writer::Done = Box::new(move |commit| {
                let result = match (inserted, commit) {
                    (Err(err), _) => Err(err),
                    (Ok(_), Some(err)) => Err(err.clone()),
                    (Ok(replaced), None) => {
                        if let Some((old, old_key)) = replaced {
                            active.forget(&old);
                            if let Some(old_key) = old_key {
                                release(&keys, &old_key, &old);
                            }
                        }
                        Ok(())
                    }
                };
                if let Err(err) = &result {
                    active.forget(&id);
                    if let Some(key) = &job_key {
                        release(&keys, key, &id);
                    }
                    if reply.is_none() {
                        tracing::error!(task_id = %id, error = %err, "taskflow: a task enqueued with Durability::Async was not stored");
                    }
                }
                if let Some(reply) = reply {
                    reply.settle(result);
                }
            });
            (done, failed)
        }));
        if let Err(err) = submitted {
            self.active.forget(&id);
            if let Some(key) = &key {
                release(&self.keys, key, &id);
            }
            return Err(err);
        }
        Ok(Enqueued { id, created: true, write: ticket })
    }

    /// A ticket that resolves once everything queued so far is committed.
    fn barrier(&self) -> Result<Option<WriteTicket>, StoreError> {
        if self.durability == Durability::Async {
            return Ok(None);
        }
        let (tx, ticket) = WriteTicket::new();
        self.writer.submit(Box::new(move |_| {
            let done: writer::Done = Box::new(move |commit| {
                tx.settle(commit.map_or(Ok(()), |err| Err(err.clone())));
            });
            (done, None)
        }))?;
        Ok(Some(ticket))
    }
}

fn load_keys(conn: &Connection) -> rusqlite::Result<HashMap<String, TaskId>> {
    let mut statement = conn.prepare(
        "SELECT idempotency_key, id FROM tasks
         WHERE idempotency_key IS NOT NULL AND status NOT IN ('failed', 'cancelled')",
    )?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, Sql>(0)?, row.get::<_, Sql>(1)?)))?;
    let mut keys = HashMap::new();
    for row in rows {
        let (key, id) = row?;
        let parsed = match &id {
            Sql::Text(text) => text.parse::<TaskId>().ok(),
            _ => None,
        };
        match (key, parsed) {
            (Sql::Text(key), Some(id)) => {
                keys.insert(key, id);
            }
            (key, _) => tracing::error!(
                task_id = ?id, key = ?key,
                "taskflow: a stored idempotency key or id is not text; the key is not held"
            ),
        }
    }
    Ok(keys)
}

fn insert(
    conn: &Connection,
    seq: i64,
    values: &[Sql; COLUMN_COUNT],
    hold: Option<i64>,
) -> Result<(), StoreError> {
    const SQL: &str = concat!(
        "INSERT INTO tasks (",
        columns!(),
        ", seq, wait_until) VALUES (",
        placeholders!(),
        ", ?25, COALESCE(?26, CASE WHEN ?18 > ?4 THEN ?18 END))"
    );
    let extra = [Sql::Integer(seq), hold.map_or(Sql::Null, Sql::Integer)];
    let mut statement = conn.prepare_cached(SQL).map_err(unavailable)?;
    statement.execute(params_from_iter(values.iter().chain(&extra))).map_err(unavailable)?;
    Ok(())
}

/// Runs `sql` with `params` and copies out every row's first `columns` values.
fn select(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    columns: usize,
) -> Result<Vec<RawRow>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(unavailable)?;
    let mut rows = statement.query(params).map_err(unavailable)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        found.push(RawRow::read(row, columns).map_err(unavailable)?);
    }
    Ok(found)
}

const SELECT_ONE: &str = concat!("SELECT ", columns!(), " FROM tasks WHERE id = ?1");
const SELECT_LOGS: &str =
    concat!("SELECT task_id, ", log_columns!(), " FROM task_logs WHERE task_id = ?1 ORDER BY seq");

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
        let ids: Vec<String> = ids.iter().map(TaskId::to_string).collect();
        self.writer
            .call(move |conn| {
                let mut release = conn
                    .prepare_cached(
                        "UPDATE tasks SET wait_until =
                            CASE WHEN scheduled_at > created_at THEN scheduled_at END
                         WHERE id = ?1 AND status = 'pending'",
                    )
                    .map_err(unavailable)?;
                for id in ids {
                    release.execute([id]).map_err(unavailable)?;
                }
                Ok(())
            })
            .await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.writer.call(|_| Ok(())).await
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.to_string();
        let (task, logs) = self
            .writer
            .call(move |conn| {
                let task = select(conn, SELECT_ONE, [&id], COLUMN_COUNT)?.pop();
                let logs = match task {
                    Some(_) => select(conn, SELECT_LOGS, [&id], 6)?,
                    None => Vec::new(),
                };
                Ok((task, logs))
            })
            .await?;
        let Some(task) = task else { return Ok(None) };
        let mut record = row::decode(&task, false)?;
        record.logs = logs.iter().map(row::decode_log).collect::<Result<_, _>>()?;
        Ok(Some(record))
    }

    async fn transition(
        &self,
        id: &TaskId,
        lease: &Lease,
        change: Transition,
    ) -> Result<bool, StoreError> {
        let task_id = *id;
        let owner = lease.owner.to_string();
        let seq = self.active.get(id);
        let ends = matches!(change, Transition::Finished { .. });
        let releases_key = matches!(
            change,
            Transition::Finished { status: TaskStatus::Failed | TaskStatus::Cancelled, .. }
        );
        let keys = Arc::clone(&self.keys);
        let applied = self
            .writer
            .call(move |conn| {
                let id = task_id.to_string();
                let (sql, values): (&str, Vec<Sql>) = match change {
                    Transition::Finished {
                        status,
                        end_time,
                        retries_used,
                        result,
                        error,
                        stacktrace,
                    } => (
                        concat!(
                            "UPDATE tasks SET status = ?4, end_time = ?5,
                                duration = (?5 - start_time) / 1000000.0, retries_used = ?6,
                                result = ?7,
                                stacktrace = CASE WHEN ?8 IS NULL THEN stacktrace ELSE ?9 END,
                                error = COALESCE(?8, error),
                                lease_owner = NULL, lease_expires_at = NULL
                             WHERE seq = ",
                            row_of!(3),
                            " AND id = ?1 AND status = 'running' AND lease_owner = ?2"
                        ),
                        vec![
                            status.as_str().to_owned().into(),
                            micros(end_time).into(),
                            retries_used.into(),
                            result.map(|r| r.to_string()).into(),
                            error.into(),
                            stacktrace.into(),
                        ],
                    ),
                    Transition::Reschedule { due, retries_used, error, stacktrace } => (
                        concat!(
                            "UPDATE tasks SET status = 'pending', scheduled_at = ?4,
                                wait_until = ?4, retries_used = ?5,
                                stacktrace = CASE WHEN ?6 IS NULL THEN stacktrace ELSE ?7 END,
                                error = COALESCE(?6, error),
                                lease_owner = NULL, lease_expires_at = NULL
                             WHERE seq = ",
                            row_of!(3),
                            " AND id = ?1 AND status = 'running' AND lease_owner = ?2"
                        ),
                        vec![
                            micros(due).into(),
                            retries_used.into(),
                            error.into(),
                            stacktrace.into(),
                        ],
                    ),
                    Transition::Requeue => (
                        concat!(
                            "UPDATE tasks SET status = 'pending', lease_owner = NULL,
                                lease_expires_at = NULL
                             WHERE seq = ",
                            row_of!(3),
                            " AND id = ?1 AND status = 'running' AND lease_owner = ?2"
                        ),
                        Vec::new(),
                    ),
                };
                let mut statement = conn.prepare_cached(sql).map_err(unavailable)?;
                let fixed = [Sql::Text(id.clone()), Sql::Text(owner), seq.into()];
                let changed = statement
                    .execute(params_from_iter(fixed.iter().chain(&values)))
                    .map_err(unavailable)?;
                if changed == 0 || !releases_key {
                    return Ok(changed > 0);
                }
                let key: Option<String> = conn
                    .query_row("SELECT idempotency_key FROM tasks WHERE id = ?1", [&id], |r| {
                        r.get(0)
                    })
                    .map_err(unavailable)?;
                if let Some(key) = key {
                    release(&keys, &key, &task_id);
                }
                Ok(true)
            })
            .await?;
        if ends {
            self.active.forget(id);
        }
        Ok(applied)
    }

    async fn append_logs(&self, id: &TaskId, logs: Vec<LogEntry>) -> Result<(), StoreError> {
        let id = id.to_string();
        let rows: Vec<[Sql; 5]> = logs.iter().map(row::encode_log).collect();
        self.writer
            .call(move |conn| {
                const SQL: &str = concat!(
                    "INSERT INTO task_logs (task_id, ",
                    log_columns!(),
                    ") SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM tasks WHERE id = ?1)"
                );
                let mut statement = conn.prepare_cached(SQL).map_err(unavailable)?;
                for [at, level, message, attempt, fields] in rows {
                    statement
                        .execute(params![id, at, level, message, attempt, fields])
                        .map_err(unavailable)?;
                }
                Ok(())
            })
            .await
    }

    async fn cancel_pending(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        let task_id = *id;
        let (before, key) = self
            .writer
            .call(move |conn| {
                let id = task_id.to_string();
                let found: Option<(String, Option<String>)> = conn
                    .query_row(
                        "SELECT status, idempotency_key FROM tasks WHERE id = ?1",
                        [&id],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()
                    .map_err(unavailable)?;
                let Some((status, key)) = found else { return Ok((None, None)) };
                let status: TaskStatus = status
                    .parse()
                    .map_err(|reason| StoreError::Corrupt { id: id.clone(), reason })?;
                if status == TaskStatus::Pending {
                    conn.execute(
                        "UPDATE tasks SET status = 'cancelled', end_time = ?2, wait_until = NULL
                         WHERE id = ?1",
                        params![id, micros(Utc::now())],
                    )
                    .map_err(unavailable)?;
                }
                Ok((Some(status), key))
            })
            .await?;
        if before == Some(TaskStatus::Pending) {
            self.active.forget(id);
        }
        if let (Some(TaskStatus::Pending), Some(key)) = (before, key) {
            release(&self.keys, &key, id);
        }
        Ok(before)
    }

    async fn cancel_scheduled(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError> {
        let key = key.to_owned();
        let cancelled = self
            .writer
            .call(move |conn| run_key::cancel_waiting(conn, &key, micros(now), None))
            .await?;
        let Some((id, idempotency_key)) = cancelled else { return Ok(None) };
        self.active.forget(&id);
        if let Some(idempotency_key) = idempotency_key {
            release(&self.keys, &idempotency_key, &id);
        }
        Ok(Some(id))
    }

    async fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let (sql, values) = query::page(query, limit)?;
        let mut rows = self
            .reader
            .call(move |conn| select(conn, &sql, params_from_iter(values), COLUMN_COUNT + 1))
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more { rows.last().map(|row| row.seq()).transpose()? } else { None };
        let tasks = super::readable(&rows, |row| row::decode(row, false))?;
        Ok(TaskPage { tasks, next: next.map(|seq| seq.to_string()) })
    }

    async fn stats(&self, since: Option<DateTime<Utc>>) -> Result<TaskStats, StoreError> {
        let window = since.is_some();
        let since = since.map_or(i64::MIN, micros);
        let (counts, functions, p95s) = self
            .reader
            .call(move |conn| {
                let counts = if window {
                    select(
                        conn,
                        "SELECT status, count(*) FROM tasks WHERE created_at >= ?1 GROUP BY status",
                        [since],
                        2,
                    )?
                } else {
                    // Counted from the status index alone.
                    select(conn, "SELECT status, count(*) FROM tasks GROUP BY status", [], 2)?
                };
                let functions = select(
                    conn,
                    "SELECT func_name, count(*), sum(status = 'success'), sum(status = 'failed'),
                        avg(duration), min(duration), max(duration)
                     FROM tasks
                     WHERE status IN ('success', 'failed', 'interrupted') AND created_at >= ?1
                     GROUP BY func_name ORDER BY func_name",
                    [since],
                    7,
                )?;
                let mut p95s = Vec::new();
                for function in &functions {
                    let name = function.text_lossy(0);
                    let durations = select(
                        conn,
                        "SELECT duration FROM tasks
                         WHERE func_name = ?1 AND duration IS NOT NULL AND created_at >= ?2
                           AND status IN ('success', 'failed', 'interrupted')
                         ORDER BY seq DESC LIMIT ?3",
                        params![name, since, P95_WINDOW as i64],
                        1,
                    )?;
                    // A damaged duration (text, a blob) is left out of the percentile.
                    let mut durations: Vec<f64> =
                        durations.iter().filter_map(|row| row.value(0).ok()).collect();
                    p95s.push(p95(&mut durations));
                }
                Ok((counts, functions, p95s))
            })
            .await?;
        let mut stats = TaskStats::zero();
        for row in counts {
            let count: i64 = row.value(1)?;
            *stats.by_status.entry(row.text_lossy(0)).or_default() += count.max(0) as u64;
        }
        for (row, p95_duration) in functions.iter().zip(p95s) {
            let runs: i64 = row.value(1)?;
            let successes: i64 = row.value(2)?;
            let failures: i64 = row.value(3)?;
            stats.functions.push(FunctionStats {
                func_name: row.text_lossy(0),
                runs: runs.max(0) as u64,
                successes: successes.max(0) as u64,
                failures: failures.max(0) as u64,
                success_rate: successes as f64 / runs.max(1) as f64,
                // min and max of a column holding a damaged text value may be that text.
                avg_duration: row.value(4).ok().flatten(),
                min_duration: row.value(5).ok().flatten(),
                max_duration: row.value(6).ok().flatten(),
                p95_duration,
            });
        }
        Ok(stats)
    }

    async fn fetch(
        &self,
        limit: usize,
        now: DateTime<Utc>,
        lease: &Lease,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.fetch_available(limit, now, lease).await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.next_waiting().await
    }

    async fn release(&self, lease: &Lease) -> Result<usize, StoreError> {
        self.release_lease(lease).await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let owner = owner.to_owned();
        let ids: Vec<String> = ids.iter().map(TaskId::to_string).collect();
        let expires = micros(expires_at);
        self.writer
            .call(move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "UPDATE tasks SET lease_expires_at = ?3
                         WHERE id = ?1 AND status = 'running' AND lease_owner = ?2",
                    )
                    .map_err(unavailable)?;
                for id in ids {
                    statement.execute(params![id, owner, expires]).map_err(unavailable)?;
                }
                Ok(())
            })
            .await
    }

    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        let (reclaimed, released) = self
            .writer
            .call(move |conn| {
                let cutoff = micros(now);
                const EXPIRED: &str = concat!(
                    "SELECT ",
                    columns!(),
                    " FROM tasks WHERE status = 'running' AND lease_expires_at < ?1"
                );
                let mut expired = Vec::new();
                for row in select(conn, EXPIRED, [cutoff], COLUMN_COUNT)? {
                    match row::decode(&row, false) {
                        Ok(record) => expired.push(record),
                        Err(err) => {
                            tracing::error!(error = %err, "taskflow: cannot reclaim an unreadable task");
                        }
                    }
                }
                let mut reclaimed = Reclaimed::default();
                let mut released = Vec::new();
                let mut update = conn
                    .prepare_cached(
                        "UPDATE tasks SET status = ?2, end_time = ?3, error = ?4, stacktrace = ?5,
                            recoveries = ?6, lease_owner = NULL, lease_expires_at = NULL
                         WHERE id = ?1 AND status = 'running' AND lease_expires_at < ?7",
                    )
                    .map_err(unavailable)?;
                for mut record in expired {
                    let outcome = reclaim(&mut record, now, max_recoveries);
                    let changed = update
                        .execute(params![
                            record.task_id.to_string(),
                            record.status.as_str(),
                            record.end_time.map(micros),
                            record.error,
                            record.stacktrace,
                            record.recoveries,
                            cutoff,
                        ])
                        .map_err(unavailable)?;
                    if changed == 0 {
                        continue;
                    }
                    if let (ReclaimAs::Poisoned, Some(key)) = (&outcome, &record.idempotency_key) {
                        released.push((key.clone(), record.task_id));
                    }
                    reclaimed.add(outcome, record);
                }
                Ok((reclaimed, released))
            })
            .await?;
        for (key, id) in released {
            release(&self.keys, &key, &id);
        }
        for id in reclaimed.interrupted.iter().chain(&reclaimed.poisoned) {
            self.active.forget(id);
        }
        Ok(reclaimed)
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
        // Everything that ended before the cutoff goes: the older of the age limit and the end
        // time of the newest finished task beyond the count limit.
        let mut cutoff = retention.age_cutoff(now).map(|at| micros(at) - 1);
        if let Some(max) = retention.max_finished {
            let offset = max.min(i64::MAX as usize) as i64;
            let sql = format!(
                "SELECT end_time FROM tasks INDEXED BY tasks_finished
                 WHERE end_time IS NOT NULL AND status IN {FINISHED}
                 ORDER BY end_time DESC LIMIT 1 OFFSET ?1"
            );
            let beyond = self.reader.call(move |conn| select(conn, &sql, [offset], 1)).await?;
            if let Some(row) = beyond.first() {
                let end: i64 = row.value(0)?;
                cutoff = Some(cutoff.map_or(end, |age| age.max(end)));
            }
        }
        let Some(cutoff) = cutoff else { return Ok(0) };
        // In chunks, each its own job: a large prune never holds up enqueues for long.
        let mut removed = 0;
        loop {
            let sql = format!(
                "DELETE FROM tasks WHERE seq IN (
                    SELECT seq FROM tasks INDEXED BY tasks_finished
                    WHERE end_time IS NOT NULL AND end_time <= ?1 AND status IN {FINISHED}
                    LIMIT {PRUNE_CHUNK})
                 RETURNING id, idempotency_key"
            );
            let rows = self.writer.call(move |conn| select(conn, &sql, [cutoff], 2)).await?;
            for row in &rows {
                let (id, key): (String, Option<String>) = (row.value(0)?, row.value(1)?);
                if let (Some(key), Ok(id)) = (key, id.parse::<TaskId>()) {
                    release(&self.keys, &key, &id);
                }
            }
            removed += rows.len();
            if rows.len() < PRUNE_CHUNK {
                return Ok(removed);
            }
        }
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
