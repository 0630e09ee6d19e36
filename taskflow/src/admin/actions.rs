//! The admin routes that act on tasks: retry one, cancel one, retry many, retry the failed
//! ones of a window, delete old history. Each is audited.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AdminState;
use super::api::{body, not_found, task_id};
use super::auth::Identity;
use super::error::{ApiError, ErrorBody};
use super::params::{self, HistoryCutoff, Params};
use crate::id::TaskId;
use crate::manager::CancelOutcome;
use crate::record::{TaskRecord, TaskStatus};
use crate::store::{Retention, TaskQuery};

/// The most ids one bulk retry takes.
pub(crate) const MAX_BULK: usize = 1000;

/// The most tasks one `retry-failed` call retries.
pub(crate) const MAX_REPLAY: usize = 10_000;

/// A task enqueued again.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Retried {
    /// The new task.
    task_id: TaskId,
    /// The task it retries.
    retry_of: TaskId,
}

/// `POST /tasks/{id}/retry`.
#[utoipa::path(post, path = "/{id}/retry", operation_id = "retryTask", tag = "tasks", params(("id" = TaskId, Path)), responses(
    (status = 201, description = "Enqueued again, as a new task.", body = Retried),
    (status = 400, description = "`id` is not a UUID.", body = ErrorBody),
    (status = 404, description = "No such task.", body = ErrorBody),
    (status = 409, description = "The task is pending, running or succeeded.", body = ErrorBody),
    (status = 422, description = "The task's fn is not in this binary.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn retry(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(raw): Path<String>,
) -> Result<(StatusCode, Json<Retried>), ApiError> {
    let id = task_id(&raw)?;
    let new = state.manager.retry(id).await?;
    state.audit.record(&identity.actor, "retry", Some(id.to_string()), format!("new task {new}"));
    Ok((StatusCode::CREATED, Json(Retried { task_id: new, retry_of: id })))
}

/// Where a cancelled task stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CancelState {
    /// It is cancelled (now, or it was before).
    Cancelled,
    /// Its runner, here or on another instance, is stopping it.
    Cancelling,
}

/// A cancel's answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Cancelled {
    task_id: TaskId,
    outcome: CancelState,
    /// The task as it is now (`null` if it was deleted meanwhile).
    task: Option<TaskRecord>,
}

/// `POST /tasks/{id}/cancel`: `200` with the task once it is cancelled (now, or before),
/// `202` with it while its runner, here or on another instance, stops it.
#[utoipa::path(post, path = "/{id}/cancel", operation_id = "cancelTask", tag = "tasks", params(("id" = TaskId, Path)), responses(
    (status = 200, description = "Cancelled, now or before.", body = Cancelled),
    (status = 202, description = "Running: its runner stops it at its next await point.", body = Cancelled),
    (status = 400, description = "`id` is not a UUID.", body = ErrorBody),
    (status = 404, description = "No such task.", body = ErrorBody),
    (status = 409, description = "The task already ended otherwise.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn cancel(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(raw): Path<String>,
) -> Result<(StatusCode, Json<Cancelled>), ApiError> {
    let id = task_id(&raw)?;
    let (code, outcome) = match state.manager.cancel(id).await? {
        CancelOutcome::Cancelled => (StatusCode::OK, CancelState::Cancelled),
        CancelOutcome::AlreadyFinished(TaskStatus::Cancelled) => {
            (StatusCode::OK, CancelState::Cancelled)
        }
        CancelOutcome::Cancelling => (StatusCode::ACCEPTED, CancelState::Cancelling),
        CancelOutcome::NotFound => return Err(not_found(id)),
        CancelOutcome::AlreadyFinished(status) => {
            return Err(ApiError::Conflict(format!("task {id} already finished: {status}")));
        }
    };
    let said = match outcome {
        CancelState::Cancelled => "cancelled",
        CancelState::Cancelling => "cancelling",
    };
    state.audit.record(&identity.actor, "cancel", Some(id.to_string()), said.to_owned());
    let task = state.manager.store().get(&id).await?.map(|record| state.redaction.apply(record));
    Ok((code, Json(Cancelled { task_id: id, outcome, task })))
}

/// The tasks to retry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkRetry {
    /// 1 to 1,000 task ids.
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<TaskId>)]
    ids: Vec<String>,
}

/// What a retry of many tasks did, task by task.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct RetriedMany {
    /// The tasks enqueued again.
    retried: Vec<RetriedOne>,
    /// The tasks that could not be, each with why.
    errors: Vec<NotRetried>,
}

/// One task enqueued again.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RetriedOne {
    /// The task retried.
    task_id: TaskId,
    /// Its new task.
    new_task_id: TaskId,
}

/// One task not retried.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NotRetried {
    task_id: TaskId,
    /// Why.
    error: String,
}

/// Retries each of `ids`; the retried ones and the errors, each by id.
async fn retry_each(state: &AdminState, ids: Vec<TaskId>) -> RetriedMany {
    let mut answer = RetriedMany::default();
    for task_id in ids {
        match state.manager.retry(task_id).await {
            Ok(new_task_id) => answer.retried.push(RetriedOne { task_id, new_task_id }),
            Err(err) => answer.errors.push(NotRetried { task_id, error: err.to_string() }),
        }
    }
    answer
}

/// `POST /tasks/bulk-retry` with `{"ids": [...]}`.
#[utoipa::path(post, path = "/bulk-retry", operation_id = "retryTasks", tag = "tasks", request_body = BulkRetry, responses(
    (status = 200, description = "What was retried and what was refused, by task.", body = RetriedMany),
    (status = 400, description = "A malformed body or id, or more than 1,000 ids.", body = ErrorBody),
))]
pub(crate) async fn bulk_retry(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    request: Result<Json<BulkRetry>, JsonRejection>,
) -> Result<Json<RetriedMany>, ApiError> {
    let request = body(request)?;
    if request.ids.is_empty() || request.ids.len() > MAX_BULK {
        return Err(ApiError::BadRequest(format!("`ids` must hold 1 to {MAX_BULK} task ids")));
    }
    let ids = request
        .ids
        .iter()
        .map(|raw| params::task_id(raw).map_err(|e| ApiError::BadRequest(format!("`ids`: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let answer = retry_each(&state, ids).await;
    let detail = format!("{} retried, {} refused", answer.retried.len(), answer.errors.len());
    state.audit.record(&identity.actor, "bulk-retry", None, detail);
    Ok(Json(answer))
}

/// Which failed tasks to retry: all of them without a field.
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryFailed {
    /// Created at or after: RFC 3339, or a span back from now (`24h`).
    since: Option<String>,
    /// Created before: RFC 3339, or a span back from now.
    until: Option<String>,
    /// Only this task.
    func_name: Option<String>,
}

/// `POST /tasks/retry-failed` with optional `{"since", "until", "func_name"}`: retries every
/// failed task created in the window (at most [`MAX_REPLAY`]).
#[utoipa::path(post, path = "/retry-failed", operation_id = "retryFailedTasks", tag = "tasks", request_body = RetryFailed, responses(
    (status = 200, description = "What was retried (at most 10,000) and what was refused, by task.", body = RetriedMany),
    (status = 400, description = "A malformed body or time.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn retry_failed(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    request: Result<Json<RetryFailed>, JsonRejection>,
) -> Result<Json<RetriedMany>, ApiError> {
    let request = body(request)?;
    let time = |name: &str, value: Option<String>| {
        value
            .map(|v| params::time(&v).map_err(|e| ApiError::BadRequest(format!("`{name}`: {e}"))))
            .transpose()
    };
    let mut query = TaskQuery {
        status: Some(TaskStatus::Failed),
        func_name: request.func_name,
        since: time("since", request.since)?,
        until: time("until", request.until)?,
        oldest_first: true,
        limit: Some(500),
        ..TaskQuery::default()
    };
    let mut ids = Vec::new();
    loop {
        let page = state.manager.store().list(&query).await?;
        ids.extend(page.tasks.iter().map(|r| r.task_id));
        match page.next {
            Some(next) if ids.len() < MAX_REPLAY => query.after = Some(next),
            _ => break,
        }
    }
    ids.truncate(MAX_REPLAY);
    let answer = retry_each(&state, ids).await;
    let detail = format!("{} retried, {} refused", answer.retried.len(), answer.errors.len());
    state.audit.record(&identity.actor, "retry-failed", None, detail);
    Ok(Json(answer))
}

/// How many finished tasks were deleted.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Deleted {
    deleted: u64,
}

/// `DELETE /tasks/history?older_than=7d`: deletes finished tasks that ended before then.
#[utoipa::path(delete, path = "/history", operation_id = "deleteHistory", tag = "tasks", params(HistoryCutoff), responses(
    (status = 200, description = "Deleted.", body = Deleted),
    (status = 400, description = "`older_than` missing or malformed, or an unknown parameter.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn delete_history(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Deleted>, ApiError> {
    let params = Params::parse(raw.as_deref(), HistoryCutoff::NAMES)?;
    let older_than = params.parsed("older_than", params::age)?.ok_or_else(|| {
        ApiError::BadRequest("parameter `older_than` is required, such as `7d`".to_owned())
    })?;
    let retention = Retention { max_age: Some(older_than), max_finished: None };
    let deleted = state.manager.store().prune(&retention, Utc::now()).await?;
    state.audit.record(&identity.actor, "delete-history", None, format!("{deleted} deleted"));
    Ok(Json(Deleted { deleted: deleted as u64 }))
}
