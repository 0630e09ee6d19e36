//! The schedule routes of the admin API: every stored schedule with its next slot, its last
//! run and its recent history, and pause, resume and "run now". Every change goes through the
//! store, so all instances obey it, and is audited.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AdminState;
use super::auth::Identity;
use super::error::{ApiError, ErrorBody};
use crate::id::TaskId;
use crate::record::TaskStatus;
use crate::schedule::{Overlap, Schedule};
use crate::store::{SlotRecord, StoredSchedule};

/// How many history entries a schedule shows, newest last.
const SHOWN_HISTORY: usize = 20;

/// Every stored schedule.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Schedules {
    /// By name.
    schedules: Vec<ScheduleView>,
}

/// A schedule as the API shows it: the stored state, its definition in words, why it cannot
/// fire here (if it cannot), and its last run's status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScheduleView {
    name: String,
    /// The task it fires.
    task: String,
    /// The arguments it fires the task with (redacted as task arguments are).
    args: Value,
    /// `cron 0 3 * * *` or `every 5m`; `null` when the stored definition does not parse here.
    definition: Option<String>,
    /// The cron schedule's IANA time zone.
    timezone: Option<String>,
    /// How far back missed slots are caught up, in seconds.
    catch_up_secs: Option<f64>,
    /// What a slot does while the previous run is still pending or running.
    overlap: Option<Overlap>,
    paused: bool,
    /// The next slot due.
    next: Option<DateTime<Utc>>,
    /// The last slot fired.
    last_slot: Option<DateTime<Utc>>,
    /// The task the last slot fired.
    last_task: Option<TaskId>,
    /// That task's status now (`null` once pruned).
    last_status: Option<TaskStatus>,
    /// What happened to the latest 20 slots, oldest first.
    history: Vec<SlotRecord>,
    /// Why this instance cannot fire it (an unknown task, a definition it cannot read).
    problem: Option<String>,
    updated_at: DateTime<Utc>,
}

/// One schedule after a change.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScheduleAnswer {
    schedule: ScheduleView,
}

/// The task a "run now" enqueued.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TriggeredTask {
    task_id: TaskId,
}

/// `GET /tasks/schedules`: every stored schedule, by name.
#[utoipa::path(get, path = "/schedules", operation_id = "listSchedules", tag = "schedules", responses(
    (status = 200, description = "Every stored schedule.", body = Schedules),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn list(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Schedules>, ApiError> {
    let mut schedules = Vec::new();
    for stored in state.manager.schedules().await? {
        schedules.push(describe(&state, stored).await?);
    }
    Ok(Json(Schedules { schedules }))
}

/// `POST /tasks/schedules/{name}/pause`.
#[utoipa::path(post, path = "/schedules/{name}/pause", operation_id = "pauseSchedule", tag = "schedules", params(("name" = String, Path)), responses(
    (status = 200, description = "Paused: its slots pass unfired, recorded in its history.", body = ScheduleAnswer),
    (status = 404, description = "No such schedule.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn pause(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleAnswer>, ApiError> {
    let stored = state.manager.pause_schedule(&name).await?;
    state.audit.record(&identity.actor, "pause-schedule", None, format!("schedule {name}"));
    Ok(Json(ScheduleAnswer { schedule: describe(&state, stored).await? }))
}

/// `POST /tasks/schedules/{name}/resume`.
#[utoipa::path(post, path = "/schedules/{name}/resume", operation_id = "resumeSchedule", tag = "schedules", params(("name" = String, Path)), responses(
    (status = 200, description = "Firing again from its next slot.", body = ScheduleAnswer),
    (status = 404, description = "No such schedule.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn resume(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleAnswer>, ApiError> {
    let stored = state.manager.resume_schedule(&name).await?;
    state.audit.record(&identity.actor, "resume-schedule", None, format!("schedule {name}"));
    Ok(Json(ScheduleAnswer { schedule: describe(&state, stored).await? }))
}

/// `POST /tasks/schedules/{name}/trigger`: runs the schedule's task now; answers its id.
#[utoipa::path(post, path = "/schedules/{name}/trigger", operation_id = "triggerSchedule", tag = "schedules", params(("name" = String, Path)), responses(
    (status = 200, description = "Its task, enqueued now, besides the slots.", body = TriggeredTask),
    (status = 404, description = "No such schedule.", body = ErrorBody),
    (status = 422, description = "Its task is not in this binary, or its definition does not parse.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn trigger(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<TriggeredTask>, ApiError> {
    let task_id = state.manager.trigger_schedule(&name).await?;
    let detail = format!("schedule {name}: run now");
    state.audit.record(&identity.actor, "trigger-schedule", Some(task_id.to_string()), detail);
    Ok(Json(TriggeredTask { task_id }))
}

/// `stored` as the API shows it.
async fn describe(
    state: &AdminState,
    mut stored: StoredSchedule,
) -> Result<ScheduleView, ApiError> {
    let problem = state.manager.schedule_problem(&stored).map(|p| p.reason);
    let schedule = Schedule::from_definition(&stored.definition).ok();
    let last_status = match stored.last_task {
        Some(id) => state.manager.store().get(&id).await?.map(|record| record.status),
        None => None,
    };
    let skip = stored.history.len().saturating_sub(SHOWN_HISTORY);
    Ok(ScheduleView {
        name: stored.name,
        task: stored.func_name,
        args: state.redaction.args(stored.args),
        definition: schedule.as_ref().map(ToString::to_string),
        timezone: schedule.as_ref().and_then(|s| s.zone()).map(|zone| zone.name().to_owned()),
        catch_up_secs: schedule.as_ref().and_then(|s| s.catch_up_window()).map(|w| w.as_secs_f64()),
        overlap: schedule.as_ref().map(|s| s.overlap_policy()),
        paused: stored.paused,
        next: stored.next_slot,
        last_slot: stored.last_slot,
        last_task: stored.last_task,
        last_status,
        history: stored.history.split_off(skip),
        problem,
        updated_at: stored.updated_at,
    })
}
