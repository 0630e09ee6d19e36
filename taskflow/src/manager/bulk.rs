//! Many tasks of one fn at once: [`TaskManager::add_tasks`] and [`TaskManager::submit_many`],
//! handed to the store together so a shared database takes them in batches of up to 512 per
//! transaction (graphile's `add_jobs`, River's `InsertMany`, Oban's `insert_all`).

use super::TaskManager;
use crate::error::Result;
use crate::id::TaskId;
use crate::options::EnqueueOptions;
use crate::task::{IntoTaskArgs, Task};

impl TaskManager {
    /// Enqueues `task` once for each of `args`, with its `#[task]` defaults, all handed to
    /// the store at once ([`Tasks::add_tasks`](crate::Tasks::add_tasks)); the ids, in order.
    pub fn add_tasks<T: Task, A: IntoTaskArgs<T>>(
        &self,
        task: T,
        args: impl IntoIterator<Item = A>,
    ) -> Vec<TaskId> {
        self.tasks().add_tasks(task, args)
    }

    /// Like [`TaskManager::add_tasks`], each task with its own options.
    pub fn add_tasks_with<T: Task, A: IntoTaskArgs<T>>(
        &self,
        task: T,
        tasks: impl IntoIterator<Item = (A, EnqueueOptions)>,
    ) -> Vec<TaskId> {
        self.tasks().add_tasks_with(task, tasks)
    }

    /// Stores many tasks of `task` together, waits until the store has made them durable,
    /// then lets them start: [`TaskManager::submit`] for a batch. One result per task, in
    /// order: its id (or, for an idempotency key an active task holds, that task's id), or
    /// why it was not stored; each task stands or falls on its own. Collect into
    /// `Result<Vec<_>>` to stop at the first refusal.
    ///
    /// ```rust,standalone_crate
    /// # #[taskflow::task] async fn notify(user: u64) {}
    /// # async fn run() -> taskflow::Result<()> {
    /// use taskflow::EnqueueOptions;
    ///
    /// let manager = taskflow::TaskManager::builder().build().await?;
    /// let batch = (1..=3u64).map(|user| {
    ///     (user, EnqueueOptions::new().idempotency_key(format!("welcome-{user}")))
    /// });
    /// let ids = manager.submit_many(notify, batch).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(ids.len(), 3);
    /// # manager.shutdown(std::time::Duration::from_secs(5)).await;
    /// # Ok(())
    /// # }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(run()).unwrap();
    /// ```
    pub async fn submit_many<T: Task, A: IntoTaskArgs<T>>(
        &self,
        task: T,
        tasks: impl IntoIterator<Item = (A, EnqueueOptions)>,
    ) -> Vec<Result<TaskId>> {
        let news: Vec<_> = tasks
            .into_iter()
            .map(|(args, options)| crate::tasks::new_task(task, args, options))
            .collect();
        let keyed: Vec<bool> =
            news.iter().map(|new| new.options.idempotency_key_str().is_some()).collect();
        let mut queues: Vec<String> = Vec::new();
        for new in &news {
            if !queues.iter().any(|queue| queue == new.queue()) {
                queues.push(new.queue().to_owned());
            }
        }
        let stored = self.engine.store_many(news.into_iter().map(|new| (new, false)).collect());
        let waits = stored.into_iter().zip(keyed).map(|(stored, keyed)| async move {
            let enqueued = stored?;
            let mut id = enqueued.id;
            if let Some(write) = enqueued.write {
                write.wait().await?;
                // A remote store learns only now whether the key was free; a duplicate's id
                // is an alias, and the caller gets the id of the task that holds the key.
                if keyed && let Some(canonical) = self.engine.store.resolve(&id).await? {
                    id = canonical;
                }
            }
            Ok(id)
        });
        let ids = futures_util::future::join_all(waits).await;
        for queue in &queues {
            self.engine.queues.wake(queue);
        }
        ids
    }
}
