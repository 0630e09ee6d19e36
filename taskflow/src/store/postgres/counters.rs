//! The counters on PostgreSQL ([`crate::store::counters`]): `taskflow_counts` and
//! `taskflow_minutes`, with the deltas not folded into them yet ([`super::deltas`]).
//!
//! Schema version 10 kept them with statement-level triggers, each backend writing a shard of
//! its own; version 11 replaced the triggers with the deltas (the triggers' updates of hot
//! counter rows cost half the write throughput and bloated the tables).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{PostgresStore, unavailable};
use crate::store::StoreError;
use crate::store::counters::sql::{
    each_column, grouped, histogram_definitions, histogram_list, per_bucket,
};
use crate::store::counters::{BUCKETS, MinuteCounts, SHARDS, StatusCount, minute_of, minute_start};

/// The unix minute of a `TIMESTAMPTZ` expression.
pub(super) fn minute(at: &str) -> String {
    format!("floor(extract(epoch FROM {at}) / 60)::bigint")
}

/// Schema version 10: the two tables, `taskflow_counts` filled from the rows there are (under
/// a lock that holds writers off until the triggers exist), and the triggers (which version
/// 11 drops again: [`super::deltas::migration`]).
pub(super) fn migration() -> String {
    let add_counts = "ON CONFLICT (func_name, queue, status, shard) DO UPDATE SET \
        tasks = c.tasks + EXCLUDED.tasks, timed = c.timed + EXCLUDED.timed, \
        seconds = c.seconds + EXCLUDED.seconds";
    let counts_into =
        "INSERT INTO taskflow_counts AS c (func_name, queue, status, shard, tasks, timed, seconds)";
    let signed = |rows: &str, sign: &str| {
        format!(
            "{counts_into}
             SELECT func_name, queue, status, my_shard, {sign}count(*), {sign}count(duration),
                    {sign}coalesce(sum(duration), 0)
             FROM {rows} GROUP BY func_name, queue, status ORDER BY func_name, queue, status
             {add_counts};"
        )
    };
    let same = "(o_status, o_func, o_queue, o_duration) IS NOT DISTINCT FROM (status, func_name, queue, duration)";
    let shard = format!("DECLARE my_shard INTEGER := pg_backend_pid() % {SHARDS};");
    let trigger = |name: &str, event: &str, tables: &str| {
        format!(
            "CREATE TRIGGER {name} AFTER {event} ON taskflow_tasks REFERENCING {tables}
             FOR EACH STATEMENT EXECUTE FUNCTION {name}();"
        )
    };
    let add_events = format!(
        "INSERT INTO taskflow_minutes AS m (minute, func_name, queue, shard, succeeded,
                failed, interrupted, cancelled, retried, timed, seconds, min_duration,
                max_duration, {list})
            SELECT minute, func_name, queue, my_shard,
                count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE status = 'failed'),
                count(*) FILTER (WHERE status = 'interrupted'),
                count(*) FILTER (WHERE status = 'cancelled'), sum(retried),
                count(*) FILTER (WHERE timed), coalesce(sum(duration) FILTER (WHERE timed), 0),
                min(duration) FILTER (WHERE timed), max(duration) FILTER (WHERE timed),
                {buckets}
            FROM events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (minute, func_name, queue, shard) DO UPDATE SET
                succeeded = m.succeeded + EXCLUDED.succeeded, failed = m.failed + EXCLUDED.failed,
                interrupted = m.interrupted + EXCLUDED.interrupted,
                cancelled = m.cancelled + EXCLUDED.cancelled, retried = m.retried + EXCLUDED.retried,
                timed = m.timed + EXCLUDED.timed, seconds = m.seconds + EXCLUDED.seconds,
                min_duration = LEAST(m.min_duration, EXCLUDED.min_duration),
                max_duration = GREATEST(m.max_duration, EXCLUDED.max_duration), {sums};",
        list = histogram_list(),
        buckets = per_bucket("duration", |test| format!("count(*) FILTER (WHERE timed AND {test})")),
        sums = each_column(|h| format!("{h} = m.{h} + EXCLUDED.{h}")),
    );
    format!(
        "LOCK TABLE taskflow_tasks IN SHARE ROW EXCLUSIVE MODE;
        CREATE TABLE taskflow_counts (
            func_name TEXT NOT NULL, queue TEXT NOT NULL, status TEXT NOT NULL,
            shard INTEGER NOT NULL, tasks BIGINT NOT NULL, timed BIGINT NOT NULL,
            seconds DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (func_name, queue, status, shard)
        );
        INSERT INTO taskflow_counts (func_name, queue, status, shard, tasks, timed, seconds)
            SELECT func_name, queue, status, 0, count(*), count(duration), coalesce(sum(duration), 0)
            FROM taskflow_tasks GROUP BY func_name, queue, status;
        CREATE TABLE taskflow_minutes (
            minute BIGINT NOT NULL, func_name TEXT NOT NULL, queue TEXT NOT NULL,
            shard INTEGER NOT NULL,
            enqueued BIGINT NOT NULL DEFAULT 0, succeeded BIGINT NOT NULL DEFAULT 0,
            failed BIGINT NOT NULL DEFAULT 0, interrupted BIGINT NOT NULL DEFAULT 0,
            cancelled BIGINT NOT NULL DEFAULT 0, retried BIGINT NOT NULL DEFAULT 0,
            timed BIGINT NOT NULL DEFAULT 0, seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
            min_duration DOUBLE PRECISION, max_duration DOUBLE PRECISION, {histogram},
            PRIMARY KEY (minute, func_name, queue, shard)
        );
        CREATE FUNCTION taskflow_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        {shard}
        BEGIN
            {insert_new}
            INSERT INTO taskflow_minutes AS m (minute, func_name, queue, shard, enqueued)
            SELECT {created}, func_name, queue, my_shard, count(*) FROM new_rows
            GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (minute, func_name, queue, shard)
            DO UPDATE SET enqueued = m.enqueued + EXCLUDED.enqueued;
            WITH events AS (
                SELECT {ended_minute} AS minute, func_name, queue, status, duration,
                    0 AS retried, duration IS NOT NULL AND status <> 'cancelled' AS timed
                FROM new_rows WHERE status IN ('success', 'failed', 'interrupted', 'cancelled')
            )
            {add_events}
            RETURN NULL;
        END $$;
        CREATE FUNCTION taskflow_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        {shard}
        BEGIN
            {delete_old}
            RETURN NULL;
        END $$;
        CREATE FUNCTION taskflow_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
        {shard}
        BEGIN
            WITH changed AS (
                SELECT o.func_name AS o_func, o.queue AS o_queue, o.status AS o_status,
                    o.duration AS o_duration, o.retries_used AS o_retries, n.func_name, n.queue,
                    n.status, n.duration, n.retries_used, n.end_time
                FROM old_rows o JOIN new_rows n ON n.id = o.id
                WHERE (o.status, o.func_name, o.queue, o.duration, o.retries_used)
                    IS DISTINCT FROM (n.status, n.func_name, n.queue, n.duration, n.retries_used)
            ), moved AS (
                SELECT o_func AS func_name, o_queue AS queue, o_status AS status, -1 AS tasks,
                    -(o_duration IS NOT NULL)::int AS timed, -coalesce(o_duration, 0) AS seconds
                FROM changed WHERE NOT {same}
                UNION ALL
                SELECT func_name, queue, status, 1, (duration IS NOT NULL)::int,
                    coalesce(duration, 0)
                FROM changed WHERE NOT {same}
            ), counted AS (
                {counts_into}
                SELECT func_name, queue, status, my_shard, sum(tasks), sum(timed), sum(seconds)
                FROM moved GROUP BY func_name, queue, status ORDER BY func_name, queue, status
                {add_counts}
            ), events AS (
                SELECT {ended_minute} AS minute, func_name, queue, status, duration, 0 AS retried,
                    duration IS NOT NULL AND status <> 'cancelled' AS timed
                FROM changed WHERE o_status IN ('pending', 'running')
                    AND status IN ('success', 'failed', 'interrupted', 'cancelled')
                UNION ALL
                SELECT {now_minute}, func_name, queue, NULL, NULL, retries_used - o_retries, false
                FROM changed WHERE retries_used > o_retries
            )
            {add_events}
            RETURN NULL;
        END $$;
        {insert_trigger}
        {delete_trigger}
        {update_trigger}",
        histogram = histogram_definitions("BIGINT"),
        insert_new = signed("new_rows", ""),
        delete_old = signed("old_rows", "-"),
        created = minute("created_at"),
        ended_minute = minute("coalesce(end_time, now())"),
        now_minute = minute("now()"),
        insert_trigger = trigger("taskflow_count_insert", "INSERT", "NEW TABLE AS new_rows"),
        delete_trigger = trigger("taskflow_count_delete", "DELETE", "OLD TABLE AS old_rows"),
        update_trigger =
            trigger("taskflow_count_update", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    )
}

impl PostgresStore {
    /// [`Store::counts`](crate::store::Store::counts) on this store.
    pub(super) async fn read_counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let rows = self
            .query(
                "SELECT func_name, queue, status, tasks, timed, seconds FROM taskflow_counts
                 UNION ALL
                 SELECT func_name, queue, status, tasks, timed, seconds FROM taskflow_count_deltas",
                &[],
            )
            .await?;
        let counts = rows.iter().map(|row| StatusCount {
            func_name: row.get(0),
            queue: row.get(1),
            status: row.get(2),
            tasks: row.get(3),
            timed: row.get(4),
            seconds: row.get(5),
        });
        Ok(crate::store::counters::merge_counts(counts))
    }

    /// [`Store::history`](crate::store::Store::history) on this store.
    pub(super) async fn read_history(
        &self,
        since: DateTime<Utc>,
        step: u32,
    ) -> Result<Vec<MinuteCounts>, StoreError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE minute >= $1 GROUP BY 1, 2, 3",
            grouped("$1 + (minute - $1) / $2 * $2", |sum| format!("{sum}::bigint")),
            super::deltas::all_minutes(),
        );
        let step = i64::from(step.max(1));
        let rows = self.query(&sql, &[&minute_of(since), &step]).await?;
        Ok(crate::store::counters::merge_minutes(rows.iter().map(minute_row)))
    }

    /// [`Store::trim_history`](crate::store::Store::trim_history) on this store.
    pub(super) async fn drop_history(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let before = minute_of(before);
        let gone = client
            .execute("DELETE FROM taskflow_minutes WHERE minute < $1", &[&before])
            .await
            .map_err(unavailable)?;
        client
            .execute("DELETE FROM taskflow_minute_deltas WHERE minute < $1", &[&before])
            .await
            .map_err(unavailable)?;
        Ok(gone as usize)
    }
}

/// One `taskflow_minutes` row, read in the order of [`grouped`].
fn minute_row(row: &Row) -> MinuteCounts {
    let mut histogram = [0; BUCKETS];
    for (bucket, slot) in histogram.iter_mut().enumerate() {
        *slot = row.get(13 + bucket);
    }
    MinuteCounts {
        minute: minute_start(row.get(0)),
        func_name: row.get(1),
        queue: row.get(2),
        enqueued: row.get(3),
        succeeded: row.get(4),
        failed: row.get(5),
        interrupted: row.get(6),
        cancelled: row.get(7),
        retried: row.get(8),
        timed: row.get(9),
        seconds: row.get(10),
        min_duration: row.get(11),
        max_duration: row.get(12),
        histogram,
    }
}
