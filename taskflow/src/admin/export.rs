//! `GET /tasks/export.csv`: the tasks matching the same filters as `GET /tasks`, as CSV for a
//! spreadsheet, with the admin's redaction applied.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::params::{self, LIST_PARAMS, Params};
use crate::record::TaskRecord;

/// The most rows one export holds; more matching tasks are cut, and the response says so in
/// `x-taskflow-truncated: true`.
pub(crate) const MAX_ROWS: usize = 50_000;

/// The columns, in order.
const COLUMNS: [&str; 15] = [
    "task_id",
    "func_name",
    "queue",
    "status",
    "source",
    "priority",
    "created_at",
    "start_time",
    "end_time",
    "duration",
    "retries_used",
    "max_retries",
    "tags",
    "args",
    "error",
];

/// The export handler.
#[utoipa::path(get, path = "/export.csv", operation_id = "exportTasks", tag = "tasks", params(super::params::ListParams), responses(
    (status = 200, description = "The tasks `GET {p}` lists with the same filters, as CSV: at most \
        `limit` rows (50 by default) or 50,000; arguments redacted as in the API; cells a \
        spreadsheet would read as formulas start with `'`.", content_type = "text/csv; charset=utf-8", body = String,
        headers(("x-taskflow-truncated" = bool, description = "`true` when more tasks match."))),
    (status = 400, description = "A malformed or unknown parameter, named.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn csv(
    State(state): State<Arc<AdminState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref(), LIST_PARAMS)?;
    let query = params::task_query(&params)?;
    // Without `limit`, every match (up to MAX_ROWS), not the API's default page.
    let asked = params.parsed("limit", params::limit)?;
    let limit = asked.unwrap_or(MAX_ROWS);
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    writer.write_record(COLUMNS).map_err(internal)?;
    let more = super::api::read_chunked(&state, &query, limit, |record| {
        writer.write_record(cells(record)).map_err(internal)
    })
    .await?;
    let truncated = more.is_some() && asked.is_none();
    let body = writer.into_inner().map_err(|err| internal(err.into_error()))?;
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"tasks.csv\""),
    );
    if truncated {
        headers.insert("x-taskflow-truncated", HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn internal(err: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("cannot write the CSV: {err}"))
}

/// A record's cells, in [`COLUMNS`] order.
fn cells(record: TaskRecord) -> Vec<String> {
    let time =
        |at: Option<chrono::DateTime<chrono::Utc>>| at.map(|t| t.to_rfc3339()).unwrap_or_default();
    let json = |value: &Value| serde_json::to_string(value).unwrap_or_default();
    [
        record.task_id.to_string(),
        record.func_name,
        record.queue,
        record.status.as_str().to_owned(),
        record.source.as_str().to_owned(),
        record.priority.to_string(),
        record.created_at.to_rfc3339(),
        time(record.start_time),
        time(record.end_time),
        record.duration.map(|d| d.to_string()).unwrap_or_default(),
        record.retries_used.to_string(),
        record.max_retries.to_string(),
        serde_json::to_string(&record.tags).unwrap_or_default(),
        json(&record.args),
        record.error.unwrap_or_default(),
    ]
    .into_iter()
    .map(defused)
    .collect()
}

/// `cell` made safe to open in a spreadsheet: text that a spreadsheet would read as a
/// formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`.
fn defused(cell: String) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::defused;

    #[test]
    fn cells_a_spreadsheet_would_run_are_defused() {
        for formula in ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"] {
            assert_eq!(defused(formula.to_owned()), format!("'{formula}"));
        }
        for plain in ["refused", "{\"a\":1}", "", "1.5"] {
            assert_eq!(defused(plain.to_owned()), plain);
        }
    }
}
