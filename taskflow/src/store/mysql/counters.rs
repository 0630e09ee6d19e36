//! The counters on MySQL / MariaDB ([`crate::store::counters`]): `taskflow_counts` and
//! `taskflow_minutes`, with the deltas not folded into them yet ([`super::deltas`]).
//!
//! Schema version 10 kept them with row triggers, each connection writing a shard of its own;
//! version 11 replaced the triggers with the deltas (two or three upserts per changed row
//! cost about half the write throughput).

use chrono::{DateTime, Utc};
use mysql_async::Value;

use super::row::Cells;
use super::{MysqlStore, StoreError};
use crate::store::counters::sql::{
    each_column, grouped, histogram_definitions, histogram_list, per_bucket,
};
use crate::store::counters::{BUCKETS, MinuteCounts, SHARDS, StatusCount, minute_of, minute_start};

/// Microseconds in a minute: stored times are microseconds.
const MINUTE_US: i64 = 60_000_000;

/// Schema version 10: the two tables, the triggers (dropped by version 11:
/// [`super::deltas::migration`]), then `taskflow_counts` filled from the rows there are.
pub(super) fn migration() -> Vec<String> {
    let shard = format!("CONNECTION_ID() % {SHARDS}");
    let counted = |row: &str, sign: &str| {
        format!(
            "INSERT INTO taskflow_counts (func_name, queue, status, shard, tasks, timed, seconds)
             VALUES ({row}.func_name, {row}.queue, {row}.status, {shard}, {sign}1,
                     {sign}({row}.duration IS NOT NULL), {sign}COALESCE({row}.duration, 0))
             ON DUPLICATE KEY UPDATE tasks = tasks + VALUES(tasks),
                 timed = timed + VALUES(timed), seconds = seconds + VALUES(seconds);"
        )
    };
    let timed = "(NEW.duration IS NOT NULL AND NEW.status <> 'cancelled')";
    let table = "ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin";
    let ended = format!(
        "INSERT INTO taskflow_minutes (minute, func_name, queue, shard, succeeded,
                        failed, interrupted, cancelled, timed, seconds, min_duration,
                        max_duration, {list})
                    VALUES (FLOOR(COALESCE(NEW.end_time, UNIX_TIMESTAMP() * 1000000) / {MINUTE_US}),
                        NEW.func_name, NEW.queue, {shard}, NEW.status = 'success',
                        NEW.status = 'failed', NEW.status = 'interrupted',
                        NEW.status = 'cancelled', {timed}, IF({timed}, NEW.duration, 0),
                        IF({timed}, NEW.duration, NULL), IF({timed}, NEW.duration, NULL), {flags})
                    ON DUPLICATE KEY UPDATE succeeded = succeeded + VALUES(succeeded),
                        failed = failed + VALUES(failed),
                        interrupted = interrupted + VALUES(interrupted),
                        cancelled = cancelled + VALUES(cancelled), timed = timed + VALUES(timed),
                        seconds = seconds + VALUES(seconds),
                        min_duration = LEAST(COALESCE(min_duration, VALUES(min_duration)),
                                             COALESCE(VALUES(min_duration), min_duration)),
                        max_duration = GREATEST(COALESCE(max_duration, VALUES(max_duration)),
                                                COALESCE(VALUES(max_duration), max_duration)),
                        {sums};",
        list = histogram_list(),
        flags = per_bucket("NEW.duration", |test| format!("IF({timed} AND {test}, 1, 0)")),
        sums = each_column(|h| format!("{h} = {h} + VALUES({h})")),
    );
    vec![
        format!(
            "CREATE TABLE taskflow_counts (
                func_name VARCHAR(255) NOT NULL, queue VARCHAR(64) NOT NULL,
                status VARCHAR(16) NOT NULL, shard INT NOT NULL, tasks BIGINT NOT NULL,
                timed BIGINT NOT NULL, seconds DOUBLE NOT NULL,
                PRIMARY KEY (func_name, queue, status, shard)
            ) {table}"
        ),
        format!(
            "CREATE TABLE taskflow_minutes (
                minute BIGINT NOT NULL, func_name VARCHAR(255) NOT NULL,
                queue VARCHAR(64) NOT NULL, shard INT NOT NULL,
                enqueued BIGINT NOT NULL DEFAULT 0, succeeded BIGINT NOT NULL DEFAULT 0,
                failed BIGINT NOT NULL DEFAULT 0, interrupted BIGINT NOT NULL DEFAULT 0,
                cancelled BIGINT NOT NULL DEFAULT 0, retried BIGINT NOT NULL DEFAULT 0,
                timed BIGINT NOT NULL DEFAULT 0, seconds DOUBLE NOT NULL DEFAULT 0,
                min_duration DOUBLE NULL, max_duration DOUBLE NULL, {},
                PRIMARY KEY (minute, func_name, queue, shard)
            ) {table}",
            histogram_definitions("BIGINT")
        ),
        format!(
            "CREATE TRIGGER taskflow_count_insert AFTER INSERT ON taskflow_tasks FOR EACH ROW BEGIN
                {}
                INSERT INTO taskflow_minutes (minute, func_name, queue, shard, enqueued)
                VALUES (FLOOR(NEW.created_at / {MINUTE_US}), NEW.func_name, NEW.queue, {shard}, 1)
                ON DUPLICATE KEY UPDATE enqueued = enqueued + 1;
                IF NEW.status IN ('success', 'failed', 'interrupted', 'cancelled') THEN
                    {ended}
                END IF;
            END",
            counted("NEW", "")
        ),
        format!(
            "CREATE TRIGGER taskflow_count_delete AFTER DELETE ON taskflow_tasks FOR EACH ROW BEGIN
                {}
            END",
            counted("OLD", "-")
        ),
        format!(
            "CREATE TRIGGER taskflow_count_update AFTER UPDATE ON taskflow_tasks FOR EACH ROW BEGIN
                IF NOT (OLD.status <=> NEW.status AND OLD.duration <=> NEW.duration
                        AND OLD.func_name <=> NEW.func_name AND OLD.queue <=> NEW.queue) THEN
                    {delete_old}
                    {insert_new}
                END IF;
                IF OLD.status IN ('pending', 'running')
                    AND NEW.status IN ('success', 'failed', 'interrupted', 'cancelled') THEN
                    {ended}
                END IF;
                IF NEW.retries_used > OLD.retries_used THEN
                    INSERT INTO taskflow_minutes (minute, func_name, queue, shard, retried)
                    VALUES (FLOOR(UNIX_TIMESTAMP() / 60), NEW.func_name, NEW.queue, {shard},
                            NEW.retries_used - OLD.retries_used)
                    ON DUPLICATE KEY UPDATE retried = retried + VALUES(retried);
                END IF;
            END",
            delete_old = counted("OLD", "-"),
            insert_new = counted("NEW", ""),
        ),
        "INSERT INTO taskflow_counts (func_name, queue, status, shard, tasks, timed, seconds)
         SELECT func_name, queue, status, 0, COUNT(*), COUNT(duration), COALESCE(SUM(duration), 0)
         FROM taskflow_tasks GROUP BY func_name, queue, status
         ON DUPLICATE KEY UPDATE tasks = tasks + VALUES(tasks), timed = timed + VALUES(timed),
             seconds = seconds + VALUES(seconds)"
            .to_owned(),
    ]
}

impl MysqlStore {
    /// [`Store::counts`](crate::store::Store::counts) on this store.
    pub(super) async fn read_counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let sql = "SELECT func_name, queue, status, tasks, timed, seconds FROM taskflow_counts
            UNION ALL
            SELECT func_name, queue, status, tasks, timed, seconds FROM taskflow_count_deltas";
        let rows = self.rows(sql, Vec::new()).await?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in rows {
            counts.push(StatusCount {
                func_name: row.text(0, "func_name")?.unwrap_or_default(),
                queue: row.text(1, "queue")?.unwrap_or_default(),
                status: row.text(2, "status")?.unwrap_or_default(),
                tasks: row.int(3, "tasks")?.unwrap_or_default(),
                timed: row.int(4, "timed")?.unwrap_or_default(),
                seconds: row.real(5, "seconds")?.unwrap_or_default(),
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
        let sql = format!(
            "SELECT {} FROM (SELECT minute, func_name, queue, {figures} FROM taskflow_minutes
                UNION ALL SELECT minute, func_name, queue, {figures} FROM taskflow_minute_deltas)
                AS m WHERE minute >= ? GROUP BY 1, 2, 3",
            grouped("? + (minute - ?) DIV ? * ?", |sum| format!("CAST({sum} AS SIGNED)")),
            figures = super::deltas::figures(),
        );
        let (first, step) = (Value::from(minute_of(since)), Value::from(i64::from(step.max(1))));
        let params = vec![first.clone(), first.clone(), step.clone(), step, first];
        let rows = self.rows(&sql, params).await?;
        let minutes = rows.iter().map(minute_row).collect::<Result<Vec<_>, _>>()?;
        Ok(crate::store::counters::merge_minutes(minutes))
    }

    /// [`Store::trim_history`](crate::store::Store::trim_history) on this store.
    pub(super) async fn drop_history(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let before = Value::from(minute_of(before));
        let sql = "DELETE FROM taskflow_minute_deltas WHERE minute < ?";
        self.affected(sql, vec![before.clone()]).await?;
        let sql = "DELETE FROM taskflow_minutes WHERE minute < ?";
        Ok(self.affected(sql, vec![before]).await? as usize)
    }
}

/// One `taskflow_minutes` row, read in the order of [`grouped`].
fn minute_row(row: &Cells) -> Result<MinuteCounts, StoreError> {
    let int = |index: usize| row.int(index, "taskflow_minutes").map(Option::unwrap_or_default);
    let mut histogram = [0; BUCKETS];
    for (bucket, slot) in histogram.iter_mut().enumerate() {
        *slot = int(13 + bucket)?;
    }
    Ok(MinuteCounts {
        minute: minute_start(int(0)?),
        func_name: row.text(1, "func_name")?.unwrap_or_default(),
        queue: row.text(2, "queue")?.unwrap_or_default(),
        enqueued: int(3)?,
        succeeded: int(4)?,
        failed: int(5)?,
        interrupted: int(6)?,
        cancelled: int(7)?,
        retried: int(8)?,
        timed: int(9)?,
        seconds: row.real(10, "seconds")?.unwrap_or_default(),
        min_duration: row.real(11, "min_duration")?,
        max_duration: row.real(12, "max_duration")?,
        histogram,
    })
}
