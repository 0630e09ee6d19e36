//! Run keys on MySQL / MariaDB. A unique index on the generated column `waiting_key` (the run
//! key while the task is pending and has never started, else `NULL`) keeps at most one task
//! waiting under a key; an insert under a key cancels the waiting one in the same transaction,
//! and when two instances race, the loser meets the index (or a deadlock) and tries again,
//! replacing the winner's task.

use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts, Value};

use super::deltas::{self, SEEN, Seen};
use super::{INSERT, is_duplicate, micros, unavailable};
use crate::id::TaskId;
use crate::store::StoreError;
use crate::store::counters::minute_of;
use crate::store::counters::moves::Moves;

/// How many times an insert under a run key is tried when racing inserts under the same key.
const RACES: usize = 32;

/// Cancels the task waiting under `key` (pending, never started) at `now`, recording `error`
/// when given; returns its id. Its count moves in `moves`.
pub(super) async fn cancel_waiting(
    tx: &mut mysql_async::Transaction<'_>,
    key: &str,
    now: DateTime<Utc>,
    error: Option<&str>,
    moves: &mut Moves,
) -> Result<Option<String>, mysql_async::Error> {
    let found: Option<mysql_async::Row> = tx
        .exec_first(
            format!("SELECT id, {SEEN} FROM taskflow_tasks WHERE waiting_key = ? FOR UPDATE"),
            (key,),
        )
        .await?;
    let Some(found) = found else { return Ok(None) };
    let values = found.unwrap();
    let id = deltas::lossy(values.first());
    Seen::read(&values, 1).moved(moves, "cancelled", minute_of(now));
    tx.exec_drop(
        "UPDATE taskflow_tasks SET status = 'cancelled', end_time = ?,
            error = COALESCE(?, error), wait_until = NULL
         WHERE id = ?",
        (micros(now), error, &id),
    )
    .await?;
    Ok(Some(id))
}

/// Cancels the task waiting under `key`, in a transaction of its own; returns its id.
pub(super) async fn cancel_scheduled(
    pool: &Pool,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<TaskId>, StoreError> {
    let mut tries = 0;
    let id = loop {
        let mut conn = pool.get_conn().await.map_err(unavailable)?;
        let attempt = async {
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let mut moves = Moves::default();
            let id = cancel_waiting(&mut tx, key, now, None, &mut moves).await?;
            deltas::append(&mut tx, &mut moves).await?;
            tx.commit().await.map(|()| id)
        };
        match attempt.await {
            Ok(id) => break id,
            // A deadlock's victim was rolled back: it runs again.
            Err(err)
                if tries < super::fetch::DEADLOCK_RETRIES
                    && super::fetch::is_lock_conflict(&err) =>
            {
                tries += 1
            }
            Err(err) => return Err(unavailable(err)),
        }
    };
    id.map(|id| {
        id.parse().map_err(|err| StoreError::Corrupt {
            id: id.clone(),
            reason: format!("column `id`: {err}"),
        })
    })
    .transpose()
}

fn is_contended(err: &mysql_async::Error) -> bool {
    is_duplicate(err) || super::fetch::is_lock_conflict(err)
}

/// Inserts task `id` under the run key `run_key`, cancelling the task waiting under it, in one
/// transaction. An active task holding its idempotency key `key` wins over both: then the id
/// becomes that task's alias and nothing is replaced.
pub(super) async fn insert(
    pool: &Pool,
    values: Vec<Value>,
    id: TaskId,
    key: Option<String>,
    run_key: &str,
) -> Result<(), StoreError> {
    let error = crate::store::replaced(&id);
    for _ in 0..RACES {
        let mut conn = pool.get_conn().await.map_err(unavailable)?;
        let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(unavailable)?;
        if let Some(key) = &key {
            let holder: Option<String> = tx
                .exec_first("SELECT id FROM taskflow_tasks WHERE active_key = ?", (key,))
                .await
                .map_err(unavailable)?;
            if let Some(holder) = holder {
                tx.exec_drop(
                    "INSERT IGNORE INTO taskflow_aliases (alias, task_id) VALUES (?, ?)",
                    (id.to_string(), holder),
                )
                .await
                .map_err(unavailable)?;
                return tx.commit().await.map_err(unavailable);
            }
        }
        let attempt = async {
            let (mut moves, now) = (Moves::default(), Utc::now());
            cancel_waiting(&mut tx, run_key, now, Some(&error), &mut moves).await?;
            tx.exec_drop(INSERT, values.clone()).await?;
            deltas::inserted(&mut moves, &values, now);
            deltas::append(&mut tx, &mut moves).await?;
            tx.commit().await
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            // Another instance took the run key (or the idempotency key) meanwhile, or the
            // two transactions deadlocked: try again, from a fresh transaction.
            Err(err) if is_contended(&err) => continue,
            Err(err) => return Err(unavailable(err)),
        }
    }
    Err(StoreError::Unavailable(format!(
        "mysql: task {id}: inserts under its run key kept racing; enqueue it again"
    )))
}
