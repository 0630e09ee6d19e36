//! `GET /tasks/registered`: the tasks this binary can run, with the options `#[task]` gave
//! them (what fastapi-taskflow's Tasks tab lists), and the schedule a task declares.

use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::registry::registry;
use crate::schedule::Overlap;

/// The tasks this binary can run.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Registered {
    /// By name.
    tasks: Vec<RegisteredTask>,
}

/// One task and its `#[task]` options.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RegisteredTask {
    name: &'static str,
    /// Its default queue.
    queue: &'static str,
    /// Retries after the first attempt.
    retries: u32,
    /// Its default priority.
    priority: i32,
    /// The most of its tasks running at once across the cluster, if capped.
    concurrency: Option<u32>,
    /// Each attempt's time limit, in seconds.
    timeout_secs: Option<f64>,
    /// Whether it starts in the handler's task, before the response.
    eager: bool,
    /// Whether it runs on the blocking pool (a sync fn).
    blocking: bool,
    /// Whether an interrupted run is enqueued again after a restart.
    requeue_on_interrupt: bool,
    /// The schedule it declares (`cron`, `every`), if any.
    schedule: Option<DeclaredSchedule>,
    /// Where it is defined: `file:line`.
    location: String,
}

/// A schedule `#[task]` declares, or why it cannot be built.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum DeclaredSchedule {
    /// It builds.
    Valid {
        /// `cron 0 3 * * *` or `every 5m`.
        definition: String,
        /// The cron schedule's IANA time zone.
        timezone: Option<&'static str>,
        /// How far back missed slots are caught up, in seconds.
        catch_up_secs: Option<f64>,
        overlap: Overlap,
        /// Whether it fires once when first defined.
        run_on_startup: bool,
        /// Its next slot from now.
        next: Option<DateTime<Utc>>,
    },
    /// It does not.
    Invalid {
        /// Why.
        error: String,
    },
}

/// `GET /tasks/registered`: every registered task, by name.
#[utoipa::path(get, path = "/registered", operation_id = "listRegisteredTasks", tag = "admin", responses(
    (status = 200, description = "Every task this binary can run.", body = Registered),
))]
pub(crate) async fn list() -> Json<Registered> {
    let mut tasks: Vec<RegisteredTask> = registry()
        .iter()
        .map(|task| {
            let options = task.options();
            RegisteredTask {
                name: task.name(),
                queue: options.default_queue(),
                retries: options.max_retries(),
                priority: options.default_priority(),
                concurrency: options.concurrency_limit(),
                timeout_secs: options.attempt_timeout().map(|t| t.as_secs_f64()),
                eager: options.is_eager(),
                blocking: options.is_blocking(),
                requeue_on_interrupt: options.requeues_on_interrupt(),
                schedule: options.declared_schedule().map(schedule),
                location: task.location(),
            }
        })
        .collect();
    tasks.sort_by_key(|task| task.name);
    Json(Registered { tasks })
}

/// A declared schedule: its definition, policies and next slot from now.
fn schedule(spec: &crate::ScheduleSpec) -> DeclaredSchedule {
    match spec.build() {
        Ok(schedule) => DeclaredSchedule::Valid {
            definition: schedule.to_string(),
            timezone: schedule.zone().map(|zone| zone.name()),
            catch_up_secs: schedule.catch_up_window().map(|w| w.as_secs_f64()),
            overlap: schedule.overlap_policy(),
            run_on_startup: schedule.runs_on_startup(),
            next: schedule.next_after(Utc::now()),
        },
        Err(err) => DeclaredSchedule::Invalid { error: err.to_string() },
    }
}
