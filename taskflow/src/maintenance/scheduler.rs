//! The scheduler service: every instance defines the schedules its `#[task]`s declare at
//! start; the leader fires what is due every second (see [`Scheduler`]).

use crate::engine::Engine;
use crate::registry::registry;
use crate::schedule::Scheduler;
use crate::store::{ScheduleChange, StoreError, StoredSchedule};

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
        let now = engine.clock.now();
        let stored = StoredSchedule::new(
            task.name(),
            task.name(),
            serde_json::json!({}),
            schedule.definition(),
            schedule.next_after(now),
            now,
        );
        engine.store.change_schedule(task.name(), ScheduleChange::Define(stored), now).await?;
    }
    Ok(())
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
