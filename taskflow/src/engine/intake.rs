//! The engine's intake: a new task checked against the limits and its queue's bound, stored
//! (alone, or with others in one batch: [`Store::enqueue_many`](crate::store::Store)),
//! reported enqueued, and let start once the store has made it durable.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::queues::{self, QueueRunner};
use super::{Engine, REQUEST_HOLD, new_record};
use crate::context::TaskContext;
use crate::enqueue::{Enqueuer, NewTask};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::id::TaskId;
use crate::record::{TaskRecord, TaskStatus};
use crate::store::{Enqueued, StoreError, WriteTicket, in_order, unanswered};

/// A new task that passed its checks, while the store takes it.
struct Admitted {
    pending: bool,
    due: Option<DateTime<Utc>>,
    runner: Arc<QueueRunner>,
    context: Option<TaskContext>,
}

impl Engine {
    /// The record of `new`, checked, and counted into its queue when pending.
    fn intake(self: &Arc<Self>, new: NewTask) -> Result<(TaskRecord, Admitted)> {
        let mut record = new_record(new, self.clock.now());
        self.limits.check(&record)?;
        crate::trace::capture(&mut record.tags); // after the check: the user's tags are bounded
        let (pending, due) = (record.status == TaskStatus::Pending, record.scheduled_at);
        let runner =
            if pending { self.admit(&record)? } else { Arc::clone(self.queue_of(&record)?) };
        let context = (!self.observers.is_empty()).then(|| self.context_for(&record));
        Ok((record, Admitted { pending, due, runner, context }))
    }

    /// Reports what the store made of an admitted task.
    fn stored(
        self: &Arc<Self>,
        admitted: Admitted,
        stored: Result<Enqueued, StoreError>,
    ) -> Result<Enqueued> {
        let Admitted { pending, due, runner, context } = admitted;
        let mut enqueued = match stored {
            Ok(enqueued) => enqueued,
            Err(err) => {
                if pending {
                    runner.unadmit();
                }
                return Err(err.into());
            }
        };
        let id = enqueued.id;
        enqueued.write = enqueued.write.map(|write| write.read_back(Arc::clone(&self.store), id));
        if enqueued.created && pending {
            if let Some(context) = context {
                context.emit(EventKind::Enqueued, None);
            }
            if let Some(due) = due {
                runner.wake.at(due, self.clock.now());
            }
        } else if pending {
            runner.unadmit();
        }
        Ok(enqueued)
    }

    /// Until when a request's tasks are held at the latest, should the release never come.
    fn hold_until(&self) -> DateTime<Utc> {
        self.clock.now() + chrono::Duration::from_std(REQUEST_HOLD).unwrap_or_default()
    }

    /// Stores a new task (held back from fetching when `held`) and reports it enqueued. Fails
    /// with nothing stored for an undeclared queue, or a queue at its `max_pending`.
    pub(crate) fn store_new(self: &Arc<Self>, new: NewTask, held: bool) -> Result<Enqueued> {
        let (record, admitted) = self.intake(new)?;
        let stored = if held && admitted.pending {
            self.store.enqueue_held(record, self.hold_until())
        } else {
            self.store.enqueue(record)
        };
        self.stored(admitted, stored)
    }

    /// Stores new tasks as [`Engine::store_new`] does each (each held back when its flag
    /// says so), handing the store all of them at once; one result per task, in order.
    pub(crate) fn store_many(
        self: &Arc<Self>,
        news: Vec<(NewTask, bool)>,
    ) -> Vec<Result<Enqueued>> {
        let until = self.hold_until();
        let admitted = news.into_iter().map(|(new, held)| {
            let (record, admitted) = self.intake(new)?;
            let hold = (held && admitted.pending).then_some(until);
            Ok(((record, hold), admitted))
        });
        in_order(admitted.collect(), |admitted| {
            let (records, admitted): (Vec<_>, Vec<_>) = admitted.into_iter().unzip();
            let mut stored = self.store.enqueue_many(records).into_iter();
            let answers = admitted.into_iter().map(|admitted| {
                self.stored(admitted, stored.next().unwrap_or_else(|| Err(unanswered())))
            });
            answers.collect()
        })
    }

    /// The declared queue of `record`.
    fn queue_of(&self, record: &TaskRecord) -> Result<&Arc<QueueRunner>> {
        self.queues
            .get(&record.queue)
            .ok_or_else(|| Error::UnknownQueue { queue: record.queue.clone() })
    }

    /// Counts the pending task `record` into its queue, or refuses it: an undeclared queue,
    /// or one at its `max_pending` (by this instance's estimate, read again from the store
    /// every 50 ms while enqueues flow; see
    /// [`TaskManagerBuilder::queue`](crate::TaskManagerBuilder::queue)).
    pub(crate) fn admit(self: &Arc<Self>, record: &TaskRecord) -> Result<Arc<QueueRunner>> {
        let runner = self.queue_of(record)?;
        let (admitted, recount) = runner.admit();
        if recount {
            queues::recount(self, runner);
        }
        if let Err(limit) = admitted {
            let retry_after = self.queues.retry_after;
            return Err(Error::QueueFull { queue: record.queue.clone(), limit, retry_after });
        }
        Ok(Arc::clone(runner))
    }

    /// Wakes the producer of `queue` once `write` has made a task durable (at once without
    /// one); logs a write that failed.
    pub(crate) fn start_when_durable(
        self: &Arc<Self>,
        id: TaskId,
        queue: &str,
        write: Option<WriteTicket>,
    ) {
        self.start_all_when_durable(vec![(id, queue.to_owned(), write)]);
    }

    /// Wakes the producers of the queues of `started` once their writes have made them
    /// durable (at once for those without one), with one waiter for all; logs each write
    /// that failed.
    pub(crate) fn start_all_when_durable(
        self: &Arc<Self>,
        started: Vec<(TaskId, String, Option<WriteTicket>)>,
    ) {
        let mut waiting = Vec::new();
        let mut writes = Vec::new();
        let mut queues: Vec<String> = Vec::new();
        for (id, queue, write) in started {
            match write {
                Some(write) => {
                    waiting.push((id, queue));
                    writes.push(write.wait());
                }
                None if !queues.contains(&queue) => queues.push(queue),
                None => {}
            }
        }
        for queue in &queues {
            self.queues.wake(queue);
        }
        if waiting.is_empty() {
            return;
        }
        let engine = Arc::clone(self);
        self.runtime.spawn(async move {
            let outcomes = futures_util::future::join_all(writes).await;
            let mut woken: Vec<&str> = Vec::new();
            for ((id, queue), outcome) in waiting.iter().zip(outcomes) {
                match outcome {
                    Ok(()) if !woken.contains(&queue.as_str()) => {
                        engine.queues.wake(queue);
                        woken.push(queue);
                    }
                    Ok(()) => {}
                    Err(err) => {
                        tracing::error!(task_id = %id, error = %err, "taskflow: the task could not be stored; it will not run");
                    }
                }
            }
        });
    }

    /// Lets a request's held tasks be fetched, and wakes the producers of their `queues`.
    pub(crate) fn release_held(self: &Arc<Self>, ids: Vec<TaskId>, queues: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let engine = Arc::clone(self);
        self.runtime.spawn(async move {
            let mut pause = Duration::from_millis(50);
            for _ in 0..8 {
                match engine.store.release_held(&ids).await {
                    Ok(()) => {
                        for queue in &queues {
                            engine.queues.wake(queue);
                        }
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, tasks = ids.len(), "taskflow: could not release a request's tasks; trying again");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            }
            tracing::error!(tasks = ids.len(), "taskflow: could not release a request's tasks; they start when their hold ends");
        });
    }
}

impl Enqueuer for Engine {
    fn enqueue(self: Arc<Self>, new: NewTask, held: bool) -> Result<Enqueued> {
        self.store_new(new, held)
    }

    fn enqueue_many(self: Arc<Self>, news: Vec<(NewTask, bool)>) -> Vec<Result<Enqueued>> {
        self.store_many(news)
    }

    fn start_when_durable(self: Arc<Self>, id: TaskId, queue: &str, write: Option<WriteTicket>) {
        Engine::start_when_durable(&self, id, queue, write);
    }

    fn start_all_when_durable(
        self: Arc<Self>,
        started: Vec<(TaskId, String, Option<WriteTicket>)>,
    ) {
        Engine::start_all_when_durable(&self, started);
    }

    fn release(self: Arc<Self>, ids: Vec<TaskId>, queues: Vec<String>) {
        self.release_held(ids, queues);
    }
}
