//! Conformance of cancel requests: [`Store::request_cancel`] flags a running task for its
//! runner only, [`Store::cancel_requests`] finds it under that runner's lease, and the next
//! attempt's fetch starts unflagged.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use taskflow::store::Transition;
use taskflow::{Store, TaskId, TaskStatus};

use super::{lease, pending, put, take};

pub(crate) async fn running_tasks_are_flagged_for_their_runner(store: Arc<dyn Store>) {
    let runner = lease("runner", Duration::from_secs(60));
    let (id, other) = (put(&*store, pending("stop_me")).await, put(&*store, pending("keep")).await);
    // Pending: reported, not flagged (cancel_pending is for those).
    assert_eq!(store.request_cancel(&id).await.unwrap(), Some(TaskStatus::Pending));
    take(&*store, &id, &runner).await;
    take(&*store, &other, &runner).await;
    let both = [id, other];
    assert_eq!(store.cancel_requests(&runner.owner, &both).await.unwrap(), Vec::<TaskId>::new());

    assert_eq!(store.request_cancel(&id).await.unwrap(), Some(TaskStatus::Running));
    assert_eq!(store.cancel_requests(&runner.owner, &both).await.unwrap(), vec![id]);
    assert_eq!(store.cancel_requests(&runner.owner, &both).await.unwrap(), vec![id], "kept");
    assert_eq!(store.cancel_requests("another", &both).await.unwrap(), Vec::<TaskId>::new());
    assert_eq!(store.get(&id).await.unwrap().unwrap().status, TaskStatus::Running, "only asked");

    // The attempt ends in a retry: the next attempt starts unflagged.
    let retry =
        Transition::Reschedule { due: Utc::now(), retries_used: 1, error: None, stacktrace: None };
    assert!(store.transition(&id, &runner, retry).await.unwrap());
    take(&*store, &id, &runner).await;
    assert_eq!(store.cancel_requests(&runner.owner, &both).await.unwrap(), Vec::<TaskId>::new());

    let cancelled = Transition::Finished {
        status: TaskStatus::Cancelled,
        end_time: Utc::now(),
        retries_used: 1,
        result: None,
        error: None,
        stacktrace: None,
    };
    assert!(store.transition(&id, &runner, cancelled).await.unwrap());
    assert_eq!(store.request_cancel(&id).await.unwrap(), Some(TaskStatus::Cancelled));
    assert_eq!(store.cancel_requests(&runner.owner, &both).await.unwrap(), Vec::<TaskId>::new());
    assert_eq!(store.request_cancel(&TaskId::new()).await.unwrap(), None);
}
