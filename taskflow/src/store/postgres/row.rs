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

/// A record's values for [`COLUMNS`], owned so they can cross to the task that writes them.
pub(crate) struct Params(Vec<Box<dyn ToSql + Send + Sync>>);

impl Params {
    /// The values of `record`, then its hold (`$27`): held back from fetching until then.
    pub(super) fn of(record: &TaskRecord, hold: Option<chrono::DateTime<chrono::Utc>>) -> Params {
        let tags = serde_json::to_value(&record.tags).unwrap_or_default();
        Params(vec![
            Box::new(*record.task_id.as_uuid()),
            Box::new(record.func_name.clone()),
            Box::new(record.status.as_str().to_owned()),
            Box::new(record.created_at),
            Box::new(record.start_time),
            Box::new(record.end_time),
            Box::new(record.duration),
            Box::new(record.retries_used as i32),
            Box::new(record.max_retries as i32),
            Box::new(record.error.clone()),
            Box::new(record.stacktrace.clone()),
            Box::new(tags),
            Box::new(record.source.as_str().to_owned()),
            Box::new(record.priority),
            Box::new(record.args.clone()),
            Box::new(record.result.clone()),
            Box::new(record.idempotency_key.clone()),
            Box::new(record.scheduled_at),
            Box::new(record.retry_of.map(|id| *id.as_uuid())),
            Box::new(record.requeue_on_interrupt),
            Box::new(record.recoveries as i32),
            Box::new(record.lease_owner.clone()),
            Box::new(record.lease_expires_at),
            Box::new(record.run_key.clone()),
            Box::new(record.queue.clone()),
            Box::new(record.progress.as_ref().and_then(|p| serde_json::to_value(p).ok())),
            Box::new(hold),
        ])
    }

    pub(super) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
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
