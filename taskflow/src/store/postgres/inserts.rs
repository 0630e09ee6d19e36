//! How the PostgreSQL store inserts new tasks: for its
//! [`InsertQueue`](crate::store::inserts::InsertQueue), a batch in one transaction, its
//! statements pipelined; one task that gives way to an active holder of its idempotency key
//! (recording the new id as its alias); and one in the caller's own transaction.

use deadpool_postgres::Pool;

use super::deltas::{self, NEW};
use super::notify::CHANNEL;
use super::row::{Columns, Params, UNNEST};
use super::{ACTIVE_KEY, COLUMNS, pool_error, run_key, unavailable};
use crate::id::TaskId;
use crate::record::{TaskRecord, TaskStatus};
use crate::store::StoreError;
use crate::store::counters::moves::Moves;
use crate::store::inserts::{Insert, Inserter};

impl Inserter for Pool {
    type Values = Params;
    type Id = uuid::Uuid;

    async fn together(&self, batch: &[Insert<Self>]) -> Result<Vec<usize>, StoreError> {
        let mut client = self.get().await.map_err(super::pool_error)?;
        let statement =
            client.prepare_cached(insert_many_sql()).await.map_err(super::unavailable)?;
        let rows: Vec<&Params> = batch.iter().map(|insert| &insert.values).collect();
        let columns = Columns::of(&rows);
        let tx = client.transaction().await.map_err(super::unavailable)?;
        let returned = tx.query(&statement, &columns.refs()).await.map_err(super::unavailable)?;
        let (mut moves, now) = (Moves::default(), chrono::Utc::now());
        let mut stored = std::collections::HashSet::with_capacity(returned.len());
        for row in &returned {
            deltas::count_row(&mut moves, row, now);
            stored.insert(row.get::<_, uuid::Uuid>(0));
        }
        let mut held = Vec::new();
        for (index, insert) in batch.iter().enumerate() {
            if stored.contains(&insert.id) {
                continue;
            }
            if insert.key.is_none() {
                return Err(StoreError::Unavailable(format!(
                    "postgres: task {} was not inserted",
                    insert.id
                )));
            }
            held.push(index);
        }
        deltas::append(&tx, &mut moves).await?;
        tx.commit().await.map_err(super::unavailable)?;
        Ok(held)
    }

    async fn alone(
        &self,
        values: Params,
        id: uuid::Uuid,
        key: Option<String>,
        run_key: Option<String>,
    ) -> Result<(), StoreError> {
        match run_key {
            None => super::insert(self.clone(), values, id, key).await,
            Some(run_key) => super::run_key::insert(self, &values, id, key, &run_key).await,
        }
    }
}

/// Inserts the tasks of [`Columns`] (one statement for a batch) but those whose idempotency
/// key an active task holds (or an earlier task of the batch took), returning the stored rows
/// as [`deltas::count_row`] reads them.
fn insert_many_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "INSERT INTO taskflow_tasks ({COLUMNS}, wait_until)
             SELECT {COLUMNS},
                 COALESCE(hold, CASE WHEN scheduled_at > created_at THEN scheduled_at END)
             FROM {unnest}
             ON CONFLICT (idempotency_key) WHERE {ACTIVE_KEY} DO NOTHING
             RETURNING {COLUMNS}, {NEW}",
            unnest = *UNNEST
        )
    });
    &SQL
}

/// Inserts a task unless an active task holds its idempotency key, returning the stored row
/// as [`deltas::count_row`] reads it (a batch counts its rows in code).
fn insert_returning_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "INSERT INTO taskflow_tasks ({COLUMNS}, wait_until) VALUES ($1, $2, $3, $4, $5, $6,
                $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23,
                $24, $25, $26, COALESCE($27::TIMESTAMPTZ,
                    CASE WHEN $18::TIMESTAMPTZ > $4::TIMESTAMPTZ THEN $18::TIMESTAMPTZ END))
             ON CONFLICT (idempotency_key) WHERE {ACTIVE_KEY} DO NOTHING
             RETURNING {COLUMNS}, {NEW}"
        )
    });
    &SQL
}

/// Inserts a task unless an active task holds its idempotency key, and counts it; returns
/// its id if stored.
pub(super) fn insert_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        deltas::counted("", insert_returning_sql(), "SELECT id FROM changed")
    });
    &SQL
}

/// Stores `record` through `client` (a transaction of the caller's, or a plain client) and
/// announces it to every instance; returns the id of the task that holds its idempotency key
/// when one does. In a transaction, the task and the announcement exist only if it commits.
pub(crate) async fn insert_in(
    client: &impl tokio_postgres::GenericClient,
    record: &TaskRecord,
) -> Result<TaskId, StoreError> {
    let params = Params::of(record, None);
    if let Some(key) = record.run_key.as_deref().filter(|_| record.status == TaskStatus::Pending) {
        let error = crate::store::replaced(&record.task_id);
        run_key::cancel_waiting(client, key, record.created_at, Some(&error)).await?;
    }
    let inserted = client.query_opt(insert_sql(), &params.refs()).await.map_err(unavailable)?;
    let id = match (inserted, &record.idempotency_key) {
        (Some(_), _) => record.task_id,
        (None, Some(key)) => {
            let sql = format!(
                "SELECT id FROM taskflow_tasks WHERE idempotency_key = $1 AND {ACTIVE_KEY}"
            );
            let holder = client.query_one(&sql, &[key]).await.map_err(unavailable)?;
            TaskId::from(holder.get::<_, uuid::Uuid>(0))
        }
        (None, None) => {
            return Err(StoreError::Unavailable(format!(
                "postgres: task {} was not inserted",
                record.task_id
            )));
        }
    };
    client.execute(&format!("NOTIFY {CHANNEL}"), &[]).await.map_err(unavailable)?;
    Ok(id)
}

/// Inserts a task; when an active task holds its idempotency key, records the new id as an
/// alias of that task instead.
pub(super) async fn insert(
    pool: Pool,
    params: Params,
    id: uuid::Uuid,
    key: Option<String>,
) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let statement = client.prepare_cached(insert_sql()).await.map_err(unavailable)?;
    let inserted = client.query_opt(&statement, &params.refs()).await.map_err(unavailable)?;
    if inserted.is_some() {
        return Ok(());
    }
    let Some(key) = key else {
        return Err(StoreError::Unavailable(format!("postgres: task {id} was not inserted")));
    };
    let tx = client.transaction().await.map_err(unavailable)?;
    let holder = tx
        .query_opt(
            &format!("SELECT id FROM taskflow_tasks WHERE idempotency_key = $1 AND {ACTIVE_KEY}"),
            &[&key],
        )
        .await
        .map_err(unavailable)?;
    let Some(holder) = holder else {
        // The holder ended between the two statements: the key is free, store the task.
        drop(tx);
        return Box::pin(insert(pool, params, id, None)).await;
    };
    let holder: uuid::Uuid = holder.get(0);
    tx.execute(
        "INSERT INTO taskflow_aliases (alias, task_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&id, &holder],
    )
    .await
    .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)
}
