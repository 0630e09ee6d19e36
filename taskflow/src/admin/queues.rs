//! The queue routes of the admin API: what each queue holds and its settings, pause, resume
//! and resize. Every change goes through the store, so all instances obey it, and is audited.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{Map, Value, json};

use super::AdminState;
use super::api::body;
use super::auth::Identity;
use super::error::ApiError;
use crate::queue::QueueInfo;

/// `GET /tasks/queues`: every declared queue, with its counts and the settings in force.
pub(crate) async fn list(State(state): State<Arc<AdminState>>) -> Result<Json<Value>, ApiError> {
    let queues = state.manager.queues().await?;
    Ok(Json(json!({ "queues": queues })))
}

/// `GET /tasks/instances`: the live instances sharing the store.
pub(crate) async fn instances(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Value>, ApiError> {
    let instances = state.manager.instances().await?;
    Ok(Json(json!({ "instances": instances })))
}

/// `POST /tasks/queues/{name}/pause`.
pub(crate) async fn pause(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    declared(&state, &name)?;
    state.manager.pause_queue(&name).await?;
    state.audit.record(&identity.actor, "pause-queue", None, format!("queue {name}"));
    answer(&state, &name).await
}

/// `POST /tasks/queues/{name}/resume`.
pub(crate) async fn resume(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    declared(&state, &name)?;
    state.manager.resume_queue(&name).await?;
    state.audit.record(&identity.actor, "resume-queue", None, format!("queue {name}"));
    answer(&state, &name).await
}

/// `PATCH /tasks/queues/{name}` with `{"concurrency": n}` and/or `{"max_pending": n}`
/// (`null` goes back to the builder's bound).
pub(crate) async fn update(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
    request: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    declared(&state, &name)?;
    let fields = body(request)?;
    let mut concurrency = None;
    let mut max_pending = None;
    for (field, value) in &fields {
        match field.as_str() {
            "concurrency" => concurrency = Some(whole(field, value, u64::from(u32::MAX))?),
            "max_pending" if value.is_null() => max_pending = Some(None),
            "max_pending" => max_pending = Some(Some(whole(field, value, u64::MAX)?)),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown field `{other}`: a queue takes `concurrency` and `max_pending`"
                )));
            }
        }
    }
    if concurrency.is_none() && max_pending.is_none() {
        return Err(ApiError::BadRequest(
            "request body: give `concurrency` and/or `max_pending`".to_owned(),
        ));
    }
    let mut changed = Vec::new();
    if let Some(n) = concurrency {
        // At most u32::MAX, checked above.
        state.manager.set_concurrency(&name, n as usize).await?;
        changed.push(format!("concurrency {n}"));
    }
    if let Some(bound) = max_pending {
        state.manager.set_max_pending(&name, bound).await?;
        changed.push(match bound {
            Some(n) => format!("max_pending {n}"),
            None => "max_pending unset".to_owned(),
        });
    }
    let detail = format!("queue {name}: {}", changed.join(", "));
    state.audit.record(&identity.actor, "update-queue", None, detail);
    answer(&state, &name).await
}

/// A whole number from 1 to `most`, or a `400` naming `field`.
fn whole(field: &str, value: &Value, most: u64) -> Result<u64, ApiError> {
    value.as_u64().filter(|n| (1..=most).contains(n)).ok_or_else(|| {
        ApiError::BadRequest(format!("`{field}` must be a whole number from 1 to {most}"))
    })
}

/// `404` unless `name` is a declared queue.
fn declared(state: &AdminState, name: &str) -> Result<(), ApiError> {
    if state.manager.has_queue(name) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("queue `{name}` is not declared")))
    }
}

/// The queue as `GET /tasks/queues` shows it, after a change.
async fn answer(state: &AdminState, name: &str) -> Result<Json<Value>, ApiError> {
    let queues: Vec<QueueInfo> = state.manager.queues().await?;
    let queue = queues.into_iter().find(|q| q.name == name);
    Ok(Json(json!({ "queue": queue })))
}
