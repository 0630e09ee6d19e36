//! Schedules as the stores keep them ([`StoredSchedule`]) and the one way they change
//! ([`ScheduleChange`], applied by [`Store::change_schedule`](super::Store::change_schedule)):
//! each store reads the row under its lock, applies the change here, and writes the result,
//! so the rules (a newer definition wins, pause survives a redefinition, a slot advances
//! only from where the caller saw it) are the same on every store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::TaskId;
use crate::record::TaskRecord;

/// How many entries a schedule's [history](StoredSchedule::history) keeps (runs of skipped
/// slots count as one entry).
pub const HISTORY: usize = 50;

/// A schedule as the store keeps it: what it fires, when, and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredSchedule {
    /// Its name, unique in the store.
    pub name: String,
    /// The task it fires.
    pub func_name: String,
    /// The arguments each fired task gets.
    pub args: Value,
    /// The definition (a [`Schedule`](crate::Schedule) as text, opaque to the store): two
    /// definitions differ when these differ.
    pub definition: String,
    /// Whether firing is stopped.
    pub paused: bool,
    /// The first slot not handled yet; `None` before the first tick, or when the schedule
    /// never fires again.
    pub next_slot: Option<DateTime<Utc>>,
    /// The last slot fired.
    pub last_slot: Option<DateTime<Utc>>,
    /// The task the last slot (or the last [trigger](ScheduleChange::Trigger)) made.
    pub last_task: Option<TaskId>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Counts its writes: an [`Advance`](ScheduleChange::Advance) applies only to the version
    /// its caller read.
    #[serde(default)]
    pub version: u64,
    /// What happened to its recent slots, oldest first (at most [`HISTORY`] entries).
    #[serde(default)]
    pub history: Vec<SlotRecord>,
}

/// What happened to one slot of a schedule, or to a run of consecutive slots skipped for one
/// reason.
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SlotRecord {
    /// The slot (the first of a run).
    pub slot: DateTime<Utc>,
    /// The last slot of a run of skipped slots; `None` for one slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// How many slots the entry stands for.
    pub count: u64,
    /// What happened.
    pub outcome: SlotOutcome,
    /// When it was decided.
    pub at: DateTime<Utc>,
}

impl SlotRecord {
    /// One slot, decided at `at`.
    pub fn new(slot: DateTime<Utc>, outcome: SlotOutcome, at: DateTime<Utc>) -> SlotRecord {
        SlotRecord { slot, until: None, count: 1, outcome, at }
    }

    /// The run of `count` skipped slots from `slot` to `until`, decided at `at`.
    pub fn run(
        slot: DateTime<Utc>,
        until: DateTime<Utc>,
        count: u64,
        outcome: SlotOutcome,
        at: DateTime<Utc>,
    ) -> SlotRecord {
        let until = (until != slot).then_some(until);
        SlotRecord { slot, until, count, outcome, at }
    }

    /// The task it made, when it fired one.
    pub fn task(&self) -> Option<TaskId> {
        match self.outcome {
            SlotOutcome::Fired { task }
            | SlotOutcome::Triggered { task }
            | SlotOutcome::Startup { task } => Some(task),
            _ => None,
        }
    }
}

/// What happened to a slot.
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SlotOutcome {
    /// Fired: the slot's task.
    Fired {
        /// The task.
        task: TaskId,
    },
    /// Run by hand ("run now"), besides the slots; `slot` is when.
    Triggered {
        /// The task.
        task: TaskId,
    },
    /// Fired once when first defined (`run_on_startup`); `slot` is when.
    Startup {
        /// The task.
        task: TaskId,
    },
    /// Missed while no instance ran it, and older than the catch-up window (or, without a
    /// window, older than the most recent missed slot).
    Missed,
    /// Passed while the schedule was paused.
    Paused,
    /// Not fired: the previous run was still pending or running (`overlap = "skip"`).
    Overlapped {
        /// The run still going.
        running: TaskId,
    },
}

impl SlotOutcome {
    /// Whether `other` is the same kind of skip, so that two entries merge into one run.
    fn same_skip(&self, other: &SlotOutcome) -> bool {
        matches!(
            (self, other),
            (SlotOutcome::Missed, SlotOutcome::Missed)
                | (SlotOutcome::Paused, SlotOutcome::Paused)
                | (SlotOutcome::Overlapped { .. }, SlotOutcome::Overlapped { .. })
        )
    }
}

impl StoredSchedule {
    /// A schedule not fired yet, waiting for `next_slot`.
    pub fn new(
        name: impl Into<String>,
        func_name: impl Into<String>,
        args: Value,
        definition: impl Into<String>,
        next_slot: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoredSchedule {
        StoredSchedule {
            name: name.into(),
            func_name: func_name.into(),
            args,
            definition: definition.into(),
            paused: false,
            next_slot,
            last_slot: None,
            last_task: None,
            updated_at: now,
            version: 0,
            history: Vec::new(),
        }
    }

    /// Whether `other` defines something else (task, arguments or definition).
    fn differs_from(&self, other: &StoredSchedule) -> bool {
        self.func_name != other.func_name
            || self.args != other.args
            || self.definition != other.definition
    }

    /// Appends `records` to the history, a skip continuing the last entry's run of the same
    /// kind, and keeps the last [`HISTORY`] entries.
    fn record(&mut self, records: Vec<SlotRecord>) {
        for record in records {
            match self.history.last_mut() {
                Some(last) if last.outcome.same_skip(&record.outcome) => {
                    last.until = Some(record.until.unwrap_or(record.slot));
                    last.count = last.count.saturating_add(record.count);
                    last.outcome = record.outcome;
                    last.at = record.at;
                }
                _ => self.history.push(record),
            }
        }
        let over = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..over);
    }
}

/// One change to a stored schedule.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ScheduleChange {
    /// Stores it, or, when one of that name defines something else, replaces its task,
    /// arguments, definition and, when the definition changed, next slot (the newer
    /// definition wins; paused, the last slot and the history stay). The same definition
    /// again changes nothing.
    Define(StoredSchedule),
    /// Pauses (`true`) or resumes (`false`) it.
    Pause(bool),
    /// Moves it on, if it is still at `version` (another leader, a pause or a redefinition
    /// may have changed it since it was read): waits for `next` from now on, records
    /// `history`, and stores the tasks of `fire` in the same atomic write (each with its
    /// slot's idempotency key: a task whose key an active task holds is not stored again).
    Advance {
        /// The version the caller read.
        version: u64,
        /// The slot to wait for now.
        next: Option<DateTime<Utc>>,
        /// The slots' tasks, oldest first.
        fire: Vec<TaskRecord>,
        /// What happened to the slots handled, oldest first; the last fired one becomes
        /// [`last_slot`](StoredSchedule::last_slot).
        history: Vec<SlotRecord>,
    },
    /// Stores `task`, run by hand, in the same write that records it.
    Trigger(Box<TaskRecord>),
    /// Removes it.
    Remove,
}

/// What [`ScheduleChange::apply`] decided.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Applied {
    /// Write this (and return it), storing these tasks with it.
    Write(StoredSchedule, Vec<TaskRecord>),
    /// Delete the row (and return what it held).
    Delete(StoredSchedule),
    /// Leave the row as it is; return this (or nothing: not applied).
    Keep(Option<StoredSchedule>),
}

impl ScheduleChange {
    /// The change to the schedule `found` (what the store holds under the name, if anything).
    pub(crate) fn apply(self, found: Option<StoredSchedule>, now: DateTime<Utc>) -> Applied {
        let written = |mut schedule: StoredSchedule, tasks| {
            schedule.updated_at = now;
            schedule.version = schedule.version.wrapping_add(1);
            Applied::Write(schedule, tasks)
        };
        match (self, found) {
            (ScheduleChange::Define(mut new), None) => {
                new.version = 0;
                written(new, Vec::new())
            }
            (ScheduleChange::Define(new), Some(old)) if old.differs_from(&new) => {
                tracing::info!(
                    schedule = %old.name,
                    from = %old.definition,
                    to = %new.definition,
                    "taskflow: a schedule is redefined; the newer definition wins"
                );
                // The same definition keeps its slot grid: the slot it waits for stays (one
                // missed while down is still caught up), whatever else changed.
                let next_slot =
                    if old.definition == new.definition { old.next_slot } else { new.next_slot };
                let schedule = StoredSchedule {
                    func_name: new.func_name,
                    args: new.args,
                    definition: new.definition,
                    next_slot,
                    ..old
                };
                written(schedule, Vec::new())
            }
            (ScheduleChange::Define(_), Some(old)) => Applied::Keep(Some(old)),
            (ScheduleChange::Pause(paused), Some(old)) => {
                written(StoredSchedule { paused, ..old }, Vec::new())
            }
            (ScheduleChange::Advance { version, next, fire, history }, Some(mut old))
                if old.version == version =>
            {
                old.next_slot = next;
                if let Some(last) =
                    history.iter().rev().find(|r| matches!(r.outcome, SlotOutcome::Fired { .. }))
                {
                    old.last_slot = Some(last.slot);
                }
                if let Some(task) = history.iter().rev().find_map(SlotRecord::task) {
                    old.last_task = Some(task);
                }
                old.record(history);
                written(old, fire)
            }
            (ScheduleChange::Trigger(task), Some(mut old)) => {
                old.last_task = Some(task.task_id);
                old.record(vec![SlotRecord::new(
                    now,
                    SlotOutcome::Triggered { task: task.task_id },
                    now,
                )]);
                written(old, vec![*task])
            }
            (ScheduleChange::Remove, Some(old)) => Applied::Delete(old),
            (_, _) => Applied::Keep(None),
        }
    }
}

impl Applied {
    /// The row's new text: `Some(Some(text))` to write, `Some(None)` to delete, `None` to
    /// leave it as it is.
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "redis"))]
    pub(crate) fn body(&self) -> Option<Option<String>> {
        match self {
            Applied::Write(schedule, _) => Some(Some(encode(schedule))),
            Applied::Delete(_) => Some(None),
            Applied::Keep(_) => None,
        }
    }

    /// The tasks to store with the write.
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "redis"))]
    pub(crate) fn tasks(&self) -> &[TaskRecord] {
        match self {
            Applied::Write(_, tasks) => tasks,
            _ => &[],
        }
    }

    /// What [`Store::change_schedule`](super::Store::change_schedule) returns.
    pub(crate) fn result(self) -> Option<StoredSchedule> {
        match self {
            Applied::Write(schedule, _) | Applied::Delete(schedule) => Some(schedule),
            Applied::Keep(kept) => kept,
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "redis"))]
/// A stored schedule's text (the SQL stores' `body`, Redis's value).
pub(crate) fn encode(schedule: &StoredSchedule) -> String {
    serde_json::to_string(schedule).unwrap_or_default()
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "redis"))]
/// A stored schedule read back; a damaged one is an error that names it.
pub(crate) fn decode(name: &str, body: &str) -> Result<StoredSchedule, super::StoreError> {
    serde_json::from_str(body).map_err(|err| super::StoreError::Corrupt {
        id: format!("schedule {name}"),
        reason: format!("cannot read the stored schedule: {err}"),
    })
}

/// The schedule a change finds in a row's text (`None`, or empty, for none). A damaged one
/// reads as none: a definition replaces it, nothing else applies to it.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "redis"))]
pub(crate) fn found(name: &str, body: Option<&str>) -> Option<StoredSchedule> {
    body.filter(|body| !body.is_empty()).and_then(|body| decode(name, body).ok())
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql", feature = "redis"))]
/// The readable schedules of `rows` (name, body), by name; a damaged row is logged and
/// left in the store (a redefinition replaces it).
pub(crate) fn decode_all(rows: Vec<(String, String)>) -> Vec<StoredSchedule> {
    let mut schedules: Vec<StoredSchedule> = rows
        .into_iter()
        .filter_map(|(name, body)| match decode(&name, &body) {
            Ok(schedule) => Some(schedule),
            Err(err) => {
                tracing::error!(schedule = %name, error = %err, "taskflow: a stored schedule cannot be read; it is skipped until redefined");
                None
            }
        })
        .collect();
    schedules.sort_by(|a, b| a.name.cmp(&b.name));
    schedules
}
