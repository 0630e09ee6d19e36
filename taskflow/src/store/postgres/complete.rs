//! Fenced changes to running tasks on PostgreSQL: one statement per change, and a batch of
//! them pipelined in one transaction (one commit for the lot).

use std::sync::LazyLock;

use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;

use super::deltas;
use super::{pool_error, unavailable};
use crate::id::TaskId;
use crate::store::counters::moves::Moves;
use crate::store::{Change, Lease, StoreError, Transition};

/// A statement's owned parameters.
pub(super) type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// A change of a running task fenced by its lease: `set` applied to the row, which was
/// running; what it held before comes from `old` (read in the statement's snapshot: only the
/// lease holder changes its duration and retries). Two forms: counted by the statement itself
/// (alone), or returning what the counters need (a batch counts its rows in code and appends
/// them once, [`deltas::append`]).
struct Fenced {
    counted: String,
    returning: String,
}

impl Fenced {
    fn new(set: &str) -> Fenced {
        let old = "old AS (SELECT duration AS o_duration, retries_used AS o_retries
            FROM taskflow_tasks WHERE id = $1)";
        let update = format!(
            "UPDATE taskflow_tasks SET {set} FROM old
             WHERE id = $1 AND status = 'running' AND lease_owner = $2
             RETURNING func_name, queue, status, duration, retries_used, end_time, created_at,
                'running'::text AS o_status, old.o_duration, old.o_retries"
        );
        Fenced {
            counted: deltas::counted(&format!("{old}, "), &update, "SELECT 1 FROM changed"),
            returning: format!("WITH {old} {update}"),
        }
    }

    fn sql(&self, counted: bool) -> &str {
        if counted { &self.counted } else { &self.returning }
    }
}

static FINISHED: LazyLock<Fenced> = LazyLock::new(|| {
    Fenced::new(
        "status = $3, end_time = $4,
        duration = EXTRACT(EPOCH FROM ($4 - start_time))::DOUBLE PRECISION,
        retries_used = $5, result = $6,
        stacktrace = CASE WHEN $7::TEXT IS NULL THEN stacktrace ELSE $8 END,
        error = COALESCE($7, error), lease_owner = NULL, lease_expires_at = NULL",
    )
});

static RESCHEDULE: LazyLock<Fenced> = LazyLock::new(|| {
    Fenced::new(
        "status = 'pending', scheduled_at = $3, wait_until = $3, retries_used = $4,
        stacktrace = CASE WHEN $5::TEXT IS NULL THEN stacktrace ELSE $6 END,
        error = COALESCE($5, error), lease_owner = NULL, lease_expires_at = NULL",
    )
});

static REQUEUE: LazyLock<Fenced> = LazyLock::new(|| {
    Fenced::new("status = 'pending', lease_owner = NULL, lease_expires_at = NULL")
});

/// The statement that applies `change` to task `id` if `lease` still holds it, and its
/// parameters: one that counts the change itself when `counted`, else one that returns the
/// changed row for [`deltas::count_row`].
pub(super) fn statement(
    id: &TaskId,
    lease: &Lease,
    change: Transition,
    counted: bool,
) -> (&'static str, Params) {
    let mut params: Params = vec![Box::new(*id.as_uuid()), Box::new(lease.owner.to_string())];
    let sql = match change {
        Transition::Finished { status, end_time, retries_used, result, error, stacktrace } => {
            params.push(Box::new(status.as_str()));
            params.push(Box::new(end_time));
            params.push(Box::new(retries_used as i32));
            params.push(Box::new(result));
            params.push(Box::new(error));
            params.push(Box::new(stacktrace));
            FINISHED.sql(counted)
        }
        Transition::Reschedule { due, retries_used, error, stacktrace } => {
            params.push(Box::new(due));
            params.push(Box::new(retries_used as i32));
            params.push(Box::new(error));
            params.push(Box::new(stacktrace));
            RESCHEDULE.sql(counted)
        }
        Transition::Requeue => REQUEUE.sql(counted),
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
        .map(|Change { id, lease, transition }| statement(&id, &lease, transition, false))
        .collect();
    let mut client = pool.get().await.map_err(pool_error)?;
    let mut prepared = Vec::with_capacity(statements.len());
    for (sql, _) in &statements {
        prepared.push(client.prepare_cached(sql).await.map_err(unavailable)?);
    }
    let tx = client.transaction().await.map_err(unavailable)?;
    let params: Vec<_> = statements.iter().map(|(_, params)| refs(params)).collect();
    let rows = futures_util::future::join_all(
        prepared.iter().zip(&params).map(|(statement, params)| tx.query_opt(statement, params)),
    )
    .await;
    let now = chrono::Utc::now();
    let mut moves = Moves::default();
    let mut applied = Vec::with_capacity(rows.len());
    for row in rows {
        let row = row.map_err(unavailable)?;
        if let Some(row) = &row {
            deltas::count_row(&mut moves, row, now);
        }
        applied.push(row.is_some());
    }
    deltas::append(&tx, &mut moves).await?;
    tx.commit().await.map_err(unavailable)?;
    Ok(applied)
}
