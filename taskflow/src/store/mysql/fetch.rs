//! Fetching available tasks and releasing a lost fetch: waiting tasks now due are made
//! available (through `taskflow_tasks_waiting`), then in one transaction the first available
//! ones are picked through `taskflow_tasks_available` with `FOR UPDATE SKIP LOCKED` (other
//! instances' fetchers take other rows, never wait), leased, and read. A try that InnoDB
//! rolls back for a deadlock with another instance's is simply run again.

use chrono::{DateTime, Utc};
use mysql_async::Value;
use mysql_async::prelude::Queryable;

use super::deltas::{SEEN, Seen, lossy, number};
use super::{COLUMNS, Cells, MysqlStore, micros, s, unavailable};

/// Why one try of a fetch failed: a lock conflict (tried again), another server error, or the
/// pool.
enum Conflict {
    Lock(mysql_async::Error),
    Other(mysql_async::Error),
    Store(StoreError),
}

impl From<mysql_async::Error> for Conflict {
    fn from(err: mysql_async::Error) -> Self {
        if is_lock_conflict(&err) { Conflict::Lock(err) } else { Conflict::Other(err) }
    }
}
use crate::record::TaskRecord;
use crate::store::counters::minute_of;
use crate::store::counters::moves::Moves;
use crate::store::{Fetch, Lease, StoreError, fetch_order};

/// How many times a transaction that InnoDB picked as a deadlock's victim is tried again at once.
pub(super) const DEADLOCK_RETRIES: usize = 5;

/// Whether `err` is InnoDB's "deadlock found" or "lock wait timeout": the transaction was
/// rolled back and may simply run again.
pub(super) fn is_lock_conflict(err: &mysql_async::Error) -> bool {
    matches!(err, mysql_async::Error::Server(server) if server.code == 1213 || server.code == 1205)
}

impl MysqlStore {
    pub(super) async fn fetch_available(
        &self,
        fetch: &Fetch<'_>,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if fetch.limit == 0 {
            return Ok(Vec::new());
        }
        let rows = &self.queue_rows;
        if fetch.takes_turns()
            && !rows.lock().unwrap_or_else(|e| e.into_inner()).contains(fetch.queue)
        {
            // The queue's row is what its fetchers take turns on.
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "INSERT IGNORE INTO taskflow_queues (name, updated_at) VALUES (?, ?)",
                (fetch.queue, micros(fetch.now)),
            )
            .await
            .map_err(unavailable)?;
            rows.lock().unwrap_or_else(|e| e.into_inner()).insert(fetch.queue.to_owned());
        }
        let mut tries = 0;
        loop {
            match self.fetch_once(fetch).await {
                Err(Conflict::Lock(err)) if tries < DEADLOCK_RETRIES => {
                    tries += 1;
                    tracing::debug!(error = %err, tries, "taskflow: a fetch met another's locks; trying again");
                }
                Err(Conflict::Lock(err) | Conflict::Other(err)) => return Err(unavailable(err)),
                Err(Conflict::Store(err)) => return Err(err),
                Ok(fetched) => return Ok(fetched),
            }
        }
    }

    async fn fetch_once(&self, fetch: &Fetch<'_>) -> Result<Vec<TaskRecord>, Conflict> {
        let (now, lease, queue) = (fetch.now, fetch.lease, fetch.queue);
        let mut conn = self.conn().await.map_err(Conflict::Store)?;
        // Waiting tasks whose time has come join the available ones: a statement of its own,
        // so its locks are held for as short as can be. When it meets another instance's
        // promotion of the same rows, that one does the work.
        let promoted = conn
            .exec_drop(
                "UPDATE taskflow_tasks SET wait_until = NULL
                 WHERE queue = ? AND wait_until <= ? LIMIT 10000",
                (queue, micros(now)),
            )
            .await;
        match promoted {
            Err(err) if !is_lock_conflict(&err) => return Err(err.into()),
            _ => {}
        }
        // READ COMMITTED: no gap locks, so fetchers and enqueues on other instances never
        // wait for each other (SKIP LOCKED passes over the rows another fetch holds).
        let mut options = mysql_async::TxOpts::default();
        options.with_isolation_level(mysql_async::IsolationLevel::ReadCommitted);
        let mut tx = conn.start_transaction(options).await?;
        let mut room = fetch.limit;
        let mut running: Vec<(String, u64)> = Vec::new();
        if fetch.takes_turns() {
            // Fetchers of a queue with a global or per-task limit take turns on its row, so
            // that each counts what the others have taken.
            let _: Option<i64> = tx
                .exec_first("SELECT 1 FROM taskflow_queues WHERE name = ? FOR UPDATE", (queue,))
                .await?;
            let counted: Vec<(String, i64)> = tx
                .exec(
                    "SELECT func_name, COUNT(*) FROM taskflow_tasks
                     WHERE queue = ? AND status = 'running' GROUP BY func_name",
                    (queue,),
                )
                .await?;
            running = counted.into_iter().map(|(func, n)| (func, n.max(0) as u64)).collect();
            room = fetch.room(running.iter().map(|(_, n)| n).sum());
        }
        let tokens = match fetch.rate {
            Some(rate) => {
                let stored: Option<(Option<f64>, Option<i64>)> = tx
                    .exec_first(
                        "SELECT rate_tokens, rate_at FROM taskflow_queues WHERE name = ?",
                        (queue,),
                    )
                    .await?;
                let stored = stored.and_then(|(tokens, at)| Some((tokens?, at?)));
                Some(rate.refill(stored, micros(now)))
            }
            None => None,
        };
        room = fetch.within_rate(room, tokens);
        let mut rooms = fetch.task_room(&running);
        let mut picked: Vec<i64> = Vec::new();
        // Once; again without the capped functions now full while some of their tasks were
        // passed over and there is room (each round leases what it took, so the next one
        // does not see it).
        while picked.len() < room {
            let full = rooms.full();
            let limit = i64::try_from(room - picked.len()).unwrap_or(i64::MAX);
            let mut sql = String::from(
                "SELECT seq, func_name FROM taskflow_tasks
                 WHERE status = 'pending' AND wait_until IS NULL AND queue = ?
                    AND (scheduled_at IS NULL OR scheduled_at <= ?)
                    AND NOT EXISTS (SELECT 1 FROM taskflow_queues WHERE name = ? AND paused)",
            );
            if !full.is_empty() {
                let slots = vec!["?"; full.len()].join(", ");
                sql.push_str(&format!(" AND func_name NOT IN ({slots})"));
            }
            sql.push_str(" ORDER BY fetch_rank, seq LIMIT ? FOR UPDATE SKIP LOCKED");
            let mut values = vec![s(queue), Value::Int(micros(now)), s(queue)];
            values.extend(full.iter().map(|func| s(func)));
            values.push(Value::Int(limit));
            let candidates: Vec<(i64, String)> = tx.exec(sql, values).await?;
            let found = candidates.len();
            let (taken, passed_over) = rooms.pick(candidates);
            if !taken.is_empty() {
                let seqs = taken.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
                tx.exec_drop(
                    format!(
                        "UPDATE taskflow_tasks SET status = 'running',
                            start_time = COALESCE(start_time, ?), lease_owner = ?,
                            lease_expires_at = ?, cancel_requested = 0
                         WHERE seq IN ({seqs})"
                    ),
                    vec![
                        Value::Int(micros(now)),
                        s(&lease.owner),
                        Value::Int(micros(lease.expires_at)),
                    ],
                )
                .await?;
            }
            picked.extend(taken);
            if !passed_over || found == 0 {
                break;
            }
        }
        if picked.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        if let Some(tokens) = tokens {
            // The queue's row exists: the fetch locked it.
            tx.exec_drop(
                "UPDATE taskflow_queues SET rate_tokens = ?, rate_at = ? WHERE name = ?",
                (tokens - picked.len() as f64, micros(now), queue),
            )
            .await?;
        }
        let seqs = picked.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        let rows: Vec<mysql_async::Row> = tx
            .exec(format!("SELECT {COLUMNS}, seq FROM taskflow_tasks WHERE seq IN ({seqs})"), ())
            .await?;
        let mut fetched = Vec::with_capacity(rows.len());
        let mut moves = Moves::default();
        for cells in rows.into_iter().map(Cells::of) {
            let seq = cells.int(26, "seq").ok().flatten().unwrap_or(i64::MAX);
            match cells.record() {
                Ok(record) => {
                    let (from, to) = (("pending", record.duration), ("running", record.duration));
                    moves.changed(&record.func_name, &record.queue, from, to, 0);
                    fetched.push((seq, record));
                }
                Err(err) => {
                    // It cannot run, and dropping it would lose it: failed, with the reason.
                    tracing::error!(error = %err, "taskflow: stored task is unreadable; marking it failed");
                    let message = format!("the stored task cannot be read: {err}");
                    let now = Utc::now();
                    let (func_name, queue) =
                        (lossy(cells.values.get(1)), lossy(cells.values.get(24)));
                    let duration = number(cells.values.get(6));
                    let (from, to) = (("pending", duration), ("failed", duration));
                    moves.changed(&func_name, &queue, from, to, minute_of(now));
                    tx.exec_drop(
                        "UPDATE taskflow_tasks SET status = 'failed', end_time = ?, error = ?,
                            stacktrace = ?, lease_owner = NULL, lease_expires_at = NULL
                         WHERE id = ?",
                        vec![Value::Int(micros(now)), s(&message), s(&message), s(&cells.id)],
                    )
                    .await?;
                }
            }
        }
        super::deltas::append(&mut tx, &mut moves).await?;
        tx.commit().await?;
        for (_, record) in &fetched {
            self.running.started(record, &lease.owner);
        }
        fetched.sort_by_key(|(seq, record)| fetch_order(record, *seq));
        Ok(fetched.into_iter().map(|(_, record)| record).collect())
    }

    pub(super) async fn elect_leader(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        // One statement, atomic on the row; `owner` is assigned first, so `until` moves only
        // when this owner holds it afterwards.
        conn.exec_drop(
            "INSERT INTO taskflow_leaders (name, owner, until) VALUES (?, ?, ?)
             ON DUPLICATE KEY UPDATE
                owner = IF(owner = VALUES(owner) OR until < ?, VALUES(owner), owner),
                until = IF(owner = VALUES(owner), VALUES(until), until)",
            vec![s(name), s(owner), Value::Int(micros(until)), Value::Int(micros(now))],
        )
        .await
        .map_err(unavailable)?;
        let holder: Option<String> = conn
            .exec_first("SELECT owner FROM taskflow_leaders WHERE name = ?", (name,))
            .await
            .map_err(unavailable)?;
        Ok(holder.as_deref() == Some(owner))
    }

    pub(super) async fn resign_leader(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.affected(
            "DELETE FROM taskflow_leaders WHERE name = ? AND owner = ?",
            vec![s(name), s(owner)],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn next_waiting(
        &self,
        queue: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut conn = self.conn().await?;
        let earliest: Option<Option<i64>> = conn
            .exec_first(
                "SELECT MIN(wait_until) FROM taskflow_tasks WHERE queue = ? AND wait_until IS NOT NULL",
                (queue,),
            )
            .await
            .map_err(unavailable)?;
        Ok(earliest.flatten().and_then(DateTime::from_timestamp_micros))
    }

    pub(super) async fn release_lease(&self, lease: &Lease) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(Default::default()).await.map_err(unavailable)?;
        let held = "status = 'running' AND lease_owner = ? AND lease_expires_at = ?";
        let params = vec![s(&lease.owner), Value::Int(micros(lease.expires_at))];
        let rows: Vec<mysql_async::Row> = tx
            .exec(
                format!("SELECT {SEEN} FROM taskflow_tasks WHERE {held} FOR UPDATE"),
                params.clone(),
            )
            .await
            .map_err(unavailable)?;
        tx.exec_drop(
            format!(
                "UPDATE taskflow_tasks SET status = 'pending', lease_owner = NULL,
                    lease_expires_at = NULL WHERE {held}"
            ),
            params,
        )
        .await
        .map_err(unavailable)?;
        let mut moves = Moves::default();
        for row in &rows {
            Seen::read(&row.clone().unwrap(), 0).moved(&mut moves, "pending", 0);
        }
        super::deltas::append(&mut tx, &mut moves).await.map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(rows.len())
    }
}
