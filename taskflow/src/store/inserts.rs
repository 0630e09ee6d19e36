//! [`InsertQueue`]: the new tasks of a shared-database store, which many callers enqueue and
//! one writer at a time inserts together, so that a burst of enqueues costs one transaction
//! (one flush of the server's log) instead of one each.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::task::TaskTracker;

use super::{Enqueued, StoreError, WriteDone};

/// At most this many inserts share one transaction.
const MAX_BATCH: usize = 512;

/// How a store inserts new tasks: all of a batch in one transaction, or one on its own.
pub(crate) trait Inserter: Clone + Send + Sync + 'static {
    /// A task's row, as the store's driver binds it.
    type Values: Send + 'static;
    /// A task's id, as the store's driver binds it.
    type Id: Send + 'static;

    /// Inserts every task of `batch` in one transaction; returns the positions of those whose
    /// idempotency key an active task held (not inserted). An error means none was inserted.
    fn together(
        &self,
        batch: &[Insert<Self>],
    ) -> impl Future<Output = Result<Vec<usize>, StoreError>> + Send;

    /// Inserts one task; when an active task holds its idempotency key, records its id as an
    /// alias of that task instead. With a run key, cancels the task waiting under it in the
    /// same transaction.
    fn alone(
        &self,
        values: Self::Values,
        id: Self::Id,
        key: Option<String>,
        run_key: Option<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// One task waiting to be inserted, and who waits for it.
pub(crate) struct Insert<S: Inserter> {
    pub(crate) values: S::Values,
    pub(crate) id: S::Id,
    pub(crate) key: Option<String>,
    /// Its run key: such an insert goes alone, as it replaces a waiting task.
    pub(crate) run_key: Option<String>,
    pub(crate) done: WriteDone,
}

/// The queue of inserts, its writer, and the writes that closing waits for.
#[derive(Clone)]
pub(crate) struct InsertQueue<S: Inserter> {
    queue: Arc<Mutex<Queue<S>>>,
    writes: TaskTracker,
    runtime: tokio::runtime::Handle,
    store: S,
}

struct Queue<S: Inserter> {
    waiting: Vec<Insert<S>>,
    /// Whether a writer is running; it takes what is queued until nothing is.
    writing: bool,
}

impl<S: Inserter> std::fmt::Debug for InsertQueue<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertQueue").field("waiting", &self.lock().waiting.len()).finish()
    }
}

impl<S: Inserter> InsertQueue<S> {
    /// An empty queue whose writers run on `runtime` and insert through `store`.
    pub(crate) fn new(store: S, runtime: tokio::runtime::Handle) -> Self {
        let queue = Queue { waiting: Vec::new(), writing: false };
        InsertQueue {
            queue: Arc::new(Mutex::new(queue)),
            writes: TaskTracker::new(),
            runtime,
            store,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<S>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `insert`, starting a writer when none runs; [`StoreError::Closed`] once
    /// [`InsertQueue::close`] has begun.
    pub(crate) fn push(&self, insert: Insert<S>) -> Result<(), StoreError> {
        self.push_each(std::iter::once(insert))
    }

    /// Queues `inserts` under one lock, starting a writer when none runs;
    /// [`StoreError::Closed`] once [`InsertQueue::close`] has begun.
    fn push_each(&self, inserts: impl IntoIterator<Item = Insert<S>>) -> Result<(), StoreError> {
        if self.writes.is_closed() {
            return Err(StoreError::Closed);
        }
        let start = {
            let mut queue = self.lock();
            queue.waiting.extend(inserts);
            !std::mem::replace(&mut queue.writing, true)
        };
        if start {
            self.writes.spawn_on(self.clone().write(), &self.runtime);
        }
        Ok(())
    }

    /// Queues the insert of `prepared`, answering its [`Enqueued`]; or why it could not be
    /// prepared or queued.
    pub(crate) fn stage(
        &self,
        prepared: Result<(Insert<S>, Enqueued), StoreError>,
    ) -> Result<Enqueued, StoreError> {
        let (insert, enqueued) = prepared?;
        self.push(insert)?;
        Ok(enqueued)
    }

    /// Queues the inserts of `prepared` all at once (so the writer takes them in full
    /// batches, where one-by-one pushes may start a write between two); one answer per
    /// entry, in order: its [`Enqueued`], or why it could not be prepared or queued.
    pub(crate) fn push_all(
        &self,
        prepared: Vec<Result<(Insert<S>, Enqueued), StoreError>>,
    ) -> Vec<Result<Enqueued, StoreError>> {
        super::in_order(prepared, |prepared| {
            let (inserts, answers): (Vec<_>, Vec<_>) = prepared.into_iter().unzip();
            match self.push_each(inserts) {
                Ok(()) => answers.into_iter().map(Ok).collect(),
                Err(err) => answers.iter().map(|_| Err(err.clone())).collect(),
            }
        })
    }

    /// Takes no more inserts and waits until every queued one is written.
    pub(crate) async fn close(&self) {
        self.writes.close();
        self.writes.wait().await;
    }

    /// Writes what is queued, batch after batch, until the queue is empty.
    async fn write(self) {
        loop {
            let batch = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.writing = false;
                    return;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                // Inserts whose callers gave up waiting (a slow database) are not written:
                // they were told the task is not stored.
                queue.waiting.drain(..take).filter(|insert| insert.done.start()).collect::<Vec<_>>()
            };
            if batch.is_empty() {
                continue;
            }
            self.write_batch(batch).await;
        }
    }

    /// Inserts `batch` in one transaction. The inserts that could not go in there (their key
    /// was held), or all of them when that transaction failed, go in one by one, so that one
    /// bad insert fails only its own caller.
    async fn write_batch(&self, batch: Vec<Insert<S>>) {
        let (keyed, batch): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|insert| insert.run_key.is_some());
        for insert in keyed {
            self.alone(insert).await;
        }
        if batch.len() > 1 {
            match self.store.together(&batch).await {
                Ok(held) => {
                    for (index, insert) in batch.into_iter().enumerate() {
                        if held.contains(&index) {
                            self.alone(insert).await;
                        } else {
                            insert.done.settle(Ok(()));
                        }
                    }
                    return;
                }
                Err(err) => {
                    tracing::debug!(error = %err, "taskflow: a batch of inserts failed; inserting them one by one");
                }
            }
        }
        for insert in batch {
            self.alone(insert).await;
        }
    }

    async fn alone(&self, insert: Insert<S>) {
        let Insert { values, id, key, run_key, done } = insert;
        done.settle(self.store.alone(values, id, key, run_key).await);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::store::WriteTicket;

    /// Records the batches it is given; fails a batch holding id 0, and a single id 0.
    #[derive(Clone, Default)]
    struct Recorder {
        batches: Arc<Mutex<Vec<Vec<u32>>>>,
        alone: Arc<AtomicUsize>,
    }

    impl Inserter for Recorder {
        type Values = ();
        type Id = u32;

        async fn together(&self, batch: &[Insert<Self>]) -> Result<Vec<usize>, StoreError> {
            let ids: Vec<u32> = batch.iter().map(|insert| insert.id).collect();
            self.batches.lock().unwrap().push(ids.clone());
            if ids.contains(&0) {
                return Err(StoreError::Unavailable("bad row".into()));
            }
            Ok(batch.iter().enumerate().filter(|(_, i)| i.key.is_some()).map(|(n, _)| n).collect())
        }

        async fn alone(
            &self,
            (): (),
            id: u32,
            _: Option<String>,
            _: Option<String>,
        ) -> Result<(), StoreError> {
            self.alone.fetch_add(1, Ordering::Relaxed);
            if id == 0 { Err(StoreError::Unavailable("bad row".into())) } else { Ok(()) }
        }
    }

    fn insert(id: u32, key: Option<&str>) -> (Insert<Recorder>, WriteTicket) {
        let (done, ticket) = WriteTicket::new();
        (Insert { values: (), id, key: key.map(str::to_owned), run_key: None, done }, ticket)
    }

    #[tokio::test]
    async fn inserts_queued_together_are_written_together_and_a_bad_one_fails_alone() {
        let store = Recorder::default();
        let queue = InsertQueue::new(store.clone(), tokio::runtime::Handle::current());
        // Queued before any writer runs (this runtime's thread is busy here): one batch.
        let tickets: Vec<WriteTicket> = [(1, None), (2, Some("k")), (3, None)]
            .into_iter()
            .map(|(id, key)| {
                let (insert, ticket) = insert(id, key);
                queue.push(insert).unwrap();
                ticket
            })
            .collect();
        for ticket in tickets {
            ticket.wait().await.unwrap();
        }
        assert_eq!(*store.batches.lock().unwrap(), vec![vec![1, 2, 3]]);
        assert_eq!(store.alone.load(Ordering::Relaxed), 1, "the held key goes in alone");

        let (bad, bad_ticket) = insert(0, None);
        let (good, good_ticket) = insert(4, None);
        queue.push(bad).unwrap();
        queue.push(good).unwrap();
        assert!(bad_ticket.wait().await.is_err());
        good_ticket.wait().await.unwrap();
        assert_eq!(store.alone.load(Ordering::Relaxed), 3, "a failed batch goes in one by one");

        queue.close().await;
        let (late, _) = insert(5, None);
        assert!(matches!(queue.push(late), Err(StoreError::Closed)));
    }
}
