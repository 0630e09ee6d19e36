//! The enqueues of many callers, inserted together: one transaction for every insert queued
//! while the previous batch was written.

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts, Value};

use crate::id::TaskId;
use crate::store::batch::{self, Batches};
use crate::store::{StoreError, WriteDone};

/// At most this many inserts share one transaction.
const MAX_BATCH: usize = 512;

/// One task waiting to be inserted, and who waits for it.
pub(super) struct Insert {
    pub(super) values: Vec<Value>,
    pub(super) id: TaskId,
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
        |Insert { values, id, key, done }| async move {
            done.settle(super::insert(pool.clone(), values, id, key).await)
        },
        |insert| insert.done.settle(Ok(())),
    )
    .await;
}

/// Runs every insert of `batch` in one transaction; returns the positions of those whose
/// idempotency key an active task held (a duplicate key ends only that statement in MySQL).
async fn insert_together(pool: &Pool, batch: &[Insert]) -> Result<Vec<usize>, StoreError> {
    let mut conn = pool.get_conn().await.map_err(super::unavailable)?;
    let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(super::unavailable)?;
    let mut conflicts = Vec::new();
    for (index, insert) in batch.iter().enumerate() {
        match tx.exec_drop(super::INSERT, insert.values.clone()).await {
            Ok(()) => {}
            Err(err) if super::is_duplicate(&err) && insert.key.is_some() => conflicts.push(index),
            Err(err) => return Err(super::unavailable(err)), // dropping `tx` rolls back
        }
    }
    tx.commit().await.map_err(super::unavailable)?;
    Ok(conflicts)
}
