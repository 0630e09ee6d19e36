//! The JSON routes of the admin API that read tasks: a page of them, one, its logs, the
//! metrics and the audit log. Each answer is a type of its own, which the OpenAPI description
//! ([`super::openapi`]) is generated from.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AdminState;
use super::audit::AuditEntry;
use super::error::{ApiError, ErrorBody};
use super::params::{self, LIST_PARAMS, ListParams, MetricsParams, Params};
use crate::id::TaskId;
use crate::record::{LogEntry, TaskRecord};
use crate::store::FunctionStats;

pub(crate) fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    params::task_id(raw).map_err(ApiError::BadRequest)
}

pub(crate) fn not_found(id: TaskId) -> ApiError {
    ApiError::NotFound(format!("task {id} not found"))
}

pub(crate) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(value)| value).map_err(|err| {
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(super::MAX_BODY)
        } else {
            ApiError::BadRequest(format!("request body: {}", err.body_text()))
        }
    })
}

/// How many whole records `GET /tasks` reads from the store at a time: each chunk is cut to
/// previews before the next is read, so a page of 1,000 tasks with 1 MB arguments holds about
/// 50 MB at its peak, not 1 GB.
const LIST_CHUNK: usize = 50;

/// A page of tasks, newest first unless asked otherwise.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskPage {
    /// The tasks, arguments and results over 512 bytes cut to a preview.
    tasks: Vec<TaskRow>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
    /// The page size asked for (50 by default).
    limit: usize,
}

/// A task as a page lists it: its record, with arguments and result over 512 bytes of JSON
/// replaced by a string preview (`GET {p}/{id}` has them whole).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskRow {
    #[serde(flatten)]
    record: TaskRecord,
    /// Present and `true` when `args` is a preview.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    args_truncated: bool,
    /// Present and `true` when `result` is a preview.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    result_truncated: bool,
}

/// `GET /tasks`.
#[utoipa::path(get, path = "", operation_id = "listTasks", tag = "tasks", params(ListParams), responses(
    (status = 200, description = "A page of tasks.", body = TaskPage),
    (status = 400, description = "A malformed or unknown parameter, named.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn list(
    State(state): State<Arc<AdminState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<TaskPage>, ApiError> {
    let params = Params::parse(raw.as_deref(), LIST_PARAMS)?;
    let query = params::task_query(&params)?;
    let limit = query.limit.unwrap_or(params::DEFAULT_LIMIT);
    let mut tasks = Vec::with_capacity(limit.min(params::MAX_LIMIT));
    let next_cursor = read_chunked(&state, &query, limit, |record| {
        tasks.push(TaskRow::previewed(record));
        Ok(())
    })
    .await?;
    Ok(Json(TaskPage { tasks, next_cursor, limit }))
}

/// Reads at most `limit` of the tasks `query` matches, [`LIST_CHUNK`] whole records at a
/// time, each redacted and handed to `each` before the next chunk is read (so what `each`
/// keeps, not the records, bounds the memory); returns the cursor after the last one read
/// when more match.
pub(crate) async fn read_chunked(
    state: &AdminState,
    query: &crate::store::TaskQuery,
    limit: usize,
    mut each: impl FnMut(TaskRecord) -> Result<(), ApiError>,
) -> Result<Option<String>, ApiError> {
    let mut chunk = query.clone();
    let mut read = 0;
    loop {
        chunk.limit = Some((limit - read).min(LIST_CHUNK));
        let page = state.manager.store().list(&chunk).await?;
        read += page.tasks.len();
        for record in page.tasks {
            each(state.redaction.apply(record))?;
        }
        match page.next {
            Some(next) if read < limit => chunk.after = Some(next),
            next => return Ok(next),
        }
    }
}

/// The most bytes of a task's encoded arguments or result a list page carries; longer ones
/// are cut to a preview (`GET /tasks/{id}` has them whole).
pub(crate) const PREVIEW_BYTES: usize = 512;

/// `value`'s JSON cut to [`PREVIEW_BYTES`] as a string, when longer.
fn preview(value: &Value) -> Option<Value> {
    let encoded = value.to_string();
    (encoded.len() > PREVIEW_BYTES).then(|| {
        let end = encoded.floor_char_boundary(PREVIEW_BYTES);
        Value::String(format!("{}…", &encoded[..end]))
    })
}

impl TaskRow {
    /// `record` as a list row.
    fn previewed(mut record: TaskRecord) -> TaskRow {
        let args = preview(&record.args);
        let result = record.result.as_ref().and_then(preview);
        let (args_truncated, result_truncated) = (args.is_some(), result.is_some());
        if let Some(args) = args {
            record.args = args;
        }
        if result.is_some() {
            record.result = result;
        }
        TaskRow { record, args_truncated, result_truncated }
    }
}

/// `GET /tasks/{id}`.
#[utoipa::path(get, path = "/{id}", operation_id = "getTask", tag = "tasks", params(("id" = TaskId, Path)), responses(
    (status = 200, description = "The task, with its logs.", body = TaskRecord),
    (status = 400, description = "`id` is not a UUID.", body = ErrorBody),
    (status = 404, description = "No such task.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn get(
    State(state): State<Arc<AdminState>>,
    Path(raw): Path<String>,
) -> Result<Json<TaskRecord>, ApiError> {
    let id = task_id(&raw)?;
    let record = state.manager.store().get(&id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(state.redaction.apply(record)))
}

/// A task's log lines.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskLogs {
    task_id: TaskId,
    /// Oldest first.
    logs: Vec<LogEntry>,
}

/// `GET /tasks/{id}/logs`.
#[utoipa::path(get, path = "/{id}/logs", operation_id = "getTaskLogs", tag = "tasks", params(("id" = TaskId, Path)), responses(
    (status = 200, description = "The task's logs.", body = TaskLogs),
    (status = 400, description = "`id` is not a UUID.", body = ErrorBody),
    (status = 404, description = "No such task.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn logs(
    State(state): State<Arc<AdminState>>,
    Path(raw): Path<String>,
) -> Result<Json<TaskLogs>, ApiError> {
    let id = task_id(&raw)?;
    let record = state.manager.store().get(&id).await?.ok_or_else(|| not_found(id))?;
    let record = state.redaction.apply(record);
    Ok(Json(TaskLogs { task_id: record.task_id, logs: record.logs }))
}

/// Counts by status and per-function figures.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Metrics {
    /// Tasks stored (created in the window, with `since`).
    total: u64,
    /// Tasks per status; every status is present.
    by_status: BTreeMap<String, u64>,
    /// Per function, by name.
    functions: Vec<FunctionStats>,
}

/// `GET /tasks/metrics?since=24h`.
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", tag = "metrics", params(MetricsParams), responses(
    (status = 200, description = "The figures.", body = Metrics),
    (status = 400, description = "A malformed or unknown parameter, named.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn metrics(
    State(state): State<Arc<AdminState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Metrics>, ApiError> {
    let params = Params::parse(raw.as_deref(), MetricsParams::NAMES)?;
    let since = params.parsed("since", params::time)?;
    let stats = state.stats(params.get("since"), since).await?;
    Ok(Json(Metrics {
        total: stats.by_status.values().sum(),
        by_status: stats.by_status.clone(),
        functions: stats.functions.clone(),
    }))
}

/// `GET /tasks/metrics/prometheus`.
#[utoipa::path(get, path = "/metrics/prometheus", operation_id = "getPrometheusMetrics", tag = "metrics", responses(
    (status = 200, description = "The figures in the OpenMetrics text format.",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn prometheus(State(state): State<Arc<AdminState>>) -> Result<Response, ApiError> {
    let stats = state.stats(None, None).await?;
    let text = super::metrics::prometheus(&stats);
    Ok(([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response())
}

/// The admin actions this process recorded, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEntries {
    entries: Vec<AuditEntry>,
}

/// `GET /tasks/audit`.
#[utoipa::path(get, path = "/audit", operation_id = "getAuditLog", tag = "admin", responses(
    (status = 200, description = "The latest 1,000 actions taken through this instance.", body = AuditEntries),
))]
pub(crate) async fn audit(State(state): State<Arc<AdminState>>) -> Json<AuditEntries> {
    Json(AuditEntries { entries: state.audit.newest_first() })
}
