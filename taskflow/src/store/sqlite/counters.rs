//! The counters on SQLite ([`crate::store::counters`]): two tables kept by row triggers on
//! `tasks`, so that every write (an enqueue, a fetch, an outcome, a reclaim, a prune) counts
//! itself in the same commit.

use chrono::{DateTime, Utc};

use super::reads::select;
use super::row::{RawRow, micros};
use super::{SqliteStore, StoreError};
use crate::store::counters::sql::{
    self, grouped, histogram_definitions, histogram_list, per_bucket,
};
use crate::store::counters::{
    BUCKETS, FINE_MINUTES, MinuteCounts, ROLLUP, StatusCount, minute_start,
};

/// Microseconds in a minute: stored times are microseconds.
const MINUTE_US: i64 = 60_000_000;

/// Schema version 10: `task_counts` (tasks by function, queue and status, with their
/// durations) filled from the rows there are, and `task_minutes` (per-minute events). The
/// writer connection keeps them ([`install`], [`fold`]).
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

/// Sets up the writer's connection to count: temporary triggers on `tasks` append each
/// change to two temporary tables (a plain append, no lookup), which [`fold`] adds into the
/// counters once per transaction, so a batch of a thousand outcomes costs a few upserts, not
/// thousands. The triggers are the connection's own: the writer is the file's only writer.
pub(super) fn install(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let now_us = "(CAST(strftime('%s', 'now') AS INTEGER) * 1000000)";
    let counted = |row: &str, sign: &str| {
        format!(
            "INSERT INTO temp.count_moves VALUES ({row}.func_name, {row}.queue, {row}.status,
                {sign}1, {sign}({row}.duration IS NOT NULL), {sign}coalesce({row}.duration, 0));"
        )
    };
    let bucket_flags = per_bucket("NEW.duration", |test| {
        format!("CASE WHEN NEW.status <> 'cancelled' AND {test} THEN 1 ELSE 0 END")
    });
    let ended = format!(
        "INSERT INTO temp.minute_moves (minute, func_name, queue, succeeded, failed, interrupted,
                cancelled, timed, seconds, min_duration, max_duration, {list})
            SELECT coalesce(NEW.end_time, {now_us}) / {MINUTE_US}, NEW.func_name, NEW.queue,
                NEW.status = 'success', NEW.status = 'failed', NEW.status = 'interrupted',
                NEW.status = 'cancelled', timed, timed * coalesce(NEW.duration, 0),
                CASE WHEN timed THEN NEW.duration END, CASE WHEN timed THEN NEW.duration END,
                {bucket_flags}
            FROM (SELECT NEW.duration IS NOT NULL AND NEW.status <> 'cancelled' AS timed);",
        list = histogram_list(),
    );
    let moves = histogram_definitions("INTEGER");
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE count_moves (func_name TEXT, queue TEXT, status TEXT, tasks INTEGER,
            timed INTEGER, seconds REAL);
        CREATE TEMP TABLE minute_moves (
            minute INTEGER, func_name TEXT, queue TEXT, enqueued INTEGER NOT NULL DEFAULT 0,
            succeeded INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
            interrupted INTEGER NOT NULL DEFAULT 0, cancelled INTEGER NOT NULL DEFAULT 0,
            retried INTEGER NOT NULL DEFAULT 0, timed INTEGER NOT NULL DEFAULT 0,
            seconds REAL NOT NULL DEFAULT 0, min_duration REAL, max_duration REAL, {moves});
        CREATE TEMP TRIGGER tasks_count_insert AFTER INSERT ON main.tasks BEGIN
            {insert_new}
            INSERT INTO temp.minute_moves (minute, func_name, queue, enqueued)
            VALUES (NEW.created_at / {MINUTE_US}, NEW.func_name, NEW.queue, 1);
        END;
        CREATE TEMP TRIGGER tasks_count_delete AFTER DELETE ON main.tasks BEGIN
            {delete_old}
        END;
        CREATE TEMP TRIGGER tasks_count_update
        AFTER UPDATE OF status, duration, func_name, queue ON main.tasks
        WHEN OLD.status IS NOT NEW.status OR OLD.duration IS NOT NEW.duration
            OR OLD.func_name IS NOT NEW.func_name OR OLD.queue IS NOT NEW.queue BEGIN
            {delete_old}
            {insert_new}
        END;
        CREATE TEMP TRIGGER tasks_count_end AFTER UPDATE OF status ON main.tasks
        WHEN OLD.status IN ('pending', 'running')
            AND NEW.status IN ('success', 'failed', 'interrupted', 'cancelled') BEGIN
            {ended}
        END;
        CREATE TEMP TRIGGER tasks_count_insert_end AFTER INSERT ON main.tasks
        WHEN NEW.status IN ('success', 'failed', 'interrupted', 'cancelled') BEGIN
            {ended}
        END;
        CREATE TEMP TRIGGER tasks_count_retry AFTER UPDATE OF retries_used ON main.tasks
        WHEN NEW.retries_used > OLD.retries_used BEGIN
            INSERT INTO temp.minute_moves (minute, func_name, queue, retried)
            VALUES ({now_us} / {MINUTE_US}, NEW.func_name, NEW.queue,
                    NEW.retries_used - OLD.retries_used);
        END;",
        insert_new = counted("NEW", ""),
        delete_old = counted("OLD", "-"),
    ))
}

/// Adds what the transaction's writes appended ([`install`]) into the counters, in the same
/// transaction, and empties the appends. Run by the writer before each commit.
pub(super) fn fold(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let counts = "INSERT INTO task_counts (func_name, queue, status, tasks, timed, seconds)
        SELECT func_name, queue, status, sum(tasks), sum(timed), sum(seconds)
        FROM temp.count_moves WHERE true GROUP BY 1, 2, 3
        ON CONFLICT DO UPDATE SET tasks = tasks + excluded.tasks,
            timed = timed + excluded.timed, seconds = seconds + excluded.seconds";
    let minutes = format!(
        "INSERT INTO task_minutes (minute, func_name, queue, enqueued, succeeded, failed,
            interrupted, cancelled, retried, timed, seconds, min_duration, max_duration, {list})
        SELECT {columns} FROM temp.minute_moves WHERE true GROUP BY 1, 2, 3
        ON CONFLICT DO UPDATE SET {add}",
        list = histogram_list(),
        columns = grouped("minute", str::to_owned),
        add = adding(),
    );
    let any: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM temp.count_moves) OR EXISTS (SELECT 1 FROM temp.minute_moves)",
        [],
        |row| row.get(0),
    )?;
    if !any {
        return Ok(());
    }
    conn.prepare_cached(counts)?.execute([])?;
    conn.prepare_cached(&minutes)?.execute([])?;
    conn.prepare_cached("DELETE FROM temp.count_moves")?.execute([])?;
    conn.prepare_cached("DELETE FROM temp.minute_moves")?.execute([])?;
    Ok(())
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
        let first = micros(since).div_euclid(MINUTE_US);
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
        let coarse = micros(now).div_euclid(MINUTE_US) - FINE_MINUTES;
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
        let first = micros(before).div_euclid(MINUTE_US);
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
