//! The schedule routes of the admin API: every stored schedule with its next slot, its last
//! run and its recent history, and pause, resume and "run now". Every change goes through the
//! store, so all instances obey it, and is audited.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::AdminState;
use super::auth::Identity;
use super::error::ApiError;
use crate::schedule::Schedule;
use crate::store::StoredSchedule;

/// How many history entries a schedule shows, newest last.
const SHOWN_HISTORY: usize = 20;

/// `GET /tasks/schedules`: every stored schedule, by name.
pub(crate) async fn list(State(state): State<Arc<AdminState>>) -> Result<Json<Value>, ApiError> {
    let mut shown = Vec::new();
    for stored in state.manager.schedules().await? {
        shown.push(describe(&state, stored).await?);
    }
    Ok(Json(json!({ "schedules": shown })))
}

/// `POST /tasks/schedules/{name}/pause`.
pub(crate) async fn pause(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stored = state.manager.pause_schedule(&name).await?;
    state.audit.record(&identity.actor, "pause-schedule", None, format!("schedule {name}"));
    Ok(Json(json!({ "schedule": describe(&state, stored).await? })))
}

/// `POST /tasks/schedules/{name}/resume`.
pub(crate) async fn resume(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stored = state.manager.resume_schedule(&name).await?;
    state.audit.record(&identity.actor, "resume-schedule", None, format!("schedule {name}"));
    Ok(Json(json!({ "schedule": describe(&state, stored).await? })))
}

/// `POST /tasks/schedules/{name}/trigger`: runs the schedule's task now; answers its id.
pub(crate) async fn trigger(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = state.manager.trigger_schedule(&name).await?;
    let detail = format!("schedule {name}: run now");
    state.audit.record(&identity.actor, "trigger-schedule", Some(id.to_string()), detail);
    Ok(Json(json!({ "task_id": id })))
}

/// A schedule as the API shows it: the stored state, its definition in words, why it cannot
/// fire here (if it cannot), and its last run's status.
async fn describe(state: &AdminState, stored: StoredSchedule) -> Result<Value, ApiError> {
    let problem = state.manager.schedule_problem(&stored).map(|p| p.reason);
    let schedule = Schedule::from_definition(&stored.definition).ok();
    let last_status = match stored.last_task {
        Some(id) => state.manager.store().get(&id).await?.map(|record| record.status),
        None => None,
    };
    let skip = stored.history.len().saturating_sub(SHOWN_HISTORY);
    Ok(json!({
        "name": stored.name,
        "task": stored.func_name,
        "args": state.redaction.args(stored.args),
        "definition": schedule.as_ref().map(ToString::to_string),
        "timezone": schedule.as_ref().and_then(|s| s.zone()).map(|zone| zone.name()),
        "catch_up_secs": schedule.as_ref().and_then(|s| s.catch_up_window()).map(|w| w.as_secs_f64()),
        "overlap": schedule.as_ref().map(|s| s.overlap_policy()),
        "paused": stored.paused,
        "next": stored.next_slot,
        "last_slot": stored.last_slot,
        "last_task": stored.last_task,
        "last_status": last_status,
        "history": &stored.history[skip..],
        "problem": problem,
        "updated_at": stored.updated_at,
    }))
}
