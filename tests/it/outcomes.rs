//! What follows an attempt, through the engine on every store: a failure with retries left
//! waits in the store and comes back; a task can fail at once or snooze; a task runs at its
//! `run_at`; a run key moves a waiting task; tasks due later never hold up a due one.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use taskflow::{EnqueueOptions, Store, TaskError, TaskManager, TaskStatus};

use crate::support::{note, notes, on_every_store, unique, wait_until};

const LONG: Duration = Duration::from_secs(60);

async fn manager(store: Arc<dyn Store>) -> TaskManager {
    TaskManager::builder()
        .shared_store(store)
        .poll_every(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

#[taskflow::task(retries = 2, delay = "700ms")]
async fn fails_once(key: String) -> Result<(), String> {
    note(&key, "attempt");
    if notes(&key).len() == 1 { Err("first attempt failed".to_owned()) } else { Ok(()) }
}

async fn a_retry_waits_in_the_store(store: Arc<dyn Store>) {
    let manager = manager(store).await;
    let key = unique("retry_wait");
    let id = manager.submit(fails_once, key.clone(), EnqueueOptions::new()).await.unwrap();
    let waiting = wait_until(LONG, "the failed attempt to go back to the store", || async {
        let record = manager.store().get(&id).await.unwrap()?;
        (record.status == TaskStatus::Pending && record.retries_used == 1).then_some(record)
    })
    .await;
    assert_eq!(waiting.error.as_deref(), Some("first attempt failed"));
    assert_eq!(waiting.lease_owner, None, "no runner holds a waiting task");
    let due = waiting.scheduled_at.expect("the retry's due time");
    assert!(due > waiting.start_time.unwrap(), "due after the first attempt");
    let record = manager.wait_for(id, LONG).await.unwrap();
    assert_eq!((record.status, record.retries_used), (TaskStatus::Success, 1));
    assert_eq!(notes(&key).len(), 2);
    manager.shutdown(Duration::from_secs(5)).await;
}

#[taskflow::task(retries = 5)]
async fn gives_up(key: String) -> Result<(), TaskError> {
    note(&key, "attempt");
    Err(TaskError::fatal(std::io::Error::other("the card was declined")))
}

async fn a_fatal_error_fails_at_once(store: Arc<dyn Store>) {
    let manager = manager(store).await;
    let key = unique("fatal");
    let id = manager.submit(gives_up, key.clone(), EnqueueOptions::new()).await.unwrap();
    let record = manager.wait_for(id, LONG).await.unwrap();
    assert_eq!(record.status, TaskStatus::Failed);
    assert_eq!(record.retries_used, 0, "no retry, though five were left");
    assert_eq!(record.error.as_deref(), Some("the card was declined"));
    assert_eq!(notes(&key).len(), 1);
    manager.shutdown(Duration::from_secs(5)).await;
}

#[taskflow::task(retries = 0)]
async fn snoozes_twice(key: String) -> Result<usize, TaskError> {
    note(&key, "attempt");
    let runs = notes(&key).len();
    if runs <= 2 {
        return Err(TaskError::snooze(Duration::from_millis(300)));
    }
    Ok(runs)
}

async fn a_snooze_uses_no_attempt(store: Arc<dyn Store>) {
    let manager = manager(store).await;
    let key = unique("snooze");
    let id = manager.submit(snoozes_twice, key.clone(), EnqueueOptions::new()).await.unwrap();
    let record = manager.wait_for(id, LONG).await.unwrap();
    assert_eq!(record.status, TaskStatus::Success, "{record:?}");
    assert_eq!(record.retries_used, 0, "snoozes are not attempts");
    assert_eq!(record.result, Some(serde_json::json!(3)));
    manager.shutdown(Duration::from_secs(5)).await;
}

#[taskflow::task]
async fn stamped(key: String) {
    note(&key, "ran");
}

async fn a_task_runs_at_its_time(store: Arc<dyn Store>) {
    let manager = manager(store).await;
    let key = unique("run_at");
    let at = Utc::now() + chrono::Duration::milliseconds(800);
    let options = EnqueueOptions::new().run_at(at);
    let id = manager.submit(stamped, key.clone(), options).await.unwrap();
    let record = manager.store().get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Pending);
    assert_eq!(record.scheduled_at.map(|t| t.timestamp_micros()), Some(at.timestamp_micros()));
    let record = manager.wait_for(id, LONG).await.unwrap();
    assert_eq!(record.status, TaskStatus::Success);
    assert!(record.start_time.unwrap() >= at, "started at {:?}, due {at}", record.start_time);
    // A time in the past is now.
    let past = EnqueueOptions::new().run_at(Utc::now() - chrono::Duration::hours(1));
    let id = manager.submit(stamped, key.clone(), past).await.unwrap();
    assert_eq!(manager.wait_for(id, LONG).await.unwrap().status, TaskStatus::Success);
    manager.shutdown(Duration::from_secs(5)).await;
}

#[taskflow::task]
async fn keyed_reminder(key: String, version: u32) {
    note(&key, format!("ran {version}"));
}

async fn a_run_key_moves_a_waiting_task(store: Arc<dyn Store>) {
    let manager = manager(store).await;
    let key = unique("run_key");
    let run_key = format!("reminder-{key}");
    let later = |ms| {
        EnqueueOptions::new()
            .run_key(run_key.clone())
            .run_at(Utc::now() + chrono::Duration::milliseconds(ms))
    };
    let first = manager.submit(keyed_reminder, (key.clone(), 1), later(60_000)).await.unwrap();
    let second = manager.submit(keyed_reminder, (key.clone(), 2), later(500)).await.unwrap();
    let moved = manager.wait_for(second, LONG).await.unwrap();
    assert_eq!(moved.status, TaskStatus::Success);
    let replaced = manager.store().get(&first).await.unwrap().unwrap();
    assert_eq!(replaced.status, TaskStatus::Cancelled);
    assert_eq!(notes(&key), ["ran 2"], "the replaced task never ran");
    // Cancelled by its key, it never runs either.
    let third = manager.submit(keyed_reminder, (key.clone(), 3), later(30_000)).await.unwrap();
    assert_eq!(manager.cancel_scheduled(&run_key).await.unwrap(), Some(third));
    assert_eq!(manager.cancel_scheduled(&run_key).await.unwrap(), None);
    let fourth = manager.submit(keyed_reminder, (key.clone(), 4), later(0)).await.unwrap();
    assert_eq!(manager.wait_for(fourth, LONG).await.unwrap().status, TaskStatus::Success);
    assert_eq!(manager.store().get(&third).await.unwrap().unwrap().status, TaskStatus::Cancelled);
    assert_eq!(notes(&key), ["ran 2", "ran 4"]);
    manager.shutdown(Duration::from_secs(5)).await;
}

async fn tasks_due_later_never_hold_up_a_due_one(store: Arc<dyn Store>) {
    let manager = TaskManager::builder()
        .shared_store(store)
        .concurrency(2)
        .poll_every(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let key = unique("later");
    let next_week = EnqueueOptions::new().run_at(Utc::now() + chrono::Duration::days(7));
    let tasks = manager.tasks();
    for _ in 0..2_000 {
        tasks.add_task_with(stamped, key.clone(), next_week.clone());
    }
    let now = manager.submit(stamped, key.clone(), EnqueueOptions::new()).await.unwrap();
    assert_eq!(manager.wait_for(now, LONG).await.unwrap().status, TaskStatus::Success);
    assert_eq!(notes(&key), ["ran"], "only the due one ran");
    manager.shutdown(Duration::from_secs(5)).await;
}

on_every_store!(
    a_retry_waits_in_the_store,
    a_fatal_error_fails_at_once,
    a_snooze_uses_no_attempt,
    a_task_runs_at_its_time,
    a_run_key_moves_a_waiting_task,
    tasks_due_later_never_hold_up_a_due_one,
);
