//! The queues' shared state (`queues`, changed on the writer) and their counts (on the
//! reader, through `tasks_queue_active`).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::row::{from_micros, micros};
use super::writer::unavailable;
use crate::instance::Instance;
use crate::queue::{QueueChange, QueueCounts, QueueState};
use crate::store::StoreError;

const STATES: &str = "SELECT name, paused, concurrency, max_pending, updated_at FROM queues";

impl SqliteStore {
    pub(super) async fn read_queue_states(&self) -> Result<Vec<QueueState>, StoreError> {
        self.writer.call(|conn| states(conn, STATES, None)).await
    }

    pub(super) async fn change_queue(
        &self,
        queue: &str,
        change: QueueChange,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError> {
        let name = queue.to_owned();
        self.writer
            .call(move |conn| {
                let sql = concat!(
                    "SELECT name, paused, concurrency, max_pending, updated_at FROM queues",
                    " WHERE name = ?1"
                );
                let found = states(conn, sql, Some(&name))?.pop();
                let state = change.apply(&name, found, now);
                conn.prepare_cached(
                    "INSERT INTO queues (name, paused, concurrency, max_pending, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                        concurrency = excluded.concurrency, max_pending = excluded.max_pending,
                        updated_at = excluded.updated_at",
                )
                .map_err(unavailable)?
                .execute(params![
                    state.name,
                    state.paused,
                    state.concurrency,
                    state.max_pending.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                    micros(state.updated_at),
                ])
                .map_err(unavailable)?;
                Ok(state)
            })
            .await
    }

    pub(super) async fn count_queue(&self, queue: &str, cap: u64) -> Result<u64, StoreError> {
        let (queue, cap) = (queue.to_owned(), i64::try_from(cap).unwrap_or(i64::MAX));
        self.reader
            .call(move |conn| {
                conn.prepare_cached(
                    // The partial index's own condition, spelt out for the planner.
                    "SELECT COUNT(*) FROM (SELECT 1 FROM tasks INDEXED BY tasks_queue_active
                     WHERE status IN ('pending', 'running') AND queue = ?1
                        AND status = 'pending' LIMIT ?2)",
                )
                .map_err(unavailable)?
                .query_row(params![queue, cap], |row| row.get::<_, i64>(0))
                .map_err(unavailable)
                .map(|n| u64::try_from(n).unwrap_or(0))
            })
            .await
    }

    pub(super) async fn count_queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        self.reader
            .call(|conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT queue, status, COUNT(*),
                            SUM(status = 'pending' AND (wait_until IS NULL OR wait_until <= ?1))
                         FROM tasks INDEXED BY tasks_queue_active
                         WHERE status IN ('pending', 'running') GROUP BY queue, status",
                    )
                    .map_err(unavailable)?;
                let now = chrono::Utc::now().timestamp_micros();
                let mut rows = statement.query([now]).map_err(unavailable)?;
                let mut counts: Vec<QueueCounts> = Vec::new();
                while let Some(row) = rows.next().map_err(unavailable)? {
                    let queue: String = row.get(0).map_err(unavailable)?;
                    let status: String = row.get(1).map_err(unavailable)?;
                    let n = u64::try_from(row.get::<_, i64>(2).map_err(unavailable)?).unwrap_or(0);
                    let at = match counts.iter().position(|c| c.queue == queue) {
                        Some(at) => at,
                        None => {
                            counts.push(QueueCounts { queue, ..QueueCounts::default() });
                            counts.len() - 1
                        }
                    };
                    if status == "pending" {
                        counts[at].pending = n;
                        let due = row.get::<_, Option<i64>>(3).map_err(unavailable)?;
                        counts[at].due = u64::try_from(due.unwrap_or(0)).unwrap_or(0);
                    } else {
                        counts[at].running = n;
                    }
                }
                Ok(counts)
            })
            .await
    }
}

/// The rows of `sql` (selecting the columns of [`STATES`]) as queue states.
fn states(conn: &Connection, sql: &str, name: Option<&str>) -> Result<Vec<QueueState>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(unavailable)?;
    let read = |row: &rusqlite::Row<'_>| {
        let updated: i64 = row.get(4)?;
        let max_pending: Option<i64> = row.get(3)?;
        Ok(QueueState {
            name: row.get(0)?,
            paused: row.get(1)?,
            concurrency: row.get(2)?,
            max_pending: max_pending.and_then(|n| u64::try_from(n).ok()),
            updated_at: from_micros(updated).unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        })
    };
    let rows = match name {
        Some(name) => statement.query_map([name], read),
        None => statement.query_map([], read),
    }
    .map_err(unavailable)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
}

impl SqliteStore {
    pub(super) async fn beat(&self, instance: &Instance) -> Result<(), StoreError> {
        let info = serde_json::to_string(instance)
            .map_err(|e| StoreError::Unavailable(format!("sqlite: {e}")))?;
        let (id, seen, expires) =
            (instance.id.clone(), micros(instance.seen_at), micros(instance.expires_at));
        self.writer
            .call(move |conn| {
                conn.prepare_cached("DELETE FROM instances WHERE expires_at <= ?1")
                    .map_err(unavailable)?
                    .execute([seen])
                    .map_err(unavailable)?;
                conn.prepare_cached(
                    "INSERT INTO instances (id, info, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET info = excluded.info,
                        expires_at = excluded.expires_at",
                )
                .map_err(unavailable)?
                .execute(rusqlite::params![id, info, expires])
                .map_err(unavailable)?;
                Ok(())
            })
            .await
    }

    pub(super) async fn live_instances(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Instance>, StoreError> {
        let now = micros(now);
        let rows: Vec<String> = self
            .reader
            .call(move |conn| {
                let mut statement = conn
                    .prepare_cached("SELECT info FROM instances WHERE expires_at > ?1 ORDER BY id")
                    .map_err(unavailable)?;
                let rows = statement
                    .query_map([now], |row| row.get::<_, String>(0))
                    .map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)
            })
            .await?;
        Ok(crate::store::decode_instances(rows))
    }

    pub(super) async fn forget(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.writer
            .call(move |conn| {
                conn.execute("DELETE FROM instances WHERE id = ?1", [id]).map_err(unavailable)?;
                Ok(())
            })
            .await
    }
}
