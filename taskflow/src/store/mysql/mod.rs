//! [`MysqlStore`]: tasks in MySQL 8 or MariaDB 10.6+, shared by every instance of an app.

mod complete;
mod fetch;
mod inserts;
mod run_key;
mod schema;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Value};

use super::inserts::{Insert, InsertQueue};
use super::reclaim::reclaim;
use super::{
    Change, DEFAULT_PAGE, Enqueued, FunctionStats, Lease, P95_WINDOW, Reclaimed, Retention, Store,
    StoreError, TaskPage, TaskQuery, TaskStats, Transition, WriteTicket, p95,
};
use crate::id::TaskId;
use crate::record::{LogEntry, LogLevel, TaskRecord, TaskSource, TaskStatus};

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
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore").field("url", &super::redact_url(&self.url)).finish()
    }
}

fn unavailable(err: mysql_async::Error) -> StoreError {
    StoreError::Unavailable(format!("mysql: {err}"))
}

const COLUMNS: &str = "id, func_name, status, created_at, start_time, end_time, duration, \
    retries_used, max_retries, error, stacktrace, tags, source, priority, args, result, \
    idempotency_key, scheduled_at, retry_of, requeue_on_interrupt, recoveries, lease_owner, \
    lease_expires_at, run_key";

const INSERT: &str = "INSERT INTO taskflow_tasks (id, func_name, status, created_at, \
    start_time, end_time, duration, retries_used, max_retries, error, stacktrace, tags, source, \
    priority, args, result, idempotency_key, scheduled_at, retry_of, requeue_on_interrupt, \
    recoveries, lease_owner, lease_expires_at, run_key, wait_until) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn time(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::NULL, |at| Value::Int(micros(at)))
}

fn text(value: Option<String>) -> Value {
    value.map_or(Value::NULL, |v| Value::Bytes(v.into_bytes()))
}

/// The values of [`INSERT`]: `record`'s, then when it waits until (held back from fetching
/// until `hold`, if given, else until its due time if that is later than its creation).
fn encode(record: &TaskRecord, hold: Option<DateTime<Utc>>) -> Vec<Value> {
    vec![
        text(Some(record.task_id.to_string())),
        text(Some(record.func_name.clone())),
        text(Some(record.status.as_str().to_owned())),
        Value::Int(micros(record.created_at)),
        time(record.start_time),
        time(record.end_time),
        record.duration.map_or(Value::NULL, Value::Double),
        Value::Int(record.retries_used.into()),
        Value::Int(record.max_retries.into()),
        text(record.error.clone()),
        text(record.stacktrace.clone()),
        text(Some(serde_json::to_string(&record.tags).unwrap_or_else(|_| "{}".to_owned()))),
        text(Some(record.source.as_str().to_owned())),
        Value::Int(record.priority.into()),
        text(Some(record.args.to_string())),
        text(record.result.as_ref().map(serde_json::Value::to_string)),
        text(record.idempotency_key.clone()),
        time(record.scheduled_at),
        text(record.retry_of.map(|id| id.to_string())),
        Value::Int(record.requeue_on_interrupt.into()),
        Value::Int(record.recoveries.into()),
        text(record.lease_owner.clone()),
        time(record.lease_expires_at),
        text(record.run_key.clone()),
        // Not due yet: it waits until then (see the schema's version 2).
        time(hold.or(record.scheduled_at.filter(|at| *at > record.created_at))),
    ]
}

/// Reads cells of a row by index, with the column named in errors.
struct Cells {
    values: Vec<Value>,
    id: String,
}

impl Cells {
    fn of(row: mysql_async::Row) -> Cells {
        let values = row.unwrap();
        let id = match values.first() {
            Some(Value::Bytes(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            _ => "?".to_owned(),
        };
        Cells { values, id }
    }

    fn corrupt(&self, column: &str, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { id: self.id.clone(), reason: format!("column `{column}`: {reason}") }
    }

    fn text(&self, index: usize, column: &str) -> Result<Option<String>, StoreError> {
        match self.values.get(index) {
            None | Some(Value::NULL) => Ok(None),
            Some(Value::Bytes(bytes)) => {
                String::from_utf8(bytes.clone()).map(Some).map_err(|e| self.corrupt(column, e))
            }
            Some(other) => Ok(Some(other.as_sql(true).trim_matches('\'').to_owned())),
        }
    }

    fn int(&self, index: usize, column: &str) -> Result<Option<i64>, StoreError> {
        match self.values.get(index) {
            None | Some(Value::NULL) => Ok(None),
            Some(Value::Int(v)) => Ok(Some(*v)),
            Some(Value::UInt(v)) => Ok(Some(*v as i64)),
            Some(Value::Bytes(bytes)) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| self.corrupt(column, "not a number")),
            Some(other) => Err(self.corrupt(column, format!("not a number: {other:?}"))),
        }
    }

    fn real(&self, index: usize, column: &str) -> Result<Option<f64>, StoreError> {
        match self.values.get(index) {
            None | Some(Value::NULL) => Ok(None),
            Some(Value::Double(v)) => Ok(Some(*v)),
            Some(Value::Float(v)) => Ok(Some(f64::from(*v))),
            Some(Value::Int(v)) => Ok(Some(*v as f64)),
            Some(Value::UInt(v)) => Ok(Some(*v as f64)),
            Some(Value::Bytes(bytes)) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| self.corrupt(column, "not a number")),
            Some(other) => Err(self.corrupt(column, format!("not a number: {other:?}"))),
        }
    }

    fn required<T>(&self, value: Option<T>, column: &str) -> Result<T, StoreError> {
        value.ok_or_else(|| self.corrupt(column, "missing"))
    }

    fn time(&self, index: usize, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.int(index, column)?
            .map(|v| {
                DateTime::from_timestamp_micros(v)
                    .ok_or_else(|| self.corrupt(column, "out of range"))
            })
            .transpose()
    }

    fn json(&self, index: usize, column: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.text(index, column)?
            .map(|t| serde_json::from_str(&t).map_err(|e| self.corrupt(column, e)))
            .transpose()
    }

    fn id(&self, index: usize, column: &str) -> Result<Option<TaskId>, StoreError> {
        self.text(index, column)?
            .map(|t| t.parse().map_err(|e| self.corrupt(column, e)))
            .transpose()
    }

    fn count(&self, index: usize, column: &str) -> Result<u32, StoreError> {
        Ok(self.required(self.int(index, column)?, column)?.max(0) as u32)
    }

    /// The row selected as [`COLUMNS`] as a record (without its logs).
    fn record(&self) -> Result<TaskRecord, StoreError> {
        let status = self.required(self.text(2, "status")?, "status")?;
        let source = self.required(self.text(12, "source")?, "source")?;
        let tags = self.json(11, "tags")?.unwrap_or_default();
        Ok(TaskRecord {
            task_id: self.required(self.id(0, "id")?, "id")?,
            func_name: self.required(self.text(1, "func_name")?, "func_name")?,
            status: status.parse().map_err(|e| self.corrupt("status", e))?,
            created_at: self.required(self.time(3, "created_at")?, "created_at")?,
            start_time: self.time(4, "start_time")?,
            end_time: self.time(5, "end_time")?,
            duration: self.real(6, "duration")?,
            retries_used: self.count(7, "retries_used")?,
            max_retries: self.count(8, "max_retries")?,
            error: self.text(9, "error")?,
            stacktrace: self.text(10, "stacktrace")?,
            logs: Vec::new(),
            tags: serde_json::from_value(tags).map_err(|e| self.corrupt("tags", e))?,
            source: TaskSource::parse(&source).ok_or_else(|| self.corrupt("source", &source))?,
            priority: self.required(self.int(13, "priority")?, "priority")? as i32,
            args: self.json(14, "args")?.unwrap_or_default(),
            result: self.json(15, "result")?,
            idempotency_key: self.text(16, "idempotency_key")?,
            scheduled_at: self.time(17, "scheduled_at")?,
            retry_of: self.id(18, "retry_of")?,
            requeue_on_interrupt: self.int(19, "requeue_on_interrupt")? == Some(1),
            recoveries: self.count(20, "recoveries")?,
            lease_owner: self.text(21, "lease_owner")?,
            lease_expires_at: self.time(22, "lease_expires_at")?,
            run_key: self.text(23, "run_key")?,
        })
    }
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
    match conn.exec_drop(INSERT, values).await {
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
    /// Queues `record` for insertion, held back from fetching until `hold`, if given.
    fn stage(
        &self,
        record: TaskRecord,
        hold: Option<DateTime<Utc>>,
    ) -> Result<Enqueued, StoreError> {
        let id = record.task_id;
        let key = record.idempotency_key.clone();
        let run_key = record.run_key.clone().filter(|_| record.status == TaskStatus::Pending);
        let values = encode(&record, hold);
        let (done, ticket) = WriteTicket::new();
        self.inserts.push(Insert { values, id, key, run_key, done })?;
        Ok(Enqueued { id, created: true, write: Some(ticket) })
    }
}

fn s(text: &str) -> Value {
    Value::Bytes(text.as_bytes().to_vec())
}

#[async_trait]
impl Store for MysqlStore {
    fn enqueue(&self, record: TaskRecord) -> Result<Enqueued, StoreError> {
        self.stage(record, None)
    }

    fn enqueue_held(
        &self,
        record: TaskRecord,
        until: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        self.stage(record, Some(until))
    }

    async fn release_held(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!(
            "UPDATE taskflow_tasks SET wait_until = IF(scheduled_at > created_at, scheduled_at, NULL)
             WHERE id IN ({marks}) AND status = 'pending'"
        );
        self.affected(&sql, ids.iter().map(|id| s(&id.to_string())).collect()).await?;
        Ok(())
    }

    async fn resolve(&self, id: &TaskId) -> Result<Option<TaskId>, StoreError> {
        let rows = self
            .rows(
                "SELECT id FROM taskflow_tasks WHERE id = ?
                 UNION ALL
                 SELECT t.id FROM taskflow_aliases a JOIN taskflow_tasks t ON t.id = a.task_id
                 WHERE a.alias = ?
                 LIMIT 1",
                vec![s(&id.to_string()), s(&id.to_string())],
            )
            .await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let text = row.required(row.text(0, "id")?, "id")?;
        text.parse().map(Some).map_err(|_| row.corrupt("id", &text))
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM taskflow_tasks WHERE id = ?
             UNION ALL
             SELECT {COLUMNS} FROM taskflow_tasks
             WHERE id = (SELECT task_id FROM taskflow_aliases WHERE alias = ?)
             LIMIT 1"
        );
        let rows = self.rows(&sql, vec![s(&id.to_string()), s(&id.to_string())]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let mut record = row.record()?;
        let logs = self
            .rows(
                "SELECT at, level, message, attempt, fields FROM taskflow_logs
                 WHERE task_id = ? ORDER BY seq",
                vec![s(&record.task_id.to_string())],
            )
            .await?;
        for log in logs {
            let level = log.required(log.text(1, "level")?, "level")?;
            let fields = log.json(4, "fields")?.unwrap_or_default();
            record.logs.push(LogEntry {
                at: log.required(log.time(0, "at")?, "at")?,
                level: LogLevel::parse(&level).ok_or_else(|| log.corrupt("level", &level))?,
                message: log.required(log.text(2, "message")?, "message")?,
                attempt: log.count(3, "attempt")?,
                fields: match fields {
                    serde_json::Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                },
            });
        }
        Ok(Some(record))
    }

    async fn transition(
        &self,
        id: &TaskId,
        lease: &Lease,
        change: Transition,
    ) -> Result<bool, StoreError> {
        let (sql, values) = complete::statement(id, lease, change);
        Ok(self.affected(sql, values).await? > 0)
    }

    async fn transition_many(&self, changes: Vec<Change>) -> Vec<Result<bool, StoreError>> {
        complete::many(&self.pool, changes).await
    }

    async fn append_logs(&self, id: &TaskId, logs: Vec<LogEntry>) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(Default::default()).await.map_err(unavailable)?;
        for entry in logs {
            tx.exec_drop(
                "INSERT INTO taskflow_logs (task_id, at, level, message, attempt, fields)
                 SELECT ?, ?, ?, ?, ?, ? FROM DUAL
                 WHERE EXISTS (SELECT 1 FROM taskflow_tasks WHERE id = ?)",
                vec![
                    s(&id.to_string()),
                    Value::Int(micros(entry.at)),
                    s(entry.level.as_str()),
                    s(&entry.message),
                    Value::Int(entry.attempt.into()),
                    s(&serde_json::Value::Object(entry.fields).to_string()),
                    s(&id.to_string()),
                ],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn cancel_pending(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(Default::default()).await.map_err(unavailable)?;
        let found: Option<(String, String)> = tx
            .exec_first(
                "SELECT id, status FROM taskflow_tasks
                 WHERE id = COALESCE((SELECT task_id FROM taskflow_aliases WHERE alias = ?), ?)
                 FOR UPDATE",
                (id.to_string(), id.to_string()),
            )
            .await
            .map_err(unavailable)?;
        let Some((target, status)) = found else { return Ok(None) };
        let status: TaskStatus =
            status.parse().map_err(|reason| StoreError::Corrupt { id: id.to_string(), reason })?;
        if status == TaskStatus::Pending {
            tx.exec_drop(
                "UPDATE taskflow_tasks SET status = 'cancelled', end_time = ?, wait_until = NULL
                 WHERE id = ?",
                (micros(Utc::now()), target),
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(status))
    }

    async fn cancel_scheduled(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError> {
        run_key::cancel_scheduled(&self.pool, key, now).await
    }

    async fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let mut values = Vec::new();
        let mut filters = Vec::new();
        if let Some(status) = query.status {
            filters.push("status = ?");
            values.push(s(status.as_str()));
        }
        if let Some(func_name) = &query.func_name {
            filters.push("func_name = ?");
            values.push(s(func_name));
        }
        if let Some((key, value)) = &query.tag {
            filters.push("JSON_UNQUOTE(JSON_EXTRACT(tags, ?)) = ?");
            let path = super::tag_path(key);
            values.push(s(&path));
            values.push(s(value));
        }
        if let Some(search) = &query.search {
            let escaped = super::like_escape(search);
            filters.push("(id LIKE ? OR id LIKE ? OR func_name LIKE ?)");
            values.push(s(&format!("{escaped}%")));
            values.push(s(&format!("%{escaped}")));
            values.push(s(&format!("%{escaped}%")));
        }
        if let Some(since) = query.since {
            filters.push("created_at >= ?");
            values.push(Value::Int(micros(since)));
        }
        if let Some(until) = query.until {
            filters.push("created_at < ?");
            values.push(Value::Int(micros(until)));
        }
        if let Some(after) = &query.after {
            let seq: i64 = after.parse().map_err(|_| StoreError::InvalidCursor(after.clone()))?;
            filters.push(if query.oldest_first { "seq > ?" } else { "seq < ?" });
            values.push(Value::Int(seq));
        }
        let mut sql = format!("SELECT {COLUMNS}, seq FROM taskflow_tasks");
        if !filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&filters.join(" AND "));
        }
        let order = if query.oldest_first { "ASC" } else { "DESC" };
        sql.push_str(&format!(" ORDER BY seq {order} LIMIT ?"));
        values.push(Value::UInt(limit.saturating_add(1) as u64));
        let mut rows = self.rows(&sql, values).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = match (more, rows.last()) {
            (true, Some(row)) => row.int(24, "seq")?.map(|seq| seq.to_string()),
            _ => None,
        };
        let tasks = super::readable(&rows, Cells::record)?;
        Ok(TaskPage { tasks, next })
    }

    async fn stats(&self, since: Option<DateTime<Utc>>) -> Result<TaskStats, StoreError> {
        let since = since.map_or(i64::MIN, micros);
        let counts = self
            .rows(
                "SELECT status, count(*) FROM taskflow_tasks WHERE created_at >= ? GROUP BY status",
                vec![Value::Int(since)],
            )
            .await?;
        let functions = self
            .rows(
                "SELECT func_name, count(*), sum(status = 'success'), sum(status = 'failed'),
                    avg(duration), min(duration), max(duration)
                 FROM taskflow_tasks
                 WHERE status IN ('success', 'failed', 'interrupted') AND created_at >= ?
                 GROUP BY func_name ORDER BY func_name",
                vec![Value::Int(since)],
            )
            .await?;
        let mut stats = TaskStats::zero();
        for row in counts {
            let status = row.required(row.text(0, "status")?, "status")?;
            stats.by_status.insert(status, row.int(1, "count")?.unwrap_or(0).max(0) as u64);
        }
        for row in functions {
            let name = row.required(row.text(0, "func_name")?, "func_name")?;
            let durations = self
                .rows(
                    "SELECT duration FROM taskflow_tasks
                     WHERE func_name = ? AND duration IS NOT NULL AND created_at >= ?
                       AND status IN ('success', 'failed', 'interrupted')
                     ORDER BY seq DESC LIMIT ?",
                    vec![s(&name), Value::Int(since), Value::UInt(P95_WINDOW as u64)],
                )
                .await?;
            let mut durations: Vec<f64> =
                durations.iter().filter_map(|r| r.real(0, "duration").ok().flatten()).collect();
            let runs = row.int(1, "runs")?.unwrap_or(0).max(0) as u64;
            let successes = row.int(2, "successes")?.unwrap_or(0).max(0) as u64;
            stats.functions.push(FunctionStats {
                func_name: name,
                runs,
                successes,
                failures: row.int(3, "failures")?.unwrap_or(0).max(0) as u64,
                success_rate: successes as f64 / runs.max(1) as f64,
                avg_duration: row.real(4, "avg")?,
                min_duration: row.real(5, "min")?,
                max_duration: row.real(6, "max")?,
                p95_duration: p95(&mut durations),
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
        if ids.is_empty() {
            return Ok(());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!(
            "UPDATE taskflow_tasks SET lease_expires_at = ?
             WHERE status = 'running' AND lease_owner = ? AND id IN ({marks})"
        );
        let mut values = vec![Value::Int(micros(expires_at)), s(owner)];
        values.extend(ids.iter().map(|id| s(&id.to_string())));
        self.affected(&sql, values).await?;
        Ok(())
    }

    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(Default::default()).await.map_err(unavailable)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM taskflow_tasks
             WHERE status = 'running' AND lease_expires_at < ?
             FOR UPDATE SKIP LOCKED"
        );
        let rows: Vec<mysql_async::Row> =
            tx.exec(sql, (micros(now),)).await.map_err(unavailable)?;
        let mut reclaimed = Reclaimed::default();
        for row in rows.into_iter().map(Cells::of) {
            let mut record = match row.record() {
                Ok(record) => record,
                Err(err) => {
                    tracing::error!(error = %err, "taskflow: cannot reclaim an unreadable task");
                    continue;
                }
            };
            let outcome = reclaim(&mut record, now, max_recoveries);
            tx.exec_drop(
                "UPDATE taskflow_tasks SET status = ?, end_time = ?, error = ?, stacktrace = ?,
                    recoveries = ?, lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = ?",
                vec![
                    s(record.status.as_str()),
                    time(record.end_time),
                    text(record.error.clone()),
                    text(record.stacktrace.clone()),
                    Value::Int(record.recoveries.into()),
                    s(&record.task_id.to_string()),
                ],
            )
            .await
            .map_err(unavailable)?;
            reclaimed.add(outcome, record);
        }
        tx.commit().await.map_err(unavailable)?;
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
        let mut removed = 0;
        let finished = "status IN ('success', 'failed', 'interrupted', 'cancelled')";
        if let Some(cutoff) = retention.age_cutoff(now) {
            removed += self
                .affected(
                    &format!("DELETE FROM taskflow_tasks WHERE end_time < ? AND {finished}"),
                    vec![Value::Int(micros(cutoff))],
                )
                .await?;
        }
        if let Some(max) = retention.max_finished {
            // The end time of the newest finished task beyond `max`: everything up to it goes.
            let cutoff = self
                .rows(
                    &format!(
                        "SELECT end_time FROM taskflow_tasks WHERE end_time IS NOT NULL AND {finished}
                         ORDER BY end_time DESC LIMIT 1 OFFSET ?"
                    ),
                    vec![Value::UInt(max as u64)],
                )
                .await?;
            if let Some(cutoff) = cutoff.first().and_then(|r| r.int(0, "end_time").ok().flatten()) {
                removed += self
                    .affected(
                        &format!("DELETE FROM taskflow_tasks WHERE end_time <= ? AND {finished}"),
                        vec![Value::Int(cutoff)],
                    )
                    .await?;
            }
        }
        Ok(removed as usize)
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
