//! [`Enqueued`], [`WriteTicket`] and [`WriteDone`]: the answer to an enqueue, and how its
//! caller learns that a store writing in the background made it durable (or did not).

use std::sync::Arc;

use super::{Store, StoreError};
use crate::id::TaskId;

/// The answer to an enqueue.
#[derive(Debug)]
pub struct Enqueued {
    /// The id to hand to the caller: the new task's, or the existing task's with the same
    /// idempotency key.
    pub id: TaskId,
    /// Whether a new task was stored: `false` when an idempotency key matched an active task
    /// and the store knew it at once. A remote store learns it only when the write lands; it
    /// then records the fresh id as an alias of the task holding the key, so `get` of either
    /// id finds that task.
    pub created: bool,
    /// For a store that writes in the background: resolves once the record is durable.
    pub write: Option<WriteTicket>,
}

/// Resolves once a staged write is durable (or failed). Cloning it gives another handle on
/// the same write.
#[derive(Clone)]
pub struct WriteTicket {
    settled: tokio::sync::watch::Receiver<Option<Result<(), StoreError>>>,
    /// Shared with the [`WriteDone`]: whether the store has started the write, or the
    /// waiter gave up before it did (then the store must not write it).
    state: Arc<std::sync::atomic::AtomicU8>,
    /// How long to wait for the write before reporting it failed (then read back).
    deadline: Option<std::time::Duration>,
    /// Where to look when the write reports a failure: a remote commit whose reply was lost
    /// may have gone through, and a task that is stored must not be reported as not stored.
    read_back: Option<(Arc<dyn Store>, TaskId)>,
}

impl std::fmt::Debug for WriteTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTicket")
            .field("settled", &*self.settled.borrow())
            .field("read_back", &self.read_back.as_ref().map(|(_, id)| id))
            .finish()
    }
}

/// Settles a [`WriteTicket`]: held by the store while the write is under way.
#[derive(Debug)]
pub struct WriteDone {
    settle: tokio::sync::watch::Sender<Option<Result<(), StoreError>>>,
    state: Arc<std::sync::atomic::AtomicU8>,
}

/// [`WriteTicket`] states: queued, started by the store, abandoned by its waiter.
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

impl WriteTicket {
    /// A ticket and what settles it.
    pub fn new() -> (WriteDone, WriteTicket) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let state = Arc::new(std::sync::atomic::AtomicU8::new(QUEUED));
        let done = WriteDone { settle: tx, state: Arc::clone(&state) };
        (done, WriteTicket { settled: rx, state, deadline: None, read_back: None })
    }

    /// This ticket, which on a reported failure asks `store` whether task `id` (or an alias
    /// with that id) is stored after all, and then reports success: a failure means "not
    /// stored", never "maybe".
    pub(crate) fn read_back(self, store: Arc<dyn Store>, id: TaskId) -> WriteTicket {
        WriteTicket { read_back: Some((store, id)), ..self }
    }

    /// This ticket, which reports the write failed when it has not settled within `limit`.
    pub(crate) fn deadline(self, limit: std::time::Duration) -> WriteTicket {
        WriteTicket { deadline: Some(limit), ..self }
    }

    /// Waits for the write.
    pub async fn wait(self) -> Result<(), StoreError> {
        let WriteTicket { mut settled, state, deadline, read_back } = self;
        let abandon = || {
            use std::sync::atomic::Ordering;
            state.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_ok()
        };
        let settled = async {
            match settled.wait_for(Option::is_some).await {
                Ok(settled) => settled.clone().unwrap_or(Err(StoreError::Closed)),
                Err(_) => Err(StoreError::Unavailable(
                    "the store stopped before the write finished".into(),
                )),
            }
        };
        let outcome = match deadline {
            None => settled.await,
            Some(limit) => {
                tokio::pin!(settled);
                match tokio::time::timeout(limit, &mut settled).await {
                    Ok(outcome) => outcome,
                    // Not started yet: withdrawn, so it is certainly not stored.
                    Err(_) if abandon() => {
                        return Err(StoreError::TimedOut { what: "enqueue", after: limit });
                    }
                    // Under way: give it one more bound, then read it back.
                    Err(_) => super::deadline::within("enqueue", limit, settled).await,
                }
            }
        };
        let (Err(err), Some((store, id))) = (&outcome, read_back) else { return outcome };
        match store.resolve(&id).await {
            Ok(Some(_)) => {
                tracing::warn!(task_id = %id, error = %err, "taskflow: a write reported a failure but the task is stored; treating it as stored");
                Ok(())
            }
            Ok(None) => outcome,
            Err(read) => {
                tracing::error!(task_id = %id, error = %err, read_back = %read, "taskflow: a write failed and reading it back failed too; the task may be stored");
                outcome
            }
        }
    }
}

impl WriteDone {
    /// Marks the write as started; `false` when its waiter gave up first, and then the store
    /// must not make the write (its caller was told it failed). Settles the ticket as timed out
    /// in that case.
    pub fn start(&self) -> bool {
        use std::sync::atomic::Ordering;
        let started = self
            .state
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !started {
            self.settle.send_replace(Some(Err(StoreError::TimedOut {
                what: "enqueue (withdrawn before it was written)",
                after: std::time::Duration::ZERO,
            })));
        }
        started
    }

    /// Settles the ticket with `result`.
    pub fn settle(self, result: Result<(), StoreError>) {
        self.settle.send_replace(Some(result));
    }
}
/// One answer per entry of `entries`, in order: an entry that is already an error keeps it;
/// the others go to `batch` together, and its answers, in their order, fill their places. A
/// batch that answers fewer than it was given leaves the rest unavailable.
pub(crate) fn in_order<T, A, E: From<StoreError>>(
    entries: Vec<Result<T, E>>,
    batch: impl FnOnce(Vec<T>) -> Vec<Result<A, E>>,
) -> Vec<Result<A, E>> {
    let mut given = Vec::with_capacity(entries.len());
    let mut answers: Vec<Option<Result<A, E>>> = entries
        .into_iter()
        .map(|entry| match entry {
            Ok(item) => {
                given.push(item);
                None
            }
            Err(err) => Some(Err(err)),
        })
        .collect();
    let mut answered = batch(given).into_iter();
    for answer in answers.iter_mut().filter(|answer| answer.is_none()) {
        *answer = answered.next();
    }
    answers.into_iter().map(|answer| answer.unwrap_or_else(|| Err(unanswered().into()))).collect()
}

/// The error of a task a batch gave no answer for (a store that answered too few).
pub(crate) fn unanswered() -> StoreError {
    StoreError::Unavailable("the store answered fewer enqueues than it was given".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_their_places_and_a_short_batch_leaves_the_rest_unavailable() {
        let entries: Vec<Result<u32, StoreError>> =
            vec![Ok(1), Err(StoreError::Closed), Ok(2), Ok(3)];
        let answers = in_order(entries, |given| {
            assert_eq!(given, [1, 2, 3]);
            vec![Ok(10), Err(StoreError::Closed)]
        });
        assert!(matches!(answers[0], Ok(10)));
        assert!(matches!(answers[1], Err(StoreError::Closed)));
        assert!(matches!(answers[2], Err(StoreError::Closed)));
        assert!(matches!(&answers[3], Err(StoreError::Unavailable(why)) if why.contains("fewer")));
    }
}
