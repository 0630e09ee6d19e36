//! The JSON routes of the admin API.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminState;
use super::auth::{Identity, SESSION_COOKIE};
use super::error::ApiError;
use super::params::{self, LIST_PARAMS, Params};
use crate::id::TaskId;
use crate::manager::CancelOutcome;
use crate::record::TaskStatus;
use crate::store::{Retention, TaskQuery};

/// The most ids one bulk retry takes.
pub(crate) const MAX_BULK: usize = 1000;

/// The most tasks one `retry-failed` call retries.
pub(crate) const MAX_REPLAY: usize = 10_000;

fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    params::task_id(raw).map_err(ApiError::BadRequest)
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

/// `GET /tasks`.
pub(crate) async fn list(
    State(state): State<Arc<AdminState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(raw.as_deref(), &LIST_PARAMS)?;
    let query = params::task_query(&params)?;
    let limit = query.limit.unwrap_or(params::DEFAULT_LIMIT);
    let mut tasks = Vec::with_capacity(limit.min(params::MAX_LIMIT));
    let next = read_chunked(&state, &query, limit, |record| {
        tasks.push(previewed(record));
        Ok(())
    })
    .await?;
    Ok(Json(json!({ "tasks": tasks, "next_cursor": next, "limit": query.limit })))
}

/// Reads at most `limit` of the tasks `query` matches, [`LIST_CHUNK`] whole records at a
/// time, each redacted and handed to `each` before the next chunk is read (so what `each`
/// keeps, not the records, bounds the memory); returns the cursor after the last one read
/// when more match.
pub(crate) async fn read_chunked(
    state: &AdminState,
    query: &crate::store::TaskQuery,
    limit: usize,
    mut each: impl FnMut(crate::record::TaskRecord) -> Result<(), ApiError>,
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

/// `record` as a list row: arguments and result over [`PREVIEW_BYTES`] become a string
/// preview, flagged by `args_truncated` / `result_truncated`.
fn previewed(record: crate::record::TaskRecord) -> Value {
    let mut row = serde_json::to_value(record).unwrap_or(Value::Null);
    for field in ["args", "result"] {
        let Some(value) = row.get_mut(field) else { continue };
        let encoded = value.to_string();
        if encoded.len() > PREVIEW_BYTES {
            let end = encoded.floor_char_boundary(PREVIEW_BYTES);
            *value = Value::String(format!("{}…", &encoded[..end]));
            row[format!("{field}_truncated")] = Value::Bool(true);
        }
    }
    row
}

/// `GET /tasks/{id}`.
pub(crate) async fn get(
    State(state): State<Arc<AdminState>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = task_id(&raw)?;
    let record = state.manager.store().get(&id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(serde_json::to_value(state.redaction.apply(record)).unwrap_or(Value::Null)))
}

fn not_found(id: TaskId) -> ApiError {
    ApiError::NotFound(format!("task {id} not found"))
}

/// `GET /tasks/{id}/logs`.
pub(crate) async fn logs(
    State(state): State<Arc<AdminState>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = task_id(&raw)?;
    let record = state.manager.store().get(&id).await?.ok_or_else(|| not_found(id))?;
    let record = state.redaction.apply(record);
    Ok(Json(json!({ "task_id": record.task_id, "logs": record.logs })))
}

/// `POST /tasks/{id}/retry`.
pub(crate) async fn retry(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = task_id(&raw)?;
    let new = state.manager.retry(id).await?;
    state.audit.record(&identity.actor, "retry", Some(id.to_string()), format!("new task {new}"));
    Ok((StatusCode::CREATED, Json(json!({ "task_id": new, "retry_of": id }))).into_response())
}

/// `POST /tasks/{id}/cancel`: `200` with the task once it is cancelled (now, or before),
/// `202` with it while its runner, here or on another instance, stops it.
pub(crate) async fn cancel(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = task_id(&raw)?;
    let (code, outcome) = match state.manager.cancel(id).await? {
        CancelOutcome::Cancelled => (StatusCode::OK, "cancelled"),
        CancelOutcome::AlreadyFinished(TaskStatus::Cancelled) => (StatusCode::OK, "cancelled"),
        CancelOutcome::Cancelling => (StatusCode::ACCEPTED, "cancelling"),
        CancelOutcome::NotFound => return Err(not_found(id)),
        CancelOutcome::AlreadyFinished(status) => {
            return Err(ApiError::Conflict(format!("task {id} already finished: {status}")));
        }
    };
    state.audit.record(&identity.actor, "cancel", Some(id.to_string()), outcome.to_owned());
    let task = state.manager.store().get(&id).await?.map(|record| state.redaction.apply(record));
    Ok((code, Json(json!({ "task_id": id, "outcome": outcome, "task": task }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkRetry {
    ids: Vec<String>,
}

/// Retries each of `ids`; the retried ones and the errors, each by id.
async fn retry_each(state: &AdminState, ids: Vec<TaskId>) -> (Vec<Value>, Vec<Value>) {
    let mut retried = Vec::new();
    let mut errors = Vec::new();
    for id in ids {
        match state.manager.retry(id).await {
            Ok(new) => retried.push(json!({ "task_id": id, "new_task_id": new })),
            Err(err) => errors.push(json!({ "task_id": id, "error": err.to_string() })),
        }
    }
    (retried, errors)
}

/// `POST /tasks/bulk-retry` with `{"ids": [...]}`.
pub(crate) async fn bulk_retry(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    request: Result<Json<BulkRetry>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let request = body(request)?;
    if request.ids.is_empty() || request.ids.len() > MAX_BULK {
        return Err(ApiError::BadRequest(format!("`ids` must hold 1 to {MAX_BULK} task ids")));
    }
    let ids = request
        .ids
        .iter()
        .map(|raw| params::task_id(raw).map_err(|e| ApiError::BadRequest(format!("`ids`: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let (retried, errors) = retry_each(&state, ids).await;
    state.audit.record(
        &identity.actor,
        "bulk-retry",
        None,
        format!("{} retried, {} refused", retried.len(), errors.len()),
    );
    Ok(Json(json!({ "retried": retried, "errors": errors })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryFailed {
    since: Option<String>,
    until: Option<String>,
    func_name: Option<String>,
}

/// `POST /tasks/retry-failed` with optional `{"since", "until", "func_name"}`: retries every
/// failed task created in the window (at most [`MAX_REPLAY`]).
pub(crate) async fn retry_failed(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    request: Result<Json<RetryFailed>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
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
    let (retried, errors) = retry_each(&state, ids).await;
    state.audit.record(
        &identity.actor,
        "retry-failed",
        None,
        format!("{} retried, {} refused", retried.len(), errors.len()),
    );
    Ok(Json(json!({ "retried": retried, "errors": errors })))
}

/// `DELETE /tasks/history?older_than=7d`: deletes finished tasks that ended before then.
pub(crate) async fn delete_history(
    State(state): State<Arc<AdminState>>,
    Extension(identity): Extension<Identity>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["older_than"])?;
    let older_than = params.parsed("older_than", params::age)?.ok_or_else(|| {
        ApiError::BadRequest("parameter `older_than` is required, such as `7d`".to_owned())
    })?;
    let retention = Retention { max_age: Some(older_than), max_finished: None };
    let deleted = state.manager.store().prune(&retention, Utc::now()).await?;
    state.audit.record(&identity.actor, "delete-history", None, format!("{deleted} deleted"));
    Ok(Json(json!({ "deleted": deleted })))
}

/// `GET /tasks/metrics?since=24h`.
pub(crate) async fn metrics(
    State(state): State<Arc<AdminState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["since"])?;
    let since = params.parsed("since", params::time)?;
    let stats = state.stats(params.get("since"), since).await?;
    let total: u64 = stats.by_status.values().sum();
    Ok(Json(json!({ "total": total, "by_status": stats.by_status, "functions": stats.functions })))
}

/// `GET /tasks/metrics/prometheus`.
pub(crate) async fn prometheus(State(state): State<Arc<AdminState>>) -> Result<Response, ApiError> {
    let stats = state.stats(None, None).await?;
    let text = super::metrics::prometheus(&stats);
    Ok(([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response())
}

/// `GET /tasks/audit`.
pub(crate) async fn audit(State(state): State<Arc<AdminState>>) -> Json<Value> {
    Json(json!({ "entries": state.audit.newest_first() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
}

/// `POST /tasks/login` with `{"username", "password"}` or `{"token"}`: a session cookie for
/// the dashboard.
pub(crate) async fn login(
    State(state): State<Arc<AdminState>>,
    client: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    request: Result<Json<Login>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let client = client.map(|Extension(info)| info.0.ip());
    let session = match (&request.username, &request.password, &request.token) {
        (Some(user), Some(password), None) => state.auth.login(client, user, password),
        (None, None, Some(token)) => state.auth.login_with_token(client, token),
        _ => {
            return Err(ApiError::BadRequest(
                "request body: give `username` and `password`, or `token`".to_owned(),
            ));
        }
    };
    let (cookie, csrf) = session?;
    let user = request.username.unwrap_or_else(|| "token".to_owned());
    // A sealed session lasts its lifetime on every instance, across restarts: the cookie
    // says so; one kept in this process's memory ends with the browser session.
    let lasts = if state.auth.sessions.shared() {
        format!("; Max-Age={}", super::session::SESSION_TTL.as_secs())
    } else {
        String::new()
    };
    let set_cookie = format!(
        "{SESSION_COOKIE}={cookie}; Path={}; HttpOnly; SameSite=Strict{lasts}",
        cookie_path(&state)
    );
    let body = Json(json!({ "user": user, "csrf": csrf }));
    Ok(([(header::SET_COOKIE, set_cookie)], body).into_response())
}

/// The session cookie's path: the router's prefix.
fn cookie_path(state: &AdminState) -> &str {
    if state.prefix.is_empty() { "/" } else { &state.prefix }
}

/// `POST /tasks/logout`.
pub(crate) async fn logout(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.auth.logout(&**state.manager.store(), &headers).await?;
    let clear = format!(
        "{SESSION_COOKIE}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0",
        cookie_path(&state)
    );
    Ok(([(header::SET_COOKIE, clear)], Json(json!({ "signed_out": true }))).into_response())
}

/// `GET /tasks/session`: whether sign-in is needed, and the signed-in session's CSRF token.
pub(crate) async fn session(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let session = state.auth.session(&**state.manager.store(), &headers).await?;
    Ok(Json(json!({
        "auth_required": state.auth.required(),
        "login": state.auth.basic.is_some(),
        "user": session.as_ref().map(|session| &session.user),
        "csrf": session.as_ref().map(|session| &session.csrf),
        "display_args": state.redaction.display_args,
    })))
}
