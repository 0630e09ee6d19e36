//! [`ActiveRows`]: where this process's active tasks sit in the table, so that their claim and
//! final writes find the row by its integer key instead of searching the index of ids, and
//! the records of the tasks it enqueued, so that claiming one does not read it back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use crate::id::TaskId;
use crate::record::TaskRecord;

/// At most this many pending records are kept for their claim (about 1 KiB each); tasks
/// beyond it are read back from the table when claimed, as after a restart.
const MAX_KEPT_RECORDS: usize = 10_000;

/// Tasks due later than this after their enqueue are not remembered.
const REMEMBERED_AHEAD: std::time::Duration = std::time::Duration::from_secs(60);

/// The `seq` of every task this store inserted and that has not ended yet, the record of
/// those still pending, and the next `seq` to give. Only this process writes the file, so
/// numbering rows here is safe.
#[derive(Debug)]
pub(super) struct ActiveRows {
    next: AtomicI64,
    rows: Mutex<Rows>,
}

#[derive(Debug, Default)]
struct Rows {
    by_id: HashMap<TaskId, Row>,
    kept_records: usize,
}

#[derive(Debug)]
struct Row {
    seq: i64,
    /// The record as stored, while the task is pending.
    pending: Option<Box<TaskRecord>>,
    /// What its outcome's write needs of the row, while a fetch of this store runs it.
    running: Option<Running>,
}

/// What a running task's row holds that its outcome changes, as its fetch left it (no other
/// write changes them while it runs): for the counters, without reading the row back.
#[derive(Clone, Debug)]
pub(super) struct Running {
    pub(super) func_name: String,
    pub(super) queue: String,
    pub(super) duration: Option<f64>,
    pub(super) retries_used: i64,
    pub(super) start_time: Option<i64>,
    pub(super) idempotency_key: Option<String>,
}

impl Running {
    /// What `record`'s outcome will need, as its fetch left the row.
    pub(super) fn of(record: &TaskRecord) -> Running {
        Running {
            func_name: record.func_name.clone(),
            queue: record.queue.clone(),
            duration: record.duration,
            retries_used: i64::from(record.retries_used),
            start_time: record.start_time.map(super::row::micros),
            idempotency_key: record.idempotency_key.clone(),
        }
    }
}

impl ActiveRows {
    /// Numbers new rows after `last`, the highest `seq` in the table.
    pub(super) fn after(last: i64) -> Self {
        ActiveRows { next: AtomicI64::new(last + 1), rows: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives `record` the next `seq`; remembers both while the task is active, unless it is
    /// due later than [`REMEMBERED_AHEAD`] (a task for next week costs its row, not memory:
    /// its writes find the row through the index of ids).
    pub(super) fn insert(&self, mut record: TaskRecord) -> i64 {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let ahead = chrono::Duration::from_std(REMEMBERED_AHEAD).unwrap_or_default();
        let later = record.scheduled_at.is_some_and(|due| due > record.created_at + ahead);
        if record.status.is_finished() || later {
            return seq;
        }
        // As the table will return them: to the microsecond.
        record.created_at = to_micros(record.created_at);
        record.scheduled_at = record.scheduled_at.map(to_micros);
        let id = record.task_id;
        let mut rows = self.lock();
        let keep = rows.kept_records < MAX_KEPT_RECORDS;
        rows.kept_records += usize::from(keep);
        let pending = keep.then(|| Box::new(record));
        if let Some(old) = rows.by_id.insert(id, Row { seq, pending, running: None }) {
            rows.kept_records -= usize::from(old.pending.is_some());
        }
        seq
    }

    /// The `seq` of `id` and, once only, its record as enqueued, for its claim.
    pub(super) fn claim(&self, id: &TaskId) -> (Option<i64>, Option<Box<TaskRecord>>) {
        let mut rows = self.lock();
        let Some(row) = rows.by_id.get_mut(id) else { return (None, None) };
        let (seq, pending) = (row.seq, row.pending.take());
        rows.kept_records -= usize::from(pending.is_some());
        (Some(seq), pending)
    }

    /// Remembers what `id`'s outcome needs of its row, now that a fetch leased it (when this
    /// store inserted it).
    pub(super) fn started(&self, id: &TaskId, running: Running) {
        if let Some(row) = self.lock().by_id.get_mut(id) {
            row.running = Some(running);
        }
    }

    /// The `seq` of `id`, and what its outcome needs of its row as its fetch left it (once).
    pub(super) fn outcome(&self, id: &TaskId) -> (Option<i64>, Option<Running>) {
        let mut rows = self.lock();
        let Some(row) = rows.by_id.get_mut(id) else { return (None, None) };
        (Some(row.seq), row.running.take())
    }

    /// Forgets `id`: it ended, or its row was never written.
    pub(super) fn forget(&self, id: &TaskId) {
        let mut rows = self.lock();
        if let Some(row) = rows.by_id.remove(id) {
            rows.kept_records -= usize::from(row.pending.is_some());
        }
    }
}

fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    super::row::from_micros(super::row::micros(at)).unwrap_or(at)
}
