//! Fenced changes to running tasks on MySQL / MariaDB: one statement per change, and a batch
//! of them in one transaction (one commit for the lot).

use std::collections::HashMap;

use chrono::Utc;
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts, Value};

use super::deltas::{self, SEEN, Seen};
use super::running::{Known, RunningRows};
use super::{micros, s, text, unavailable};
use crate::id::TaskId;
use crate::store::counters::minute_of;
use crate::store::counters::moves::Moves;
use crate::store::{Change, Lease, StoreError, Transition};

const FINISHED: &str = "UPDATE taskflow_tasks SET status = ?, end_time = ?,
    duration = ?, retries_used = ?, result = ?,
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
/// values; a run that ends took `run` seconds (from its start as stored).
pub(super) fn statement(
    id: &TaskId,
    lease: &Lease,
    change: Transition,
    run: Option<f64>,
) -> (&'static str, Vec<Value>) {
    let (sql, mut values) = match change {
        Transition::Finished { status, end_time, retries_used, result, error, stacktrace } => {
            let replaces = Value::Int(error.is_some().into());
            let values = vec![
                s(status.as_str()),
                Value::Int(micros(end_time)),
                Value::from(run),
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
/// was applied). What the counters need of each task comes from `running` (its fetch), or
/// from one locking read of the batch's other rows.
pub(super) async fn many(
    pool: &Pool,
    running: &RunningRows,
    changes: Vec<Change>,
) -> Vec<Result<bool, StoreError>> {
    let count = changes.len();
    let known: Vec<Option<Known>> = changes.iter().map(|change| running.take(&change.id)).collect();
    match together(pool, changes, known).await {
        Ok(applied) => applied.into_iter().map(Ok).collect(),
        Err(err) => vec![Err(err); count],
    }
}

async fn together(
    pool: &Pool,
    changes: Vec<Change>,
    mut known: Vec<Option<Known>>,
) -> Result<Vec<bool>, StoreError> {
    let mut conn = pool.get_conn().await.map_err(unavailable)?;
    let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(unavailable)?;
    let unknown: Vec<Value> = changes
        .iter()
        .zip(&known)
        .filter(|(_, known)| known.is_none())
        .map(|(change, _)| s(&change.id.to_string()))
        .collect();
    let mut read: HashMap<String, Known> = HashMap::new();
    if !unknown.is_empty() {
        // The rows no fetch of this store left word of, locked: one read for the lot.
        let slots = vec!["?"; unknown.len()].join(", ");
        let rows: Vec<mysql_async::Row> = tx
            .exec(
                format!(
                    "SELECT id, lease_owner, start_time, {SEEN} FROM taskflow_tasks
                     WHERE id IN ({slots}) AND status = 'running' FOR UPDATE"
                ),
                unknown,
            )
            .await
            .map_err(unavailable)?;
        for row in rows {
            let values = row.unwrap();
            let known = Known {
                owner: deltas::lossy(values.get(1)),
                start: deltas::number(values.get(2)),
                seen: Seen::read(&values, 3),
            };
            read.insert(deltas::lossy(values.first()), known);
        }
    }
    let now = Utc::now();
    let mut moves = Moves::default();
    let mut applied = Vec::with_capacity(changes.len());
    for (Change { id, lease, transition }, known) in changes.into_iter().zip(known.iter_mut()) {
        let Some(Known { owner, start, seen: before }) =
            known.take().or_else(|| read.remove(&id.to_string()))
        else {
            applied.push(false);
            continue;
        };
        if owner != lease.owner.as_ref() {
            applied.push(false);
            continue;
        }
        let (after, duration, end, retries) = match &transition {
            Transition::Finished { status, end_time, retries_used, .. } => {
                let run = start.map(|start| (micros(*end_time) as f64 - start) / 1_000_000.0);
                (status.as_str(), run, Some(*end_time), Some(*retries_used))
            }
            Transition::Reschedule { retries_used, .. } => {
                ("pending", before.duration, None, Some(*retries_used))
            }
            Transition::Requeue => ("pending", before.duration, None, None),
        };
        let (sql, values) = statement(&id, &lease, transition, duration);
        tx.exec_drop(sql, values).await.map_err(unavailable)?; // dropping `tx` rolls back
        let changed = tx.affected_rows() > 0;
        if changed {
            let (from, to) = ((before.status.as_str(), before.duration), (after, duration));
            let ended = minute_of(end.unwrap_or(now));
            moves.changed(&before.func_name, &before.queue, from, to, ended);
            if let Some(retries) = retries {
                let more = i64::from(retries) - before.retries_used;
                moves.retried(&before.func_name, &before.queue, more, minute_of(now));
            }
        }
        applied.push(changed);
    }
    deltas::append(&mut tx, &mut moves).await.map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    Ok(applied)
}
