//! [`Inserts`]: the enqueues of many callers written together. One writer at a time takes
//! every insert queued meanwhile and stores them in one transaction, so a burst of enqueues
//! costs one commit (one flush of the server's log) instead of one each.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use deadpool_postgres::Pool;

use super::row::Params;
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

#[derive(Default)]
struct Queue {
    waiting: Vec<Insert>,
    /// Whether a writer is running; it takes what is queued until nothing is.
    writing: bool,
}

/// The queue of inserts and its writer.
#[derive(Clone, Default)]
pub(super) struct Inserts {
    queue: Arc<Mutex<Queue>>,
}

impl std::fmt::Debug for Inserts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inserts").field("waiting", &self.lock().waiting.len()).finish()
    }
}

impl Inserts {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `insert`. Returns `true` when no writer runs: the caller starts one with
    /// [`Inserts::write`].
    pub(super) fn push(&self, insert: Insert) -> bool {
        let mut queue = self.lock();
        queue.waiting.push(insert);
        !std::mem::replace(&mut queue.writing, true)
    }

    /// Writes what is queued, batch after batch, until the queue is empty.
    pub(super) async fn write(self, pool: Pool) {
        loop {
            let batch = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.writing = false;
                    return;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..take).collect::<Vec<_>>()
            };
            write_batch(&pool, batch).await;
        }
    }
}

/// Inserts `batch` in one transaction; when that fails, each on its own, so that one bad
/// insert fails only its own caller.
async fn write_batch(pool: &Pool, batch: Vec<Insert>) {
    if batch.len() > 1 {
        match insert_together(pool, &batch).await {
            Ok(conflicts) => {
                let mut conflicts = conflicts.into_iter().peekable();
                for (index, insert) in batch.into_iter().enumerate() {
                    if conflicts.next_if_eq(&index).is_some() {
                        // An active task holds its key: record the id as that task's alias.
                        let Insert { params, id, key, done } = insert;
                        done.settle(super::insert(pool.clone(), params, id, key).await);
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
    for Insert { params, id, key, done } in batch {
        done.settle(super::insert(pool.clone(), params, id, key).await);
    }
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
