//! Folding the counters' deltas on MySQL / MariaDB ([`Store::compact_counters`]): in one
//! transaction, the delta rows committed (`FOR UPDATE SKIP LOCKED` passes over a writer's
//! uncommitted ones) are read, deleted by id, and added into the shard [`FOLDED`] of the
//! counters. The fold never waits on a writer, and no writer waits on the fold.
//!
//! [`Store::compact_counters`]: crate::store::Store::compact_counters

use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{TxOpts, Value};

use super::row::Cells;
use super::{MysqlStore, StoreError, unavailable};
use crate::store::counters::sql::{adding, grouped};
use crate::store::counters::{FINE_MINUTES, ROLLUP, minute_of};

/// The shard that folded rows go to (the triggers of schema version 10 wrote shards from 0).
const FOLDED: i64 = -1;

/// Keys deleted per statement.
const CHUNK: usize = 500;

/// Delta rows folded per transaction at most (the rest wait for the next fold).
const MOST: usize = 20_000;

/// One table's fold: its deltas, its key columns, the sums read per key, and the upsert of a
/// sum.
struct Table {
    deltas: &'static str,
    name: &'static str,
    keys: &'static [&'static str],
    /// The select list after the keys (sums, min, max), per group of keys.
    totals: String,
    /// The columns written after the keys and the shard, in `totals` order.
    columns: String,
    /// The `ON DUPLICATE KEY UPDATE` list.
    add: String,
}

impl MysqlStore {
    /// [`Store::compact_counters`](crate::store::Store::compact_counters) on this store.
    pub(super) async fn fold_deltas(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sums = |columns: &[&str]| {
            columns
                .iter()
                .map(|c| format!("CAST(SUM({c}) AS SIGNED)"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let counts = Table {
            deltas: "taskflow_count_deltas",
            name: "taskflow_counts",
            keys: &["func_name", "queue", "status"],
            totals: format!("{}, SUM(seconds)", sums(&["tasks", "timed"])),
            columns: "tasks, timed, seconds".to_owned(),
            add: "tasks = tasks + VALUES(tasks), timed = timed + VALUES(timed), \
                  seconds = seconds + VALUES(seconds)"
                .to_owned(),
        };
        let added = adding(|c| format!("{c} = {c} + VALUES({c})"));
        let minutes = Table {
            deltas: "taskflow_minute_deltas",
            name: "taskflow_minutes",
            keys: &["minute", "func_name", "queue"],
            totals: grouped("", |sum| format!("CAST({sum} AS SIGNED)"))
                .trim_start_matches(", func_name, queue, ")
                .to_owned(),
            columns: super::deltas::figures(),
            add: format!(
                "{added}, min_duration = LEAST(COALESCE(min_duration, VALUES(min_duration)), \
                     COALESCE(VALUES(min_duration), min_duration)), \
                 max_duration = GREATEST(COALESCE(max_duration, VALUES(max_duration)), \
                     COALESCE(VALUES(max_duration), max_duration))"
            ),
        };
        self.fold(&counts).await?;
        self.fold(&minutes).await?;
        self.roll_up(&minutes, now).await
    }

    /// Merges the history older than [`FINE_MINUTES`] before `now` into rows of [`ROLLUP`]
    /// minutes (at the span's first), in one transaction. Only the leader's fold writes
    /// `taskflow_minutes`, so this waits on no writer.
    async fn roll_up(&self, minutes: &Table, now: DateTime<Utc>) -> Result<(), StoreError> {
        let coarse = Value::from(minute_of(now) - FINE_MINUTES);
        let old = format!("minute < ? AND minute % {ROLLUP} <> 0");
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(unavailable)?;
        tx.exec_drop(
            format!(
                "INSERT INTO taskflow_minutes (minute, func_name, queue, shard, {columns})
                 SELECT minute - minute % {ROLLUP}, func_name, queue, {FOLDED}, {totals}
                 FROM taskflow_minutes WHERE {old} GROUP BY 1, 2, 3
                 ON DUPLICATE KEY UPDATE {add}",
                columns = minutes.columns,
                totals = minutes.totals,
                add = minutes.add,
            ),
            vec![coarse.clone()],
        )
        .await
        .map_err(unavailable)?;
        tx.exec_drop(format!("DELETE FROM taskflow_minutes WHERE {old}"), vec![coarse])
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn fold(&self, table: &Table) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        // READ COMMITTED, as the fetch: no gap locks, so the writers' appends never wait on
        // the fold (SKIP LOCKED passes over the rows they hold).
        let mut options = TxOpts::default();
        options.with_isolation_level(mysql_async::IsolationLevel::ReadCommitted);
        let mut tx = conn.start_transaction(options).await.map_err(unavailable)?;
        let keys = table.keys.join(", ");
        let picked: Vec<i64> = tx
            .exec(
                format!(
                    "SELECT id FROM {} ORDER BY id LIMIT {MOST} FOR UPDATE SKIP LOCKED",
                    table.deltas
                ),
                (),
            )
            .await
            .map_err(unavailable)?;
        for chunk in picked.chunks(CHUNK) {
            let ids = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
            // The sums of the rows picked, then their deletion, then the sums in FOLDED.
            let totals: Vec<mysql_async::Row> = tx
                .exec(
                    format!(
                        "SELECT {keys}, {} FROM {} WHERE id IN ({ids}) GROUP BY {keys}",
                        table.totals, table.deltas
                    ),
                    (),
                )
                .await
                .map_err(unavailable)?;
            tx.exec_drop(format!("DELETE FROM {} WHERE id IN ({ids})", table.deltas), ())
                .await
                .map_err(unavailable)?;
            let rows: Vec<Vec<Value>> =
                totals.into_iter().map(|row| Cells::of(row).values).collect();
            let Some(first) = rows.first() else { continue };
            let one = format!("({})", vec!["?"; first.len() + 1].join(", "));
            let values = vec![one.as_str(); rows.len()].join(", ");
            let mut params = Vec::with_capacity(rows.len() * (first.len() + 1));
            for mut row in rows {
                row.insert(table.keys.len(), Value::from(FOLDED));
                params.extend(row);
            }
            tx.exec_drop(
                format!(
                    "INSERT INTO {} ({keys}, shard, {}) VALUES {values} ON DUPLICATE KEY UPDATE {}",
                    table.name, table.columns, table.add
                ),
                params,
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }
}
