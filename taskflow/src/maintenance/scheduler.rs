//! The scheduler: [`Scheduler`], one pass over the stored schedules at a given time, firing
//! the slots that are due; the leader runs one every second on the engine's clock ([`fire`])
//! and every instance defines the schedules its `#[task]`s declare at start ([`declare`]).
//! Tests run a pass at any time they choose.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::engine::Engine;
use crate::enqueue::NewTask;
use crate::id::TaskId;
use crate::options::{EnqueueOptions, TaskOptions};
use crate::record::{TaskRecord, TaskSource, TaskStatus};
use crate::registry::registry;
use crate::schedule::{Overlap, Schedule};
use crate::store::{ScheduleChange, SlotOutcome, SlotRecord, Store, StoreError, StoredSchedule};

/// Fires the schedules of a store: see [`Scheduler::tick`]. A
/// [`TaskManager`](crate::TaskManager) runs one on its leader every second; use one directly
/// to drive schedules from a process of your own, or at chosen times in a test.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use taskflow::{MemoryStore, Scheduler, Store};
///
/// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
/// let tick = Scheduler::new(store).tick(chrono::Utc::now()).await?;
/// assert!(tick.fired.is_empty(), "no schedules, nothing fired");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Scheduler {
    store: Arc<dyn Store>,
}

/// What one [`Scheduler::tick`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tick {
    /// The tasks it stored, oldest slot first.
    pub fired: Vec<TaskId>,
    /// How many slots it recorded as skipped (missed, paused or overlapped).
    pub skipped: u64,
    /// The schedules it could not fire, and why (they are kept, and fire again once the
    /// cause is gone).
    pub problems: Vec<ScheduleProblem>,
}

/// A stored schedule that cannot fire: its task is not registered in this binary (after a
/// deploy), or its definition cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleProblem {
    /// The schedule.
    pub schedule: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for ScheduleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "schedule `{}`: {}", self.schedule, self.reason)
    }
}

/// Why `stored` cannot fire in this binary, if it cannot; else its task and schedule.
pub(crate) fn readable(
    stored: &StoredSchedule,
) -> Result<(&'static TaskOptions, Schedule), ScheduleProblem> {
    let problem = |reason: String| ScheduleProblem { schedule: stored.name.clone(), reason };
    let task = registry().get(&stored.func_name).ok_or_else(|| {
        problem(format!(
            "its task `{}` is not registered in this binary; it is kept, and fires again once the task is back",
            stored.func_name
        ))
    })?;
    let schedule =
        Schedule::from_definition(&stored.definition).map_err(|err| problem(err.to_string()))?;
    Ok((task.options(), schedule))
}

/// The idempotency key of a schedule's slot: one task per `(schedule, slot)`.
pub(crate) fn slot_key(name: &str, slot: DateTime<Utc>) -> String {
    format!("schedule:{name}:{}", slot.timestamp_micros())
}

/// A task of `stored` for `slot` (a slot, or the time of a trigger or a startup run): source
/// `scheduled`, tagged with the schedule's name and the slot, keyed by `key` if given.
pub(crate) fn slot_task(
    stored: &StoredSchedule,
    task: &'static TaskOptions,
    slot: DateTime<Utc>,
    key: Option<String>,
    now: DateTime<Utc>,
) -> TaskRecord {
    let mut options = EnqueueOptions::new()
        .tag("schedule", &stored.name)
        .tag("slot", slot.to_rfc3339_opts(SecondsFormat::Micros, true));
    if let Some(key) = key {
        options = options.idempotency_key(key);
    }
    let new = NewTask { id: TaskId::new(), task, args: Ok(stored.args.clone()), options };
    let mut record = crate::engine::new_record(new, now);
    record.source = TaskSource::Scheduled;
    record
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler of the schedules in `store`.
    pub fn new(store: Arc<dyn Store>) -> Scheduler {
        Scheduler { store }
    }

    /// Fires what is due at `now`, for every stored schedule whose task this binary has: the
    /// due slots' tasks (per the schedule's missed-slot and overlap policies, see
    /// [`Schedule::due`]), each stored in the same write that advances the schedule, so a
    /// slot fires once however many schedulers run at once. A paused schedule records its
    /// slots as paused; a schedule with `run_on_startup` fires once when first seen.
    /// A schedule that cannot fire here is reported in [`Tick::problems`] and left as it is.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Tick, StoreError> {
        let mut tick = Tick::default();
        for stored in self.store.schedules().await? {
            match readable(&stored) {
                Ok((task, schedule)) => self.one(stored, task, schedule, now, &mut tick).await?,
                Err(problem) => tick.problems.push(problem),
            }
        }
        Ok(tick)
    }

    async fn one(
        &self,
        stored: StoredSchedule,
        task: &'static TaskOptions,
        schedule: Schedule,
        now: DateTime<Utc>,
        tick: &mut Tick,
    ) -> Result<(), StoreError> {
        let (version, name) = (stored.version, stored.name.clone());
        let never_ran = stored.history.is_empty() && stored.last_task.is_none();
        if schedule.runs_on_startup() && never_ran && !stored.paused {
            let key = format!("schedule:{name}:startup");
            let record = slot_task(&stored, task, now, Some(key), now);
            let id = record.task_id;
            let history = vec![SlotRecord::new(now, SlotOutcome::Startup { task: id }, now)];
            if self.advance(&name, version, stored.next_slot, vec![record], history, now).await? {
                tick.fired.push(id);
            }
            // Its slots at the next tick, from the version just written.
            return Ok(());
        }
        let Some(next) = stored.next_slot else {
            // Defined with no slot to come when it was defined; look again from now.
            let next = schedule.next_after(now);
            if next.is_some() {
                self.advance(&name, version, next, Vec::new(), Vec::new(), now).await?;
            }
            return Ok(());
        };
        let due = schedule.due(next, now);
        if due.fire.is_empty() && due.skipped == 0 {
            if due.next != stored.next_slot {
                // `next` was not a slot of this definition: wait for the first that is.
                self.advance(&name, version, due.next, Vec::new(), Vec::new(), now).await?;
            }
            return Ok(());
        }
        let mut history = Vec::new();
        let mut skipped = due.skipped;
        if let Some((first, last)) = due.skipped_range {
            history.push(SlotRecord::run(first, last, due.skipped, SlotOutcome::Missed, now));
        }
        let mut fire = Vec::new();
        let (Some(&first), Some(&last)) = (due.fire.first(), due.fire.last()) else {
            // Only skipped slots (a cron expression counted past its bound): move on.
            if self.advance(&name, version, due.next, fire, history, now).await? {
                tick.skipped += skipped;
            }
            return Ok(());
        };
        let count = due.fire.len() as u64;
        // The previous run is looked up only when it matters: not while paused.
        let running = match schedule.overlap_policy() {
            Overlap::Skip if !stored.paused => self.still_running(stored.last_task).await?,
            _ => None,
        };
        if stored.paused {
            history.push(SlotRecord::run(first, last, count, SlotOutcome::Paused, now));
            skipped += count;
        } else if let Some(running) = running {
            history.push(SlotRecord::run(
                first,
                last,
                count,
                SlotOutcome::Overlapped { running },
                now,
            ));
            skipped += count;
        } else {
            // With overlap skipped, only the oldest fires: the others would overlap it.
            let firing = match schedule.overlap_policy() {
                Overlap::Skip => &due.fire[..1],
                Overlap::Allow => &due.fire[..],
            };
            for &slot in firing {
                let record = slot_task(&stored, task, slot, Some(slot_key(&name, slot)), now);
                history.push(SlotRecord::new(
                    slot,
                    SlotOutcome::Fired { task: record.task_id },
                    now,
                ));
                fire.push(record);
            }
            if let (Some(record), Some(&second)) = (fire.first(), due.fire.get(1))
                && firing.len() == 1
            {
                let outcome = SlotOutcome::Overlapped { running: record.task_id };
                history.push(SlotRecord::run(second, last, count - 1, outcome, now));
                skipped += count - 1;
            }
        }
        let ids: Vec<TaskId> = fire.iter().map(|record| record.task_id).collect();
        if self.advance(&name, version, due.next, fire, history, now).await? {
            tick.fired.extend(ids);
            tick.skipped += skipped;
        }
        Ok(())
    }

    /// Applies an advance; whether it applied (another scheduler may have moved it first).
    async fn advance(
        &self,
        name: &str,
        version: u64,
        next: Option<DateTime<Utc>>,
        fire: Vec<TaskRecord>,
        history: Vec<SlotRecord>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let change = ScheduleChange::Advance { version, next, fire, history };
        Ok(self.store.change_schedule(name, change, now).await?.is_some())
    }

    /// The last run, if it is still pending or running.
    async fn still_running(&self, last: Option<TaskId>) -> Result<Option<TaskId>, StoreError> {
        let Some(id) = last else { return Ok(None) };
        let record = self.store.get(&id).await?;
        let going = record.is_some_and(|record| {
            matches!(record.status, TaskStatus::Pending | TaskStatus::Running)
        });
        Ok(going.then_some(id))
    }
}

/// Stores the schedule of every registered task that declares one (`#[task(every = ...)]`),
/// named after the task; one already stored with the same definition is left as it is.
pub(crate) async fn declare(engine: &Engine) -> Result<(), StoreError> {
    for task in registry().iter() {
        let Some(spec) = task.options().declared_schedule() else { continue };
        let schedule = match spec.build() {
            Ok(schedule) => schedule,
            Err(err) => {
                // The macro checked the values: only a hand-written spec gets here.
                tracing::error!(task = task.name(), error = %err, "taskflow: the task's schedule is not valid; it is not defined");
                continue;
            }
        };
        let (name, args) = (task.name(), serde_json::json!({}));
        define(&*engine.store, name, name, args, &schedule, engine.clock.now()).await?;
    }
    Ok(())
}

/// Stores the definition of schedule `name` (firing `func_name` with `args`), waiting for its
/// first slot after `now`; returns what the store holds after it.
pub(crate) async fn define(
    store: &dyn Store,
    name: &str,
    func_name: &str,
    args: serde_json::Value,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<Option<StoredSchedule>, StoreError> {
    let definition = schedule.definition();
    let stored =
        StoredSchedule::new(name, func_name, args, definition, schedule.next_after(now), now);
    store.change_schedule(name, ScheduleChange::Define(stored), now).await
}

/// Fires what is due, on the leader only; wakes this instance's producers for the tasks.
pub(super) async fn fire(engine: &Engine) {
    if !engine.is_leading() {
        return;
    }
    let scheduler = Scheduler::new(engine.store.clone());
    match scheduler.tick(engine.clock.now()).await {
        Ok(tick) => {
            if !tick.fired.is_empty() {
                engine.queues.wake_all();
            }
            for problem in tick.problems {
                tracing::debug!(%problem, "taskflow: a schedule cannot fire here");
            }
        }
        Err(err) => tracing::error!(error = %err, "taskflow: could not fire the schedules"),
    }
}
