//! The enqueues of many callers, inserted together: one transaction for every insert queued
//! while the previous batch was written.

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts, Value};

use crate::id::TaskId;
use crate::store::batch::Batches;
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

/// Inserts `batch` in one transaction; when that fails, each on its own, so that one bad
/// insert fails only its own caller. An insert whose key an active task holds is settled on
/// its own after the commit, which records its id as that task's alias.
async fn write_batch(pool: &Pool, batch: Vec<Insert>) {
    if batch.len() > 1 {
        match insert_together(pool, &batch).await {
            Ok(conflicts) => {
                for (index, insert) in batch.into_iter().enumerate() {
                    if conflicts.contains(&index) {
                        let Insert { values, id, key, done } = insert;
                        done.settle(super::insert(pool.clone(), values, id, key).await);
                    } else {
                        insert.done.settle(Ok(()));
                    }
                }
                return;
            }
            Err(err) => {
                tracing::debug!(error = %err, "taskflow: a batch of inserts failed; inserting one by one");
            }
        }
    }
    for Insert { values, id, key, done } in batch {
        done.settle(super::insert(pool.clone(), values, id, key).await);
    }
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
