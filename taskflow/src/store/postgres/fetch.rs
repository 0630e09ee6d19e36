//! Fetching available tasks and releasing a lost fetch: one statement picks a queue's due
//! tasks through the `taskflow_tasks_available` index with `FOR UPDATE SKIP LOCKED` (fetchers
//! on other instances take other rows, never wait) and leases them, unless the queue is
//! paused. A queue with a global limit is fetched under a transaction-scoped advisory lock
//! of its own, so that the running tasks counted and the ones claimed add up for every
//! instance.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

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
        let rows = if fetch.global_limit.is_some() {
            // Fetchers of a globally limited queue take turns, so that each counts what the
            // others have taken: the count and the claim are one step for all of them.
            let tx = client.transaction().await.map_err(unavailable)?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('taskflow.queue.' || $1, 0))",
                &[&fetch.queue],
            )
            .await
            .map_err(unavailable)?;
            let running: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM taskflow_tasks WHERE queue = $1 AND status = 'running'",
                    &[&fetch.queue],
                )
                .await
                .map_err(unavailable)?
                .get(0);
            let rows = claim(&tx, fetch, fetch.room(running.max(0) as u64)).await?;
            tx.commit().await.map_err(unavailable)?;
            rows
        } else {
            claim(&client, fetch, fetch.limit).await?
        };
        drop(client);
        let mut fetched = Vec::with_capacity(rows.len());
        for found in &rows {
            match row::decode(found) {
                Ok(record) => fetched.push((found.get::<_, i64>(25), record)),
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
        self.execute(
            "UPDATE taskflow_tasks SET status = 'failed', end_time = $2, error = $3,
                stacktrace = $3, lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
            &[&id, &Utc::now(), &message],
        )
        .await?;
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
        let released = self
            .execute(
                "UPDATE taskflow_tasks SET status = 'pending', lease_owner = NULL,
                    lease_expires_at = NULL
                 WHERE status = 'running' AND lease_owner = $1 AND lease_expires_at = $2",
                &[&owner, &lease.expires_at],
            )
            .await?;
        Ok(released as usize)
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
    let sql = format!(
        "WITH picked AS (
            SELECT id AS picked_id FROM taskflow_tasks
            WHERE queue = $5 AND status = 'pending' AND wait_until IS NULL
                AND NOT EXISTS (SELECT 1 FROM taskflow_queues WHERE name = $5 AND paused)
            ORDER BY priority DESC, COALESCE(scheduled_at, created_at), seq
            LIMIT $2 FOR UPDATE SKIP LOCKED)
         UPDATE taskflow_tasks SET status = 'running', start_time = COALESCE(start_time, $1),
            lease_owner = $3, lease_expires_at = $4
         FROM picked WHERE id = picked.picked_id
         RETURNING {COLUMNS}, seq"
    );
    let owner: &str = &fetch.lease.owner;
    let limit = i64::try_from(room).unwrap_or(i64::MAX);
    let statement = client.prepare_cached(&sql).await.map_err(unavailable)?;
    client
        .query(&statement, &[&fetch.now, &limit, &owner, &fetch.lease.expires_at, &fetch.queue])
        .await
        .map_err(unavailable)
}
