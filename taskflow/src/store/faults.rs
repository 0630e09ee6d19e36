//! [`FaultyStore`]: a store wrapper that makes chosen operations fail, or succeed and lose
//! their reply, for tests of what the engine does when a database misbehaves (feature
//! `fault-injection`; not for production).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Change, Enqueued, Fetch, Lease, Reclaimed, Retention, Rewrite, Store, StoreError, TaskPage,
    TaskQuery, TaskStats, Transition, WriteTicket,
};
use crate::id::TaskId;
use crate::instance::Instance;
use crate::queue::{QueueChange, QueueCounts, QueueState};
use crate::record::{LogEntry, Progress, TaskRecord, TaskStatus};
use crate::store::{MinuteCounts, ScheduleChange, StatusCount, StoredSchedule};

/// An operation a fault can hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// [`Store::transition`].
    Transition,
    /// [`Store::transition_many`], the whole batch (a change in it also meets the faults
    /// planned for [`Operation::Transition`]).
    TransitionBatch,
    /// The durable write of an enqueue (its [`WriteTicket`]).
    Commit,
    /// [`Store::prune`].
    Prune,
    /// [`Store::fetch`].
    Fetch,
    /// [`Store::elect`].
    Elect,
    /// [`Store::release`].
    Release,
}

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The operation fails without reaching the store.
    Fail,
    /// The operation reaches the store and takes effect, but its caller gets an error (a
    /// reply lost with the connection).
    LoseReply,
    /// The operation never answers (a database that holds the connection and says nothing).
    Hang,
}

const FAULTS: [Fault; 3] = [Fault::Fail, Fault::LoseReply, Fault::Hang];
const SLOTS: usize = 7 * FAULTS.len();

fn slot(operation: Operation, fault: Fault) -> usize {
    let op = match operation {
        Operation::Transition => 0,
        Operation::Commit => 1,
        Operation::Prune => 2,
        Operation::Fetch => 3,
        Operation::TransitionBatch => 4,
        Operation::Elect => 5,
        Operation::Release => 6,
    };
    op * FAULTS.len() + FAULTS.iter().position(|f| *f == fault).unwrap_or(0)
}

async fn hang<T>() -> T {
    std::future::pending().await
}

/// A store whose next operations fail as planned with [`FaultyStore::inject`].
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    planned: [AtomicUsize; SLOTS],
    hit: [AtomicUsize; SLOTS],
}

impl std::fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStore").finish_non_exhaustive()
    }
}

impl FaultyStore {
    /// Wraps `inner`; nothing fails until [`FaultyStore::inject`] says so.
    pub fn new(inner: Arc<dyn Store>) -> FaultyStore {
        FaultyStore { inner, planned: Default::default(), hit: Default::default() }
    }

    /// Makes the next `times` calls of `operation` meet `fault` (added to any still planned).
    pub fn inject(&self, operation: Operation, fault: Fault, times: usize) {
        self.planned[slot(operation, fault)].fetch_add(times, Ordering::SeqCst);
    }

    /// How many calls of `operation` have met `fault` so far.
    pub fn hits(&self, operation: Operation, fault: Fault) -> usize {
        self.hit[slot(operation, fault)].load(Ordering::SeqCst)
    }

    /// The fault planned for this call of `operation`, if any (taking it from the plan).
    fn next(&self, operation: Operation) -> Option<Fault> {
        FAULTS.into_iter().find(|fault| {
            let i = slot(operation, *fault);
            let taken = self.planned[i]
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if taken {
                self.hit[i].fetch_add(1, Ordering::SeqCst);
            }
            taken
        })
    }
}

impl FaultyStore {
    /// An enqueue through `enqueue`, meeting the fault planned for commits, if any.
    fn enqueue_with(
        &self,
        enqueue: impl FnOnce(&dyn Store) -> Result<Enqueued, StoreError>,
    ) -> Result<Enqueued, StoreError> {
        let fault = self.next(Operation::Commit);
        let mut enqueued = enqueue(&*self.inner)?;
        let Some(fault) = fault else { return Ok(enqueued) };
        let inner = enqueued.write.take();
        let (done, ticket) = WriteTicket::new();
        done.start(); // what it wraps may be under way: never withdrawn, only read back
        tokio::spawn(async move {
            let stored = match inner {
                Some(write) => write.wait().await,
                None => Ok(()),
            };
            if fault == Fault::Hang {
                return hang::<()>().await;
            }
            done.settle(match (fault, stored) {
                (_, Err(err)) => Err(err),
                (Fault::Hang, Ok(())) => unreachable!("hung above"),
                (Fault::Fail, Ok(())) => Err(injected("commit failed (but it was stored)")),
                (Fault::LoseReply, Ok(())) => Err(injected("commit reply lost")),
            });
        });
        enqueued.write = Some(ticket);
        Ok(enqueued)
    }
}

fn injected(what: &str) -> StoreError {
    StoreError::Unavailable(format!("injected fault: {what}"))
}

#[async_trait]
impl Store for FaultyStore {
    fn enqueue(&self, record: TaskRecord) -> Result<Enqueued, StoreError> {
        self.enqueue_with(|inner| inner.enqueue(record))
    }

    fn enqueue_held(
        &self,
        record: TaskRecord,
        until: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        self.enqueue_with(|inner| inner.enqueue_held(record, until))
    }

    async fn release_held(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        self.inner.release_held(ids).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.get(id).await
    }

    async fn resolve(&self, id: &TaskId) -> Result<Option<TaskId>, StoreError> {
        self.inner.resolve(id).await
    }

    async fn transition(
        &self,
        id: &TaskId,
        lease: &Lease,
        change: Transition,
    ) -> Result<bool, StoreError> {
        match self.next(Operation::Transition) {
            Some(Fault::Fail) => Err(injected("write failed")),
            Some(Fault::LoseReply) => {
                self.inner.transition(id, lease, change).await?;
                Err(injected("write reply lost"))
            }
            Some(Fault::Hang) => hang().await,
            None => self.inner.transition(id, lease, change).await,
        }
    }

    async fn transition_many(&self, changes: Vec<Change>) -> Vec<Result<bool, StoreError>> {
        let count = changes.len();
        match self.next(Operation::TransitionBatch) {
            Some(Fault::Fail) => return vec![Err(injected("batch write failed")); count],
            Some(Fault::LoseReply) => {
                self.inner.transition_many(changes).await;
                return vec![Err(injected("batch write reply lost")); count];
            }
            Some(Fault::Hang) => return hang().await,
            None => {}
        }
        let planned =
            |fault| self.planned[slot(Operation::Transition, fault)].load(Ordering::SeqCst);
        if FAULTS.into_iter().any(|fault| planned(fault) > 0) {
            // Faults planned for single changes: each change goes through them.
            let writes = changes.into_iter().map(|Change { id, lease, transition }| async move {
                self.transition(&id, &lease, transition).await
            });
            return futures_util::future::join_all(writes).await;
        }
        self.inner.transition_many(changes).await
    }

    async fn append_logs(&self, id: &TaskId, logs: Vec<LogEntry>) -> Result<(), StoreError> {
        self.inner.append_logs(id, logs).await
    }

    async fn cancel_pending(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        self.inner.cancel_pending(id).await
    }

    async fn request_cancel(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        self.inner.request_cancel(id).await
    }

    async fn cancel_requests(
        &self,
        owner: &str,
        ids: &[TaskId],
    ) -> Result<Vec<TaskId>, StoreError> {
        self.inner.cancel_requests(owner, ids).await
    }

    async fn record_progress(
        &self,
        owner: &str,
        reports: &[(TaskId, Progress)],
    ) -> Result<(), StoreError> {
        self.inner.record_progress(owner, reports).await
    }

    async fn cancel_scheduled(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError> {
        self.inner.cancel_scheduled(key, now).await
    }

    async fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        self.inner.list(query).await
    }

    async fn stats(&self, since: Option<DateTime<Utc>>) -> Result<TaskStats, StoreError> {
        self.inner.stats(since).await
    }

    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        self.inner.counts().await
    }

    async fn history(
        &self,
        since: DateTime<Utc>,
        step: u32,
    ) -> Result<Vec<MinuteCounts>, StoreError> {
        self.inner.history(since, step).await
    }

    async fn compact_counters(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.compact_counters(now).await
    }

    async fn trim_history(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.inner.trim_history(before).await
    }

    async fn fetch(&self, fetch: &Fetch<'_>) -> Result<Vec<TaskRecord>, StoreError> {
        match self.next(Operation::Fetch) {
            Some(Fault::Fail) => Err(injected("fetch failed")),
            Some(Fault::LoseReply) => {
                self.inner.fetch(fetch).await?;
                Err(injected("fetch reply lost"))
            }
            Some(Fault::Hang) => hang().await,
            None => self.inner.fetch(fetch).await,
        }
    }

    async fn next_due(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_due(queue).await
    }

    async fn queue_states(&self) -> Result<Vec<QueueState>, StoreError> {
        self.inner.queue_states().await
    }

    async fn update_queue(
        &self,
        queue: &str,
        change: QueueChange,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError> {
        self.inner.update_queue(queue, change, now).await
    }

    async fn queue_counts(&self) -> Result<Vec<QueueCounts>, StoreError> {
        self.inner.queue_counts().await
    }

    async fn count_pending(&self, queue: &str, cap: u64) -> Result<u64, StoreError> {
        self.inner.count_pending(queue, cap).await
    }

    async fn heartbeat(&self, instance: &Instance) -> Result<(), StoreError> {
        self.inner.heartbeat(instance).await
    }

    async fn instances(&self, now: DateTime<Utc>) -> Result<Vec<Instance>, StoreError> {
        self.inner.instances(now).await
    }

    async fn forget_instance(&self, id: &str) -> Result<(), StoreError> {
        self.inner.forget_instance(id).await
    }

    async fn revoke_session(&self, id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.revoke_session(id, until).await
    }

    async fn session_revoked(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.session_revoked(id, now).await
    }

    async fn schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        self.inner.schedules().await
    }

    async fn change_schedule(
        &self,
        name: &str,
        change: ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSchedule>, StoreError> {
        self.inner.change_schedule(name, change, now).await
    }

    async fn release(&self, lease: &Lease) -> Result<usize, StoreError> {
        match self.next(Operation::Release) {
            Some(Fault::Fail) => Err(injected("release failed")),
            Some(Fault::LoseReply) => {
                self.inner.release(lease).await?;
                Err(injected("release reply lost"))
            }
            Some(Fault::Hang) => hang().await,
            None => self.inner.release(lease).await,
        }
    }

    async fn rewrite_values(&self, rewrite: &Rewrite) -> Result<bool, StoreError> {
        self.inner.rewrite_values(rewrite).await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.renew_leases(owner, ids, expires_at).await
    }

    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        self.inner.reclaim_expired(now, max_recoveries).await
    }

    async fn elect(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match self.next(Operation::Elect) {
            Some(Fault::Fail) => Err(injected("campaign failed")),
            Some(Fault::LoseReply) => {
                self.inner.elect(name, owner, now, until).await?;
                Err(injected("campaign reply lost"))
            }
            Some(Fault::Hang) => hang().await,
            None => self.inner.elect(name, owner, now, until).await,
        }
    }

    async fn resign(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.resign(name, owner).await
    }

    async fn prune(&self, retention: &Retention, now: DateTime<Utc>) -> Result<usize, StoreError> {
        match self.next(Operation::Prune) {
            Some(Fault::Fail) => Err(injected("prune failed")),
            Some(Fault::LoseReply) => {
                self.inner.prune(retention, now).await?;
                Err(injected("prune reply lost"))
            }
            Some(Fault::Hang) => hang().await,
            None => self.inner.prune(retention, now).await,
        }
    }

    fn enqueued_elsewhere(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.inner.enqueued_elsewhere()
    }

    fn event_log(&self) -> Option<&dyn super::events::EventLog> {
        self.inner.event_log()
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}
