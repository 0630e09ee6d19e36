//! The enqueues of many callers, inserted together: one transaction, pipelined, for every
//! insert queued while the previous batch was written.

use deadpool_postgres::Pool;

use super::row::Params;
use crate::store::batch::{self, Batches};
use crate::store::{StoreError, WriteDone};

/// At most this many inserts share one transaction.
const MAX_BATCH: usize = 512;

/// One task waiting to be inserted, and who waits for it.
pub(super) struct Insert {
    pub(super) params: Params,
    pub(super) id: uuid::Uuid,
    pub(super) key: Option<String>,
    pub(super) done: WriteDone,
}

/// Writes what `inserts` holds, batch after batch, until it is empty.
pub(super) async fn write(inserts: Batches<Insert>, pool: Pool) {
    inserts.drain(MAX_BATCH, |batch| write_batch(&pool, batch)).await;
}

/// Inserts `batch` in one transaction; see [`batch::write_each`].
async fn write_batch(pool: &Pool, batch: Vec<Insert>) {
    batch::write_each(
        batch,
        |batch| async move {
            let outcome = insert_together(pool, &batch).await;
            (batch, outcome)
        },
        // Alone, an insert whose key an active task holds records its id as that task's alias.
        |Insert { params, id, key, done }| async move {
            done.settle(super::insert(pool.clone(), params, id, key).await)
        },
        |insert| insert.done.settle(Ok(())),
    )
    .await;
}

/// Runs every insert of `batch` in one transaction, pipelined; returns the positions of those
/// whose idempotency key an active task held (not inserted).
async fn insert_together(pool: &Pool, batch: &[Insert]) -> Result<Vec<usize>, StoreError> {
    let mut client = pool.get().await.map_err(super::pool_error)?;
    let statement =
        client.prepare_cached(&super::insert_sql()).await.map_err(super::unavailable)?;
    let tx = client.transaction().await.map_err(super::unavailable)?;
    let values: Vec<_> = batch.iter().map(|insert| insert.params.refs()).collect();
    let inserted =
        futures_util::future::join_all(values.iter().map(|refs| tx.query_opt(&statement, refs)))
            .await;
    let mut conflicts = Vec::new();
    for (index, row) in inserted.into_iter().enumerate() {
        match row.map_err(super::unavailable)? {
            Some(_) => {}
            None if batch[index].key.is_some() => conflicts.push(index),
            None => {
                return Err(StoreError::Unavailable(format!(
                    "postgres: task {} was not inserted",
                    batch[index].id
                )));
            }
        }
    }
    tx.commit().await.map_err(super::unavailable)?;
    Ok(conflicts)
}
