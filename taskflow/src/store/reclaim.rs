//! The rules for a task whose runner died, shared by every backend: requeue it, fail it as a
//! poison pill, or mark it `interrupted`.

use chrono::{DateTime, Utc};

use super::Reclaimed;
use crate::record::{TaskRecord, TaskStatus};

/// How a task whose runner died is settled; shared by every backend's rules.
pub(super) enum ReclaimAs {
    Requeued,
    Interrupted,
    Poisoned,
}

/// Applies the reclaim rules to a record in memory.
pub(super) fn reclaim(
    record: &mut TaskRecord,
    now: DateTime<Utc>,
    max_recoveries: u32,
) -> ReclaimAs {
    record.lease_owner = None;
    record.lease_expires_at = None;
    if record.requeue_on_interrupt && record.recoveries < max_recoveries {
        record.status = TaskStatus::Pending;
        record.recoveries += 1;
        return ReclaimAs::Requeued;
    }
    record.end_time = Some(now);
    if record.requeue_on_interrupt {
        record.status = TaskStatus::Failed;
        let message = poison_message(record.recoveries);
        record.stacktrace = Some(message.clone());
        record.error = Some(message);
        ReclaimAs::Poisoned
    } else {
        record.status = TaskStatus::Interrupted;
        let message = INTERRUPTED_BY_CRASH.to_owned();
        record.stacktrace = Some(message.clone());
        record.error = Some(message);
        ReclaimAs::Interrupted
    }
}

/// The error of a task whose process died while it ran.
pub(super) const INTERRUPTED_BY_CRASH: &str =
    "interrupted: the process running it stopped (crash, kill or power loss)";

/// The error of a task failed as a poison pill.
pub(super) fn poison_message(recoveries: u32) -> String {
    format!(
        "its process died while it ran {} times; stopped as a poison pill instead of running it again",
        recoveries + 1
    )
}

impl Reclaimed {
    /// Counts `record`, settled as `outcome`, in the answer.
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "redis")),
        allow(dead_code)
    )]
    pub(super) fn add(&mut self, outcome: ReclaimAs, record: TaskRecord) {
        match outcome {
            ReclaimAs::Requeued => self.requeued.push(record.task_id),
            ReclaimAs::Interrupted => self.interrupted.push(record.task_id),
            ReclaimAs::Poisoned => self.poisoned.push(record.task_id),
        }
    }
}
