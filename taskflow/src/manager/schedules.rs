//! The operations on schedules: define one at run time (with arguments, or from
//! configuration), remove, pause, resume and run now; each persisted in the store, so every
//! instance and every restart sees it.

use super::TaskManager;
use crate::error::{Error, Result};
use crate::id::TaskId;
use crate::maintenance::{ScheduleProblem, define_schedule, slot_task};
use crate::options::EnqueueOptions;
use crate::schedule::Schedule;
use crate::store::{ScheduleChange, StoredSchedule};
use crate::task::{IntoTaskArgs, Task};

impl TaskManager {
    /// Fires `task` with `args` on `schedule`, under `name` (unique in the store): stored,
    /// so that the leader fires it whichever instance defined it, and it survives restarts.
    /// Defining a name again with another schedule, task or arguments replaces it (the last
    /// definition wins; a pause and the history stay); the same definition again changes
    /// nothing.
    ///
    /// ```rust,standalone_crate
    /// use std::time::Duration;
    /// use taskflow::{Schedule, TaskManager, task};
    ///
    /// #[task]
    /// async fn report(region: String) {}
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> taskflow::Result<()> {
    /// let manager = TaskManager::builder().build().await?;
    /// let nightly = Schedule::cron("0 2 * * *")?.timezone("Europe/Paris")?;
    /// manager.schedule("report-eu", nightly, report, "eu".to_owned()).await?;
    /// let often = Schedule::every(Duration::from_secs(300))?;
    /// manager.schedule("report-us", often, report, "us".to_owned()).await?;
    /// assert_eq!(manager.schedules().await?.len(), 2);
    /// assert!(manager.unschedule("report-us").await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn schedule<T: Task>(
        &self,
        name: &str,
        schedule: Schedule,
        task: T,
        args: impl IntoTaskArgs<T>,
    ) -> Result<StoredSchedule> {
        let new = crate::tasks::new_task(task, args, EnqueueOptions::new());
        let args = new.args.map_err(|reason| {
            Error::Schedule(format!("schedule `{name}`: its arguments cannot be stored: {reason}"))
        })?;
        let now = self.engine.clock.now();
        let store = &*self.engine.store;
        let defined = define_schedule(store, name, new.task.name(), args, &schedule, now).await?;
        defined.ok_or_else(|| Error::UnknownSchedule(name.to_owned()))
    }

    /// Removes the schedule `name`; whether there was one. Tasks it fired are not touched.
    pub async fn unschedule(&self, name: &str) -> Result<bool> {
        let now = self.engine.clock.now();
        Ok(self.engine.store.change_schedule(name, ScheduleChange::Remove, now).await?.is_some())
    }

    /// Stops `name` from firing, on every instance, until [`TaskManager::resume_schedule`]:
    /// its slots pass, recorded in its history as paused.
    pub async fn pause_schedule(&self, name: &str) -> Result<StoredSchedule> {
        self.change_schedule(name, ScheduleChange::Pause(true)).await
    }

    /// Lets `name` fire again from its next slot.
    pub async fn resume_schedule(&self, name: &str) -> Result<StoredSchedule> {
        self.change_schedule(name, ScheduleChange::Pause(false)).await
    }

    /// Runs `name`'s task now, besides its slots (and even while it is paused): stored in the
    /// same write that records it in the schedule's history. Returns the task's id.
    pub async fn trigger_schedule(&self, name: &str) -> Result<TaskId> {
        let stored = self
            .engine
            .store
            .schedules()
            .await?
            .into_iter()
            .find(|stored| stored.name == name)
            .ok_or_else(|| Error::UnknownSchedule(name.to_owned()))?;
        let (task, _) =
            crate::maintenance::readable(&stored).map_err(|p| Error::Schedule(p.to_string()))?;
        let now = self.engine.clock.now();
        let record = slot_task(&stored, task, now, None, now);
        let id = record.task_id;
        self.change_schedule(name, ScheduleChange::Trigger(Box::new(record))).await?;
        self.engine.queues.wake_all();
        Ok(id)
    }

    /// Every stored schedule, by name.
    pub async fn schedules(&self) -> Result<Vec<StoredSchedule>> {
        Ok(self.engine.store.schedules().await?)
    }

    /// Why `stored` cannot fire in this binary (its task is not registered here, its
    /// definition cannot be read), or `None` when it can.
    pub fn schedule_problem(&self, stored: &StoredSchedule) -> Option<ScheduleProblem> {
        crate::maintenance::readable(stored).err()
    }

    async fn change_schedule(&self, name: &str, change: ScheduleChange) -> Result<StoredSchedule> {
        let now = self.engine.clock.now();
        let changed = self.engine.store.change_schedule(name, change, now).await?;
        changed.ok_or_else(|| Error::UnknownSchedule(name.to_owned()))
    }
}
