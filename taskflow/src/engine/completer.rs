//! The completer: turns an attempt's outcome into the task's next state and writes it, fenced
//! by the fetch's lease. A failure with retries left, or a snooze, goes back to the store due
//! later (it survives a crash during the wait); the rest end the task. A store error is
//! retried with backoff until the store answers, never dropped. The writes go in batches
//! ([`Completions`](super::completions::Completions)).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Engine, StopReason};
use crate::context::TaskContext;
use crate::event::EventKind;
use crate::failure::{FailureKind, TaskFailure};
use crate::id::TaskId;
use crate::limits::cut;
use crate::record::{TaskRecord, TaskStatus};
use crate::registry::registry;
use crate::store::{Lease, Transition};

/// How an attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The task returned its result.
    Succeeded(Option<Value>),
    /// The task failed (an error, a panic, a timeout, a decision of its own).
    Failed(TaskFailure),
    /// A cancel or a shutdown stopped it.
    Stopped(StopReason),
}

/// The write that follows `outcome`, and the event it makes once written.
struct Next {
    change: Transition,
    event: EventKind,
    message: Option<String>,
    /// When the task is due again, for a retry or a snooze.
    due: Option<DateTime<Utc>>,
}

/// Records `outcome` of the attempt of `record` (logs first), then reports it.
pub(crate) async fn complete(
    engine: &Arc<Engine>,
    record: &TaskRecord,
    lease: &Lease,
    context: &TaskContext,
    outcome: Outcome,
) {
    flush_logs(engine, &record.task_id, context).await;
    let next = decide(engine, record, outcome);
    let written =
        engine.completions.write(&engine.store, record.task_id, lease.clone(), next.change).await;
    if written {
        context.emit(next.event, next.message);
        if let Some(due) = next.due
            && let Some(runner) = engine.queues.get(&record.queue)
        {
            runner.wake.at(due, engine.clock.now());
        }
    }
}

fn decide(engine: &Engine, record: &TaskRecord, outcome: Outcome) -> Next {
    let attempt = record.retries_used;
    let limit = engine.limits.max_error_bytes;
    let now = engine.clock.now();
    let finished = |status, result, failure: Option<TaskFailure>| {
        let failure = failure.map(|f| TaskFailure {
            message: cut(f.message.clone(), limit),
            stacktrace: cut(f.stacktrace.clone(), limit),
            ..f
        });
        let event = match status {
            TaskStatus::Success => EventKind::Succeeded,
            TaskStatus::Cancelled => EventKind::Cancelled,
            TaskStatus::Interrupted => EventKind::Interrupted,
            _ => EventKind::Failed,
        };
        Next {
            message: failure.as_ref().map(|f| f.message.clone()),
            change: Transition::Finished {
                status,
                end_time: now,
                retries_used: attempt,
                result,
                error: failure.as_ref().map(|f| f.message.clone()),
                stacktrace: failure.map(|f| f.stacktrace),
            },
            event,
            due: None,
        }
    };
    match outcome {
        Outcome::Succeeded(result) => finished(TaskStatus::Success, result, None),
        Outcome::Stopped(StopReason::Cancel) => finished(TaskStatus::Cancelled, None, None),
        Outcome::Stopped(StopReason::Shutdown) if record.requeue_on_interrupt => Next {
            change: Transition::Requeue,
            event: EventKind::Interrupted,
            message: Some("requeued".to_owned()),
            due: None,
        },
        Outcome::Stopped(StopReason::Shutdown) => {
            let failure = TaskFailure::new(FailureKind::Error, "interrupted by shutdown");
            finished(TaskStatus::Interrupted, None, Some(failure))
        }
        Outcome::Failed(failure) if failure.kind == FailureKind::Snoozed => {
            let wait = failure.snoozed_for().unwrap_or_default();
            let due = later(now, wait);
            Next {
                change: Transition::Reschedule {
                    due,
                    retries_used: attempt,
                    error: None,
                    stacktrace: None,
                },
                event: EventKind::Snoozed,
                message: Some(format!("snoozed for {wait:?}")),
                due: Some(due),
            }
        }
        Outcome::Failed(failure)
            if attempt < record.max_retries
                && !matches!(failure.kind, FailureKind::InvalidTask | FailureKind::Fatal) =>
        {
            let options = registry().get(&record.func_name).map(|task| task.options());
            let wait = options.map(|o| o.retry_wait(attempt + 1)).unwrap_or_default();
            let due = later(now, wait);
            Next {
                message: Some(failure.message.clone()),
                change: Transition::Reschedule {
                    due,
                    retries_used: attempt + 1,
                    error: Some(cut(failure.message, limit)),
                    stacktrace: Some(cut(failure.stacktrace, limit)),
                },
                event: EventKind::Retrying,
                due: Some(due),
            }
        }
        Outcome::Failed(failure) => finished(TaskStatus::Failed, None, Some(failure)),
    }
}

/// `now + wait`, capped at the latest time every store keeps.
fn later(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    let cap = DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(now); // 9999-12-31
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|wait| now.checked_add_signed(wait))
        .map_or(cap, |at| at.min(cap))
}

async fn flush_logs(engine: &Engine, id: &TaskId, context: &TaskContext) {
    let logs = context.take_logs();
    if logs.is_empty() {
        return;
    }
    let mut pause = Duration::from_millis(50);
    while let Err(err) = engine.store.append_logs(id, logs.clone()).await {
        tracing::error!(task_id = %id, error = %err, "taskflow: could not store task logs; retrying");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
