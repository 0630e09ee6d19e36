//! Fenced changes to running tasks on PostgreSQL: one statement per change, and a batch of
//! them pipelined in one transaction (one commit for the lot).

use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;

use super::{pool_error, unavailable};
use crate::id::TaskId;
use crate::store::{Change, Lease, StoreError, Transition};

/// A statement's owned parameters.
pub(super) type Params = Vec<Box<dyn ToSql + Sync + Send>>;

const FINISHED: &str = "UPDATE taskflow_tasks SET status = $3, end_time = $4,
    duration = EXTRACT(EPOCH FROM ($4 - start_time))::DOUBLE PRECISION,
    retries_used = $5, result = $6,
    stacktrace = CASE WHEN $7::TEXT IS NULL THEN stacktrace ELSE $8 END,
    error = COALESCE($7, error), lease_owner = NULL, lease_expires_at = NULL
    WHERE id = $1 AND status = 'running' AND lease_owner = $2";

const RESCHEDULE: &str = "UPDATE taskflow_tasks SET status = 'pending', scheduled_at = $3,
    wait_until = $3, retries_used = $4,
    stacktrace = CASE WHEN $5::TEXT IS NULL THEN stacktrace ELSE $6 END,
    error = COALESCE($5, error), lease_owner = NULL, lease_expires_at = NULL
    WHERE id = $1 AND status = 'running' AND lease_owner = $2";

const REQUEUE: &str = "UPDATE taskflow_tasks SET status = 'pending', lease_owner = NULL,
    lease_expires_at = NULL WHERE id = $1 AND status = 'running' AND lease_owner = $2";

/// The statement that applies `change` to task `id` if `lease` still holds it, and its
/// parameters.
pub(super) fn statement(id: &TaskId, lease: &Lease, change: Transition) -> (&'static str, Params) {
    let mut params: Params = vec![Box::new(*id.as_uuid()), Box::new(lease.owner.to_string())];
    let sql = match change {
        Transition::Finished { status, end_time, retries_used, result, error, stacktrace } => {
            params.push(Box::new(status.as_str()));
            params.push(Box::new(end_time));
            params.push(Box::new(retries_used as i32));
            params.push(Box::new(result));
            params.push(Box::new(error));
            params.push(Box::new(stacktrace));
            FINISHED
        }
        Transition::Reschedule { due, retries_used, error, stacktrace } => {
            params.push(Box::new(due));
            params.push(Box::new(retries_used as i32));
            params.push(Box::new(error));
            params.push(Box::new(stacktrace));
            RESCHEDULE
        }
        Transition::Requeue => REQUEUE,
    };
    (sql, params)
}

/// `params` as the driver takes them.
pub(super) fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

/// Applies `changes` in one transaction, their statements pipelined; every change gets the
/// error when it fails (nothing was applied).
pub(super) async fn many(pool: &Pool, changes: Vec<Change>) -> Vec<Result<bool, StoreError>> {
    let count = changes.len();
    match together(pool, changes).await {
        Ok(applied) => applied.into_iter().map(Ok).collect(),
        Err(err) => vec![Err(err); count],
    }
}

async fn together(pool: &Pool, changes: Vec<Change>) -> Result<Vec<bool>, StoreError> {
    let statements: Vec<(&str, Params)> = changes
        .into_iter()
        .map(|Change { id, lease, transition }| statement(&id, &lease, transition))
        .collect();
    let mut client = pool.get().await.map_err(pool_error)?;
    let mut prepared = Vec::with_capacity(statements.len());
    for (sql, _) in &statements {
        prepared.push(client.prepare_cached(sql).await.map_err(unavailable)?);
    }
    let tx = client.transaction().await.map_err(unavailable)?;
    let params: Vec<_> = statements.iter().map(|(_, params)| refs(params)).collect();
    let counts = futures_util::future::join_all(
        prepared.iter().zip(&params).map(|(statement, params)| tx.execute(statement, params)),
    )
    .await;
    let applied = counts
        .into_iter()
        .map(|count| count.map(|n| n > 0).map_err(unavailable))
        .collect::<Result<Vec<bool>, _>>()?;
    tx.commit().await.map_err(unavailable)?;
    Ok(applied)
}
