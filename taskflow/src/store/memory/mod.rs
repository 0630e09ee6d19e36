//! [`MemoryStore`]: every task in a map behind one lock. For tests and for apps that accept
//! losing their task history on restart.

mod cancel;
mod fetch;
mod inserts;
mod instances;
mod reads;
mod upkeep;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use super::counters::{MinuteCounts, Phase, StatusCount, Tally};
use super::reclaim::{ReclaimAs, reclaim};
use super::{
    DEFAULT_PAGE, Enqueued, Fetch, FunctionStats, Lease, P95_WINDOW, Reclaimed, Retention, Rewrite,
    Store, StoreError, TaskPage, TaskQuery, TaskStats, Transition, p95,
};
use crate::id::TaskId;
use crate::instance::Instance;
use crate::queue::{QueueChange, QueueCounts, QueueState};
use crate::record::{LogEntry, Progress, TaskRecord, TaskStatus};
use crate::store::{ScheduleChange, StoredSchedule};

/// A store that keeps tasks in memory.
///
/// It keeps at most [`MemoryStore::DEFAULT_MAX_FINISHED`] finished tasks (the newest; see
/// [`MemoryStore::with_max_finished`]), dropping the oldest as new ones finish, so memory stays
/// flat under a sustained load; pending and running tasks are always kept.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Boxed, so the map's spare room (up to half of it after growing) costs a pointer per
    /// slot rather than a whole record.
    tasks: HashMap<TaskId, Box<TaskRecord>>,
    /// Idempotency key -> the task that holds it while active.
    keys: HashMap<String, TaskId>,
    /// Run key -> the last task enqueued under it (it waits under the key while it is
    /// pending and has never started).
    run_keys: HashMap<String, TaskId>,
    /// Finished tasks, oldest first.
    finished: VecDeque<TaskId>,
    /// Pending tasks held back from fetching, until when at the latest.
    held: HashMap<TaskId, DateTime<Utc>>,
    /// Each task's place in enqueue order (ids made in the same millisecond are not ordered).
    order: HashMap<TaskId, u64>,
    next_order: u64,
    /// The queues' shared state, by name.
    queues: HashMap<String, QueueState>,
    /// Leaderships: name -> (owner, until).
    leaders: HashMap<String, (String, DateTime<Utc>)>,
    max_finished: usize,
    /// Each rate-limited queue's token bucket: tokens, and when counted (micros).
    buckets: HashMap<String, (f64, i64)>,
    /// The instances' heartbeats, by id.
    instances: BTreeMap<String, Instance>,
    /// The schedules, by name.
    schedules: BTreeMap<String, StoredSchedule>,
    /// Revoked admin sessions, until when.
    revoked: HashMap<String, DateTime<Utc>>,
    /// Running tasks asked to stop ([`Store::request_cancel`]), until their next fetch.
    cancels: std::collections::HashSet<TaskId>,
    /// The counters ([`Store::counts`], [`Store::history`]).
    tally: Tally,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_max_finished(Self::DEFAULT_MAX_FINISHED)
    }
}

impl MemoryStore {
    /// How many finished tasks a default store keeps.
    pub const DEFAULT_MAX_FINISHED: usize = 10_000;

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that keeps at most `max_finished` finished tasks.
    pub fn with_max_finished(max_finished: usize) -> Self {
        MemoryStore { state: Mutex::new(State { max_finished, ..State::default() }) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// The task waiting under the run key `key`: pending and never started.
    fn waiting_under(&self, key: &str) -> Option<TaskId> {
        let id = self.run_keys.get(key)?;
        let record = self.tasks.get(id)?;
        (record.status == TaskStatus::Pending && record.start_time.is_none()).then_some(*id)
    }

    /// Cancels the pending task `id` at `now`, with `error` if given; returns the evicted
    /// record, to be dropped once the lock is released.
    #[must_use]
    fn cancel(
        &mut self,
        id: TaskId,
        now: DateTime<Utc>,
        error: Option<String>,
    ) -> Option<TaskRecord> {
        self.held.remove(&id);
        let record = self.tasks.get_mut(&id)?;
        let before = Phase::of(record);
        record.status = TaskStatus::Cancelled;
        record.end_time = Some(now);
        if error.is_some() {
            record.error = error;
        }
        self.tally.change(record, before, now);
        self.finished(id)
    }

    /// Records that `id` finished, evicting the oldest finished task beyond the cap (there is
    /// never more than one: every task that finishes comes through here). Returns the evicted
    /// record, to be dropped once the lock is released.
    #[must_use]
    fn finished(&mut self, id: TaskId) -> Option<TaskRecord> {
        self.finished.push_back(id);
        if self.finished.len() > self.max_finished {
            let old = self.finished.pop_front()?;
            return self.remove_finished(&old);
        }
        None
    }

    /// Removes `id` if it has finished.
    fn remove_finished(&mut self, id: &TaskId) -> Option<TaskRecord> {
        match self.tasks.get(id) {
            Some(record) if record.status.is_finished() => {
                if let Some(key) = &record.idempotency_key
                    && self.keys.get(key) == Some(id)
                {
                    self.keys.remove(key);
                }
                if let Some(key) = &record.run_key
                    && self.run_keys.get(key) == Some(id)
                {
                    self.run_keys.remove(key);
                }
                self.order.remove(id);
                self.cancels.remove(id);
                self.tally.remove(record);
                self.tasks.remove(id).map(|record| *record)
            }
            _ => None,
        }
    }

    /// Gives back the maps' spare room once they hold far fewer tasks than they have room for.
    fn shrink(&mut self) {
        if self.tasks.capacity() > 4 * self.tasks.len().max(1024) {
            self.tasks.shrink_to_fit();
            self.keys.shrink_to_fit();
            self.run_keys.shrink_to_fit();
            self.finished.shrink_to_fit();
        }
    }
}

fn holds(record: &TaskRecord, lease: &Lease) -> bool {
    record.status == TaskStatus::Running && record.lease_owner.as_deref() == Some(&*lease.owner)
}

#[async_trait]
impl Store for MemoryStore {
    fn enqueue(&self, record: TaskRecord) -> Result<Enqueued, StoreError> {
        self.store(record, None)
    }

    fn enqueue_held(
        &self,
        record: TaskRecord,
        until: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        self.store(record, Some(until))
    }

    async fn release_held(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        let mut state = self.lock();
        for id in ids {
            state.held.remove(id);
        }
        Ok(())
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.lock().tasks.get(id).map(|record| TaskRecord::clone(record)))
    }

    async fn transition(
        &self,
        id: &TaskId,
        lease: &Lease,
        change: Transition,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(id).filter(|r| holds(r, lease)) else {
            return Ok(false);
        };
        let ends = matches!(change, Transition::Finished { .. });
        let before = Phase::of(record);
        match change {
            Transition::Finished { status, end_time, retries_used, result, error, stacktrace } => {
                record.status = status;
                record.end_time = Some(end_time);
                record.duration = record
                    .start_time
                    .map(|start| (end_time - start).num_microseconds().unwrap_or(0) as f64 / 1e6);
                record.retries_used = retries_used;
                record.result = result;
                if error.is_some() {
                    record.error = error;
                    record.stacktrace = stacktrace;
                }
                record.lease_owner = None;
                record.lease_expires_at = None;
            }
            Transition::Requeue => {
                record.status = TaskStatus::Pending;
                record.lease_owner = None;
                record.lease_expires_at = None;
            }
            Transition::Reschedule { due, retries_used, error, stacktrace } => {
                record.status = TaskStatus::Pending;
                record.scheduled_at = Some(due);
                record.retries_used = retries_used;
                if error.is_some() {
                    record.error = error;
                    record.stacktrace = stacktrace;
                }
                record.lease_owner = None;
                record.lease_expires_at = None;
            }
        }
        let fields = &mut *state;
        if let Some(record) = fields.tasks.get(id) {
            fields.tally.change(record, before, Utc::now());
        }
        let evicted = if ends { state.finished(*id) } else { None };
        drop(state);
        drop(evicted);
        Ok(true)
    }

    async fn append_logs(&self, id: &TaskId, logs: Vec<LogEntry>) -> Result<(), StoreError> {
        if let Some(record) = self.lock().tasks.get_mut(id) {
            record.logs.extend(logs);
        }
        Ok(())
    }

    async fn cancel_pending(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        let mut state = self.lock();
        let Some(record) = state.tasks.get_mut(id) else {
            return Ok(None);
        };
        let before = record.status;
        let mut evicted = None;
        if before == TaskStatus::Pending {
            evicted = state.cancel(*id, chrono::Utc::now(), None);
        }
        drop(state);
        drop(evicted);
        Ok(Some(before))
    }

    async fn request_cancel(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        Ok(self.flag_cancel(id))
    }

    async fn cancel_requests(
        &self,
        owner: &str,
        ids: &[TaskId],
    ) -> Result<Vec<TaskId>, StoreError> {
        Ok(self.flagged(owner, ids))
    }

    async fn record_progress(
        &self,
        owner: &str,
        reports: &[(TaskId, Progress)],
    ) -> Result<(), StoreError> {
        self.write_progress(owner, reports).await
    }

    async fn cancel_scheduled(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError> {
        let mut state = self.lock();
        let Some(id) = state.waiting_under(key) else { return Ok(None) };
        let evicted = state.cancel(id, now, None);
        drop(state);
        drop(evicted);
        Ok(Some(id))
    }

    async fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        self.page(query).await
    }

    async fn stats(&self, since: Option<DateTime<Utc>>) -> Result<TaskStats, StoreError> {
        self.compute_stats(since).await
    }

    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        Ok(self.lock().tally.counts())
    }

    async fn history(
        &self,
        since: DateTime<Utc>,
        step: u32,
    ) -> Result<Vec<MinuteCounts>, StoreError> {
        Ok(self.lock().tally.minutes(since, step))
    }

    async fn trim_history(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        Ok(self.lock().tally.trim(before))
    }

    async fn compact_counters(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.lock().tally.roll_up(now);
        Ok(())
    }

    async fn fetch(&self, fetch: &Fetch<'_>) -> Result<Vec<TaskRecord>, StoreError> {
        Ok(self.take_available(fetch))
    }

    async fn next_due(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let state = self.lock();
        let due = state
            .tasks
            .values()
            .filter(|r| r.status == TaskStatus::Pending && r.queue == queue)
            .map(|r| {
                let held = state.held.get(&r.task_id).copied();
                super::due_at(r).max(held.unwrap_or(DateTime::<Utc>::MIN_UTC))
            });
        Ok(due.filter(|at| *at > Utc::now()).min())
    }

    async fn queue_states(&self) -> Result<Vec<QueueState>, StoreError> {
        Ok(self.lock().queues.values().cloned().collect())
    }

    async fn update_queue(
        &self,
        queue: &str,
        change: QueueChange,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError> {
        let mut state = self.lock();
        let updated = change.apply(queue, state.queues.remove(queue), now);
        state.queues.insert(queue.to_owned(), updated.clone());
        Ok(updated)
    }

    async fn queue_counts(&self) -> Result<Vec<QueueCounts>, StoreError> {
        let now = chrono::Utc::now();
        let state = self.lock();
        let mut counts: BTreeMap<&str, QueueCounts> = BTreeMap::new();
        for record in state.tasks.values() {
            let active = matches!(record.status, TaskStatus::Pending | TaskStatus::Running);
            if !active {
                continue;
            }
            let entry = counts.entry(&record.queue).or_insert_with(|| QueueCounts {
                queue: record.queue.clone(),
                ..QueueCounts::default()
            });
            match record.status {
                TaskStatus::Pending => {
                    entry.pending += 1;
                    entry.due += u64::from(super::due_at(record) <= now);
                }
                _ => entry.running += 1,
            }
        }
        Ok(counts.into_values().collect())
    }

    async fn heartbeat(&self, instance: &Instance) -> Result<(), StoreError> {
        self.beat(instance).await
    }

    async fn instances(&self, now: DateTime<Utc>) -> Result<Vec<Instance>, StoreError> {
        self.live_instances(now).await
    }

    async fn forget_instance(&self, id: &str) -> Result<(), StoreError> {
        self.forget(id).await
    }

    async fn revoke_session(&self, id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.revoke(id, until).await
    }

    async fn session_revoked(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.revoked(id, now).await
    }

    async fn release(&self, lease: &Lease) -> Result<usize, StoreError> {
        Ok(self.release_lease(lease))
    }

    async fn rewrite_values(&self, rewrite: &Rewrite) -> Result<bool, StoreError> {
        Ok(self.rewrite(rewrite))
    }

    async fn schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        Ok(self.lock().schedules.values().cloned().collect())
    }

    async fn change_schedule(
        &self,
        name: &str,
        change: ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSchedule>, StoreError> {
        Ok(self.apply_schedule(name, change, now))
    }

    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.extend_leases(owner, ids, expires_at).await
    }

    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        self.rescue_expired(now, max_recoveries).await
    }

    async fn elect(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.campaign(name, owner, now, until).await
    }

    async fn resign(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.step_down(name, owner).await
    }

    async fn prune(&self, retention: &Retention, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.prune_finished(retention, now).await
    }
}
