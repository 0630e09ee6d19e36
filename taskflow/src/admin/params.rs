//! Reading the admin API's query parameters strictly: an unknown parameter or a bad value is a
//! `400` that names the parameter.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use utoipa::IntoParams;

use super::error::ApiError;
use crate::id::TaskId;
use crate::record::TaskStatus;
use crate::store::TaskQuery;

/// The largest page `GET /tasks` serves.
pub(crate) const MAX_LIMIT: usize = 1000;

/// The page size of `GET /tasks` without `limit`.
pub(crate) const DEFAULT_LIMIT: usize = 50;

/// Query parameters, checked against the names a route accepts.
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// Parses `raw`; a parameter not in `allowed`, given twice or empty is an error.
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let mut params = HashMap::new();
        for (key, value) in form_pairs(raw.unwrap_or_default()) {
            if !allowed.contains(&key.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{key}`; expected one of: {}",
                    allowed.join(", ")
                )));
            }
            if value.is_empty() {
                return Err(ApiError::BadRequest(format!(
                    "parameter `{key}` is empty: give it a value or leave it out"
                )));
            }
            if params.insert(key.clone(), value).is_some() {
                return Err(ApiError::BadRequest(format!("parameter `{key}` given twice")));
            }
        }
        Ok(Params(params))
    }

    /// The raw value of `name` (never empty).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `name` parsed by `parse`, whose error message is prefixed by the parameter.
    pub(crate) fn parsed<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|value| {
                parse(value).map_err(|e| ApiError::BadRequest(format!("parameter `{name}`: {e}")))
            })
            .transpose()
    }
}

/// Splits `a=1&b=2`, percent-decoding keys and values (`+` is a space).
fn form_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A task status word.
pub(crate) fn status(value: &str) -> Result<TaskStatus, String> {
    value.parse()
}

/// A task id.
pub(crate) fn task_id(value: &str) -> Result<TaskId, String> {
    value.parse().map_err(|_| format!("`{value}` is not a task id (a UUID)"))
}

/// An RFC 3339 time (`2026-11-26T10:00:00Z`), or a span back from now (`15m`, `24h`, `7d`).
pub(crate) fn time(value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    let ago = duration(value).map_err(|_| {
        format!("`{value}` is neither an RFC 3339 time nor a span such as `15m`, `24h` or `7d`")
    })?;
    back_from_now(value, ago)
}

/// A span back from now that ends at a representable time (`older_than`).
pub(crate) fn age(value: &str) -> Result<Duration, String> {
    let span = duration(value)?;
    back_from_now(value, span).map(|_| span)
}

/// Now minus `span`, or an error naming `value` when that is before any time a task can carry.
fn back_from_now(value: &str, span: Duration) -> Result<DateTime<Utc>, String> {
    chrono::Duration::from_std(span)
        .ok()
        .and_then(|span| Utc::now().checked_sub_signed(span))
        .ok_or_else(|| format!("`{value}` reaches back too far (at most about 260,000 years)"))
}

/// A span: a whole number and a unit, `s`, `m`, `h` or `d` (`90s`, `7d`).
pub(crate) fn duration(value: &str) -> Result<Duration, String> {
    let bad = || format!("`{value}` is not a span such as `90s`, `15m`, `24h` or `7d`");
    let unit_at = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = value.split_at(unit_at);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    number.checked_mul(seconds).map(Duration::from_secs).ok_or_else(bad)
}

/// `key:value`.
pub(crate) fn tag(value: &str) -> Result<(String, String), String> {
    value
        .split_once(':')
        .filter(|(key, _)| !key.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{value}` is not `key:value`"))
}

/// A page size from 1 to [`MAX_LIMIT`], in decimal digits.
pub(crate) fn limit(value: &str) -> Result<usize, String> {
    Some(value)
        .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| format!("`{value}` is not a number from 1 to {MAX_LIMIT}"))
}

/// The parameters `GET /tasks` and `GET /tasks/export.csv` accept.
pub(crate) const LIST_PARAMS: &[&str] = ListParams::NAMES;

/// The query of `GET {p}` and `GET {p}/export.csv`, for the OpenAPI description; read by
/// [`task_query`].
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read from the raw query by `task_query`, strictly.
pub(crate) struct ListParams {
    /// Only tasks with this status.
    status: Option<TaskStatus>,
    /// Only this task.
    #[param(min_length = 1)]
    func_name: Option<String>,
    /// Only this queue.
    #[param(min_length = 1)]
    queue: Option<String>,
    /// Only tasks with this tag: `key:value`.
    #[param(pattern = "^[^:]+:")]
    tag: Option<String>,
    /// The start or end of a task id, or part of a function name.
    #[param(min_length = 1)]
    q: Option<String>,
    /// Created at or after: an RFC 3339 time, or a span back from now (`15m`, `24h`, `7d`).
    #[param(min_length = 1)]
    since: Option<String>,
    /// Created before: an RFC 3339 time, or a span back from now.
    #[param(min_length = 1)]
    until: Option<String>,
    /// `-created_at` (newest first, the default) or `created_at` (oldest first).
    #[param(pattern = "^-?created_at$")]
    sort: Option<String>,
    /// The page size (50 by default).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `next_cursor` of the page before.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

impl ListParams {
    /// The names, as the handlers accept them.
    pub(crate) const NAMES: &[&str] =
        &["status", "func_name", "queue", "tag", "q", "since", "until", "sort", "limit", "cursor"];
}

/// The query of `GET {p}/metrics`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read from the raw query, strictly.
pub(crate) struct MetricsParams {
    /// Only tasks created at or after: an RFC 3339 time, or a span back from now (`24h`).
    /// Without it the figures come from the store's counters; with it, from the tasks.
    #[param(min_length = 1)]
    since: Option<String>,
}

impl MetricsParams {
    /// The names, as the handler accepts them.
    pub(crate) const NAMES: &[&str] = &["since"];
}

/// The query of `DELETE {p}/history`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read from the raw query, strictly.
pub(crate) struct HistoryCutoff {
    /// Delete finished tasks that ended longer ago than this span: `90s`, `15m`, `24h`, `7d`.
    #[param(pattern = "^[0-9]+[smhd]$")]
    older_than: String,
}

impl HistoryCutoff {
    /// The names, as the handler accepts them.
    pub(crate) const NAMES: &[&str] = &["older_than"];
}

/// The query of `GET {p}/metrics/history`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read from the raw query, strictly.
pub(crate) struct HistoryParams {
    /// How far back: a span from `1m` to `31d` (`1h` by default).
    #[param(pattern = "^[0-9]+[smhd]$")]
    window: Option<String>,
    /// One point's span, at most the window, rounded up to whole minutes (by default, what
    /// keeps about 60 points); at most 1,440 points.
    #[param(pattern = "^[0-9]+[smhd]$")]
    step: Option<String>,
    /// Only this task's counts.
    #[param(min_length = 1)]
    func_name: Option<String>,
    /// Only this queue's counts.
    #[param(min_length = 1)]
    queue: Option<String>,
}

impl HistoryParams {
    /// The names, as the handler accepts them.
    pub(crate) const NAMES: &[&str] = &["window", "step", "func_name", "queue"];
}

/// A [`TaskQuery`] from `GET /tasks` parameters.
pub(crate) fn task_query(params: &Params) -> Result<TaskQuery, ApiError> {
    let oldest_first = match params.get("sort") {
        None | Some("-created_at") => false,
        Some("created_at") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "parameter `sort`: `{other}` is not `created_at` (oldest first) or `-created_at` (newest first)"
            )));
        }
    };
    Ok(TaskQuery {
        status: params.parsed("status", status)?,
        func_name: params.get("func_name").map(str::to_owned),
        queue: params.get("queue").map(str::to_owned),
        tag: params.parsed("tag", tag)?,
        search: params.get("q").map(str::to_owned),
        since: params.parsed("since", time)?,
        until: params.parsed("until", time)?,
        oldest_first,
        after: params.get("cursor").map(str::to_owned),
        limit: Some(params.parsed("limit", limit)?.unwrap_or(DEFAULT_LIMIT)),
    })
}
