//! [`Deadline`]: every operation on a shared store answers within a bound, so a database that
//! hangs (connections held open with no bytes passing) turns into errors and `503`s instead of
//! requests that hang for the whole outage.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Change, Enqueued, Fetch, Lease, Reclaimed, Retention, Rewrite, Store, StoreError, TaskPage,
    TaskQuery, TaskStats, Transition,
};
use crate::id::TaskId;
use crate::instance::Instance;
use crate::queue::{QueueChange, QueueCounts, QueueState};
use crate::record::{LogEntry, Progress, TaskRecord, TaskStatus};
use crate::store::{MinuteCounts, ScheduleChange, StatusCount, StoredSchedule};

/// How long a shared store's operations may take before they are reported timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreTimeouts {
    /// Operations on one task and its durable enqueue: get, fetch, writes, cancel, a page of
    /// the list (default 5 s).
    pub operation: Duration,
    /// Operations over many tasks: statistics, reclaim, prune, the pending scan at start
    /// (default 60 s).
    pub bulk: Duration,
}

impl Default for StoreTimeouts {
    fn default() -> Self {
        StoreTimeouts { operation: Duration::from_secs(5), bulk: Duration::from_secs(60) }
    }
}

/// A store whose every operation is bounded by [`StoreTimeouts`]; what runs past its bound is
/// dropped and reported as [`StoreError::TimedOut`].
pub(crate) struct Deadline {
    inner: Arc<dyn Store>,
    timeouts: StoreTimeouts,
}

impl Deadline {
    pub(crate) fn new(inner: Arc<dyn Store>, timeouts: StoreTimeouts) -> Deadline {
        Deadline { inner, timeouts }
    }
}

/// `future`, or [`StoreError::TimedOut`] after `limit`.
pub(crate) async fn within<T>(
    what: &'static str,
    limit: Duration,
    future: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, future).await {
        Ok(outcome) => outcome,
        Err(_) => Err(StoreError::TimedOut { what, after: limit }),
    }
}

#[async_trait]
impl Store for Deadline {
    fn enqueue(&self, record: TaskRecord) -> Result<Enqueued, StoreError> {
        let mut enqueued = self.inner.enqueue(record)?;
        enqueued.write = enqueued.write.map(|write| write.deadline(self.timeouts.operation));
        Ok(enqueued)
    }

    fn enqueue_held(
        &self,
        record: TaskRecord,
        until: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        let mut enqueued = self.inner.enqueue_held(record, until)?;
        enqueued.write = enqueued.write.map(|write| write.deadline(self.timeouts.operation));
        Ok(enqueued)
    }

    fn enqueue_many(
        &self,
        records: Vec<(TaskRecord, Option<DateTime<Utc>>)>,
    ) -> Vec<Result<Enqueued, StoreError>> {
        let mut answers = self.inner.enqueue_many(records);
        for enqueued in answers.iter_mut().flatten() {
            enqueued.write =
                enqueued.write.take().map(|write| write.deadline(self.timeouts.operation));
        }
        answers
    }

    async fn release_held(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        within("release_held", self.timeouts.operation, self.inner.release_held(ids)).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        within("flush", self.timeouts.operation, self.inner.flush()).await
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        within("get", self.timeouts.operation, self.inner.get(id)).await
    }

    async fn resolve(&self, id: &TaskId) -> Result<Option<TaskId>, StoreError> {
        within("resolve", self.timeouts.operation, self.inner.resolve(id)).await
    }

    async fn transition(
        &self,
        id: &TaskId,
        lease: &Lease,
        change: Transition,
    ) -> Result<bool, StoreError> {
        within("transition", self.timeouts.operation, self.inner.transition(id, lease, change))
            .await
    }

    async fn transition_many(&self, changes: Vec<Change>) -> Vec<Result<bool, StoreError>> {
        let count = changes.len();
        let limit = self.timeouts.operation;
        match tokio::time::timeout(limit, self.inner.transition_many(changes)).await {
            Ok(results) => results,
            Err(_) => vec![Err(StoreError::TimedOut { what: "transition", after: limit }); count],
        }
    }

    async fn append_logs(&self, id: &TaskId, logs: Vec<LogEntry>) -> Result<(), StoreError> {
        within("append_logs", self.timeouts.operation, self.inner.append_logs(id, logs)).await
    }

    async fn cancel_pending(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        within("cancel", self.timeouts.operation, self.inner.cancel_pending(id)).await
    }

    async fn request_cancel(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        within("cancel", self.timeouts.operation, self.inner.request_cancel(id)).await
    }

    async fn cancel_requests(
        &self,
        owner: &str,
        ids: &[TaskId],
    ) -> Result<Vec<TaskId>, StoreError> {
        within("cancel_requests", self.timeouts.operation, self.inner.cancel_requests(owner, ids))
            .await
    }

    async fn record_progress(
        &self,
        owner: &str,
        reports: &[(TaskId, Progress)],
    ) -> Result<(), StoreError> {
        within("progress", self.timeouts.operation, self.inner.record_progress(owner, reports))
            .await
    }

    async fn cancel_scheduled(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError> {
        within("cancel", self.timeouts.operation, self.inner.cancel_scheduled(key, now)).await
    }

    async fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        within("list", self.timeouts.operation, self.inner.list(query)).await
    }

    async fn stats(&self, since: Option<DateTime<Utc>>) -> Result<TaskStats, StoreError> {
        within("stats", self.timeouts.bulk, self.inner.stats(since)).await
    }

    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        within("counts", self.timeouts.bulk, self.inner.counts()).await
    }

    async fn history(
        &self,
        since: DateTime<Utc>,
        step: u32,
    ) -> Result<Vec<MinuteCounts>, StoreError> {
        within("history", self.timeouts.bulk, self.inner.history(since, step)).await
    }

    async fn compact_counters(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        within("compact_counters", self.timeouts.bulk, self.inner.compact_counters(now)).await
    }

    async fn trim_history(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        within("trim_history", self.timeouts.bulk, self.inner.trim_history(before)).await
    }

    async fn fetch(&self, fetch: &Fetch<'_>) -> Result<Vec<TaskRecord>, StoreError> {
        within("fetch", self.timeouts.operation, self.inner.fetch(fetch)).await
    }

    async fn next_due(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        within("next_due", self.timeouts.operation, self.inner.next_due(queue)).await
    }

    async fn queue_states(&self) -> Result<Vec<QueueState>, StoreError> {
        within("queue_states", self.timeouts.operation, self.inner.queue_states()).await
    }

    async fn update_queue(
        &self,
        queue: &str,
        change: QueueChange,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError> {
        within("update_queue", self.timeouts.operation, self.inner.update_queue(queue, change, now))
            .await
    }

    async fn queue_counts(&self) -> Result<Vec<QueueCounts>, StoreError> {
        within("queue_counts", self.timeouts.bulk, self.inner.queue_counts()).await
    }

    async fn count_pending(&self, queue: &str, cap: u64) -> Result<u64, StoreError> {
        within("count_pending", self.timeouts.operation, self.inner.count_pending(queue, cap)).await
    }

    async fn heartbeat(&self, instance: &Instance) -> Result<(), StoreError> {
        within("heartbeat", self.timeouts.operation, self.inner.heartbeat(instance)).await
    }

    async fn instances(&self, now: DateTime<Utc>) -> Result<Vec<Instance>, StoreError> {
        within("instances", self.timeouts.operation, self.inner.instances(now)).await
    }

    async fn forget_instance(&self, id: &str) -> Result<(), StoreError> {
        within("forget_instance", self.timeouts.operation, self.inner.forget_instance(id)).await
    }

    async fn revoke_session(&self, id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        within("revoke_session", self.timeouts.operation, self.inner.revoke_session(id, until))
            .await
    }

    async fn session_revoked(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        within("session_revoked", self.timeouts.operation, self.inner.session_revoked(id, now))
            .await
    }

    async fn schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        within("schedules", self.timeouts.operation, self.inner.schedules()).await
    }

    async fn change_schedule(
        &self,
        name: &str,
        change: ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSchedule>, StoreError> {
        let change = self.inner.change_schedule(name, change, now);
        within("change_schedule", self.timeouts.operation, change).await
    }

    async fn release(&self, lease: &Lease) -> Result<usize, StoreError> {
        within("release", self.timeouts.operation, self.inner.release(lease)).await
    }

    async fn rewrite_values(&self, rewrite: &Rewrite) -> Result<bool, StoreError> {
        within("rewrite_values", self.timeouts.operation, self.inner.rewrite_values(rewrite)).await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let renew = self.inner.renew_leases(owner, ids, expires_at);
        within("renew_leases", self.timeouts.operation, renew).await
    }

    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        let reclaim = self.inner.reclaim_expired(now, max_recoveries);
        within("reclaim", self.timeouts.bulk, reclaim).await
    }

    async fn elect(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        within("elect", self.timeouts.operation, self.inner.elect(name, owner, now, until)).await
    }

    async fn resign(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        within("resign", self.timeouts.operation, self.inner.resign(name, owner)).await
    }

    async fn prune(&self, retention: &Retention, now: DateTime<Utc>) -> Result<usize, StoreError> {
        within("prune", self.timeouts.bulk, self.inner.prune(retention, now)).await
    }

    fn enqueued_elsewhere(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.inner.enqueued_elsewhere()
    }

    fn event_log(&self) -> Option<&dyn super::events::EventLog> {
        self.inner.event_log()
    }

    async fn close(&self) -> Result<(), StoreError> {
        within("close", self.timeouts.bulk, self.inner.close()).await
    }
}
