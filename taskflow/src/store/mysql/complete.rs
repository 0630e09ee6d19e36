//! Fenced changes to running tasks on MySQL / MariaDB: one statement per change, and a batch
//! of them in one transaction (one commit for the lot).

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts, Value};

use super::{micros, s, text, unavailable};
use crate::id::TaskId;
use crate::store::{Change, Lease, StoreError, Transition};

const FINISHED: &str = "UPDATE taskflow_tasks SET status = ?, end_time = ?,
    duration = (? - start_time) / 1000000.0, retries_used = ?, result = ?,
    error = IF(?, ?, error), stacktrace = IF(?, ?, stacktrace),
    lease_owner = NULL, lease_expires_at = NULL
    WHERE id = ? AND status = 'running' AND lease_owner = ?";

const RESCHEDULE: &str = "UPDATE taskflow_tasks SET status = 'pending', scheduled_at = ?,
    wait_until = scheduled_at, retries_used = ?, error = IF(?, ?, error),
    stacktrace = IF(?, ?, stacktrace), lease_owner = NULL, lease_expires_at = NULL
    WHERE id = ? AND status = 'running' AND lease_owner = ?";

const REQUEUE: &str = "UPDATE taskflow_tasks SET status = 'pending', lease_owner = NULL,
    lease_expires_at = NULL WHERE id = ? AND status = 'running' AND lease_owner = ?";

/// The statement that applies `change` to task `id` if `lease` still holds it, and its
/// values.
pub(super) fn statement(
    id: &TaskId,
    lease: &Lease,
    change: Transition,
) -> (&'static str, Vec<Value>) {
    let (sql, mut values) = match change {
        Transition::Finished { status, end_time, retries_used, result, error, stacktrace } => {
            let replaces = Value::Int(error.is_some().into());
            let values = vec![
                s(status.as_str()),
                Value::Int(micros(end_time)),
                Value::Int(micros(end_time)),
                Value::Int(retries_used.into()),
                text(result.map(|r| r.to_string())),
                replaces.clone(),
                text(error),
                replaces,
                text(stacktrace),
            ];
            (FINISHED, values)
        }
        Transition::Reschedule { due, retries_used, error, stacktrace } => {
            let replaces = Value::Int(error.is_some().into());
            let values = vec![
                Value::Int(micros(due)),
                Value::Int(retries_used.into()),
                replaces.clone(),
                text(error),
                replaces,
                text(stacktrace),
            ];
            (RESCHEDULE, values)
        }
        Transition::Requeue => (REQUEUE, Vec::new()),
    };
    values.push(s(&id.to_string()));
    values.push(s(&lease.owner));
    (sql, values)
}

/// Applies `changes` in one transaction; every change gets the error when it fails (nothing
/// was applied).
pub(super) async fn many(pool: &Pool, changes: Vec<Change>) -> Vec<Result<bool, StoreError>> {
    let count = changes.len();
    match together(pool, changes).await {
        Ok(applied) => applied.into_iter().map(Ok).collect(),
        Err(err) => vec![Err(err); count],
    }
}

async fn together(pool: &Pool, changes: Vec<Change>) -> Result<Vec<bool>, StoreError> {
    let mut conn = pool.get_conn().await.map_err(unavailable)?;
    let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(unavailable)?;
    let mut applied = Vec::with_capacity(changes.len());
    for Change { id, lease, transition } in changes {
        let (sql, values) = statement(&id, &lease, transition);
        tx.exec_drop(sql, values).await.map_err(unavailable)?; // dropping `tx` rolls back
        applied.push(tx.affected_rows() > 0);
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(applied)
}
