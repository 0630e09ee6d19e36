//! How a [`TaskRecord`] maps to a row of `taskflow_tasks` and back.

use std::collections::BTreeMap;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::id::TaskId;
use crate::record::{LogEntry, LogLevel, TaskRecord, TaskSource};
use crate::store::StoreError;

/// The columns of `taskflow_tasks`, in the order [`Params`] binds and [`decode`] reads.
pub(super) const COLUMNS: &str = "id, func_name, status, created_at, start_time, end_time, \
    duration, retries_used, max_retries, error, stacktrace, tags, source, priority, args, \
    result, idempotency_key, scheduled_at, retry_of, requeue_on_interrupt, recoveries, \
    lease_owner, lease_expires_at, run_key, queue, progress";

/// Declares [`Params`], a record's values for [`COLUMNS`] then its hold, and [`Columns`], the
/// same values of many records column by column (each column an array, for `unnest`), from
/// one list of fields with their SQL types.
macro_rules! params {
    ($($field:ident: $type:ty = $sql:literal,)*) => {
        /// A record's values for [`COLUMNS`], then its hold (`$27`), owned so they can cross
        /// to the task that writes them.
        pub(crate) struct Params {
            $(pub(super) $field: $type,)*
        }

        impl Params {
            /// The values as statement parameters, in order.
            pub(super) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
                vec![$(&self.$field),*]
            }
        }

        /// The values of several [`Params`], one array per column, in the order of
        /// [`UNNEST`].
        pub(super) struct Columns<'p> {
            $($field: Vec<&'p $type>,)*
        }

        impl<'p> Columns<'p> {
            /// The columns of `rows`.
            pub(super) fn of(rows: &[&'p Params]) -> Columns<'p> {
                Columns { $($field: rows.iter().map(|row| &row.$field).collect(),)* }
            }

            /// The arrays as statement parameters, in order.
            pub(super) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
                vec![$(&self.$field),*]
            }
        }

        /// `unnest` of the arrays of [`Columns`] (`$1` ...), as a row source `r` with the
        /// columns of [`COLUMNS`] then `hold`.
        pub(super) static UNNEST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let types = [$($sql),*];
            let arrays: Vec<String> =
                types.iter().enumerate().map(|(n, t)| format!("${}::{t}[]", n + 1)).collect();
            format!("unnest({}) AS r ({COLUMNS}, hold)", arrays.join(", "))
        });
    };
}

type Time = chrono::DateTime<chrono::Utc>;

params! {
    id: uuid::Uuid = "uuid",
    func_name: String = "text",
    status: String = "text",
    created_at: Time = "timestamptz",
    start_time: Option<Time> = "timestamptz",
    end_time: Option<Time> = "timestamptz",
    duration: Option<f64> = "float8",
    retries_used: i32 = "int4",
    max_retries: i32 = "int4",
    error: Option<String> = "text",
    stacktrace: Option<String> = "text",
    tags: serde_json::Value = "jsonb",
    source: String = "text",
    priority: i32 = "int4",
    args: serde_json::Value = "jsonb",
    result: Option<serde_json::Value> = "jsonb",
    idempotency_key: Option<String> = "text",
    scheduled_at: Option<Time> = "timestamptz",
    retry_of: Option<uuid::Uuid> = "uuid",
    requeue_on_interrupt: bool = "bool",
    recoveries: i32 = "int4",
    lease_owner: Option<String> = "text",
    lease_expires_at: Option<Time> = "timestamptz",
    run_key: Option<String> = "text",
    queue: String = "text",
    progress: Option<serde_json::Value> = "jsonb",
    hold: Option<Time> = "timestamptz",
}

impl Params {
    /// The values of `record`, then its hold: held back from fetching until then.
    pub(super) fn of(record: &TaskRecord, hold: Option<Time>) -> Params {
        Params {
            id: *record.task_id.as_uuid(),
            func_name: record.func_name.clone(),
            status: record.status.as_str().to_owned(),
            created_at: record.created_at,
            start_time: record.start_time,
            end_time: record.end_time,
            duration: record.duration,
            retries_used: record.retries_used as i32,
            max_retries: record.max_retries as i32,
            error: record.error.clone(),
            stacktrace: record.stacktrace.clone(),
            tags: serde_json::to_value(&record.tags).unwrap_or_default(),
            source: record.source.as_str().to_owned(),
            priority: record.priority,
            args: record.args.clone(),
            result: record.result.clone(),
            idempotency_key: record.idempotency_key.clone(),
            scheduled_at: record.scheduled_at,
            retry_of: record.retry_of.map(|id| *id.as_uuid()),
            requeue_on_interrupt: record.requeue_on_interrupt,
            recoveries: record.recoveries as i32,
            lease_owner: record.lease_owner.clone(),
            lease_expires_at: record.lease_expires_at,
            run_key: record.run_key.clone(),
            queue: record.queue.clone(),
            progress: record.progress.as_ref().and_then(|p| serde_json::to_value(p).ok()),
            hold,
        }
    }
}

fn corrupt(id: &str, column: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { id: id.to_owned(), reason: format!("column `{column}`: {reason}") }
}

/// A row selected as [`COLUMNS`] back to a record (without its logs).
pub(super) fn decode(row: &Row) -> Result<TaskRecord, StoreError> {
    let id: uuid::Uuid = row.try_get(0).map_err(|e| corrupt("?", "id", e))?;
    let text = id.to_string();
    let bad = |column: &'static str| {
        let text = text.clone();
        move |e: tokio_postgres::Error| corrupt(&text, column, e)
    };
    let status: String = row.try_get(2).map_err(bad("status"))?;
    let source: String = row.try_get(12).map_err(bad("source"))?;
    let tags: serde_json::Value = row.try_get(11).map_err(bad("tags"))?;
    let retries_used: i32 = row.try_get(7).map_err(bad("retries_used"))?;
    let max_retries: i32 = row.try_get(8).map_err(bad("max_retries"))?;
    let recoveries: i32 = row.try_get(20).map_err(bad("recoveries"))?;
    let retry_of: Option<uuid::Uuid> = row.try_get(18).map_err(bad("retry_of"))?;
    Ok(TaskRecord {
        task_id: TaskId::from(id),
        func_name: row.try_get(1).map_err(bad("func_name"))?,
        status: status.parse().map_err(|e| corrupt(&text, "status", e))?,
        created_at: row.try_get(3).map_err(bad("created_at"))?,
        start_time: row.try_get(4).map_err(bad("start_time"))?,
        end_time: row.try_get(5).map_err(bad("end_time"))?,
        duration: row.try_get(6).map_err(bad("duration"))?,
        retries_used: retries_used.max(0) as u32,
        max_retries: max_retries.max(0) as u32,
        error: row.try_get(9).map_err(bad("error"))?,
        stacktrace: row.try_get(10).map_err(bad("stacktrace"))?,
        logs: Vec::new(),
        tags: serde_json::from_value::<BTreeMap<String, String>>(tags)
            .map_err(|e| corrupt(&text, "tags", e))?,
        source: TaskSource::parse(&source).ok_or_else(|| corrupt(&text, "source", &source))?,
        priority: row.try_get(13).map_err(bad("priority"))?,
        args: row.try_get(14).map_err(bad("args"))?,
        result: row.try_get(15).map_err(bad("result"))?,
        idempotency_key: row.try_get(16).map_err(bad("idempotency_key"))?,
        scheduled_at: row.try_get(17).map_err(bad("scheduled_at"))?,
        retry_of: retry_of.map(TaskId::from),
        requeue_on_interrupt: row.try_get(19).map_err(bad("requeue_on_interrupt"))?,
        recoveries: recoveries.max(0) as u32,
        lease_owner: row.try_get(21).map_err(bad("lease_owner"))?,
        lease_expires_at: row.try_get(22).map_err(bad("lease_expires_at"))?,
        run_key: row.try_get(23).map_err(bad("run_key"))?,
        queue: row.try_get(24).map_err(bad("queue"))?,
        progress: crate::store::shared::progress(row.try_get(25).map_err(bad("progress"))?),
    })
}

/// A row selected as `at, level, message, attempt, fields` back to a log entry.
pub(super) fn decode_log(row: &Row) -> Result<LogEntry, StoreError> {
    let bad = |e: tokio_postgres::Error| corrupt("?", "taskflow_logs", e);
    let level: String = row.try_get(1).map_err(bad)?;
    let attempt: i32 = row.try_get(3).map_err(bad)?;
    let fields: serde_json::Value = row.try_get(4).map_err(bad)?;
    Ok(LogEntry {
        at: row.try_get(0).map_err(bad)?,
        level: LogLevel::parse(&level)
            .ok_or_else(|| corrupt("?", "taskflow_logs.level", &level))?,
        message: row.try_get(2).map_err(bad)?,
        attempt: attempt.max(0) as u32,
        fields: match fields {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
    })
}
