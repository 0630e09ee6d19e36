//! Every id an enqueue handed out finds its task in every API: a duplicate idempotent enqueue
//! on a remote store gets a fresh id that is an alias of the task holding the key.

use std::sync::Arc;
use std::time::Duration;

use taskflow::{CancelOutcome, EnqueueOptions, Store, TaskId, TaskManager, TaskStatus};

use super::{pending, put};

#[taskflow::task]
async fn alias_target(n: u32) -> u32 {
    n
}

/// The store accepts an alias wherever it takes an id: `get`, `resolve`, `cancel_pending`.
pub(crate) async fn aliases_resolve_everywhere(store: Arc<dyn Store>) {
    let key = format!("alias-{}", TaskId::new());
    let mut holder = pending("aliased");
    holder.idempotency_key = Some(key.clone());
    let holder = put(&*store, holder).await;
    let mut duplicate = pending("aliased");
    duplicate.idempotency_key = Some(key);
    let alias = put(&*store, duplicate).await;
    assert_eq!(store.resolve(&alias).await.unwrap(), Some(holder));
    assert_eq!(store.resolve(&holder).await.unwrap(), Some(holder));
    assert_eq!(store.resolve(&TaskId::new()).await.unwrap(), None);
    assert_eq!(store.get(&alias).await.unwrap().expect("found by alias").task_id, holder);
    assert_eq!(store.cancel_pending(&alias).await.unwrap(), Some(TaskStatus::Pending));
    assert_eq!(store.get(&holder).await.unwrap().unwrap().status, TaskStatus::Cancelled);
    assert_eq!(store.cancel_pending(&alias).await.unwrap(), Some(TaskStatus::Cancelled));
}

/// Through the manager: `submit` of a duplicate returns the holder's id, and `cancel` through
/// a duplicate's id cancels the holder, which then never runs.
pub(crate) async fn manager_resolves_aliases(store: Arc<dyn Store>) {
    let manager = TaskManager::builder().shared_store(store).build().await.unwrap();
    let key = format!("alias-{}", TaskId::new());
    let later = || EnqueueOptions::new().idempotency_key(&key).delay(Duration::from_secs(3600));
    let first = manager.submit(alias_target, 1, later()).await.unwrap();
    let second = manager.submit(alias_target, 2, later()).await.unwrap();
    assert_eq!(second, first, "submit returns the id of the task holding the key");
    // A duplicate enqueued without waiting gets an id at once (an alias on a remote store).
    let quick = manager.add_task_with(alias_target, 3, later());
    let store = manager.store();
    crate::support::wait_until(Duration::from_secs(20), "the alias is stored", || async {
        store.resolve(&quick).await.unwrap()
    })
    .await;
    assert_eq!(manager.cancel(quick).await.unwrap(), CancelOutcome::Cancelled);
    let record = store.get(&first).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Cancelled);
    assert_eq!(record.start_time, None, "the cancelled task never ran");
    assert_eq!(manager.cancel(TaskId::new()).await.unwrap(), CancelOutcome::NotFound);
    manager.shutdown(Duration::from_secs(5)).await;
}
