//! Folding the counters' shards on MySQL / MariaDB ([`Store::compact_counters`]): in one
//! transaction, the shard rows no writer holds (`FOR UPDATE SKIP LOCKED`) are read, deleted
//! by key, and added into the shard [`FOLDED`], which no trigger writes. The fold never waits
//! on a writer, and no writer waits on a row that it holds.
//!
//! [`Store::compact_counters`]: crate::store::Store::compact_counters

use chrono::Utc;
use mysql_async::prelude::Queryable;
use mysql_async::{TxOpts, Value};

use super::row::Cells;
use super::{MysqlStore, StoreError, unavailable};
use crate::store::counters::minute_of;
use crate::store::counters::sql::{adding, grouped, histogram_list};

/// The shard that folded rows go to; triggers write shards from 0 up.
const FOLDED: i64 = -1;

/// Keys deleted per statement.
const CHUNK: usize = 500;

/// One table's fold: its key columns, the sums read per key, and the upsert of a sum.
struct Table {
    name: &'static str,
    keys: &'static [&'static str],
    /// The select list after the keys (sums, min, max), per group of keys.
    totals: String,
    /// The columns written after the keys and the shard, in `totals` order.
    columns: String,
    /// The `ON DUPLICATE KEY UPDATE` list.
    add: String,
    /// Which rows fold (more than `shard <> FOLDED`).
    only: &'static str,
}

impl MysqlStore {
    /// [`Store::compact_counters`](crate::store::Store::compact_counters) on this store.
    pub(super) async fn fold_shards(&self, now: chrono::DateTime<Utc>) -> Result<(), StoreError> {
        let sums = |columns: &[&str]| {
            columns
                .iter()
                .map(|c| format!("CAST(SUM({c}) AS SIGNED)"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let counts = Table {
            name: "taskflow_counts",
            keys: &["func_name", "queue", "status"],
            totals: format!("{}, SUM(seconds)", sums(&["tasks", "timed"])),
            columns: "tasks, timed, seconds".to_owned(),
            add: "tasks = tasks + VALUES(tasks), timed = timed + VALUES(timed), \
                  seconds = seconds + VALUES(seconds)"
                .to_owned(),
            only: "",
        };
        let added = adding(|c| format!("{c} = {c} + VALUES({c})"));
        let minutes = Table {
            name: "taskflow_minutes",
            keys: &["minute", "func_name", "queue"],
            totals: grouped("", |sum| format!("CAST({sum} AS SIGNED)"))
                .trim_start_matches(", func_name, queue, ")
                .to_owned(),
            columns: format!(
                "enqueued, succeeded, failed, interrupted, cancelled, retried, timed, seconds, \
                 min_duration, max_duration, {}",
                histogram_list()
            ),
            add: format!(
                "{added}, min_duration = LEAST(COALESCE(min_duration, VALUES(min_duration)), \
                     COALESCE(VALUES(min_duration), min_duration)), \
                 max_duration = GREATEST(COALESCE(max_duration, VALUES(max_duration)), \
                     COALESCE(VALUES(max_duration), max_duration))"
            ),
            only: "AND minute < ?",
        };
        self.fold(&counts, Vec::new()).await?;
        self.fold(&minutes, vec![Value::from(minute_of(now))]).await
    }

    async fn fold(&self, table: &Table, only: Vec<Value>) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        // READ COMMITTED, as the fetch: no gap locks, so the triggers' inserts into the
        // shards never wait on the fold (SKIP LOCKED passes over the rows they hold).
        let mut options = TxOpts::default();
        options.with_isolation_level(mysql_async::IsolationLevel::ReadCommitted);
        let mut tx = conn.start_transaction(options).await.map_err(unavailable)?;
        let keys = table.keys.join(", ");
        let picked: Vec<mysql_async::Row> = tx
            .exec(
                format!(
                    "SELECT {keys}, shard FROM {} WHERE shard <> {FOLDED} {} FOR UPDATE SKIP LOCKED",
                    table.name, table.only
                ),
                only,
            )
            .await
            .map_err(unavailable)?;
        if picked.is_empty() {
            return tx.commit().await.map_err(unavailable);
        }
        let width = table.keys.len() + 1;
        let picked: Vec<Vec<Value>> = picked.into_iter().map(mysql_async::Row::unwrap).collect();
        let tuple = format!("({})", vec!["?"; width].join(", "));
        for chunk in picked.chunks(CHUNK) {
            let tuples = vec![tuple.as_str(); chunk.len()].join(", ");
            let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
            // The sums of the rows picked, then their deletion, then the sums in FOLDED.
            let totals: Vec<mysql_async::Row> = tx
                .exec(
                    format!(
                        "SELECT {keys}, {} FROM {} WHERE ({keys}, shard) IN ({tuples}) GROUP BY {keys}",
                        table.totals, table.name
                    ),
                    params.clone(),
                )
                .await
                .map_err(unavailable)?;
            tx.exec_drop(
                format!("DELETE FROM {} WHERE ({keys}, shard) IN ({tuples})", table.name),
                params,
            )
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
