//! [`Batches`]: writes that many callers queue and one writer at a time takes together, so
//! that a burst of them costs one transaction (one flush of the server's log) instead of one
//! each.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::StoreError;

/// A queue of `T` and whether its writer runs.
pub(crate) struct Batches<T> {
    queue: Arc<Mutex<Queue<T>>>,
}

struct Queue<T> {
    waiting: Vec<T>,
    /// Whether a writer is running; it takes what is queued until nothing is.
    writing: bool,
}

impl<T> Clone for Batches<T> {
    fn clone(&self) -> Self {
        Batches { queue: Arc::clone(&self.queue) }
    }
}

impl<T> Default for Batches<T> {
    fn default() -> Self {
        Batches { queue: Arc::new(Mutex::new(Queue { waiting: Vec::new(), writing: false })) }
    }
}

impl<T> std::fmt::Debug for Batches<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches").field("waiting", &self.lock().waiting.len()).finish()
    }
}

impl<T> Batches<T> {
    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item`. Returns `true` when no writer runs: the caller starts one with
    /// [`Batches::drain`].
    pub(crate) fn push(&self, item: T) -> bool {
        let mut queue = self.lock();
        queue.waiting.push(item);
        !std::mem::replace(&mut queue.writing, true)
    }

    /// Hands what is queued to `write`, at most `max` at a time, until the queue is empty.
    pub(crate) async fn drain<F, Fut>(self, max: usize, mut write: F)
    where
        F: FnMut(Vec<T>) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let batch = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.writing = false;
                    return;
                }
                let take = queue.waiting.len().min(max.max(1));
                queue.waiting.drain(..take).collect::<Vec<_>>()
            };
            write(batch).await;
        }
    }
}

/// Writes `batch`: all of it with `together` (one transaction), which hands the batch back with
/// the positions it could not store that way (an idempotency key's conflict); those, or every
/// write when `together` failed, go to `alone` one by one, so that one bad write fails only its
/// own caller. `stored` answers the callers of the writes `together` stored.
pub(crate) async fn write_each<T, Together, Alone>(
    batch: Vec<T>,
    together: impl FnOnce(Vec<T>) -> Together,
    alone: impl Fn(T) -> Alone,
    stored: impl Fn(T),
) where
    Together: Future<Output = (Vec<T>, Result<Vec<usize>, StoreError>)>,
    Alone: Future<Output = ()>,
{
    let batch = if batch.len() > 1 {
        let (batch, outcome) = together(batch).await;
        match outcome {
            Ok(left) => {
                for (index, item) in batch.into_iter().enumerate() {
                    if left.contains(&index) {
                        alone(item).await;
                    } else {
                        stored(item);
                    }
                }
                return;
            }
            Err(err) => {
                tracing::debug!(error = %err, "taskflow: a batch of writes failed; writing them one by one");
                batch
            }
        }
    } else {
        batch
    };
    for item in batch {
        alone(item).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_writer_takes_everything_queued_in_batches() {
        let batches = Batches::default();
        assert!(batches.push(1), "the first push starts the writer");
        assert!(!batches.push(2), "a running writer takes the rest");
        assert!(!batches.push(3));
        let mut seen = Vec::new();
        batches
            .clone()
            .drain(2, |batch| {
                seen.push(batch);
                async {}
            })
            .await;
        assert_eq!(seen, vec![vec![1, 2], vec![3]]);
        assert!(batches.push(4), "an idle queue needs a writer again");
    }
}
