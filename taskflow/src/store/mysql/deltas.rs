//! How the writes that change tasks count themselves on MySQL / MariaDB: each transaction that
//! changes tasks knows the rows it changes (it read them, locked, or it wrote their values),
//! gathers their changes in code ([`Moves`]) and appends them to two delta tables before it
//! commits, one multi-row insert each. Appends touch no shared row, so concurrent writers
//! never wait on one another; the leader folds the deltas into the counters every second
//! ([`super::fold`]), and readers add the deltas not folded yet.

use chrono::{DateTime, Utc};
use mysql_async::Value;
use mysql_async::prelude::Queryable;

use crate::store::counters::moves::Moves;
use crate::store::counters::sql::{histogram_definitions, histogram_list};
use crate::store::counters::{BUCKETS, minute_of, minute_of_micros};

/// The columns of a history row after its key.
pub(super) fn figures() -> String {
    format!(
        "enqueued, succeeded, failed, interrupted, cancelled, retried, timed, seconds, \
         min_duration, max_duration, {}",
        histogram_list()
    )
}

/// Schema version 11: the triggers of version 10 go, the delta tables come, and the shards
/// the triggers wrote are folded into the shard the fold writes (-1).
pub(super) fn migration() -> Vec<String> {
    let table = "ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin";
    let figures = figures();
    vec![
        "DROP TRIGGER IF EXISTS taskflow_count_insert".to_owned(),
        "DROP TRIGGER IF EXISTS taskflow_count_delete".to_owned(),
        "DROP TRIGGER IF EXISTS taskflow_count_update".to_owned(),
        format!(
            "CREATE TABLE taskflow_count_deltas (
                id BIGINT AUTO_INCREMENT PRIMARY KEY,
                func_name VARCHAR(255) NOT NULL, queue VARCHAR(64) NOT NULL,
                status VARCHAR(16) NOT NULL, tasks BIGINT NOT NULL, timed BIGINT NOT NULL,
                seconds DOUBLE NOT NULL
            ) {table}"
        ),
        format!(
            "CREATE TABLE taskflow_minute_deltas (
                id BIGINT AUTO_INCREMENT PRIMARY KEY,
                minute BIGINT NOT NULL, func_name VARCHAR(255) NOT NULL,
                queue VARCHAR(64) NOT NULL,
                enqueued BIGINT NOT NULL DEFAULT 0, succeeded BIGINT NOT NULL DEFAULT 0,
                failed BIGINT NOT NULL DEFAULT 0, interrupted BIGINT NOT NULL DEFAULT 0,
                cancelled BIGINT NOT NULL DEFAULT 0, retried BIGINT NOT NULL DEFAULT 0,
                timed BIGINT NOT NULL DEFAULT 0, seconds DOUBLE NOT NULL DEFAULT 0,
                min_duration DOUBLE NULL, max_duration DOUBLE NULL, {}
            ) {table}",
            histogram_definitions("BIGINT")
        ),
        "INSERT INTO taskflow_count_deltas (func_name, queue, status, tasks, timed, seconds)
         SELECT func_name, queue, status, tasks, timed, seconds FROM taskflow_counts
         WHERE shard <> -1"
            .to_owned(),
        "DELETE FROM taskflow_counts WHERE shard <> -1".to_owned(),
        format!(
            "INSERT INTO taskflow_minute_deltas (minute, func_name, queue, {figures})
             SELECT minute, func_name, queue, {figures} FROM taskflow_minutes WHERE shard <> -1"
        ),
        "DELETE FROM taskflow_minutes WHERE shard <> -1".to_owned(),
    ]
}

/// Appends `moves` to the delta tables, in the caller's transaction.
pub(super) async fn append(
    tx: &mut mysql_async::Transaction<'_>,
    moves: &mut Moves,
) -> Result<(), mysql_async::Error> {
    if moves.is_empty() {
        return Ok(());
    }
    let (counts, minutes) = moves.take();
    if !counts.is_empty() {
        let rows = vec!["(?, ?, ?, ?, ?, ?)"; counts.len()].join(", ");
        let mut params = Vec::with_capacity(counts.len() * 6);
        for count in counts {
            params.extend([
                Value::from(count.func_name),
                Value::from(count.queue),
                Value::from(count.status),
                Value::from(count.tasks),
                Value::from(count.timed),
                Value::from(count.seconds),
            ]);
        }
        let sql = format!(
            "INSERT INTO taskflow_count_deltas (func_name, queue, status, tasks, timed, seconds)
             VALUES {rows}"
        );
        tx.exec_drop(sql, params).await?;
    }
    if !minutes.is_empty() {
        let row = format!("({})", vec!["?"; 13 + BUCKETS].join(", "));
        let rows = vec![row.as_str(); minutes.len()].join(", ");
        let mut params = Vec::with_capacity(minutes.len() * (13 + BUCKETS));
        for minute in minutes {
            params.extend([
                Value::from(minute_of(minute.minute)),
                Value::from(minute.func_name),
                Value::from(minute.queue),
                Value::from(minute.enqueued),
                Value::from(minute.succeeded),
                Value::from(minute.failed),
                Value::from(minute.interrupted),
                Value::from(minute.cancelled),
                Value::from(minute.retried),
                Value::from(minute.timed),
                Value::from(minute.seconds),
                Value::from(minute.min_duration),
                Value::from(minute.max_duration),
            ]);
            params.extend(minute.histogram.iter().map(|n| Value::from(*n)));
        }
        let sql = format!(
            "INSERT INTO taskflow_minute_deltas (minute, func_name, queue, {}) VALUES {rows}",
            figures()
        );
        tx.exec_drop(sql, params).await?;
    }
    Ok(())
}

/// A value as text, whatever its type (a damaged row must not stop the count).
pub(super) fn lossy(value: Option<&Value>) -> String {
    match value {
        Some(Value::Bytes(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Some(Value::NULL) | None => "null".to_owned(),
        Some(other) => other.as_sql(true).trim_matches('\'').to_owned(),
    }
}

/// A value as a number of seconds or microseconds, if it is one.
pub(super) fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Double(v) => Some(*v),
        Value::Float(v) => Some(f64::from(*v)),
        Value::Int(v) => Some(*v as f64),
        Value::UInt(v) => Some(*v as f64),
        Value::Bytes(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

/// The unix minute of a stored time (microseconds), or of `now`.
pub(super) fn minute_at(micros: Option<f64>, now: DateTime<Utc>) -> i64 {
    micros.map_or_else(|| minute_of(now), |at| minute_of_micros(at as i64))
}

/// Counts a task inserted with `values` (as [`super::row::encode`] lays them out).
pub(super) fn inserted(moves: &mut Moves, values: &[Value], now: DateTime<Utc>) {
    let (func_name, status, queue) =
        (lossy(values.get(1)), lossy(values.get(2)), lossy(values.get(24)));
    let duration = number(values.get(6));
    let created = minute_at(number(values.get(3)), now);
    let ended = minute_at(number(values.get(5)), now);
    moves.inserted(&func_name, &queue, (&status, duration), created, ended);
}

/// A row as the counters see it, selected as `func_name, queue, status, duration,
/// retries_used` from `first` on.
pub(super) struct Seen {
    pub(super) func_name: String,
    pub(super) queue: String,
    pub(super) status: String,
    pub(super) duration: Option<f64>,
    pub(super) retries_used: i64,
}

/// The columns [`Seen::read`] reads.
pub(super) const SEEN: &str = "func_name, queue, status, duration, retries_used";

impl Seen {
    /// Reads [`SEEN`] from `values`, starting at `first`.
    pub(super) fn read(values: &[Value], first: usize) -> Seen {
        Seen {
            func_name: lossy(values.get(first)),
            queue: lossy(values.get(first + 1)),
            status: lossy(values.get(first + 2)),
            duration: number(values.get(first + 3)),
            retries_used: number(values.get(first + 4)).unwrap_or(0.0) as i64,
        }
    }

    /// Counts its change to `status` (its duration kept), ending in unix minute `at`.
    pub(super) fn moved(&self, moves: &mut Moves, status: &str, at: i64) {
        let (from, to) = ((self.status.as_str(), self.duration), (status, self.duration));
        moves.changed(&self.func_name, &self.queue, from, to, at);
    }
}
