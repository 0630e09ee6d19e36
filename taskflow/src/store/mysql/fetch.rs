//! Fetching available tasks and releasing a lost fetch: in one transaction, waiting tasks now
//! due are made available (through `taskflow_tasks_waiting`), the first available ones are
//! picked through `taskflow_tasks_available` with `FOR UPDATE SKIP LOCKED` (other instances'
//! fetchers take other rows, never wait), leased, and read.

use chrono::{DateTime, Utc};
use mysql_async::Value;
use mysql_async::prelude::Queryable;

use super::{COLUMNS, Cells, MysqlStore, micros, s, unavailable};
use crate::record::TaskRecord;
use crate::store::{Lease, StoreError, fetch_order};

impl MysqlStore {
    pub(super) async fn fetch_available(
        &self,
        limit: usize,
        now: DateTime<Utc>,
        lease: &Lease,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(Default::default()).await.map_err(unavailable)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Waiting tasks whose time has come join the available ones.
        tx.exec_drop(
            "UPDATE taskflow_tasks SET wait_until = NULL WHERE wait_until <= ?",
            (micros(now),),
        )
        .await
        .map_err(unavailable)?;
        let picked: Vec<i64> = tx
            .exec(
                "SELECT seq FROM taskflow_tasks WHERE status = 'pending' AND wait_until IS NULL
                 ORDER BY priority DESC, due_at, seq LIMIT ? FOR UPDATE SKIP LOCKED",
                (limit,),
            )
            .await
            .map_err(unavailable)?;
        if picked.is_empty() {
            tx.commit().await.map_err(unavailable)?;
            return Ok(Vec::new());
        }
        let seqs = picked.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        tx.exec_drop(
            format!(
                "UPDATE taskflow_tasks SET status = 'running', start_time = COALESCE(start_time, ?),
                    lease_owner = ?, lease_expires_at = ?
                 WHERE seq IN ({seqs})"
            ),
            vec![Value::Int(micros(now)), s(&lease.owner), Value::Int(micros(lease.expires_at))],
        )
        .await
        .map_err(unavailable)?;
        let rows: Vec<mysql_async::Row> = tx
            .exec(format!("SELECT {COLUMNS} FROM taskflow_tasks WHERE seq IN ({seqs})"), ())
            .await
            .map_err(unavailable)?;
        let mut fetched = Vec::with_capacity(rows.len());
        for cells in rows.into_iter().map(Cells::of) {
            match cells.record() {
                Ok(record) => fetched.push(record),
                Err(err) => {
                    // It cannot run, and dropping it would lose it: failed, with the reason.
                    tracing::error!(error = %err, "taskflow: stored task is unreadable; marking it failed");
                    let message = format!("the stored task cannot be read: {err}");
                    tx.exec_drop(
                        "UPDATE taskflow_tasks SET status = 'failed', end_time = ?, error = ?,
                            stacktrace = ?, lease_owner = NULL, lease_expires_at = NULL
                         WHERE id = ?",
                        vec![
                            Value::Int(micros(Utc::now())),
                            s(&message),
                            s(&message),
                            s(&cells.id),
                        ],
                    )
                    .await
                    .map_err(unavailable)?;
                }
            }
        }
        tx.commit().await.map_err(unavailable)?;
        fetched.sort_by_key(fetch_order);
        Ok(fetched)
    }

    pub(super) async fn release_lease(&self, lease: &Lease) -> Result<usize, StoreError> {
        let released = self
            .affected(
                "UPDATE taskflow_tasks SET status = 'pending', lease_owner = NULL,
                    lease_expires_at = NULL
                 WHERE status = 'running' AND lease_owner = ? AND lease_expires_at = ?",
                vec![s(&lease.owner), Value::Int(micros(lease.expires_at))],
            )
            .await?;
        Ok(released as usize)
    }
}
