//! Fetching available tasks and releasing a lost fetch: one statement picks the due tasks
//! through the `taskflow_tasks_available` index with `FOR UPDATE SKIP LOCKED` (fetchers on
//! other instances take other rows, never wait) and leases them.

use chrono::{DateTime, Utc};

use super::PostgresStore;
use super::row::{self, COLUMNS};
use crate::record::TaskRecord;
use crate::store::{Lease, StoreError, fetch_order};

impl PostgresStore {
    pub(super) async fn fetch_available(
        &self,
        limit: usize,
        now: DateTime<Utc>,
        lease: &Lease,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Waiting tasks whose time has come join the available ones.
        // SKIP LOCKED: rows another instance is promoting are left to it, so promotions
        // never wait for (nor deadlock with) each other.
        self.execute(
            "UPDATE taskflow_tasks SET wait_until = NULL WHERE id IN (
                SELECT id FROM taskflow_tasks WHERE wait_until IS NOT NULL AND wait_until <= $1
                ORDER BY wait_until LIMIT 10000 FOR UPDATE SKIP LOCKED)",
            &[&now],
        )
        .await?;
        let sql = format!(
            "WITH picked AS (
                SELECT id AS picked_id FROM taskflow_tasks
                WHERE status = 'pending' AND wait_until IS NULL
                ORDER BY priority DESC, COALESCE(scheduled_at, created_at), seq
                LIMIT $2 FOR UPDATE SKIP LOCKED)
             UPDATE taskflow_tasks SET status = 'running', start_time = COALESCE(start_time, $1),
                lease_owner = $3, lease_expires_at = $4
             FROM picked WHERE id = picked.picked_id
             RETURNING {COLUMNS}, seq"
        );
        let owner: &str = &lease.owner;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(&sql, &[&now, &limit, &owner, &lease.expires_at]).await?;
        let mut fetched = Vec::with_capacity(rows.len());
        for found in &rows {
            match row::decode(found) {
                Ok(record) => fetched.push((found.get::<_, i64>(24), record)),
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

    pub(super) async fn next_waiting(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rows = self
            .query("SELECT MIN(wait_until) FROM taskflow_tasks WHERE wait_until IS NOT NULL", &[])
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
