//! Fetching available tasks and releasing a lost fetch, on the writer's thread: in one
//! transaction, waiting tasks now due are made available (through `tasks_waiting`), the first
//! available ones are selected through `tasks_available`, and leased.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::active::Running;
use super::counters::{minute_at, returned};
use super::row::{self, COLUMN_COUNT, columns, micros};
use super::writer::{Tx, unavailable};
use super::{SqliteStore, select};
use crate::id::TaskId;
use crate::record::{TaskRecord, TaskStatus};
use crate::store::fetch::{room, within_rate};
use crate::store::{Fetch, Lease, StoreError, TaskRoom};

/// Makes the waiting tasks of a queue whose time has come available.
const PROMOTE: &str = "UPDATE tasks SET wait_until = NULL
    WHERE queue = ?2 AND wait_until IS NOT NULL AND wait_until <= ?1";

/// Whether the queue is paused.
const PAUSED: &str = "SELECT paused FROM queues WHERE name = ?1";

/// How many of the queue's tasks run, by function.
const RUNNING: &str = "SELECT func_name, COUNT(*) FROM tasks
    WHERE queue = ?1 AND status = 'running' GROUP BY func_name";

/// The available tasks in fetch order (by rank: see the schema's version 6), as
/// `(seq, id, func_name)`, due by `?3` (another fetch, its clock read later, may have made
/// a task available that is not yet due by this one's), leaving out the functions that
/// `?4...` name. `INDEXED BY`: with many pending rows the planner would rather read them
/// all through `tasks_by_status` and sort them, for every fetch.
fn available_sql(excluded: usize) -> String {
    let mut sql = String::from(
        "SELECT seq, id, func_name FROM tasks INDEXED BY tasks_available
         WHERE queue = ?2 AND status = 'pending' AND wait_until IS NULL
            AND (scheduled_at IS NULL OR scheduled_at <= ?3)",
    );
    if excluded > 0 {
        let slots: Vec<String> = (0..excluded).map(|n| format!("?{}", n + 4)).collect();
        sql.push_str(&format!(" AND func_name NOT IN ({})", slots.join(", ")));
    }
    sql.push_str(
        " ORDER BY COALESCE(scheduled_at, created_at) - priority * 60000000, seq LIMIT ?1",
    );
    sql
}

const LEASE: &str = "UPDATE tasks SET status = 'running', start_time = COALESCE(start_time, ?2),
    lease_owner = ?3, lease_expires_at = ?4
    WHERE seq = ?1 AND status = 'pending'";

const BY_SEQ: &str = concat!("SELECT ", columns!(), " FROM tasks WHERE seq = ?1");

const FAIL_UNREADABLE: &str = "UPDATE tasks SET status = 'failed', end_time = ?2, error = ?3,
    stacktrace = ?3, lease_owner = NULL, lease_expires_at = NULL WHERE seq = ?1
    RETURNING func_name, queue, duration";

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
        let counts_running = fetch.counts_running();
        let rate = fetch.rate;
        let limits: Vec<(String, u32)> =
            fetch.task_limits.iter().map(|(func, n)| ((*func).to_owned(), *n)).collect();
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
                let running = if counts_running { running(conn, &queue)? } else { Vec::new() };
                let total = running.iter().map(|(_, n)| n).sum();
                let tokens = match rate {
                    Some(rate) => Some(rate.refill(bucket(conn, &queue)?, now)),
                    None => None,
                };
                let room = within_rate(room(wanted, global, total), tokens);
                if room == 0 {
                    return Ok(Vec::new());
                }
                let limits: Vec<(&str, u32)> =
                    limits.iter().map(|(f, n)| (f.as_str(), *n)).collect();
                let mut rooms = TaskRoom::new(&limits, &running);
                conn.prepare_cached(PROMOTE)
                    .map_err(unavailable)?
                    .execute(params![now, queue])
                    .map_err(unavailable)?;
                let mut picked = Vec::new();
                // Once without capped functions; again, without the ones now full, while a
                // capped function's tasks were passed over and there is room.
                loop {
                    let want = room - picked.len();
                    let full = rooms.full();
                    let candidates = available(conn, &queue, now, want, &full)?;
                    let found = candidates.len();
                    let (taken, passed_over) = rooms.pick(candidates);
                    picked.extend(taken);
                    if !passed_over || found == 0 || picked.len() == room {
                        break;
                    }
                    // Those passed over stay pending; lease what was taken before looking
                    // again, so that the next look does not see it.
                    lease_all(conn, &mut picked, now, &owner, expires)?;
                }
                lease_all(conn, &mut picked, now, &owner, expires)?;
                if let Some(tokens) = tokens
                    && !picked.is_empty()
                {
                    conn.prepare_cached(TAKE_TOKENS)
                        .map_err(unavailable)?
                        .execute(params![queue, tokens - picked.len() as f64, now])
                        .map_err(unavailable)?;
                }
                let mut fetched = Vec::with_capacity(picked.len());
                for Candidate { seq, id, leased, .. } in picked {
                    if !leased {
                        continue;
                    }
                    let task_id: Option<TaskId> = id.parse().ok();
                    let kept = task_id.as_ref().and_then(|id| active.claim(id).1);
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
                    let (from, to) = (("pending", record.duration), ("running", record.duration));
                    conn.moves().changed(&record.func_name, &record.queue, from, to, 0);
                    if let Some(task_id) = &task_id {
                        active.started(task_id, Running::of(&record));
                    }
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
                let mut release = conn
                    .prepare_cached(
                        "UPDATE tasks SET status = 'pending', lease_owner = NULL,
                            lease_expires_at = NULL
                         WHERE status = 'running' AND lease_owner = ?1 AND lease_expires_at = ?2
                         RETURNING func_name, queue, duration",
                    )
                    .map_err(unavailable)?;
                let released = release
                    .query_map(params![owner, expires], |row| returned(row, 0))
                    .map_err(unavailable)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(unavailable)?;
                let mut moves = conn.moves();
                for row in &released {
                    row.moved(&mut moves, "running", "pending", 0);
                }
                Ok(released.len())
            })
            .await
    }
}

/// Writes a rate-limited queue's bucket after a fetch took from it.
const TAKE_TOKENS: &str = "INSERT INTO queues (name, updated_at, rate_tokens, rate_at)
    VALUES (?1, ?3, ?2, ?3)
    ON CONFLICT (name) DO UPDATE SET rate_tokens = excluded.rate_tokens, rate_at = excluded.rate_at";

/// A rate-limited queue's bucket as stored: its tokens and when they were counted.
fn bucket(conn: &Connection, queue: &str) -> Result<Option<(f64, i64)>, StoreError> {
    let stored: Option<(Option<f64>, Option<i64>)> = conn
        .prepare_cached("SELECT rate_tokens, rate_at FROM queues WHERE name = ?1")
        .map_err(unavailable)?
        .query_row([queue], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .map_err(unavailable)?;
    Ok(stored.and_then(|(tokens, at)| Some((tokens?, at?))))
}

/// The queue's running tasks, by function.
fn running(conn: &Connection, queue: &str) -> Result<Vec<(String, u64)>, StoreError> {
    let mut statement = conn.prepare_cached(RUNNING).map_err(unavailable)?;
    let mut rows = statement.query([queue]).map_err(unavailable)?;
    let mut running = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        let func: String = row.get(0).map_err(unavailable)?;
        let n: i64 = row.get(1).map_err(unavailable)?;
        running.push((func, n.max(0) as u64));
    }
    Ok(running)
}

/// An available task found by a fetch: its row, and whether this fetch leased it yet.
#[derive(Debug)]
struct Candidate {
    seq: i64,
    id: String,
    leased: bool,
}

/// Up to `limit` available tasks of `queue` in fetch order, leaving out `full`'s functions;
/// each with its function's name.
fn available(
    conn: &Connection,
    queue: &str,
    now: i64,
    limit: usize,
    full: &[&str],
) -> Result<Vec<(Candidate, String)>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&limit, &queue, &now];
    values.extend(full.iter().map(|func| func as &dyn rusqlite::ToSql));
    let mut statement = conn.prepare_cached(&available_sql(full.len())).map_err(unavailable)?;
    let mut rows = statement.query(values.as_slice()).map_err(unavailable)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        let seq: i64 = row.get(0).map_err(unavailable)?;
        // A damaged id is read back through `decode`, which reports it.
        let id = row.get::<_, String>(1).unwrap_or_default();
        let func = row.get::<_, String>(2).unwrap_or_default();
        found.push((Candidate { seq, id, leased: false }, func));
    }
    Ok(found)
}

/// Leases each of `picked` not leased yet, marking it leased (or dropping it when another
/// writer got there first). The counters take the lease once the record is known.
fn lease_all(
    conn: &Tx<'_>,
    picked: &mut Vec<Candidate>,
    now: i64,
    owner: &str,
    expires: i64,
) -> Result<(), StoreError> {
    let mut lease_row = conn.prepare_cached(LEASE).map_err(unavailable)?;
    let mut kept = Vec::with_capacity(picked.len());
    for mut candidate in picked.drain(..) {
        if !candidate.leased {
            let changed = lease_row
                .execute(params![candidate.seq, now, owner, expires])
                .map_err(unavailable)?;
            if changed == 0 {
                continue;
            }
            candidate.leased = true;
        }
        kept.push(candidate);
    }
    *picked = kept;
    Ok(())
}

/// The leased row `seq`, decoded; a row that cannot be read is failed with the reason (it
/// cannot run, and dropping it would lose it), keeping its stored values for a later look.
fn read(conn: &Tx<'_>, seq: i64) -> Result<Option<TaskRecord>, StoreError> {
    let Some(raw) = select(conn, BY_SEQ, [seq], COLUMN_COUNT)?.pop() else { return Ok(None) };
    match row::decode(&raw, true) {
        Ok(record) => Ok(Some(record)),
        Err(err) => {
            tracing::error!(error = %err, "taskflow: stored task is unreadable; marking it failed");
            let message = format!("the stored task cannot be read: {err}");
            let now = micros(Utc::now());
            let failed = conn
                .prepare_cached(FAIL_UNREADABLE)
                .map_err(unavailable)?
                .query_row(params![seq, now, message], |row| returned(row, 0))
                .optional()
                .map_err(unavailable)?;
            if let Some(failed) = failed {
                // Leased and failed at once: the counters never saw it running.
                failed.moved(&mut conn.moves(), "pending", "failed", minute_at(now));
            }
            Ok(None)
        }
    }
}
