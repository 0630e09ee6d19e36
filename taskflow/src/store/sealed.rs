//! [`Sealed`]: a store whose tasks' arguments and results, and schedules' arguments, are
//! sealed before they reach the inner store and opened when read back (feature
//! `encryption`), so no backend ever holds them in the clear. A fetched task that does not
//! open is settled here instead of running: one sealed with a key the ring lacks waits
//! (pending, its attempt not used) for the key to come back; one that the key cannot decrypt
//! fails, its error naming the key.

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
use crate::seal::{Keyring, OpenError, sealed_with};
use crate::store::{MinuteCounts, ScheduleChange, StatusCount, StoredSchedule};

/// How long a task sealed with a missing key waits before it is fetched again.
pub(crate) const KEY_WAIT: Duration = Duration::from_secs(60);

/// A store that seals what it is given and opens what it returns.
pub(crate) struct Sealed {
    inner: Arc<dyn Store>,
    keyring: Arc<Keyring>,
}

pub(crate) fn schedule_owner(name: &str) -> String {
    format!("schedule/{name}")
}

impl Sealed {
    pub(crate) fn new(inner: Arc<dyn Store>, keyring: Arc<Keyring>) -> Sealed {
        Sealed { inner, keyring }
    }

    fn seal(&self, record: TaskRecord) -> Result<TaskRecord, StoreError> {
        seal_record(&self.keyring, record)
    }

    /// `record` with what opens opened; a value that does not stays sealed (the API shows it
    /// as such).
    fn open(&self, mut record: TaskRecord) -> TaskRecord {
        let owner = record.task_id.to_string();
        if let Ok(args) = self.keyring.open(&owner, "args", &record.args) {
            record.args = args;
        }
        if let Some(result) = &record.result
            && let Ok(open) = self.keyring.open(&owner, "result", result)
        {
            record.result = Some(open);
        }
        record
    }

    fn seal_transition(&self, id: &TaskId, change: Transition) -> Transition {
        match change {
            Transition::Finished { status, end_time, retries_used, result, error, stacktrace } => {
                let result =
                    result.map(|value| self.keyring.seal(&id.to_string(), "result", &value));
                Transition::Finished { status, end_time, retries_used, result, error, stacktrace }
            }
            other => other,
        }
    }

    fn seal_schedule(&self, mut schedule: StoredSchedule) -> StoredSchedule {
        schedule.args = self.keyring.seal(&schedule_owner(&schedule.name), "args", &schedule.args);
        schedule
    }

    /// `schedule` to define, sealed: with the arguments `stored` holds when they open to the
    /// same value under the primary key (sealing again would make them differ, a
    /// redefinition every start), sealed anew otherwise (new, changed, or sealed with an
    /// older key: defining it again re-seals it).
    fn seal_definition(
        &self,
        schedule: StoredSchedule,
        stored: Option<StoredSchedule>,
    ) -> StoredSchedule {
        let owner = schedule_owner(&schedule.name);
        let unchanged = stored.filter(|stored| {
            stored.func_name == schedule.func_name
                && stored.definition == schedule.definition
                && sealed_with(&stored.args) == self.keyring.primary_id()
                && self.keyring.open(&owner, "args", &stored.args).ok().as_ref()
                    == Some(&schedule.args)
        });
        match unchanged {
            Some(stored) => StoredSchedule { args: stored.args, ..schedule },
            None => self.seal_schedule(schedule),
        }
    }

    fn open_schedule(&self, mut schedule: StoredSchedule) -> StoredSchedule {
        let owner = schedule_owner(&schedule.name);
        if let Ok(args) = self.keyring.open(&owner, "args", &schedule.args) {
            schedule.args = args;
        }
        schedule
    }

    /// Settles a fetched task whose arguments do not open, instead of running it.
    async fn settle(&self, record: &TaskRecord, fetch: &Fetch<'_>, err: OpenError) {
        let (id, lease) = (record.task_id, fetch.lease);
        let change = match &err {
            OpenError::MissingKey(key) => Transition::Reschedule {
                due: fetch.now + chrono::Duration::from_std(KEY_WAIT).unwrap_or_default(),
                retries_used: record.retries_used,
                error: Some(format!(
                    "waiting for encryption key `{key}`: its arguments are sealed with it"
                )),
                stacktrace: None,
            },
            OpenError::Decrypt(_) | OpenError::Malformed(_) => Transition::Finished {
                status: TaskStatus::Failed,
                end_time: fetch.now,
                retries_used: record.retries_used,
                result: None,
                error: Some(format!("the task's arguments cannot be opened: {err}")),
                stacktrace: None,
            },
        };
        if let Err(store) = self.inner.transition(&id, lease, change).await {
            tracing::error!(task_id = %id, error = %store, "taskflow: could not settle a task whose arguments do not open");
        }
    }
}

#[async_trait]
impl Store for Sealed {
    fn enqueue(&self, record: TaskRecord) -> Result<Enqueued, StoreError> {
        self.inner.enqueue(self.seal(record)?)
    }

    fn enqueue_held(
        &self,
        record: TaskRecord,
        until: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        self.inner.enqueue_held(self.seal(record)?, until)
    }

    fn enqueue_many(
        &self,
        records: Vec<(TaskRecord, Option<DateTime<Utc>>)>,
    ) -> Vec<Result<Enqueued, StoreError>> {
        // Those that seal go to the store together; one that does not answers its error.
        let sealed = records.into_iter().map(|(record, hold)| Ok((self.seal(record)?, hold)));
        super::in_order(sealed.collect(), |sealed| self.inner.enqueue_many(sealed))
    }

    async fn release_held(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        self.inner.release_held(ids).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.inner.get(id).await?.map(|record| self.open(record)))
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
        self.inner.transition(id, lease, self.seal_transition(id, change)).await
    }

    async fn transition_many(&self, changes: Vec<Change>) -> Vec<Result<bool, StoreError>> {
        let changes = changes
            .into_iter()
            .map(|change| Change {
                transition: self.seal_transition(&change.id, change.transition),
                ..change
            })
            .collect();
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
        let mut page = self.inner.list(query).await?;
        page.tasks = page.tasks.into_iter().map(|record| self.open(record)).collect();
        Ok(page)
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
        let fetched = self.inner.fetch(fetch).await?;
        let mut opened = Vec::with_capacity(fetched.len());
        let mut waiting: Vec<String> = Vec::new();
        for mut record in fetched {
            let owner = record.task_id.to_string();
            match self.keyring.open(&owner, "args", &record.args) {
                Ok(args) => {
                    record.args = args;
                    opened.push(record);
                }
                Err(err) => {
                    if let OpenError::MissingKey(key) = &err {
                        waiting.push(key.clone());
                    } else {
                        tracing::error!(task_id = %record.task_id, error = %err, "taskflow: a task's sealed arguments do not open; it fails");
                    }
                    self.settle(&record, fetch, err).await;
                }
            }
        }
        if !waiting.is_empty() {
            waiting.sort();
            waiting.dedup();
            tracing::warn!(keys = ?waiting, "taskflow: tasks sealed with keys this keyring lacks wait, pending, until the keys are back");
        }
        Ok(opened)
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
        let schedules = self.inner.schedules().await?;
        Ok(schedules.into_iter().map(|schedule| self.open_schedule(schedule)).collect())
    }

    async fn change_schedule(
        &self,
        name: &str,
        change: ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSchedule>, StoreError> {
        let change = match change {
            ScheduleChange::Define(schedule) => {
                let stored = self.inner.schedules().await?.into_iter().find(|s| s.name == name);
                ScheduleChange::Define(self.seal_definition(schedule, stored))
            }
            ScheduleChange::Advance { version, next, fire, history } => {
                let fire =
                    fire.into_iter().map(|task| self.seal(task)).collect::<Result<_, _>>()?;
                ScheduleChange::Advance { version, next, fire, history }
            }
            ScheduleChange::Trigger(task) => ScheduleChange::Trigger(Box::new(self.seal(*task)?)),
            other => other,
        };
        let changed = self.inner.change_schedule(name, change, now).await?;
        Ok(changed.map(|schedule| self.open_schedule(schedule)))
    }

    async fn release(&self, lease: &Lease) -> Result<usize, StoreError> {
        self.inner.release(lease).await
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
        self.inner.elect(name, owner, now, until).await
    }

    async fn resign(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.resign(name, owner).await
    }

    async fn prune(&self, retention: &Retention, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.inner.prune(retention, now).await
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

/// `record` with its arguments and result sealed by `keyring`. Arguments that are sealed
/// already (a copy of a task whose key the ring lacks) cannot be bound to another task: an
/// error.
pub(crate) fn seal_record(
    keyring: &Keyring,
    mut record: TaskRecord,
) -> Result<TaskRecord, StoreError> {
    if let Some(key) = sealed_with(&record.args) {
        return Err(StoreError::Unavailable(format!(
            "task {}: its arguments are sealed with key `{key}`, which this keyring does not have; they cannot be copied onto another task",
            record.task_id
        )));
    }
    let owner = record.task_id.to_string();
    record.args = keyring.seal(&owner, "args", &record.args);
    if let Some(result) = &record.result {
        record.result = Some(keyring.seal(&owner, "result", result));
    }
    Ok(record)
}
