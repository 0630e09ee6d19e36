//! What the backends share: reading rows that may be damaged, the fetch order, messages, SQL
//! text helpers, the p95, and heartbeats and progress read back.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::StoreError;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use super::fetch;
use crate::id::TaskId;
use crate::instance::Instance;
use crate::record::TaskRecord;

/// The records (or pending tasks) of `rows` that decode, in order. A row that does not (a damaged or
/// hand-edited one) is left out with an error log naming the task and the column, so one bad
/// row cannot hide every other task from a list, a poll or a reclaim; [`Store::get`] still
/// reports it. Errors other than [`StoreError::Corrupt`] are passed on.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "redis")),
    allow(dead_code)
)]
pub(crate) fn readable<R, T>(
    rows: impl IntoIterator<Item = R>,
    mut decode: impl FnMut(R) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut records = Vec::new();
    for row in rows {
        match decode(row) {
            Ok(record) => records.push(record),
            Err(StoreError::Corrupt { id, reason }) => {
                tracing::error!(task_id = %id, %reason, "taskflow: a stored task cannot be read; left out");
            }
            Err(other) => return Err(other),
        }
    }
    Ok(records)
}

/// When a pending task is due: its `scheduled_at`, else its creation.
pub(crate) fn due_at(record: &TaskRecord) -> DateTime<Utc> {
    record.scheduled_at.unwrap_or(record.created_at)
}

/// The order of [`Store::fetch`] as a sort key, for a record whose place in enqueue order is
/// `seq`: lowest rank ([`PRIORITY_STEP`]), then first enqueued.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn fetch_order(record: &TaskRecord, seq: i64) -> (i64, i64) {
    (fetch::rank(record), seq)
}

/// The error recorded on a task that a run key's new task `by` replaced.
pub(crate) fn replaced(by: &TaskId) -> String {
    format!("replaced by task {by} (same run key)")
}

/// `text` with `\`, `%` and `_` escaped, for a SQL `LIKE ... ESCAPE '\'` pattern.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The SQL/JSON path of the member `key` of the tags object (`$."key"`).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn tag_path(key: &str) -> String {
    format!("$.\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `url` without its password, for messages.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// The p95 of `durations` (sorted ascending in place), nearest-rank.
pub(crate) fn p95(durations: &mut [f64]) -> Option<f64> {
    if durations.is_empty() {
        return None;
    }
    durations.sort_by(f64::total_cmp);
    let rank = ((durations.len() as f64) * 0.95).ceil() as usize;
    Some(durations[rank.clamp(1, durations.len()) - 1])
}

/// Stored heartbeats (JSON) as instances; one that cannot be read is logged and left out.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "redis")),
    allow(dead_code)
)]
pub(crate) fn decode_instances(stored: Vec<String>) -> Vec<Instance> {
    stored
        .iter()
        .filter_map(|info| match serde_json::from_str(info) {
            Ok(instance) => Some(instance),
            Err(err) => {
                tracing::warn!(error = %err, "taskflow: a stored instance heartbeat is unreadable; left out");
                None
            }
        })
        .collect()
}

/// A task's stored progress (JSON) read back; one that cannot be read is left out (it is
/// only a display: the task stays readable).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) fn progress(stored: Option<Value>) -> Option<crate::record::Progress> {
    stored.and_then(|value| serde_json::from_value(value).ok())
}

/// A change of a task's stored arguments and result to other text for the same values, as
/// re-sealing with a new key makes: each given field changes from the first value (what the
/// caller read) to the second, only if it still holds the first.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Rewrite {
    /// The task.
    pub id: TaskId,
    /// The arguments: as read, and as they become.
    pub args: Option<(Value, Value)>,
    /// The result: as read, and as it becomes.
    pub result: Option<(Value, Value)>,
}

impl Rewrite {
    /// Nothing to change yet for task `id`.
    pub fn new(id: TaskId) -> Rewrite {
        Rewrite { id, args: None, result: None }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.args.is_none() && self.result.is_none()
    }
}
