//! The executor: runs one attempt of a fetched task in its context and span, under its
//! timeout, stoppable by cancel and shutdown, and hands the outcome to the completer. The
//! slot is given back as soon as the task's code is done, before anything is written.

use std::sync::Arc;

use tracing::Instrument;

use super::completer::{self, Outcome};
use super::queues::Slot;
use super::running::RunningTask;
use super::{Engine, StopReason};
use crate::context::TaskContext;
use crate::error::Error;
use crate::event::EventKind;
use crate::failure::{FailureKind, TaskFailure};
use crate::id::TaskId;
use crate::record::Progress;
use crate::record::TaskRecord;
use crate::registry::registry;
use crate::store::Lease;

/// Starts the attempt of `record`, fetched under `lease`, holding a `slot` of its queue while
/// it runs.
pub(crate) fn spawn(engine: &Arc<Engine>, record: TaskRecord, lease: Lease, slot: Slot) {
    let running = engine.running.insert(record.task_id);
    let engine = Arc::clone(engine);
    let runtime = engine.runtime.clone();
    // Boxed: the attempt's state is large, and the spawned future stays small.
    let attempt = Box::pin(run(engine.clone(), record, lease, slot, running));
    engine.tracker.spawn_on(attempt, &runtime);
}

async fn run(
    engine: Arc<Engine>,
    record: TaskRecord,
    lease: Lease,
    slot: Slot,
    running: Arc<RunningTask>,
) {
    let attempt = record.retries_used;
    let progress = Arc::clone(&running.progress);
    let context = engine.context_for(&record).with_attempt(attempt, running.stop.clone(), progress);
    let _ = running.context.set(context.clone());
    context.emit(EventKind::Started, None);
    let sealed = engine.sealing.enabled();
    let outcome = execute(&record, &context, &running, sealed, engine.trace_link).await;
    // The slot limits running user code, not store writes: free it first.
    let runner = slot.runner();
    drop(slot);
    // The last report, while the task is still running under this lease.
    if let Some(report) = running.progress.take(engine.clock.now()) {
        write_progress(&engine, vec![(record.task_id, report, context.clone())]).await;
    }
    completer::complete(&engine, &record, &lease, &context, outcome).await;
    if runner.counts_running() {
        // The store counts the task as running until its outcome is written: now a fetch
        // held back by a global or per-task limit may take the next.
        runner.wake.now();
    }
    engine.running.remove(&record.task_id);
}

/// Writes progress reports of tasks running here, and announces each written one.
pub(crate) async fn write_progress(engine: &Engine, reports: Vec<(TaskId, Progress, TaskContext)>) {
    let batch: Vec<(TaskId, Progress)> =
        reports.iter().map(|(id, progress, _)| (*id, progress.clone())).collect();
    match engine.store.record_progress(&engine.runner, &batch).await {
        Ok(()) => {
            for (_, progress, context) in reports {
                context.emit(EventKind::Progress, progress.message);
            }
        }
        Err(err) => tracing::warn!(error = %err, "taskflow: could not write task progress"),
    }
}

/// Runs the attempt and says how it ended, its span joined to the enqueue's trace. With
/// `sealed` arguments, a mismatch is reported without serde's message, which may quote an
/// argument's value into the stored error.
async fn execute(
    record: &TaskRecord,
    context: &crate::context::TaskContext,
    running: &RunningTask,
    sealed: bool,
    trace_link: crate::trace::TraceLink,
) -> Outcome {
    let registered = registry().get(&record.func_name);
    let invocation = match registered {
        None => Err(TaskFailure::new(
            FailureKind::InvalidTask,
            Error::UnknownTask { name: record.func_name.clone() }.to_string(),
        )),
        Some(task) => task.invoke_stored(&record.args).map_err(|err| {
            let err = match err {
                Error::InvalidArgs { task, path, .. } if sealed => Error::InvalidArgs {
                    task,
                    path,
                    message: "they do not fit the task's parameters (the arguments are sealed: \
                              serde's message, which can quote a value, is not kept)"
                        .to_owned(),
                },
                other => other,
            };
            TaskFailure::new(FailureKind::InvalidTask, err.to_string())
        }),
    };
    let invocation = match invocation {
        Ok(invocation) => invocation,
        Err(failure) => return Outcome::Failed(failure),
    };
    let span = tracing::info_span!(
        "task",
        task_id = %record.task_id,
        name = %record.func_name,
        attempt = record.retries_used,
        tags = ?record.tags,
    );
    crate::trace::attach(&span, &record.tags, trace_link);
    let timeout = registered.and_then(|task| task.options().attempt_timeout());
    let attempt = invocation.run_in(context.clone(), span.clone());
    let timed = async {
        match timeout {
            None => attempt.await,
            Some(limit) => match tokio::time::timeout(limit, attempt).await {
                Ok(outcome) => outcome,
                Err(_) => Err(TaskFailure::new(
                    FailureKind::Timeout,
                    format!("timed out after {limit:?}"),
                )),
            },
        }
    }
    .instrument(span);
    tokio::select! {
        outcome = timed => match outcome {
            Ok(result) => Outcome::Succeeded(result),
            Err(failure) => Outcome::Failed(failure),
        },
        () = running.stop.cancelled() => {
            Outcome::Stopped(running.reason().unwrap_or(StopReason::Shutdown))
        }
    }
}
