//! Conformance of run keys: while a task waits under a key (pending, never started), a new
//! enqueue under the key replaces it and `cancel_scheduled` cancels it, atomically, however
//! the enqueues race.

use super::default_queue;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use taskflow::{Store, TaskId, TaskRecord, TaskStatus};

use super::{lease, pending, put, trunc};

fn keyed(key: &str, hours: i64) -> TaskRecord {
    let mut record = pending("keyed");
    record.run_key = Some(key.to_owned());
    if hours != 0 {
        record.scheduled_at = Some(trunc(Utc::now() + chrono::Duration::hours(hours)));
    }
    record
}

async fn status(store: &dyn Store, id: &TaskId) -> TaskStatus {
    store.get(id).await.unwrap().expect("stored").status
}

pub(crate) async fn run_keys_replace_a_waiting_task(store: Arc<dyn Store>) {
    let first = put(&*store, keyed("remind-1", 1)).await;
    let mut moved = keyed("remind-1", 2);
    moved.args = serde_json::json!({ "n": 2 });
    let second = put(&*store, moved).await;
    let old = store.get(&first).await.unwrap().unwrap();
    assert_eq!(old.status, TaskStatus::Cancelled, "replaced");
    assert!(old.end_time.is_some());
    let error = old.error.unwrap_or_default();
    assert!(error.contains(&second.to_string()), "the replaced task names its successor: {error}");
    let new = store.get(&second).await.unwrap().unwrap();
    assert_eq!((new.status, new.run_key.as_deref()), (TaskStatus::Pending, Some("remind-1")));
    assert_eq!(new.args, serde_json::json!({ "n": 2 }));
    let runner = lease("keyed", Duration::from_secs(60));
    let at = Utc::now() + chrono::Duration::hours(3);
    let fetched = store.fetch(&default_queue(10, at, &runner)).await.unwrap();
    assert_eq!(fetched.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![second]);
    // Other keys are left alone.
    let other = put(&*store, keyed("remind-2", 1)).await;
    put(&*store, keyed("remind-3", 1)).await;
    assert_eq!(status(&*store, &other).await, TaskStatus::Pending);
    // A held task (a request's) waits too, and is replaced the same way.
    let held = store.enqueue_held(keyed("remind-4", 0), Utc::now() + chrono::Duration::hours(1));
    let held = held.unwrap();
    if let Some(write) = held.write {
        write.wait().await.unwrap();
    }
    let after = put(&*store, keyed("remind-4", 0)).await;
    assert_eq!(status(&*store, &held.id).await, TaskStatus::Cancelled);
    assert_eq!(status(&*store, &after).await, TaskStatus::Pending);
}

pub(crate) async fn run_keys_do_not_touch_a_started_task(store: Arc<dyn Store>) {
    let first = put(&*store, keyed("started-1", 0)).await;
    let runner = lease("keyed", Duration::from_secs(60));
    assert_eq!(store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap().len(), 1);
    let second = put(&*store, keyed("started-1", 0)).await;
    assert_eq!(status(&*store, &first).await, TaskStatus::Running, "a started task runs on");
    assert_eq!(status(&*store, &second).await, TaskStatus::Pending);
    assert_eq!(store.cancel_scheduled("started-1", Utc::now()).await.unwrap(), Some(second));
    assert_eq!(status(&*store, &first).await, TaskStatus::Running);
    // A task back to pending after it started (a retry) is not waiting under its key.
    let third = put(&*store, keyed("started-2", 0)).await;
    let fetched = store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap();
    assert_eq!(fetched.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![third]);
    let retry = taskflow::store::Transition::Reschedule {
        due: trunc(Utc::now() + chrono::Duration::hours(1)),
        retries_used: 1,
        error: Some("boom".into()),
        stacktrace: None,
    };
    assert!(store.transition(&third, &runner, retry).await.unwrap());
    let fourth = put(&*store, keyed("started-2", 0)).await;
    assert_eq!(status(&*store, &third).await, TaskStatus::Pending, "its retry still waits");
    assert_eq!(store.cancel_scheduled("started-2", Utc::now()).await.unwrap(), Some(fourth));
    assert_eq!(status(&*store, &third).await, TaskStatus::Pending);
}

pub(crate) async fn cancel_scheduled_cancels_by_key(store: Arc<dyn Store>) {
    let id = put(&*store, keyed("cancel-1", 1)).await;
    assert_eq!(store.cancel_scheduled("cancel-1", Utc::now()).await.unwrap(), Some(id));
    let record = store.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Cancelled);
    assert!(record.end_time.is_some());
    assert_eq!(store.cancel_scheduled("cancel-1", Utc::now()).await.unwrap(), None, "once");
    assert_eq!(store.cancel_scheduled("never-used", Utc::now()).await.unwrap(), None);
    let runner = lease("keyed", Duration::from_secs(60));
    let at = Utc::now() + chrono::Duration::hours(2);
    assert!(
        store.fetch(&default_queue(10, at, &runner)).await.unwrap().is_empty(),
        "a cancelled task never runs"
    );
    // The key is free again.
    let again = put(&*store, keyed("cancel-1", 0)).await;
    assert_eq!(status(&*store, &again).await, TaskStatus::Pending);
    assert_eq!(store.next_due("default").await.unwrap(), None, "nothing waits for later");
}

pub(crate) async fn run_keys_hold_under_concurrency(store: Arc<dyn Store>) {
    for round in 0..3 {
        let key = format!("raced-{round}");
        let enqueues = (0..8).map(|_| {
            let store = Arc::clone(&store);
            let record = keyed(&key, 1);
            tokio::spawn(async move { put(&*store, record).await })
        });
        let mut ids = Vec::new();
        for enqueue in enqueues {
            ids.push(enqueue.await.unwrap());
        }
        let mut waiting = Vec::new();
        for id in &ids {
            match status(&*store, id).await {
                TaskStatus::Pending => waiting.push(*id),
                TaskStatus::Cancelled => {}
                other => panic!("task {id} is {other:?}"),
            }
        }
        assert_eq!(waiting.len(), 1, "one task waits under {key}: {waiting:?}");
        assert_eq!(store.cancel_scheduled(&key, Utc::now()).await.unwrap(), Some(waiting[0]));
    }
}

pub(crate) async fn idempotency_keys_win_over_run_keys(store: Arc<dyn Store>) {
    let mut first = keyed("both-1", 1);
    first.idempotency_key = Some("both-idem".into());
    let first_id = put(&*store, first).await;
    let mut second = keyed("both-1", 2);
    second.idempotency_key = Some("both-idem".into());
    let second_id = put(&*store, second).await;
    assert_eq!(store.resolve(&second_id).await.unwrap(), Some(first_id), "the duplicate");
    assert_eq!(status(&*store, &first_id).await, TaskStatus::Pending, "nothing replaced");
}
