//! Run keys on SQLite: the task waiting under a key (pending, never started) is cancelled in
//! the same savepoint of the writer's transaction as the insert of its replacement, so the
//! two happen together or not at all.

use rusqlite::{OptionalExtension, params};

use super::counters::{Returned, minute_at, returned};
use super::writer::{Tx, unavailable};
use crate::id::TaskId;
use crate::store::StoreError;

/// A task cancelled because it waited under a run key: its id and its idempotency key.
pub(super) type Cancelled = (TaskId, Option<String>);

/// Cancels the task waiting under `key` at `now` (micros), recording `error` when given.
pub(super) fn cancel_waiting(
    conn: &Tx<'_>,
    key: &str,
    now: i64,
    error: Option<&str>,
) -> Result<Option<Cancelled>, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "UPDATE tasks SET status = 'cancelled', end_time = ?2, error = COALESCE(?3, error),
                wait_until = NULL
             WHERE run_key = ?1 AND status = 'pending' AND start_time IS NULL
             RETURNING id, idempotency_key, func_name, queue, duration",
        )
        .map_err(unavailable)?;
    let found: Option<(String, Option<String>, Returned)> = statement
        .query_row(params![key, now, error], |row| {
            Ok((row.get(0)?, row.get(1)?, returned(row, 2)?))
        })
        .optional()
        .map_err(unavailable)?;
    let Some((id, idempotency_key, counted)) = found else { return Ok(None) };
    counted.moved(&mut conn.moves(), "pending", "cancelled", minute_at(now));
    let id = id.parse().map_err(|err| StoreError::Corrupt {
        id: id.clone(),
        reason: format!("column `id`: {err}"),
    })?;
    Ok(Some((id, idempotency_key)))
}

/// Runs `insert` after cancelling the task waiting under `key` (replaced by `by`), both in
/// one savepoint: when the insert fails, the cancellation is undone with it.
pub(super) fn replace(
    conn: &Tx<'_>,
    key: &str,
    by: &TaskId,
    now: i64,
    insert: impl FnOnce() -> Result<(), StoreError>,
) -> Result<Option<Cancelled>, StoreError> {
    conn.execute_batch("SAVEPOINT run_key").map_err(unavailable)?;
    let counted = conn.moves().clone();
    let done = cancel_waiting(conn, key, now, Some(&crate::store::replaced(by)))
        .and_then(|cancelled| insert().map(|()| cancelled));
    let end = if done.is_ok() { "RELEASE run_key" } else { "ROLLBACK TO run_key; RELEASE run_key" };
    // Outside a transaction (BEGIN failed), the savepoint was the transaction: it still ends.
    let ended = conn.execute_batch(end).map_err(unavailable);
    if done.is_err() {
        *conn.moves() = counted;
    }
    let cancelled = done?;
    ended?;
    Ok(cancelled)
}
