//! The counters on SQLite ([`crate::store::counters`]): two tables to which every write that
//! changes tasks (an enqueue, a fetch, an outcome, a reclaim, a prune) adds its changes, in
//! the same commit ([`fold`]).

use chrono::{DateTime, Utc};
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter};

use super::reads::select;
use super::row::{RawRow, micros, text_of};
use super::{SqliteStore, StoreError};
use crate::record::TaskRecord;
use crate::store::counters::moves::Moves;
use crate::store::counters::sql::{self, grouped, histogram_definitions, histogram_list};
use crate::store::counters::{
    BUCKETS, FINE_MINUTES, MinuteCounts, ROLLUP, StatusCount, minute_of, minute_start,
};

/// Schema version 10: `task_counts` (tasks by function, queue and status, with their
/// durations) filled from the rows there are, and `task_minutes` (per-minute events). The
/// writer connection keeps them ([`fold`]).
pub(super) fn migration() -> String {
    format!(
        "CREATE TABLE task_counts (
            func_name TEXT NOT NULL, queue TEXT NOT NULL, status TEXT NOT NULL,
            tasks INTEGER NOT NULL DEFAULT 0, timed INTEGER NOT NULL DEFAULT 0,
            seconds REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (func_name, queue, status)
        ) WITHOUT ROWID;
        INSERT INTO task_counts (func_name, queue, status, tasks, timed, seconds)
            SELECT func_name, queue, status, count(*), count(duration), coalesce(sum(duration), 0)
            FROM tasks GROUP BY func_name, queue, status;
        CREATE TABLE task_minutes (
            minute INTEGER NOT NULL, func_name TEXT NOT NULL, queue TEXT NOT NULL,
            enqueued INTEGER NOT NULL DEFAULT 0, succeeded INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0, interrupted INTEGER NOT NULL DEFAULT 0,
            cancelled INTEGER NOT NULL DEFAULT 0, retried INTEGER NOT NULL DEFAULT 0,
            timed INTEGER NOT NULL DEFAULT 0, seconds REAL NOT NULL DEFAULT 0,
            min_duration REAL, max_duration REAL, {histogram},
            PRIMARY KEY (minute, func_name, queue)
        ) WITHOUT ROWID;",
        histogram = histogram_definitions("INTEGER"),
    )
}

/// Adds the transaction's counter changes ([`Moves`], recorded by the statements that changed
/// tasks) to the counters, in the same transaction, one upsert per key. Run by the writer
/// before each commit.
pub(super) fn fold(conn: &rusqlite::Connection, moves: &mut Moves) -> rusqlite::Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let (counts, minutes) = moves.take();
    let mut add_count = conn.prepare_cached(
        "INSERT INTO task_counts (func_name, queue, status, tasks, timed, seconds)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT DO UPDATE SET tasks = tasks + excluded.tasks,
            timed = timed + excluded.timed, seconds = seconds + excluded.seconds",
    )?;
    for count in counts.iter().filter(|count| count.tasks != 0 || count.timed != 0) {
        add_count.execute(params![
            count.func_name,
            count.queue,
            count.status,
            count.tasks,
            count.timed,
            count.seconds
        ])?;
    }
    let mut add_minute = conn.prepare_cached(&format!(
        "INSERT INTO task_minutes (minute, func_name, queue, enqueued, succeeded, failed,
            interrupted, cancelled, retried, timed, seconds, min_duration, max_duration, {list})
         VALUES ({slots})
         ON CONFLICT DO UPDATE SET {add}",
        list = histogram_list(),
        slots = (1..=13 + BUCKETS).map(|n| format!("?{n}")).collect::<Vec<_>>().join(", "),
        add = adding(),
    ))?;
    for minute in &minutes {
        let mut values: Vec<Sql> = vec![
            minute_of(minute.minute).into(),
            minute.func_name.clone().into(),
            minute.queue.clone().into(),
            minute.enqueued.into(),
            minute.succeeded.into(),
            minute.failed.into(),
            minute.interrupted.into(),
            minute.cancelled.into(),
            minute.retried.into(),
            minute.timed.into(),
            minute.seconds.into(),
            minute.min_duration.map_or(Sql::Null, Sql::Real),
            minute.max_duration.map_or(Sql::Null, Sql::Real),
        ];
        values.extend(minute.histogram.iter().map(|n| Sql::Integer(*n)));
        add_minute.execute(params_from_iter(values))?;
    }
    Ok(())
}

pub(super) use crate::store::counters::minute_of_micros as minute_at;

/// What the counters take of a task about to be inserted.
#[derive(Debug)]
pub(super) struct NewTask {
    func_name: String,
    queue: String,
    status: &'static str,
    duration: Option<f64>,
    created: i64,
    ended: i64,
}

impl NewTask {
    /// What the counters take of `record`; one stored ended ends at its end time, or now.
    pub(super) fn of(record: &TaskRecord) -> NewTask {
        NewTask {
            func_name: record.func_name.clone(),
            queue: record.queue.clone(),
            status: record.status.as_str(),
            duration: record.duration,
            created: minute_of(record.created_at),
            ended: minute_of(record.end_time.unwrap_or_else(Utc::now)),
        }
    }

    /// Counts the task, now inserted.
    pub(super) fn count(&self, moves: &mut Moves) {
        let state = (self.status, self.duration);
        moves.inserted(&self.func_name, &self.queue, state, self.created, self.ended);
    }
}

/// A changed or deleted row's function, queue and duration, as `RETURNING func_name, queue,
/// duration` (from `first` on) gives them; a damaged value is read as text, or as no duration.
pub(super) fn returned(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Returned> {
    let text = |index: usize| row.get::<_, Sql>(index).map(|value| text_of(&value));
    let duration = match row.get::<_, Sql>(first + 2)? {
        Sql::Real(x) => Some(x),
        Sql::Integer(n) => Some(n as f64),
        _ => None,
    };
    Ok(Returned { func_name: text(first)?, queue: text(first + 1)?, duration })
}

/// A changed or deleted row as the counters see it ([`returned`]).
#[derive(Debug)]
pub(super) struct Returned {
    pub(super) func_name: String,
    pub(super) queue: String,
    pub(super) duration: Option<f64>,
}

impl Returned {
    /// Counts the row's change from `before` to `after` (statuses as stored; the duration
    /// unchanged), ending at unix minute `at` if it ended.
    pub(super) fn moved(&self, moves: &mut Moves, before: &str, after: &str, at: i64) {
        let (from, to) = ((before, self.duration), (after, self.duration));
        moves.changed(&self.func_name, &self.queue, from, to, at);
    }
}

/// An upsert's `SET` list that adds a `task_minutes` row's figures to the stored ones.
fn adding() -> String {
    format!(
        "{}, min_duration = min(coalesce(min_duration, excluded.min_duration),
            coalesce(excluded.min_duration, min_duration)),
         max_duration = max(coalesce(max_duration, excluded.max_duration),
            coalesce(excluded.max_duration, max_duration))",
        sql::adding(|c| format!("{c} = {c} + excluded.{c}"))
    )
}

impl SqliteStore {
    /// [`Store::counts`](crate::store::Store::counts) on this store.
    pub(super) async fn read_counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let rows = self
            .reader
            .call(|conn| {
                let sql = "SELECT func_name, queue, status, tasks, timed, seconds FROM task_counts";
                select(conn, sql, [], 6)
            })
            .await?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in rows {
            counts.push(StatusCount {
                func_name: row.text_lossy(0),
                queue: row.text_lossy(1),
                status: row.text_lossy(2),
                tasks: row.value(3)?,
                timed: row.value(4)?,
                seconds: row.value(5)?,
            });
        }
        Ok(crate::store::counters::merge_counts(counts))
    }

    /// [`Store::history`](crate::store::Store::history) on this store.
    pub(super) async fn read_history(
        &self,
        since: DateTime<Utc>,
        step: u32,
    ) -> Result<Vec<MinuteCounts>, StoreError> {
        let first = minute_at(micros(since));
        let step = i64::from(step.max(1));
        let rows = self
            .reader
            .call(move |conn| {
                let sql = format!(
                    "SELECT {} FROM task_minutes WHERE minute >= ?1 GROUP BY 1, 2, 3 ORDER BY 1",
                    grouped("?1 + (minute - ?1) / ?2 * ?2", str::to_owned)
                );
                select(conn, &sql, [first, step], 13 + BUCKETS)
            })
            .await?;
        rows.iter().map(minute_row).collect()
    }

    /// [`Store::compact_counters`](crate::store::Store::compact_counters) on this store: the
    /// history older than [`FINE_MINUTES`] is merged into rows of [`ROLLUP`] minutes, in one
    /// transaction.
    pub(super) async fn roll_up(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let coarse = minute_at(micros(now)) - FINE_MINUTES;
        let sql = format!(
            "INSERT INTO task_minutes (minute, func_name, queue, enqueued, succeeded, failed,
                interrupted, cancelled, retried, timed, seconds, min_duration, max_duration, {list})
             SELECT {columns} FROM task_minutes WHERE minute < ?1 AND minute % {ROLLUP} <> 0
             GROUP BY 1, 2, 3
             ON CONFLICT DO UPDATE SET {add}",
            list = histogram_list(),
            columns = grouped(&format!("minute - minute % {ROLLUP}"), str::to_owned),
            add = adding(),
        );
        self.writer
            .call(move |conn| {
                conn.execute(&sql, [coarse]).map_err(super::unavailable)?;
                let gone = format!(
                    "DELETE FROM task_minutes WHERE minute < ?1 AND minute % {ROLLUP} <> 0"
                );
                conn.execute(&gone, [coarse]).map_err(super::unavailable)?;
                Ok(())
            })
            .await
    }

    /// [`Store::trim_history`](crate::store::Store::trim_history) on this store.
    pub(super) async fn drop_history(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let first = minute_at(micros(before));
        self.writer
            .call(move |conn| {
                conn.execute("DELETE FROM task_minutes WHERE minute < ?1", [first])
                    .map_err(super::unavailable)
            })
            .await
    }
}

/// One `task_minutes` row, read in the order of [`grouped`].
fn minute_row(row: &RawRow) -> Result<MinuteCounts, StoreError> {
    let mut histogram = [0; BUCKETS];
    for (bucket, slot) in histogram.iter_mut().enumerate() {
        *slot = row.value(13 + bucket)?;
    }
    Ok(MinuteCounts {
        minute: minute_start(row.value(0)?),
        func_name: row.text_lossy(1),
        queue: row.text_lossy(2),
        enqueued: row.value(3)?,
        succeeded: row.value(4)?,
        failed: row.value(5)?,
        interrupted: row.value(6)?,
        cancelled: row.value(7)?,
        retried: row.value(8)?,
        timed: row.value(9)?,
        seconds: row.value(10)?,
        min_duration: row.value(11)?,
        max_duration: row.value(12)?,
        histogram,
    })
}
