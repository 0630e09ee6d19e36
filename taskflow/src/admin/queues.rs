//! The queue routes of the admin API: what each queue holds and its settings, pause, resume
//! and resize. Every change goes through the store, so all instances obey it, and is audited.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::AdminState;
use super::api::body;
use super::auth::Identity;
use super::error::{ApiError, ErrorBody};
use crate::instance::Instance;
use crate::queue::QueueInfo;

/// Every declared queue.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Queues {
    queues: Vec<QueueInfo>,
}

/// `GET /tasks/queues`: every declared queue, with its counts and the settings in force.
#[utoipa::path(get, path = "/queues", operation_id = "listQueues", tag = "queues", responses(
    (status = 200, description = "Every declared queue, with its counts and settings in force.", body = Queues),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn list(State(state): State<Arc<AdminState>>) -> Result<Json<Queues>, ApiError> {
    Ok(Json(Queues { queues: state.manager.queues().await? }))
}

/// The live instances.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Instances {
    instances: Vec<Instance>,
}

/// `GET /tasks/instances`: the live instances sharing the store.
#[utoipa::path(get, path = "/instances", operation_id = "listInstances", tag = "queues", responses(
    (status = 200, description = "The instances whose heartbeat has not expired.", body = Instances),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn instances(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Instances>, ApiError> {
    Ok(Json(Instances { instances: state.manager.instances().await? }))
}

/// A queue after a change.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueAnswer {
    /// The queue as `GET {p}/queues` shows it.
    queue: Option<QueueInfo>,
}

/// `POST /tasks/queues/{name}/pause`.
#[utoipa::path(post, path = "/queues/{name}/pause", operation_id = "pauseQueue", tag = "queues", params(("name" = String, Path)), responses(
    (status = 200, description = "Paused on every instance; running tasks finish.", body = QueueAnswer),
    (status = 404, description = "No such declared queue.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn pause(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<QueueAnswer>, ApiError> {
    declared(&state, &name)?;
    state.manager.pause_queue(&name).await?;
    state.audit.record(&identity.actor, "pause-queue", None, format!("queue {name}"));
    answer(&state, &name).await
}

/// `POST /tasks/queues/{name}/resume`.
#[utoipa::path(post, path = "/queues/{name}/resume", operation_id = "resumeQueue", tag = "queues", params(("name" = String, Path)), responses(
    (status = 200, description = "Running again on every instance.", body = QueueAnswer),
    (status = 404, description = "No such declared queue.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn resume(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Json<QueueAnswer>, ApiError> {
    declared(&state, &name)?;
    state.manager.resume_queue(&name).await?;
    state.audit.record(&identity.actor, "resume-queue", None, format!("queue {name}"));
    answer(&state, &name).await
}

/// The largest `max_pending`: the stores keep it as a signed 64-bit number.
const MAX_PENDING: u64 = i64::MAX as u64;

/// New settings of a queue, for every instance: one field or both; a field left out stays as
/// it is. (Its schema's `minProperties: 1` is set by [`super::openapi`]: utoipa 5.5 writes
/// `min_properties` as `maxProperties`.)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueChange {
    /// Tasks of the queue each instance runs at once.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = u64, minimum = 1, maximum = 4_294_967_295_u64)]
    concurrency: Option<u64>,
    /// The most pending tasks the queue takes; `null` goes back to the builder's bound.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    max_pending: Option<Option<u64>>,
}

/// A number given (not `null`): `Some`; left out: `None` (by `default`).
fn given<'de, D: Deserializer<'de>>(value: D) -> Result<Option<u64>, D::Error> {
    u64::deserialize(value).map(Some)
}

/// A field given, even as `null`: `Some(None)`; left out: `None` (by `default`).
fn present<'de, D: Deserializer<'de>>(value: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(value).map(Some)
}

/// `PATCH /tasks/queues/{name}` with `{"concurrency": n}` and/or `{"max_pending": n}`
/// (`null` goes back to the builder's bound).
#[utoipa::path(patch, path = "/queues/{name}", operation_id = "updateQueue", tag = "queues", params(("name" = String, Path)),
    request_body = QueueChange, responses(
    (status = 200, description = "Changed on every instance.", body = QueueAnswer),
    (status = 400, description = "A malformed body, an unknown field, a value out of range, or no field.", body = ErrorBody),
    (status = 404, description = "No such declared queue.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn update(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
    request: Result<Json<QueueChange>, JsonRejection>,
) -> Result<Json<QueueAnswer>, ApiError> {
    declared(&state, &name)?;
    let change = body(request)?;
    let concurrency =
        change.concurrency.map(|n| within("concurrency", n, u64::from(u32::MAX))).transpose()?;
    let max_pending = match change.max_pending {
        Some(Some(n)) => Some(Some(within("max_pending", n, MAX_PENDING)?)),
        other => other,
    };
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

/// `value` when from 1 to `most`, else a `400` naming `field`.
fn within(field: &str, value: u64, most: u64) -> Result<u64, ApiError> {
    if (1..=most).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::BadRequest(format!("`{field}` must be a whole number from 1 to {most}")))
    }
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
async fn answer(state: &AdminState, name: &str) -> Result<Json<QueueAnswer>, ApiError> {
    let queues: Vec<QueueInfo> = state.manager.queues().await?;
    let queue = queues.into_iter().find(|q| q.name == name);
    Ok(Json(QueueAnswer { queue }))
}
