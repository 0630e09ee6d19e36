//! Schedules as the stores keep them ([`StoredSchedule`]) and the one way they change
//! ([`ScheduleChange`], applied by [`Store::change_schedule`](super::Store::change_schedule)):
//! each store reads the row under its lock, applies the change here, and writes the result,
//! so the rules (a newer definition wins, pause survives a redefinition, a slot advances
//! only from where the caller saw it) are the same on every store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::TaskId;

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
    /// The last slot fired, and the task it made.
    pub last_slot: Option<DateTime<Utc>>,
    /// The task the last slot made.
    pub last_task: Option<TaskId>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
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
        }
    }

    /// Whether `other` defines something else (task, arguments or definition).
    fn differs_from(&self, other: &StoredSchedule) -> bool {
        self.func_name != other.func_name
            || self.args != other.args
            || self.definition != other.definition
    }
}

/// One change to a stored schedule.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ScheduleChange {
    /// Stores it, or, when one of that name defines something else, replaces its task,
    /// arguments, definition and next slot (the newer definition wins; paused and the last
    /// slot stay). The same definition again changes nothing.
    Define(StoredSchedule),
    /// Pauses (`true`) or resumes (`false`) it.
    Pause(bool),
    /// Moves it on from slot `from` (only if it still waits for `from`: another leader may
    /// have done it) to `next`, recording the last slot fired and its task.
    Advance {
        /// The slot the caller saw as next.
        from: Option<DateTime<Utc>>,
        /// The slot to wait for now.
        next: Option<DateTime<Utc>>,
        /// The last slot fired by this step, if any, and its task.
        fired: Option<(DateTime<Utc>, TaskId)>,
    },
    /// Removes it.
    Remove,
}

/// What [`ScheduleChange::apply`] decided.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Applied {
    /// Write this (and return it).
    Write(StoredSchedule),
    /// Delete the row (and return what it held).
    Delete(StoredSchedule),
    /// Leave the row as it is; return this (or nothing: not applied).
    Keep(Option<StoredSchedule>),
}

impl ScheduleChange {
    /// The change to the schedule `found` (what the store holds under the name, if anything).
    pub(crate) fn apply(self, found: Option<StoredSchedule>, now: DateTime<Utc>) -> Applied {
        match (self, found) {
            (ScheduleChange::Define(mut new), None) => {
                new.updated_at = now;
                Applied::Write(new)
            }
            (ScheduleChange::Define(new), Some(old)) if old.differs_from(&new) => {
                tracing::info!(
                    schedule = %old.name,
                    from = %old.definition,
                    to = %new.definition,
                    "taskflow: a schedule is redefined; the newer definition wins"
                );
                Applied::Write(StoredSchedule {
                    func_name: new.func_name,
                    args: new.args,
                    definition: new.definition,
                    next_slot: new.next_slot,
                    updated_at: now,
                    ..old
                })
            }
            (ScheduleChange::Define(_), Some(old)) => Applied::Keep(Some(old)),
            (ScheduleChange::Pause(paused), Some(old)) => {
                Applied::Write(StoredSchedule { paused, updated_at: now, ..old })
            }
            (ScheduleChange::Advance { from, next, fired }, Some(old)) if old.next_slot == from => {
                let (last_slot, last_task) = match fired {
                    Some((slot, task)) => (Some(slot), Some(task)),
                    None => (old.last_slot, old.last_task),
                };
                Applied::Write(StoredSchedule {
                    next_slot: next,
                    last_slot,
                    last_task,
                    updated_at: now,
                    ..old
                })
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
            Applied::Write(schedule) => Some(Some(encode(schedule))),
            Applied::Delete(_) => Some(None),
            Applied::Keep(_) => None,
        }
    }

    /// What [`Store::change_schedule`](super::Store::change_schedule) returns.
    pub(crate) fn result(self) -> Option<StoredSchedule> {
        match self {
            Applied::Write(schedule) | Applied::Delete(schedule) => Some(schedule),
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
