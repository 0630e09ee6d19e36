//! The records the engine stores: a new task as enqueued, and a new run of a finished one.

use chrono::{DateTime, Utc};

use crate::id::TaskId;
use crate::options::TaskOptions;
use crate::record::{TaskRecord, TaskSource, TaskStatus};
use crate::tasks::NewTask;

/// The record of a task about to be stored: `pending` (due at its `run_at`, or after its
/// delay), or `failed` at once when its arguments could not be serialised.
pub(crate) fn new_record(new: NewTask, now: DateTime<Utc>) -> TaskRecord {
    let priority = new.priority();
    let max_retries = new.max_retries();
    let queue = new.queue().to_owned();
    let NewTask { id, task, args, options } = new;
    let (status, args, error) = match args {
        Ok(args) => (TaskStatus::Pending, args, None),
        Err(reason) => (
            TaskStatus::Failed,
            serde_json::Value::Null,
            Some(format!("the arguments could not be serialised to JSON: {reason}")),
        ),
    };
    let delayed = options
        .start_delay()
        .filter(|d| !d.is_zero())
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| now.checked_add_signed(d));
    TaskRecord {
        task_id: id,
        func_name: task.name().to_owned(),
        status,
        created_at: now,
        start_time: None,
        end_time: error.as_ref().map(|_| now),
        duration: None,
        retries_used: 0,
        max_retries,
        stacktrace: error.clone(),
        error,
        logs: Vec::new(),
        tags: options.tags_map().clone(),
        source: TaskSource::Manual,
        priority,
        queue,
        args,
        result: None,
        idempotency_key: options.idempotency_key_str().map(str::to_owned),
        run_key: options.run_key_str().map(str::to_owned),
        // To the microsecond, as every store keeps it (and compares it with start times).
        scheduled_at: options.start_at().or(delayed).map(to_micros),
        retry_of: None,
        requeue_on_interrupt: task.requeues_on_interrupt(),
        recoveries: 0,
        lease_owner: None,
        lease_expires_at: None,
        progress: None,
    }
}

fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// A new run of `original` (failed, interrupted or cancelled): a fresh id, `source: retry`,
/// `retry_of` linking to it. Same function, arguments, tags, priority and retries; no
/// idempotency key nor run key, no due time.
pub(crate) fn retry_record(
    original: TaskRecord,
    options: &TaskOptions,
    now: DateTime<Utc>,
) -> TaskRecord {
    let id = original.task_id;
    TaskRecord {
        task_id: TaskId::new(),
        status: TaskStatus::Pending,
        created_at: now,
        start_time: None,
        end_time: None,
        duration: None,
        retries_used: 0,
        error: None,
        stacktrace: None,
        logs: Vec::new(),
        source: TaskSource::Retry,
        result: None,
        idempotency_key: None,
        run_key: None,
        scheduled_at: None,
        retry_of: Some(id),
        requeue_on_interrupt: options.requeues_on_interrupt(),
        recoveries: 0,
        lease_owner: None,
        lease_expires_at: None,
        progress: None,
        ..original
    }
}
