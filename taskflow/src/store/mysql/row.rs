//! How a [`TaskRecord`] maps to a row of `taskflow_tasks` and back: timestamps as integer
//! microseconds since the Unix epoch (UTC), JSON as text.

use super::*;

pub(super) const COLUMNS: &str = "id, func_name, status, created_at, start_time, end_time, duration, \
    retries_used, max_retries, error, stacktrace, tags, source, priority, args, result, \
    idempotency_key, scheduled_at, retry_of, requeue_on_interrupt, recoveries, lease_owner, \
    lease_expires_at, run_key, queue, progress";

pub(super) const INSERT: &str = "INSERT INTO taskflow_tasks (id, func_name, status, created_at, \
    start_time, end_time, duration, retries_used, max_retries, error, stacktrace, tags, source, \
    priority, args, result, idempotency_key, scheduled_at, retry_of, requeue_on_interrupt, \
    recoveries, lease_owner, lease_expires_at, run_key, queue, wait_until) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub(super) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(super) fn time(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::NULL, |at| Value::Int(micros(at)))
}

pub(super) fn text(value: Option<String>) -> Value {
    value.map_or(Value::NULL, |v| Value::Bytes(v.into_bytes()))
}

/// The values of [`INSERT`]: `record`'s, then when it waits until (held back from fetching
/// until `hold`, if given, else until its due time if that is later than its creation).
pub(super) fn encode(record: &TaskRecord, hold: Option<DateTime<Utc>>) -> Vec<Value> {
    vec![
        text(Some(record.task_id.to_string())),
        text(Some(record.func_name.clone())),
        text(Some(record.status.as_str().to_owned())),
        Value::Int(micros(record.created_at)),
        time(record.start_time),
        time(record.end_time),
        record.duration.map_or(Value::NULL, Value::Double),
        Value::Int(record.retries_used.into()),
        Value::Int(record.max_retries.into()),
        text(record.error.clone()),
        text(record.stacktrace.clone()),
        text(Some(serde_json::to_string(&record.tags).unwrap_or_else(|_| "{}".to_owned()))),
        text(Some(record.source.as_str().to_owned())),
        Value::Int(record.priority.into()),
        text(Some(record.args.to_string())),
        text(record.result.as_ref().map(serde_json::Value::to_string)),
        text(record.idempotency_key.clone()),
        time(record.scheduled_at),
        text(record.retry_of.map(|id| id.to_string())),
        Value::Int(record.requeue_on_interrupt.into()),
        Value::Int(record.recoveries.into()),
        text(record.lease_owner.clone()),
        time(record.lease_expires_at),
        text(record.run_key.clone()),
        text(Some(record.queue.clone())),
        // Not due yet: it waits until then (see the schema's version 2).
        time(hold.or(record.scheduled_at.filter(|at| *at > record.created_at))),
    ]
}

/// Reads cells of a row by index, with the column named in errors.
pub(super) struct Cells {
    pub(super) values: Vec<Value>,
    pub(super) id: String,
}

impl Cells {
    pub(super) fn of(row: mysql_async::Row) -> Cells {
        let values = row.unwrap();
        let id = match values.first() {
            Some(Value::Bytes(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            _ => "?".to_owned(),
        };
        Cells { values, id }
    }

    pub(super) fn corrupt(&self, column: &str, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { id: self.id.clone(), reason: format!("column `{column}`: {reason}") }
    }

    pub(super) fn text(&self, index: usize, column: &str) -> Result<Option<String>, StoreError> {
        match self.values.get(index) {
            None | Some(Value::NULL) => Ok(None),
            Some(Value::Bytes(bytes)) => {
                String::from_utf8(bytes.clone()).map(Some).map_err(|e| self.corrupt(column, e))
            }
            Some(other) => Ok(Some(other.as_sql(true).trim_matches('\'').to_owned())),
        }
    }

    pub(super) fn int(&self, index: usize, column: &str) -> Result<Option<i64>, StoreError> {
        match self.values.get(index) {
            None | Some(Value::NULL) => Ok(None),
            Some(Value::Int(v)) => Ok(Some(*v)),
            Some(Value::UInt(v)) => Ok(Some(*v as i64)),
            Some(Value::Bytes(bytes)) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| self.corrupt(column, "not a number")),
            Some(other) => Err(self.corrupt(column, format!("not a number: {other:?}"))),
        }
    }

    pub(super) fn real(&self, index: usize, column: &str) -> Result<Option<f64>, StoreError> {
        match self.values.get(index) {
            None | Some(Value::NULL) => Ok(None),
            Some(Value::Double(v)) => Ok(Some(*v)),
            Some(Value::Float(v)) => Ok(Some(f64::from(*v))),
            Some(Value::Int(v)) => Ok(Some(*v as f64)),
            Some(Value::UInt(v)) => Ok(Some(*v as f64)),
            Some(Value::Bytes(bytes)) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| self.corrupt(column, "not a number")),
            Some(other) => Err(self.corrupt(column, format!("not a number: {other:?}"))),
        }
    }

    pub(super) fn required<T>(&self, value: Option<T>, column: &str) -> Result<T, StoreError> {
        value.ok_or_else(|| self.corrupt(column, "missing"))
    }

    pub(super) fn time(
        &self,
        index: usize,
        column: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.int(index, column)?
            .map(|v| {
                DateTime::from_timestamp_micros(v)
                    .ok_or_else(|| self.corrupt(column, "out of range"))
            })
            .transpose()
    }

    pub(super) fn json(
        &self,
        index: usize,
        column: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.text(index, column)?
            .map(|t| serde_json::from_str(&t).map_err(|e| self.corrupt(column, e)))
            .transpose()
    }

    pub(super) fn id(&self, index: usize, column: &str) -> Result<Option<TaskId>, StoreError> {
        self.text(index, column)?
            .map(|t| t.parse().map_err(|e| self.corrupt(column, e)))
            .transpose()
    }

    pub(super) fn count(&self, index: usize, column: &str) -> Result<u32, StoreError> {
        Ok(self.required(self.int(index, column)?, column)?.max(0) as u32)
    }

    /// The row selected as [`COLUMNS`] as a record (without its logs).
    pub(super) fn record(&self) -> Result<TaskRecord, StoreError> {
        let status = self.required(self.text(2, "status")?, "status")?;
        let source = self.required(self.text(12, "source")?, "source")?;
        let tags = self.json(11, "tags")?.unwrap_or_default();
        Ok(TaskRecord {
            task_id: self.required(self.id(0, "id")?, "id")?,
            func_name: self.required(self.text(1, "func_name")?, "func_name")?,
            status: status.parse().map_err(|e| self.corrupt("status", e))?,
            created_at: self.required(self.time(3, "created_at")?, "created_at")?,
            start_time: self.time(4, "start_time")?,
            end_time: self.time(5, "end_time")?,
            duration: self.real(6, "duration")?,
            retries_used: self.count(7, "retries_used")?,
            max_retries: self.count(8, "max_retries")?,
            error: self.text(9, "error")?,
            stacktrace: self.text(10, "stacktrace")?,
            logs: Vec::new(),
            tags: serde_json::from_value(tags).map_err(|e| self.corrupt("tags", e))?,
            source: TaskSource::parse(&source).ok_or_else(|| self.corrupt("source", &source))?,
            priority: self.required(self.int(13, "priority")?, "priority")? as i32,
            args: self.json(14, "args")?.unwrap_or_default(),
            result: self.json(15, "result")?,
            idempotency_key: self.text(16, "idempotency_key")?,
            scheduled_at: self.time(17, "scheduled_at")?,
            retry_of: self.id(18, "retry_of")?,
            requeue_on_interrupt: self.int(19, "requeue_on_interrupt")? == Some(1),
            recoveries: self.count(20, "recoveries")?,
            lease_owner: self.text(21, "lease_owner")?,
            lease_expires_at: self.time(22, "lease_expires_at")?,
            run_key: self.text(23, "run_key")?,
            queue: self.required(self.text(24, "queue")?, "queue")?,
            progress: crate::store::shared::progress(self.json(25, "progress").ok().flatten()),
        })
    }
}
