//! Run keys on PostgreSQL. A partial unique index (`taskflow_tasks_waiting_key`) keeps at most
//! one task waiting under a key; an insert under a key cancels the waiting one in the same
//! transaction, and when two instances race, the loser's insert meets the index, and it tries
//! again, replacing the winner's task.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::deltas::{counted, was};
use super::inserts::insert_sql;
use super::row::Params;
use super::{ACTIVE_KEY, COLUMNS, pool_error, unavailable};
use crate::id::TaskId;
use crate::store::StoreError;

/// How many times an insert under a run key is tried when racing inserts under the same key.
const RACES: usize = 32;

/// Cancels the task waiting under `key` (pending, never started) at `now`, recording `error`
/// when given; returns its id.
pub(super) async fn cancel_waiting(
    client: &impl GenericClient,
    key: &str,
    now: DateTime<Utc>,
    error: Option<&str>,
) -> Result<Option<uuid::Uuid>, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let cancel = format!(
            "UPDATE taskflow_tasks SET status = 'cancelled', end_time = $2,
                error = COALESCE($3, error), wait_until = NULL
             WHERE run_key = $1 AND status = 'pending' AND start_time IS NULL
             RETURNING {COLUMNS}, {}",
            was("pending")
        );
        counted("", &cancel, "SELECT id FROM changed")
    });
    let row = client.query_opt(SQL.as_str(), &[&key, &now, &error]).await.map_err(unavailable)?;
    Ok(row.map(|row| row.get(0)))
}

/// Inserts task `id` under the run key `run_key`, cancelling the task waiting under it, in one
/// transaction. An active task holding its idempotency key `key` wins over both: then the id
/// becomes that task's alias and nothing is replaced.
pub(super) async fn insert(
    pool: &Pool,
    params: &Params,
    id: uuid::Uuid,
    key: Option<String>,
    run_key: &str,
) -> Result<(), StoreError> {
    let error = crate::store::replaced(&TaskId::from(id));
    let statement = insert_sql();
    for _ in 0..RACES {
        let mut client = pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(unavailable)?;
        if let Some(key) = &key {
            let sql = format!(
                "SELECT id FROM taskflow_tasks WHERE idempotency_key = $1 AND {ACTIVE_KEY}"
            );
            if let Some(holder) = tx.query_opt(&sql, &[key]).await.map_err(unavailable)? {
                let holder: uuid::Uuid = holder.get(0);
                tx.execute(
                    "INSERT INTO taskflow_aliases (alias, task_id) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[&id, &holder],
                )
                .await
                .map_err(unavailable)?;
                return tx.commit().await.map_err(unavailable);
            }
        }
        cancel_waiting(&*tx, run_key, Utc::now(), Some(&error)).await?;
        match tx.query_opt(statement, &params.refs()).await {
            Ok(Some(_)) => return tx.commit().await.map_err(unavailable),
            // A task took the idempotency key meanwhile: look again.
            Ok(None) => continue,
            // Another instance stored a task under the run key meanwhile: replace it.
            Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => continue,
            Err(err) => return Err(unavailable(err)),
        }
    }
    Err(StoreError::Unavailable(format!(
        "postgres: task {id}: inserts under its run key kept racing; enqueue it again"
    )))
}
