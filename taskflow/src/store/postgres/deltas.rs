//! How the statements that change tasks count themselves on PostgreSQL: each is written as a
//! data-modifying CTE named `changed` whose rows say what each task was before and is after,
//! followed by [`COUNTING`], which appends the statement's changes to two delta tables in the
//! same statement, aggregated (a fetch of fifty tasks appends two rows). Appends touch no
//! shared row, so concurrent writers never wait on one another and nothing bloats; the
//! leader folds the deltas into the counters every second ([`PostgresStore::fold_deltas`]),
//! and readers add the deltas not folded yet.
//!
//! `changed` exposes, per task: `func_name`, `queue`, `o_status`, `o_duration`, `o_retries`
//! (before; `o_status` null for a task just inserted) and `status`, `duration`,
//! `retries_used`, `end_time`, `created_at` (after; `status` null for a task deleted).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::counters::minute;
use super::{PostgresStore, unavailable};
use crate::store::StoreError;
use crate::store::counters::moves::Moves;
use crate::store::counters::sql::{
    adding, grouped, histogram_definitions, histogram_list, per_bucket,
};
use crate::store::counters::{BUCKETS, FINE_MINUTES, MinuteCounts, ROLLUP, StatusCount, minute_of};

/// The shard that folded rows go to (the triggers of schema version 10 wrote shards from 0).
const FOLDED: i32 = -1;

/// Seconds between the fold's vacuums of the delta tables, at least.
const VACUUM_EVERY: i64 = 10;

/// A history row's columns after its key, as the delta table and `taskflow_minutes` hold them.
fn figures() -> String {
    format!(
        "enqueued, succeeded, failed, interrupted, cancelled, retried, timed, seconds,
        min_duration, max_duration, {}",
        histogram_list()
    )
}

/// The CTEs that append what `changed` did to the delta tables; a statement goes on with its
/// own final `SELECT ... FROM changed`.
pub(super) static COUNTING: LazyLock<String> = LazyLock::new(|| {
    let differs = "(o_status, o_duration) IS DISTINCT FROM (status, duration)";
    format!(
        ", moved AS (
            SELECT func_name, queue, o_status AS status, -1 AS tasks,
                -(o_duration IS NOT NULL)::int AS timed, -coalesce(o_duration, 0) AS seconds
            FROM changed WHERE o_status IS NOT NULL AND {differs}
            UNION ALL
            SELECT func_name, queue, status, 1, (duration IS NOT NULL)::int, coalesce(duration, 0)
            FROM changed WHERE status IS NOT NULL AND {differs}
        ), counted AS (
            INSERT INTO taskflow_count_deltas (func_name, queue, status, tasks, timed, seconds)
            SELECT func_name, queue, status, sum(tasks), sum(timed), sum(seconds)
            FROM moved GROUP BY 1, 2, 3
        ), events AS (
            SELECT {ended} AS minute, func_name, queue, 0 AS enqueued, status, duration,
                0 AS retried, duration IS NOT NULL AND status <> 'cancelled' AS timed
            FROM changed
            WHERE status IN ('success', 'failed', 'interrupted', 'cancelled')
                AND (o_status IS NULL OR o_status IN ('pending', 'running'))
            UNION ALL
            SELECT {created}, func_name, queue, 1, NULL, NULL, 0, false
            FROM changed WHERE o_status IS NULL AND status IS NOT NULL
            UNION ALL
            SELECT {now}, func_name, queue, 0, NULL, NULL, retries_used - o_retries, false
            FROM changed WHERE retries_used > o_retries
        ), happened AS (
            INSERT INTO taskflow_minute_deltas (minute, func_name, queue, enqueued, succeeded,
                failed, interrupted, cancelled, retried, timed, seconds, min_duration,
                max_duration, {list})
            SELECT minute, func_name, queue, sum(enqueued),
                count(*) FILTER (WHERE status = 'success'),
                count(*) FILTER (WHERE status = 'failed'),
                count(*) FILTER (WHERE status = 'interrupted'),
                count(*) FILTER (WHERE status = 'cancelled'), sum(retried),
                count(*) FILTER (WHERE timed), coalesce(sum(duration) FILTER (WHERE timed), 0),
                min(duration) FILTER (WHERE timed), max(duration) FILTER (WHERE timed), {buckets}
            FROM events GROUP BY 1, 2, 3
        )",
        ended = minute("coalesce(end_time, now())"),
        created = minute("created_at"),
        now = minute("now()"),
        list = histogram_list(),
        buckets =
            per_bucket("duration", |test| format!("count(*) FILTER (WHERE timed AND {test})")),
    )
});

/// `dml`, a statement that changes tasks and returns what [`COUNTING`] reads, counted: after
/// the CTEs `before` (each `name AS (...), `), answering `select` (a query of `changed`).
pub(super) fn counted(before: &str, dml: &str, select: &str) -> String {
    format!("WITH {before}changed AS ({dml}){} {select}", *COUNTING)
}

/// Like [`counted`], for a statement that moves every task it changes from the status `from`
/// to `to`, keeping its duration, with no event for the history (a claim, a release): one
/// pass over `changed` appends the counts' two sides.
pub(super) fn moved(before: &str, dml: &str, from: &str, to: &str, select: &str) -> String {
    format!(
        "WITH {before}changed AS ({dml}), counted AS (
            INSERT INTO taskflow_count_deltas (func_name, queue, status, tasks, timed, seconds)
            SELECT func_name, queue, side.status, side.sign * count(*),
                side.sign * count(duration), side.sign * coalesce(sum(duration), 0)
            FROM changed, (VALUES ('{from}', -1), ('{to}', 1)) AS side (status, sign)
            GROUP BY func_name, queue, side.status, side.sign
        ) {select}"
    )
}

/// What `changed` returns of a task that was `status` (a stored status) and whose duration
/// and retries the change keeps: append to a `RETURNING` of [`COLUMNS`](super::COLUMNS).
pub(super) fn was(status: &str) -> String {
    format!("'{status}'::text AS o_status, duration AS o_duration, retries_used AS o_retries")
}

/// What `changed` returns of a task just inserted, after [`COLUMNS`](super::COLUMNS).
pub(super) const NEW: &str =
    "NULL::text AS o_status, NULL::float8 AS o_duration, NULL::integer AS o_retries";

/// What `changed` returns of a task just deleted: append to a `DELETE ... RETURNING`.
pub(super) const GONE: &str = "func_name, queue, status AS o_status, duration AS o_duration,
    retries_used AS o_retries, NULL::text AS status, NULL::float8 AS duration,
    NULL::integer AS retries_used, end_time, created_at";

/// Schema version 11: the triggers of version 10 go, the delta tables come, and the shards
/// the triggers wrote are folded into [`FOLDED`] (the migration holds writers off).
pub(super) fn migration() -> String {
    let folded = fold_sql("DELETE FROM taskflow_counts WHERE shard <> -1 RETURNING *");
    format!(
        "LOCK TABLE taskflow_tasks IN SHARE ROW EXCLUSIVE MODE;
        DROP TRIGGER taskflow_count_insert ON taskflow_tasks;
        DROP TRIGGER taskflow_count_delete ON taskflow_tasks;
        DROP TRIGGER taskflow_count_update ON taskflow_tasks;
        DROP FUNCTION taskflow_count_insert();
        DROP FUNCTION taskflow_count_delete();
        DROP FUNCTION taskflow_count_update();
        CREATE TABLE taskflow_count_deltas (
            func_name TEXT NOT NULL, queue TEXT NOT NULL, status TEXT NOT NULL,
            tasks BIGINT NOT NULL, timed BIGINT NOT NULL, seconds DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE taskflow_minute_deltas (
            minute BIGINT NOT NULL, func_name TEXT NOT NULL, queue TEXT NOT NULL,
            enqueued BIGINT NOT NULL DEFAULT 0, succeeded BIGINT NOT NULL DEFAULT 0,
            failed BIGINT NOT NULL DEFAULT 0, interrupted BIGINT NOT NULL DEFAULT 0,
            cancelled BIGINT NOT NULL DEFAULT 0, retried BIGINT NOT NULL DEFAULT 0,
            timed BIGINT NOT NULL DEFAULT 0, seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
            min_duration DOUBLE PRECISION, max_duration DOUBLE PRECISION, {histogram}
        );
        {folded};
        {minutes};",
        histogram = histogram_definitions("BIGINT"),
        minutes = fold_minutes_sql("DELETE FROM taskflow_minutes WHERE shard <> -1 RETURNING *"),
    )
}

/// Adds the count rows `gone` (a `DELETE ... RETURNING`) into [`FOLDED`]; answers how many
/// rows it took.
fn fold_sql(gone: &str) -> String {
    format!(
        "WITH gone AS ({gone}), added AS (
        INSERT INTO taskflow_counts AS c (func_name, queue, status, shard, tasks, timed, seconds)
        SELECT func_name, queue, status, {FOLDED}, sum(tasks)::bigint, sum(timed)::bigint,
            sum(seconds)
        FROM gone GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (func_name, queue, status, shard) DO UPDATE SET
            tasks = c.tasks + EXCLUDED.tasks, timed = c.timed + EXCLUDED.timed,
            seconds = c.seconds + EXCLUDED.seconds)
        SELECT count(*) FROM gone"
    )
}

/// Adds the history rows `gone` (a `DELETE ... RETURNING`) into [`FOLDED`]; answers how many
/// rows it took.
fn fold_minutes_sql(gone: &str) -> String {
    let add = adding(|c| format!("{c} = m.{c} + EXCLUDED.{c}"));
    format!(
        "WITH gone AS ({gone}), added AS (
        INSERT INTO taskflow_minutes AS m (minute, func_name, queue, shard, enqueued, succeeded,
            failed, interrupted, cancelled, retried, timed, seconds, min_duration,
            max_duration, {list})
        SELECT minute, func_name, queue, {FOLDED}, {sums}
        FROM gone GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (minute, func_name, queue, shard) DO UPDATE SET {add},
            min_duration = LEAST(m.min_duration, EXCLUDED.min_duration),
            max_duration = GREATEST(m.max_duration, EXCLUDED.max_duration))
        SELECT count(*) FROM gone",
        list = histogram_list(),
        sums =
            grouped("", |sum| format!("{sum}::bigint")).trim_start_matches(", func_name, queue, "),
    )
}

/// Appends `moves` (counted in code from the rows a batch's statements returned) to the
/// delta tables, in one statement of the batch's transaction.
pub(super) async fn append(
    client: &impl GenericClient,
    moves: &mut Moves,
) -> Result<(), StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let histogram: Vec<String> =
            (0..BUCKETS).map(|bucket| format!("${}::int8[]", 20 + bucket)).collect();
        format!(
            "WITH counted AS (
                INSERT INTO taskflow_count_deltas (func_name, queue, status, tasks, timed, seconds)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[],
                    $6::float8[])
            )
            INSERT INTO taskflow_minute_deltas (minute, func_name, queue, {figures})
            SELECT * FROM unnest($7::int8[], $8::text[], $9::text[], $10::int8[], $11::int8[],
                $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::int8[], $17::float8[],
                $18::float8[], $19::float8[], {histogram})",
            figures = figures(),
            histogram = histogram.join(", "),
        )
    });
    if moves.is_empty() {
        return Ok(());
    }
    let (counts, minutes) = moves.take();
    let column = |f: fn(&StatusCount) -> String| counts.iter().map(f).collect::<Vec<_>>();
    let (funcs, queues, statuses) = (
        column(|c| c.func_name.clone()),
        column(|c| c.queue.clone()),
        column(|c| c.status.clone()),
    );
    let tasks: Vec<i64> = counts.iter().map(|c| c.tasks).collect();
    let timed: Vec<i64> = counts.iter().map(|c| c.timed).collect();
    let seconds: Vec<f64> = counts.iter().map(|c| c.seconds).collect();
    let whole = |f: fn(&MinuteCounts) -> i64| minutes.iter().map(f).collect::<Vec<i64>>();
    let minute = whole(|m| minute_of(m.minute));
    let m_funcs: Vec<&str> = minutes.iter().map(|m| m.func_name.as_str()).collect();
    let m_queues: Vec<&str> = minutes.iter().map(|m| m.queue.as_str()).collect();
    let figures = [
        whole(|m| m.enqueued),
        whole(|m| m.succeeded),
        whole(|m| m.failed),
        whole(|m| m.interrupted),
        whole(|m| m.cancelled),
        whole(|m| m.retried),
        whole(|m| m.timed),
    ];
    let seconds_m: Vec<f64> = minutes.iter().map(|m| m.seconds).collect();
    let least: Vec<Option<f64>> = minutes.iter().map(|m| m.min_duration).collect();
    let most: Vec<Option<f64>> = minutes.iter().map(|m| m.max_duration).collect();
    let histogram: Vec<Vec<i64>> =
        (0..BUCKETS).map(|b| minutes.iter().map(|m| m.histogram[b]).collect()).collect();
    let mut params: Vec<&(dyn ToSql + Sync)> =
        vec![&funcs, &queues, &statuses, &tasks, &timed, &seconds, &minute, &m_funcs, &m_queues];
    params.extend(figures.iter().map(|f| f as &(dyn ToSql + Sync)));
    params.extend([&seconds_m as &(dyn ToSql + Sync), &least, &most]);
    params.extend(histogram.iter().map(|h| h as &(dyn ToSql + Sync)));
    client.execute(SQL.as_str(), &params).await.map_err(unavailable)?;
    Ok(())
}

/// Counts in `moves` a change that a statement returned as `changed` does (named columns).
pub(super) fn count_row(moves: &mut Moves, row: &Row, now: DateTime<Utc>) {
    let (func_name, queue): (&str, &str) = (row.get("func_name"), row.get("queue"));
    let o_status: Option<&str> = row.get("o_status");
    let status: Option<&str> = row.get("status");
    let duration: Option<f64> = row.get("duration");
    let o_duration: Option<f64> = row.get("o_duration");
    let end: Option<DateTime<Utc>> = row.try_get("end_time").ok().flatten();
    let ended = minute_of(end.unwrap_or(now));
    match (o_status, status) {
        (None, Some(status)) => {
            let created: DateTime<Utc> = row.try_get("created_at").unwrap_or(now);
            moves.inserted(func_name, queue, (status, duration), minute_of(created), ended);
        }
        (Some(before), Some(after)) => {
            moves.changed(func_name, queue, (before, o_duration), (after, duration), ended);
            let retries = row.get::<_, Option<i32>>("retries_used").unwrap_or(0);
            let before = row.get::<_, Option<i32>>("o_retries").unwrap_or(0);
            moves.retried(func_name, queue, i64::from(retries - before), minute_of(now));
        }
        (Some(before), None) => moves.deleted(func_name, queue, (before, o_duration)),
        (None, None) => {}
    }
}

impl PostgresStore {
    /// [`Store::compact_counters`](crate::store::Store::compact_counters) on this store: the
    /// deltas move into the counters (each in one statement that deletes what it adds: a
    /// delta appended meanwhile stays for the next fold), and history older than
    /// [`FINE_MINUTES`] into rows of [`ROLLUP`] minutes.
    pub(super) async fn fold_deltas(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        static COUNTS: LazyLock<String> =
            LazyLock::new(|| fold_sql("DELETE FROM taskflow_count_deltas RETURNING *"));
        static MINUTES: LazyLock<String> = LazyLock::new(|| {
            fold_minutes_sql(&format!(
                "DELETE FROM taskflow_minute_deltas RETURNING minute, func_name, queue, {}",
                figures()
            ))
        });
        static ROLLED: LazyLock<String> = LazyLock::new(|| {
            fold_minutes_sql(&format!(
                "DELETE FROM taskflow_minutes WHERE minute < $1 AND minute % {ROLLUP} <> 0
                 RETURNING minute - minute % {ROLLUP} AS minute, func_name, queue, {}",
                figures()
            ))
        });
        let client = self.client().await?;
        let mut folded: i64 = 0;
        for sql in [COUNTS.as_str(), MINUTES.as_str()] {
            folded += client.query_one(sql, &[]).await.map_err(unavailable)?.get::<_, i64>(0);
        }
        let coarse = minute_of(now) - FINE_MINUTES;
        client.execute(ROLLED.as_str(), &[&coarse]).await.map_err(unavailable)?;
        // The deleted deltas stay as dead rows that every read scans until a vacuum, and
        // autovacuum may wait a minute: the fold vacuums the two small tables itself, at most
        // every ten seconds (while the rows moved).
        let at = now.timestamp();
        let last = self.vacuumed.load(std::sync::atomic::Ordering::Relaxed);
        if folded > 0 && at - last >= VACUUM_EVERY {
            self.vacuumed.store(at, std::sync::atomic::Ordering::Relaxed);
            client
                .batch_execute("VACUUM taskflow_count_deltas, taskflow_minute_deltas")
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

/// The history rows, folded or not, for a `FROM`: `taskflow_minutes`-shaped.
pub(super) fn all_minutes() -> String {
    let figures = figures();
    format!(
        "(SELECT minute, func_name, queue, {figures} FROM taskflow_minutes
          UNION ALL SELECT minute, func_name, queue, {figures} FROM taskflow_minute_deltas) AS m"
    )
}
