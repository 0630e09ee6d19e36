//! [`Completions`]: the completer's writes, gathered into batches. Each outcome waits in a
//! queue; one writer takes everything queued (up to [`MAX_BATCH`]) and writes it with one
//! [`Store::transition_many`], so while a batch is in flight the next one gathers: a lone
//! outcome is written at once, and under load a round trip and a commit serve hundreds. A
//! change that its batch could not write is written alone, retried with backoff until the
//! store answers, so one bad write fails only its own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::id::TaskId;
use crate::store::{Change, Lease, Store, Transition};

/// At most this many changes share one batch.
const MAX_BATCH: usize = 512;

/// One change waiting for its batch, and who waits for its result.
struct Queued {
    change: Change,
    applied: oneshot::Sender<bool>,
}

/// The queue of changes to write, and its writer.
#[derive(Debug)]
pub(crate) struct Completions {
    queue: mpsc::UnboundedSender<Queued>,
}

impl Completions {
    /// A queue whose writer runs on `runtime` until the queue is dropped.
    pub(crate) fn spawn(store: Arc<dyn Store>, runtime: &tokio::runtime::Handle) -> Completions {
        let (queue, changes) = mpsc::unbounded_channel();
        runtime.spawn(write_batches(store.clone(), changes));
        Completions { queue }
    }

    /// Writes `transition` of task `id`, fenced by `lease`, in the next batch; `false` when
    /// the lease no longer holds the task.
    pub(crate) async fn write(
        &self,
        store: &Arc<dyn Store>,
        id: TaskId,
        lease: Lease,
        transition: Transition,
    ) -> bool {
        let (applied, outcome) = oneshot::channel();
        let change = Change { id, lease, transition };
        if let Err(refused) = self.queue.send(Queued { change, applied }) {
            // The writer is gone (the runtime is shutting down): write it here.
            let Change { id, lease, transition } = refused.0.change;
            return write_alone(&**store, &id, &lease, transition).await;
        }
        // The writer answers every change it takes, unless its runtime died with it.
        outcome.await.unwrap_or(false)
    }
}

async fn write_batches(store: Arc<dyn Store>, mut changes: mpsc::UnboundedReceiver<Queued>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while changes.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (waiting, changes): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|queued| (queued.applied, queued.change)).unzip();
        let retry = changes.clone();
        let results = store.transition_many(changes).await;
        for ((applied, change), result) in waiting.into_iter().zip(retry).zip(results) {
            match result {
                Ok(done) => {
                    if !done {
                        lease_lost(&change.id);
                    }
                    let _ = applied.send(done);
                }
                Err(err) => {
                    tracing::debug!(task_id = %change.id, error = %err, "taskflow: a batch could not write a task's state; writing it alone");
                    let store = Arc::clone(&store);
                    tokio::spawn(async move {
                        let Change { id, lease, transition } = change;
                        let _ = applied.send(write_alone(&*store, &id, &lease, transition).await);
                    });
                }
            }
        }
    }
}

fn lease_lost(id: &TaskId) {
    tracing::warn!(task_id = %id, "taskflow: lease lost; the task's new owner keeps it");
}

/// Writes one fenced change, retrying a store error with backoff until the store answers;
/// `false` when the lease no longer holds the task.
pub(crate) async fn write_alone(
    store: &dyn Store,
    id: &TaskId,
    lease: &Lease,
    change: Transition,
) -> bool {
    let mut pause = Duration::from_millis(50);
    loop {
        match store.transition(id, lease, change.clone()).await {
            Ok(applied) => {
                if !applied {
                    lease_lost(id);
                }
                return applied;
            }
            Err(err) => {
                tracing::error!(task_id = %id, error = %err, "taskflow: could not record task state; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}
