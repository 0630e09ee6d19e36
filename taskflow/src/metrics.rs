//! Task metrics through the [`metrics`] facade (feature `metrics`): register
//! [`MetricsObserver`] and whatever recorder the app installed (a Prometheus exporter, a
//! StatsD or OpenTelemetry bridge) receives taskflow's figures beside the app's own.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `taskflow_tasks_enqueued_total` | counter | `task`, `queue` | tasks stored as pending |
//! | `taskflow_tasks_started_total` | counter | `task`, `queue` | attempts started |
//! | `taskflow_tasks_succeeded_total` | counter | `task`, `queue` | tasks that succeeded |
//! | `taskflow_tasks_failed_total` | counter | `task`, `queue` | tasks failed for good |
//! | `taskflow_tasks_retried_total` | counter | `task`, `queue` | failed attempts with a retry to come |
//! | `taskflow_tasks_snoozed_total` | counter | `task`, `queue` | attempts that snoozed |
//! | `taskflow_tasks_cancelled_total` | counter | `task`, `queue` | tasks cancelled |
//! | `taskflow_tasks_interrupted_total` | counter | `task`, `queue` | attempts stopped by a shutdown |
//! | `taskflow_task_duration_seconds` | histogram | `task`, `queue`, `outcome` | each attempt's run time, from its start to its outcome |
//! | `taskflow_tasks_running` | gauge | `queue` | attempts running on this instance |
//!
//! The figures are this instance's (each instance reports its own; sum them across
//! instances in the monitoring system).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::event::{EventKind, TaskEvent};
use crate::id::TaskId;
use crate::observer::TaskObserver;

/// At most this many attempts are timed at once; beyond, durations go unrecorded rather than
/// growing memory (an attempt whose end was never seen, say).
const MAX_TIMED: usize = 100_000;

/// Emits every lifecycle event as `metrics` counters, durations and a running gauge (see the
/// table in [`taskflow::metrics`](self)).
///
/// ```rust
/// # async fn run() -> taskflow::Result<()> {
/// use taskflow::{MetricsObserver, TaskManager};
///
/// // With a recorder installed by the app (metrics-exporter-prometheus, for example).
/// let manager = TaskManager::builder().observer(MetricsObserver::new()).build().await?;
/// # manager.shutdown(std::time::Duration::from_secs(1)).await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MetricsObserver {
    /// When each running attempt started.
    started: Mutex<HashMap<TaskId, Instant>>,
}

impl MetricsObserver {
    /// An observer to register with `TaskManager::builder().observer(...)`.
    pub fn new() -> MetricsObserver {
        MetricsObserver::default()
    }

    fn count(name: &'static str, event: &TaskEvent) {
        let labels = [("task", event.func_name.to_string()), ("queue", event.queue.to_string())];
        metrics::counter!(name, &labels).increment(1);
    }

    /// Records the duration of the attempt that `event` ends, if its start was seen.
    fn ended(&self, event: &TaskEvent, outcome: &'static str) {
        let started =
            self.started.lock().unwrap_or_else(PoisonError::into_inner).remove(&event.task_id);
        let Some(started) = started else { return };
        metrics::gauge!("taskflow_tasks_running", "queue" => event.queue.to_string())
            .decrement(1.0);
        let labels = [
            ("task", event.func_name.to_string()),
            ("queue", event.queue.to_string()),
            ("outcome", outcome.to_owned()),
        ];
        metrics::histogram!("taskflow_task_duration_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
    }
}

impl TaskObserver for MetricsObserver {
    fn on_event(&self, event: &TaskEvent) {
        // The counter of each kind, and the outcome an attempt's duration is recorded under
        // when the event ends one.
        let (counter, ends) = match event.kind {
            EventKind::Enqueued => ("taskflow_tasks_enqueued_total", None),
            EventKind::Started => ("taskflow_tasks_started_total", None),
            EventKind::Succeeded => ("taskflow_tasks_succeeded_total", Some("succeeded")),
            EventKind::Failed => ("taskflow_tasks_failed_total", Some("failed")),
            EventKind::Retrying => ("taskflow_tasks_retried_total", Some("retried")),
            EventKind::Snoozed => ("taskflow_tasks_snoozed_total", Some("snoozed")),
            EventKind::Cancelled => ("taskflow_tasks_cancelled_total", Some("cancelled")),
            EventKind::Interrupted => ("taskflow_tasks_interrupted_total", Some("interrupted")),
            EventKind::Log | EventKind::Progress => return,
        };
        Self::count(counter, event);
        if event.kind == EventKind::Started {
            let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
            if started.len() < MAX_TIMED && started.insert(event.task_id, Instant::now()).is_none()
            {
                metrics::gauge!("taskflow_tasks_running", "queue" => event.queue.to_string())
                    .increment(1.0);
            }
        }
        if let Some(outcome) = ends {
            self.ended(event, outcome);
        }
    }
}
