//! How a [`TaskRecord`] maps to a task's hash and back (its `base` JSON, overridden by the
//! fields the scripts change), and a change to the `transition` script's arguments.

use super::*;

/// The arguments of the `transition` script for `change` to task `id` under `lease`.
pub(super) fn transition_args(
    prefix: &str,
    id: &TaskId,
    lease: &Lease,
    change: Transition,
) -> Vec<String> {
    let mut args = vec![prefix.to_owned(), id.to_string(), lease.owner.to_string()];
    match change {
        Transition::Finished { status, end_time, retries_used, result, error, stacktrace } => {
            args.extend([
                "finish".to_owned(),
                status.as_str().to_owned(),
                rfc(end_time),
                micros(end_time).to_string(),
                retries_used.to_string(),
                result.map(|r| r.to_string()).unwrap_or_default(),
                u8::from(error.is_some()).to_string(),
                error.unwrap_or_default(),
                stacktrace.unwrap_or_default(),
            ]);
        }
        Transition::Reschedule { due, retries_used, error, stacktrace } => {
            args.extend([
                "reschedule".to_owned(),
                rfc(due),
                micros(due).to_string(),
                retries_used.to_string(),
                u8::from(error.is_some()).to_string(),
                error.unwrap_or_default(),
                stacktrace.unwrap_or_default(),
            ]);
        }
        Transition::Requeue => args.push("requeue".to_owned()),
    }
    args
}

/// A task's hash, as returned by `HGETALL`, back to a record (without its logs).
pub(super) fn decode(id: &str, fields: &HashMap<String, String>) -> Result<TaskRecord, StoreError> {
    let corrupt = |column: &str, reason: String| StoreError::Corrupt {
        id: id.to_owned(),
        reason: format!("field `{column}`: {reason}"),
    };
    let base = fields.get("base").ok_or_else(|| corrupt("base", "missing".to_owned()))?;
    let mut record: TaskRecord =
        serde_json::from_str(base).map_err(|e| corrupt("base", e.to_string()))?;
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        fields
            .get(name)
            .filter(|v| !v.is_empty())
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|at| at.with_timezone(&Utc))
                    .map_err(|e| corrupt(name, e.to_string()))
            })
            .transpose()
    };
    let number = |name: &str| -> Result<Option<f64>, StoreError> {
        fields.get(name).map(|v| v.parse().map_err(|_| corrupt(name, v.clone()))).transpose()
    };
    let status = fields.get("status").ok_or_else(|| corrupt("status", "missing".to_owned()))?;
    record.status = status.parse().map_err(|e: String| corrupt("status", e))?;
    record.start_time = time("start")?;
    record.end_time = time("end")?.or(record.end_time);
    record.duration = number("duration")?;
    record.retries_used = number("retries")?.unwrap_or(0.0) as u32;
    record.recoveries = number("recoveries")?.unwrap_or(0.0) as u32;
    if let Some(error) = fields.get("error") {
        record.error = Some(error.clone());
        record.stacktrace = fields.get("stack").cloned();
    }
    record.progress = fields.get("progress").and_then(|v| serde_json::from_str(v).ok());
    record.result = fields
        .get("result")
        .map(|v| serde_json::from_str(v).map_err(|e| corrupt("result", e.to_string())))
        .transpose()?;
    // A retry or a snooze moved it (the base keeps the time it was enqueued with).
    if let Some(due) = time("sched")? {
        record.scheduled_at = Some(due);
    }
    record.lease_owner = fields.get("owner").cloned();
    record.lease_expires_at = time("expires")?;
    Ok(record)
}

/// `HGETALL`'s flat answer as a map.
pub(super) fn pairs(id: &str, flat: Vec<Vec<u8>>) -> Result<HashMap<String, String>, StoreError> {
    let mut map = HashMap::new();
    let mut items = flat.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        let key = String::from_utf8(key).map_err(|_| StoreError::Corrupt {
            id: id.to_owned(),
            reason: "a field name is not UTF-8".to_owned(),
        })?;
        let value = String::from_utf8(value).map_err(|_| StoreError::Corrupt {
            id: id.to_owned(),
            reason: format!("field `{key}`: not UTF-8"),
        })?;
        map.insert(key, value);
    }
    Ok(map)
}

/// Decodes `flat` (field, value, field, value, ...) as a stored task hash; for the fuzz
/// targets.
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_fields(flat: Vec<Vec<u8>>) {
    if let Ok(fields) = pairs("fuzzed", flat) {
        let _ = decode("fuzzed", &fields);
    }
}
