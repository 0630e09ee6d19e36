//! Fetching available tasks and releasing a lost fetch, on the writer's thread: in one
//! transaction, waiting tasks now due are made available (through `tasks_waiting`), the first
//! available ones are selected through `tasks_available`, and leased.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::row::{self, COLUMN_COUNT, columns, micros};
use super::writer::unavailable;
use super::{SqliteStore, select};
use crate::record::{TaskRecord, TaskStatus};
use crate::store::fetch::room;
use crate::store::{Fetch, Lease, StoreError};

/// Makes the waiting tasks of a queue whose time has come available.
const PROMOTE: &str = "UPDATE tasks SET wait_until = NULL
    WHERE queue = ?2 AND wait_until IS NOT NULL AND wait_until <= ?1";

/// Whether the queue is paused.
const PAUSED: &str = "SELECT paused FROM queues WHERE name = ?1";

/// How many of the queue's tasks run.
const RUNNING: &str = "SELECT COUNT(*) FROM tasks WHERE queue = ?1 AND status = 'running'";

/// The available tasks in fetch order, as `(seq, id)`.
/// `INDEXED BY`: with many pending rows the planner would rather read them all through
/// `tasks_by_status` and sort them, for every fetch.
const AVAILABLE: &str = "SELECT seq, id FROM tasks INDEXED BY tasks_available
    WHERE queue = ?2 AND status = 'pending' AND wait_until IS NULL
    ORDER BY priority DESC, COALESCE(scheduled_at, created_at), seq LIMIT ?1";

const LEASE: &str = "UPDATE tasks SET status = 'running', start_time = COALESCE(start_time, ?2),
    lease_owner = ?3, lease_expires_at = ?4
    WHERE seq = ?1 AND status = 'pending'";

const BY_SEQ: &str = concat!("SELECT ", columns!(), " FROM tasks WHERE seq = ?1");

const FAIL_UNREADABLE: &str = "UPDATE tasks SET status = 'failed', end_time = ?2, error = ?3,
    stacktrace = ?3, lease_owner = NULL, lease_expires_at = NULL WHERE seq = ?1";

impl SqliteStore {
    pub(super) async fn fetch_available(
        &self,
        fetch: &Fetch<'_>,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if fetch.limit == 0 {
            return Ok(Vec::new());
        }
        let lease = fetch.lease;
        let (now, owner, expires) =
            (micros(fetch.now), lease.owner.to_string(), micros(lease.expires_at));
        let active = std::sync::Arc::clone(&self.active);
        let (queue, wanted, global) = (fetch.queue.to_owned(), fetch.limit, fetch.global_limit);
        self.writer
            .call(move |conn| {
                let paused: Option<bool> = conn
                    .prepare_cached(PAUSED)
                    .map_err(unavailable)?
                    .query_row([&queue], |row| row.get(0))
                    .optional()
                    .map_err(unavailable)?;
                if paused == Some(true) {
                    return Ok(Vec::new());
                }
                let running: i64 = match global {
                    Some(_) => conn
                        .prepare_cached(RUNNING)
                        .map_err(unavailable)?
                        .query_row([&queue], |row| row.get(0))
                        .map_err(unavailable)?,
                    None => 0,
                };
                let room = room(wanted, global, running.max(0) as u64);
                if room == 0 {
                    return Ok(Vec::new());
                }
                let limit = i64::try_from(room).unwrap_or(i64::MAX);
                let picked = due(conn, &queue, now, limit)?;
                let mut lease_row = conn.prepare_cached(LEASE).map_err(unavailable)?;
                let mut fetched = Vec::with_capacity(picked.len());
                for (seq, id) in picked {
                    if lease_row.execute(params![seq, now, owner, expires]).map_err(unavailable)?
                        == 0
                    {
                        continue;
                    }
                    let kept = id.parse().ok().and_then(|id| active.claim(&id).1);
                    let record = match kept {
                        Some(mut record) => {
                            // As the row now holds them, to the microsecond.
                            record.status = TaskStatus::Running;
                            record.start_time = record.start_time.or(row::from_micros(now));
                            record.lease_owner = Some(owner.clone());
                            record.lease_expires_at = row::from_micros(expires);
                            *record
                        }
                        None => match read(conn, seq)? {
                            Some(record) => record,
                            None => continue,
                        },
                    };
                    fetched.push(record);
                }
                Ok(fetched)
            })
            .await
    }

    pub(super) async fn elect_leader(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        let (now, until) = (micros(now), micros(until));
        self.writer
            .call(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO leaders (name, owner, until) VALUES (?1, ?2, ?4)
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
                     WHERE leaders.owner = excluded.owner OR leaders.until < ?3",
                )
                .map_err(unavailable)?
                .execute(params![name, owner, now, until])
                .map(|changed| changed > 0)
                .map_err(unavailable)
            })
            .await
    }

    pub(super) async fn resign_leader(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.writer
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM leaders WHERE name = ?1 AND owner = ?2",
                    params![name, owner],
                )
                .map(drop)
                .map_err(unavailable)
            })
            .await
    }

    pub(super) async fn next_waiting(
        &self,
        queue: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let queue = queue.to_owned();
        let earliest: Option<i64> = self
            .writer
            .call(move |conn| {
                conn.query_row(
                    "SELECT MIN(wait_until) FROM tasks WHERE queue = ?1 AND wait_until IS NOT NULL",
                    [&queue],
                    |row| row.get(0),
                )
                .map_err(unavailable)
            })
            .await?;
        Ok(earliest.and_then(row::from_micros))
    }

    pub(super) async fn release_lease(&self, lease: &Lease) -> Result<usize, StoreError> {
        let (owner, expires) = (lease.owner.to_string(), micros(lease.expires_at));
        self.writer
            .call(move |conn| {
                conn.execute(
                    "UPDATE tasks SET status = 'pending', lease_owner = NULL,
                        lease_expires_at = NULL
                     WHERE status = 'running' AND lease_owner = ?1 AND lease_expires_at = ?2",
                    params![owner, expires],
                )
                .map_err(unavailable)
            })
            .await
    }
}

fn due(
    conn: &Connection,
    queue: &str,
    now: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>, StoreError> {
    conn.prepare_cached(PROMOTE)
        .map_err(unavailable)?
        .execute(params![now, queue])
        .map_err(unavailable)?;
    let mut statement = conn.prepare_cached(AVAILABLE).map_err(unavailable)?;
    let mut rows = statement.query(params![limit, queue]).map_err(unavailable)?;
    let mut picked = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        let seq: i64 = row.get(0).map_err(unavailable)?;
        // A damaged id is read back through `decode`, which reports it.
        let id = row.get::<_, String>(1).unwrap_or_default();
        picked.push((seq, id));
    }
    Ok(picked)
}

/// The leased row `seq`, decoded; a row that cannot be read is failed with the reason (it
/// cannot run, and dropping it would lose it), keeping its stored values for a later look.
fn read(conn: &Connection, seq: i64) -> Result<Option<TaskRecord>, StoreError> {
    let Some(raw) = select(conn, BY_SEQ, [seq], COLUMN_COUNT)?.pop() else { return Ok(None) };
    match row::decode(&raw, true) {
        Ok(record) => Ok(Some(record)),
        Err(err) => {
            tracing::error!(error = %err, "taskflow: stored task is unreadable; marking it failed");
            let message = format!("the stored task cannot be read: {err}");
            conn.execute(FAIL_UNREADABLE, params![seq, micros(Utc::now()), message])
                .map_err(unavailable)?;
            Ok(None)
        }
    }
}
