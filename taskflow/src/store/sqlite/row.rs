//! How a [`TaskRecord`] maps to a row of `tasks` and back: timestamps as integer
//! microseconds since the Unix epoch (UTC), JSON values as text, sealed ones as bytes.

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::{FromSql, Value as Sql, ValueRef};
use serde_json::Value;

use crate::record::{LogEntry, LogLevel, TaskRecord, TaskSource};
use crate::store::StoreError;

/// The columns of `tasks`, in the order [`encode`] gives and [`decode`] reads, as a literal
/// for `concat!`.
macro_rules! columns {
    () => {
        "id, func_name, status, created_at, start_time, end_time, duration, retries_used, \
         max_retries, error, stacktrace, tags, source, priority, args, result, idempotency_key, \
         scheduled_at, retry_of, requeue_on_interrupt, recoveries, lease_owner, lease_expires_at, \
         run_key, queue, progress"
    };
}
pub(super) use columns;

/// How many columns [`columns!`] names.
pub(super) const COLUMN_COUNT: usize = 26;

/// `?1, ..., ?26` for [`columns!`].
macro_rules! placeholders {
    () => {
        "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
         ?20, ?21, ?22, ?23, ?24, ?25, ?26"
    };
}
pub(super) use placeholders;

/// A record as the values of [`columns!`]. Done on the caller's thread, so the connection's
/// thread only binds them.
pub(super) fn encode(record: &TaskRecord) -> [Sql; COLUMN_COUNT] {
    [
        Sql::Text(record.task_id.to_string()),
        Sql::Text(record.func_name.clone()),
        Sql::Text(record.status.as_str().to_owned()),
        Sql::Integer(micros(record.created_at)),
        opt_time(record.start_time),
        opt_time(record.end_time),
        record.duration.map_or(Sql::Null, Sql::Real),
        Sql::Integer(record.retries_used.into()),
        Sql::Integer(record.max_retries.into()),
        opt_text(record.error.clone()),
        opt_text(record.stacktrace.clone()),
        Sql::Text(serde_json::to_string(&record.tags).unwrap_or_else(|_| "{}".to_owned())),
        Sql::Text(record.source.as_str().to_owned()),
        Sql::Integer(record.priority.into()),
        stored_value(&record.args),
        record.result.as_ref().map_or(Sql::Null, stored_value),
        opt_text(record.idempotency_key.clone()),
        opt_time(record.scheduled_at),
        opt_text(record.retry_of.map(|id| id.to_string())),
        Sql::Integer(record.requeue_on_interrupt.into()),
        Sql::Integer(record.recoveries.into()),
        opt_text(record.lease_owner.clone()),
        opt_time(record.lease_expires_at),
        opt_text(record.run_key.clone()),
        Sql::Text(record.queue.clone()),
        opt_text(record.progress.as_ref().and_then(|p| serde_json::to_string(p).ok())),
    ]
}

/// A task's arguments or result as stored: a sealed value as a BLOB of its bytes (feature
/// `encryption`: no base64, no JSON envelope, so the writer's rows stay small), any other
/// as JSON text.
pub(super) fn stored_value(value: &Value) -> Sql {
    #[cfg(feature = "encryption")]
    if let Some(bytes) = crate::seal::to_bytes(value) {
        return Sql::Blob(bytes);
    }
    Sql::Text(value.to_string())
}

/// A stored value as text whatever its type (a damaged row may hold a blob or a number where
/// text belongs): for figures that must not fail over one bad row.
pub(super) fn text_of(value: &Sql) -> String {
    match value {
        Sql::Text(text) => text.clone(),
        Sql::Blob(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Sql::Integer(n) => n.to_string(),
        Sql::Real(x) => x.to_string(),
        Sql::Null => "null".to_owned(),
    }
}

/// A row's values, copied out of the statement so that decoding them (JSON parsing included)
/// happens on the caller's thread, not on the store's busy one.
#[derive(Debug)]
pub(super) struct RawRow(Vec<Sql>);

impl RawRow {
    /// Copies the first `columns` values of `row`.
    pub(super) fn read(row: &Row<'_>, columns: usize) -> rusqlite::Result<RawRow> {
        (0..columns).map(|index| row.get::<_, Sql>(index)).collect::<Result<_, _>>().map(RawRow)
    }

    /// A row of these values (for the fuzz targets).
    #[cfg(feature = "fuzzing")]
    pub(super) fn from_values(values: Vec<Sql>) -> RawRow {
        RawRow(values)
    }

    /// The value at `index`, converted.
    pub(super) fn value<T: FromSql>(&self, index: usize) -> Result<T, StoreError> {
        self.get(index).map_err(|err| StoreError::Unavailable(format!("sqlite: {err}")))
    }

    /// The value at `index` as text whatever its type (a damaged row may hold a blob or a
    /// number where text belongs): for figures that must not fail over one bad row.
    pub(super) fn text_lossy(&self, index: usize) -> String {
        self.0.get(index).map_or_else(|| "null".to_owned(), text_of)
    }

    /// The `seq` selected after [`columns!`].
    pub(super) fn seq(&self) -> Result<i64, StoreError> {
        self.value(COLUMN_COUNT)
    }

    fn get<T: FromSql>(&self, index: usize) -> rusqlite::Result<T> {
        let value = self.0.get(index).ok_or(rusqlite::Error::InvalidColumnIndex(index))?;
        T::column_result(ValueRef::from(value)).map_err(|err| {
            rusqlite::Error::FromSqlConversionFailure(index, value.data_type(), Box::new(err))
        })
    }
}

/// A row selected as [`columns!`] back to a record (without its logs).
///
/// Stored arguments or results that are not valid JSON are an error when `strict` (the task
/// is about to run); otherwise they come back as the stored text, in a JSON string, so the
/// task stays visible.
pub(super) fn decode(row: &RawRow, strict: bool) -> Result<TaskRecord, StoreError> {
    let id: String = row.get(0).map_err(|err| corrupt("?", "id", err))?;
    let field = |name: &'static str| {
        let id = id.clone();
        move |err: rusqlite::Error| corrupt(&id, name, err)
    };
    let json = |index: usize, name: &'static str| -> Result<Option<Value>, StoreError> {
        #[cfg(feature = "encryption")]
        if let Some(Sql::Blob(bytes)) = row.0.get(index)
            && let Some(sealed) = crate::seal::from_bytes(bytes)
        {
            return Ok(Some(sealed));
        }
        let text: Option<String> = row.get(index).map_err(field(name))?;
        let Some(text) = text else { return Ok(None) };
        match serde_json::from_str(&text) {
            Ok(value) => Ok(Some(value)),
            Err(err) if strict || name == "tags" => Err(corrupt(&id, name, err)),
            Err(_) => Ok(Some(Value::String(text))),
        }
    };
    let time = |index: usize, name: &'static str| -> Result<Option<DateTime<Utc>>, StoreError> {
        let value: Option<i64> = row.get(index).map_err(field(name))?;
        value.map(|v| from_micros(v).ok_or_else(|| corrupt(&id, name, "out of range"))).transpose()
    };
    let status: String = row.get(2).map_err(field("status"))?;
    let source: String = row.get(12).map_err(field("source"))?;
    let retry_of: Option<String> = row.get(18).map_err(field("retry_of"))?;
    Ok(TaskRecord {
        task_id: id.parse().map_err(|err| corrupt(&id, "id", err))?,
        func_name: row.get(1).map_err(field("func_name"))?,
        status: status.parse().map_err(|err| corrupt(&id, "status", err))?,
        created_at: time(3, "created_at")?.ok_or_else(|| corrupt(&id, "created_at", "missing"))?,
        start_time: time(4, "start_time")?,
        end_time: time(5, "end_time")?,
        duration: row.get(6).map_err(field("duration"))?,
        retries_used: row.get(7).map_err(field("retries_used"))?,
        max_retries: row.get(8).map_err(field("max_retries"))?,
        error: row.get(9).map_err(field("error"))?,
        stacktrace: row.get(10).map_err(field("stacktrace"))?,
        logs: Vec::new(),
        tags: match json(11, "tags")? {
            Some(tags) => serde_json::from_value(tags).map_err(|err| corrupt(&id, "tags", err))?,
            None => Default::default(),
        },
        source: TaskSource::parse(&source).ok_or_else(|| corrupt(&id, "source", source.clone()))?,
        priority: row.get(13).map_err(field("priority"))?,
        args: json(14, "args")?.unwrap_or(Value::Null),
        result: json(15, "result")?,
        idempotency_key: row.get(16).map_err(field("idempotency_key"))?,
        scheduled_at: time(17, "scheduled_at")?,
        retry_of: retry_of
            .map(|text| text.parse().map_err(|err| corrupt(&id, "retry_of", err)))
            .transpose()?,
        requeue_on_interrupt: row.get(19).map_err(field("requeue_on_interrupt"))?,
        recoveries: row.get(20).map_err(field("recoveries"))?,
        lease_owner: row.get(21).map_err(field("lease_owner"))?,
        lease_expires_at: time(22, "lease_expires_at")?,
        run_key: row.get(23).map_err(field("run_key"))?,
        queue: row.get(24).map_err(field("queue"))?,
        progress: crate::store::shared::progress(json(25, "progress").ok().flatten()),
    })
}

/// The columns of `task_logs` after `task_id`, in the order [`encode_log`] gives.
macro_rules! log_columns {
    () => {
        "at, level, message, attempt, fields"
    };
}
pub(super) use log_columns;

/// A log entry as the values of [`log_columns!`].
pub(super) fn encode_log(entry: &LogEntry) -> [Sql; 5] {
    [
        Sql::Integer(micros(entry.at)),
        Sql::Text(entry.level.as_str().to_owned()),
        Sql::Text(entry.message.clone()),
        Sql::Integer(entry.attempt.into()),
        Sql::Text(Value::Object(entry.fields.clone()).to_string()),
    ]
}

/// A row selected as `task_id, ` + [`log_columns!`] back to a log entry.
pub(super) fn decode_log(row: &RawRow) -> Result<LogEntry, StoreError> {
    let id: String = row.get(0).map_err(|err| corrupt("?", "task_logs.task_id", err))?;
    let bad = |err: rusqlite::Error| corrupt(&id, "task_logs", err);
    let at: i64 = row.get(1).map_err(bad)?;
    let level: String = row.get(2).map_err(bad)?;
    let fields: String = row.get(5).map_err(bad)?;
    Ok(LogEntry {
        at: from_micros(at).ok_or_else(|| corrupt(&id, "task_logs.at", "out of range"))?,
        level: LogLevel::parse(&level)
            .ok_or_else(|| corrupt(&id, "task_logs.level", level.clone()))?,
        message: row.get(3).map_err(bad)?,
        attempt: row.get(4).map_err(bad)?,
        fields: serde_json::from_str(&fields)
            .map_err(|err| corrupt(&id, "task_logs.fields", err))?,
    })
}

/// Microseconds since the Unix epoch.
pub(super) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(super) fn from_micros(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}

fn opt_time(at: Option<DateTime<Utc>>) -> Sql {
    at.map_or(Sql::Null, |at| Sql::Integer(micros(at)))
}

fn opt_text(text: Option<String>) -> Sql {
    text.map_or(Sql::Null, Sql::Text)
}

fn corrupt(id: &str, column: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { id: id.to_owned(), reason: format!("column `{column}`: {reason}") }
}
