//! Fetching available tasks and releasing a lost fetch: one statement picks a queue's due
//! tasks through the `taskflow_tasks_available` index with `FOR UPDATE SKIP LOCKED` (fetchers
//! on other instances take other rows, never wait) and leases them, unless the queue is
//! paused. A queue with a global limit is fetched under a transaction-scoped advisory lock
//! of its own, so that the running tasks counted and the ones claimed add up for every
//! instance.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::deltas::{counted, moved, was};
use super::row::{self, COLUMNS};
use super::{PostgresStore, unavailable};
use crate::record::TaskRecord;
use crate::store::{Fetch, Lease, StoreError, fetch_order};

/// Makes the waiting tasks of queue `$2` due by `$1` available (a bounded batch per fetch).
const PROMOTE: &str = "UPDATE taskflow_tasks SET wait_until = NULL WHERE id IN (
    SELECT id FROM taskflow_tasks WHERE queue = $2 AND wait_until IS NOT NULL AND wait_until <= $1
    ORDER BY wait_until LIMIT 10000 FOR UPDATE SKIP LOCKED)";

impl PostgresStore {
    pub(super) async fn fetch_available(
        &self,
        fetch: &Fetch<'_>,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if fetch.limit == 0 {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let rows = if fetch.takes_turns() {
            // Fetchers of a globally limited queue take turns, so that each counts what the
            // others have taken: the count and the claim are one step for all of them.
            let tx = client.transaction().await.map_err(unavailable)?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('taskflow.queue.' || $1, 0))",
                &[&fetch.queue],
            )
            .await
            .map_err(unavailable)?;
            let running: Vec<(String, u64)> = tx
                .query(
                    "SELECT func_name, COUNT(*) FROM taskflow_tasks
                     WHERE queue = $1 AND status = 'running' GROUP BY func_name",
                    &[&fetch.queue],
                )
                .await
                .map_err(unavailable)?
                .iter()
                .map(|row| (row.get(0), row.get::<_, i64>(1).max(0) as u64))
                .collect();
            let now_us = fetch.now.timestamp_micros();
            let tokens = match fetch.rate {
                Some(rate) => {
                    let stored = tx
                        .query_opt(
                            "SELECT rate_tokens, rate_at FROM taskflow_queues WHERE name = $1",
                            &[&fetch.queue],
                        )
                        .await
                        .map_err(unavailable)?
                        .and_then(|row| {
                            Some((row.get::<_, Option<f64>>(0)?, row.get::<_, Option<i64>>(1)?))
                        });
                    Some(rate.refill(stored, now_us))
                }
                None => None,
            };
            let room = fetch.within_rate(fetch.room(running.iter().map(|(_, n)| n).sum()), tokens);
            let rows = if fetch.task_limits.is_empty() {
                claim(&tx, fetch, room).await?
            } else {
                claim_capped(&tx, fetch, room, &running).await?
            };
            if let Some(tokens) = tokens
                && !rows.is_empty()
            {
                tx.execute(
                    "INSERT INTO taskflow_queues (name, updated_at, rate_tokens, rate_at)
                     VALUES ($1, now(), $2, $3)
                     ON CONFLICT (name) DO UPDATE
                        SET rate_tokens = EXCLUDED.rate_tokens, rate_at = EXCLUDED.rate_at",
                    &[&fetch.queue, &(tokens - rows.len() as f64), &now_us],
                )
                .await
                .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)?;
            rows
        } else {
            claim(&client, fetch, fetch.limit).await?
        };
        drop(client);
        let mut fetched = Vec::with_capacity(rows.len());
        for found in &rows {
            match row::decode(found) {
                Ok(record) => fetched.push((found.get::<_, i64>(26), record)),
                Err(err) => self.fail_unreadable(found, &err).await?,
            }
        }
        // RETURNING gives rows in no particular order.
        fetched.sort_by_key(|(seq, record)| fetch_order(record, *seq));
        Ok(fetched.into_iter().map(|(_, record)| record).collect())
    }

    /// Fails a leased task whose row cannot be read: it cannot run, and dropping it would
    /// lose it; its stored values stay for a look.
    async fn fail_unreadable(
        &self,
        found: &tokio_postgres::Row,
        err: &StoreError,
    ) -> Result<(), StoreError> {
        tracing::error!(error = %err, "taskflow: stored task is unreadable; marking it failed");
        let id: uuid::Uuid = found.get(0);
        let message = format!("the stored task cannot be read: {err}");
        static SQL: LazyLock<String> = LazyLock::new(|| {
            let fail = format!(
                "UPDATE taskflow_tasks SET status = 'failed', end_time = $2, error = $3,
                    stacktrace = $3, lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = $1 AND status = 'running' RETURNING {COLUMNS}, {}",
                was("running")
            );
            counted("", &fail, "SELECT id FROM changed")
        });
        self.execute(SQL.as_str(), &[&id, &Utc::now(), &message]).await?;
        Ok(())
    }

    pub(super) async fn elect_leader(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "INSERT INTO taskflow_leaders (name, owner, until) VALUES ($1, $2, $4)
                 ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until
                 WHERE taskflow_leaders.owner = EXCLUDED.owner OR taskflow_leaders.until < $3
                 RETURNING owner",
                &[&name, &owner, &now, &until],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    pub(super) async fn resign_leader(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM taskflow_leaders WHERE name = $1 AND owner = $2",
            &[&name, &owner],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn next_waiting(
        &self,
        queue: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rows = self
            .query(
                "SELECT MIN(wait_until) FROM taskflow_tasks
                 WHERE queue = $1 AND wait_until IS NOT NULL",
                &[&queue],
            )
            .await?;
        // A time out of chrono's range is a damaged row: no due time to sleep until.
        Ok(rows.first().and_then(|row| row.try_get(0).ok()).flatten())
    }

    pub(super) async fn release_lease(&self, lease: &Lease) -> Result<usize, StoreError> {
        let owner: &str = &lease.owner;
        static SQL: LazyLock<String> = LazyLock::new(|| {
            let release = "UPDATE taskflow_tasks SET status = 'pending', lease_owner = NULL,
                    lease_expires_at = NULL
                 WHERE status = 'running' AND lease_owner = $1 AND lease_expires_at = $2
                 RETURNING id, func_name, queue, duration";
            moved("", release, "running", "pending", "SELECT id FROM changed")
        });
        let released = self.query(SQL.as_str(), &[&owner, &lease.expires_at]).await?;
        Ok(released.len())
    }
}

/// Promotes the queue's waiting tasks now due, then leases up to `room` available ones,
/// unless the queue is paused.
async fn claim(
    client: &impl GenericClient,
    fetch: &Fetch<'_>,
    room: usize,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    if room == 0 {
        return Ok(Vec::new());
    }
    // SKIP LOCKED: rows another instance is promoting are left to it, so promotions never
    // wait for (nor deadlock with) each other.
    let promote = client.prepare_cached(PROMOTE).await.map_err(unavailable)?;
    client.execute(&promote, &[&fetch.now, &fetch.queue]).await.map_err(unavailable)?;
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let lease = format!(
            "UPDATE taskflow_tasks SET status = 'running', start_time = COALESCE(start_time, $1),
                lease_owner = $3, lease_expires_at = $4, cancel_requested = FALSE
             FROM picked WHERE id = picked.picked_id
             RETURNING {COLUMNS}, seq"
        );
        moved(
            "picked AS (
                SELECT id AS picked_id FROM taskflow_tasks
                WHERE queue = $5 AND status = 'pending' AND wait_until IS NULL
                    AND (scheduled_at IS NULL OR scheduled_at <= $1)
                    AND NOT EXISTS (SELECT 1 FROM taskflow_queues WHERE name = $5 AND paused)
                ORDER BY taskflow_rank(COALESCE(scheduled_at, created_at), priority), seq
                LIMIT $2 FOR UPDATE SKIP LOCKED), ",
            &lease,
            "pending",
            "running",
            &format!("SELECT {COLUMNS}, seq FROM changed"),
        )
    });
    let sql = SQL.as_str();
    let owner: &str = &fetch.lease.owner;
    let limit = i64::try_from(room).unwrap_or(i64::MAX);
    let statement = client.prepare_cached(sql).await.map_err(unavailable)?;
    client
        .query(&statement, &[&fetch.now, &limit, &owner, &fetch.lease.expires_at, &fetch.queue])
        .await
        .map_err(unavailable)
}

/// Like [`claim`], for a fetch with capped functions: candidates are picked in fetch order,
/// a capped function's beyond its room passed over (they stay pending), and looked for again
/// without the functions now full while there is room. Runs in the fetch's transaction,
/// under the queue's lock.
async fn claim_capped(
    tx: &deadpool_postgres::Transaction<'_>,
    fetch: &Fetch<'_>,
    room: usize,
    running: &[(String, u64)],
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    if room == 0 {
        return Ok(Vec::new());
    }
    let promote = tx.prepare_cached(PROMOTE).await.map_err(unavailable)?;
    tx.execute(&promote, &[&fetch.now, &fetch.queue]).await.map_err(unavailable)?;
    let pick = tx
        .prepare_cached(
            "SELECT id, func_name FROM taskflow_tasks
             WHERE queue = $1 AND status = 'pending' AND wait_until IS NULL
                AND (scheduled_at IS NULL OR scheduled_at <= $4)
                AND NOT (func_name = ANY($2))
                AND NOT EXISTS (SELECT 1 FROM taskflow_queues WHERE name = $1 AND paused)
             ORDER BY taskflow_rank(COALESCE(scheduled_at, created_at), priority), seq
             LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .await
        .map_err(unavailable)?;
    let lease = tx
        .prepare_cached(&moved(
            "",
            &format!(
                "UPDATE taskflow_tasks SET status = 'running',
                    start_time = COALESCE(start_time, $1), lease_owner = $2,
                    lease_expires_at = $3, cancel_requested = FALSE
                 WHERE id = ANY($4) RETURNING {COLUMNS}, seq"
            ),
            "pending",
            "running",
            &format!("SELECT {COLUMNS}, seq FROM changed"),
        ))
        .await
        .map_err(unavailable)?;
    let owner: &str = &fetch.lease.owner;
    let mut rooms = fetch.task_room(running);
    let mut claimed = Vec::new();
    loop {
        let want = i64::try_from(room - claimed.len()).unwrap_or(i64::MAX);
        let full = rooms.full();
        let candidates: Vec<(uuid::Uuid, String)> = tx
            .query(&pick, &[&fetch.queue, &full, &want, &fetch.now])
            .await
            .map_err(unavailable)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let found = candidates.len();
        let (ids, passed_over) = rooms.pick(candidates);
        let rows = tx
            .query(&lease, &[&fetch.now, &owner, &fetch.lease.expires_at, &ids])
            .await
            .map_err(unavailable)?;
        claimed.extend(rows);
        if !passed_over || found == 0 || claimed.len() >= room {
            return Ok(claimed);
        }
    }
}
