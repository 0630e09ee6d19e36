//! [`TaskQuery`], [`TaskPage`] and [`TaskStats`]: what [`Store::list`](super::Store::list) and
//! [`Store::stats`](super::Store::stats) take and give.

use chrono::{DateTime, Utc};

use crate::record::{TaskRecord, TaskStatus};

/// Filters, order and page of [`Store::list`](super::Store::list).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskQuery {
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// Only tasks of this function.
    pub func_name: Option<String>,
    /// Only tasks of this queue.
    pub queue: Option<String>,
    /// Only tasks with this tag (key, value).
    pub tag: Option<(String, String)>,
    /// Only tasks whose id starts or ends with this (ids start with their creation time; the
    /// dashboard shows their last 12 characters), or whose function name contains it.
    pub search: Option<String>,
    /// Only tasks created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only tasks created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Oldest first instead of newest first (by creation).
    pub oldest_first: bool,
    /// Continue after this cursor, from a previous page's [`TaskPage::next`].
    pub after: Option<String>,
    /// At most this many; `None` for the store's default (100).
    pub limit: Option<usize>,
}

/// One page of [`Store::list`](super::Store::list).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskPage {
    /// The tasks, in the query's order. Their `logs` are left empty.
    pub tasks: Vec<TaskRecord>,
    /// The cursor of the next page; `None` on the last page. Opaque, store-specific.
    pub next: Option<String>,
}

/// Counts and durations over the stored tasks, for metrics.
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TaskStats {
    /// How many tasks have each status (every status is present).
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// Per function, by name.
    pub functions: Vec<FunctionStats>,
}

/// How one function's tasks went. Runs are the tasks that ran to an end: `success`, `failed`
/// or `interrupted`; durations (seconds) are over those.
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct FunctionStats {
    /// The task name.
    pub func_name: String,
    /// Tasks that ran to an end.
    pub runs: u64,
    /// Of which succeeded.
    pub successes: u64,
    /// Of which failed.
    pub failures: u64,
    /// `successes / runs` (0 with no runs).
    pub success_rate: f64,
    /// Mean duration.
    pub avg_duration: Option<f64>,
    /// Shortest duration.
    pub min_duration: Option<f64>,
    /// Longest duration.
    pub max_duration: Option<f64>,
    /// 95th percentile of the latest [`P95_WINDOW`] runs' durations.
    pub p95_duration: Option<f64>,
}

/// The p95 duration is taken over at most this many of a function's latest runs.
pub const P95_WINDOW: usize = 10_000;

/// The default page size of [`Store::list`](super::Store::list).
pub const DEFAULT_PAGE: usize = 100;

impl TaskQuery {
    /// Whether `record` passes the filters (not the cursor), for stores that filter in code.
    pub(crate) fn matches(&self, record: &TaskRecord) -> bool {
        self.status.is_none_or(|s| record.status == s)
            && self.func_name.as_deref().is_none_or(|f| record.func_name == f)
            && self.queue.as_deref().is_none_or(|q| record.queue == q)
            && self.tag.as_ref().is_none_or(|(k, v)| record.tags.get(k) == Some(v))
            && self.search.as_deref().is_none_or(|q| {
                let id = record.task_id.to_string();
                id.starts_with(q) || id.ends_with(q) || record.func_name.contains(q)
            })
            && self.since.is_none_or(|at| record.created_at >= at)
            && self.until.is_none_or(|at| record.created_at < at)
    }
}

impl TaskStats {
    /// No tasks yet: every status counted zero, no functions.
    pub(crate) fn zero() -> TaskStats {
        let by_status = TaskStatus::ALL.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
        TaskStats { by_status, functions: Vec::new() }
    }
}
