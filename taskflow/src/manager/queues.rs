//! The operations on queues: pause, resume and resize, persisted in the store so that every
//! instance obeys within a poll interval and a restart keeps them; and what each queue holds.

use super::TaskManager;
use crate::error::{Error, Result};
use crate::queue::{QueueChange, QueueInfo, QueueState};

impl TaskManager {
    /// Stops every instance from starting tasks of `queue`: the store's fetch takes none from
    /// it from now on (this instance at once, the others at their next fetch); running tasks
    /// finish. Kept across restarts until [`TaskManager::resume_queue`].
    ///
    /// ```rust,standalone_crate
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> taskflow::Result<()> {
    /// let manager = taskflow::TaskManager::builder()
    ///     .queue("emails", taskflow::Queue::new().concurrency(4))
    ///     .build()
    ///     .await?;
    /// assert!(manager.pause_queue("emails").await?.paused);
    /// assert!(!manager.resume_queue("emails").await?.paused);
    /// assert!(manager.pause_queue("nope").await.is_err(), "not declared");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn pause_queue(&self, queue: &str) -> Result<QueueState> {
        self.change_queue(queue, QueueChange::Paused(true)).await
    }

    /// Lets every instance start tasks of `queue` again.
    pub async fn resume_queue(&self, queue: &str) -> Result<QueueState> {
        self.change_queue(queue, QueueChange::Paused(false)).await
    }

    /// Sets how many tasks of `queue` each instance runs at once (at least 1), for every
    /// instance, until set again. Lowering it below what runs lets the running tasks finish
    /// and starts none until under the new limit.
    pub async fn set_concurrency(&self, queue: &str, concurrency: usize) -> Result<QueueState> {
        let concurrency = u32::try_from(concurrency).ok().filter(|n| *n > 0).ok_or_else(|| {
            Error::InvalidQueue {
                queue: queue.to_owned(),
                reason: "`concurrency` must be between 1 and 4294967295".to_owned(),
            }
        })?;
        self.change_queue(queue, QueueChange::Concurrency(Some(concurrency))).await
    }

    /// Sets the bound on pending tasks of `queue` (at least 1), or with `None` goes back to
    /// the builder's, for every instance.
    pub async fn set_max_pending(
        &self,
        queue: &str,
        max_pending: Option<u64>,
    ) -> Result<QueueState> {
        if max_pending == Some(0) {
            return Err(Error::InvalidQueue {
                queue: queue.to_owned(),
                reason: "`max_pending` must be at least 1".to_owned(),
            });
        }
        self.change_queue(queue, QueueChange::MaxPending(max_pending)).await
    }

    /// Every declared queue, by name: its settings in force (as the store has them now, which
    /// every instance applies within a poll interval), whether it is paused, and the store's
    /// counts. A read: it changes nothing here.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>> {
        let engine = &self.engine;
        let (states, counts) =
            tokio::try_join!(engine.store.queue_states(), engine.store.queue_counts())?;
        let mut queues: Vec<QueueInfo> = engine
            .queues
            .iter()
            .map(|runner| {
                let state = states.iter().find(|s| *s.name == *runner.name);
                let counts = counts.iter().find(|c| *c.queue == *runner.name);
                QueueInfo {
                    name: runner.name.to_string(),
                    runs_here: runner.runs,
                    paused: state.is_some_and(|s| s.paused),
                    concurrency: runner.concurrency_in(state),
                    global_concurrency: runner.config.global_concurrency_limit(),
                    max_pending: runner.max_pending_in(state),
                    rate_per_second: runner.config.rate().map(|rate| rate.per_second()),
                    rate_burst: runner.config.rate().map(|rate| rate.burst),
                    pending: counts.map_or(0, |c| c.pending),
                    due: counts.map_or(0, |c| c.due),
                    running: counts.map_or(0, |c| c.running),
                    running_here: runner.taken(),
                }
            })
            .collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(queues)
    }

    /// The instances sharing the store whose heartbeat is live (this one among them): each
    /// heartbeats every third of its lease and drops off a lease after its last.
    pub async fn instances(&self) -> Result<Vec<crate::Instance>> {
        let engine = &self.engine;
        let mut live = engine.store.instances(engine.clock.now()).await?;
        // This instance as it is now, not as its last heartbeat had it.
        let here = crate::maintenance::describe_instance(engine);
        match live.iter_mut().find(|i| i.id == here.id) {
            Some(known) => *known = here,
            None => live.push(here),
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    /// This instance's id, as [`TaskManager::instances`] lists it (the owner of its leases).
    pub fn instance_id(&self) -> &str {
        &self.engine.runner
    }

    /// Whether `queue` is declared (the default queue always is).
    pub fn has_queue(&self, queue: &str) -> bool {
        self.engine.queues.get(queue).is_some()
    }

    async fn change_queue(&self, queue: &str, change: QueueChange) -> Result<QueueState> {
        let engine = &self.engine;
        let runner = engine
            .queues
            .get(queue)
            .ok_or_else(|| Error::UnknownQueue { queue: queue.to_owned() })?;
        let state = engine.store.update_queue(queue, change, engine.clock.now()).await?;
        runner.apply(Some(&state));
        Ok(state)
    }
}
