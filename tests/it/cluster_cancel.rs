//! Cancel anywhere: a task running on instance B is cancelled through instance A (its API and
//! its manager), on PostgreSQL, MySQL/MariaDB and Redis. A runs no queue, so every task runs on
//! B; B learns of the request from the store within its poll interval.

use std::time::Duration;

use serde_json::Value;
use taskflow::{EnqueueOptions, TaskId, TaskManager, TaskStatus, task, task_context};

use crate::multi::{Instance, Shared, instance_with, serve_admin as serve};
use crate::support::{note, notes, unique, wait_until};

/// Generous: a busy 2-core machine running a debug build.
const PATIENCE: Duration = Duration::from_secs(60);

#[task]
async fn waits_to_be_cancelled(key: String) {
    note(&key, "started");
    std::future::pending::<()>().await;
}

/// Blocking code cannot be stopped at an await point: it asks.
#[task]
fn checks_for_cancel(key: String) -> Result<(), String> {
    let ctx = task_context().expect("in a task");
    note(&key, "started");
    while !ctx.is_cancelled() {
        std::thread::sleep(Duration::from_millis(5));
    }
    note(&key, "saw the cancel");
    Err("stopped".to_owned())
}

async fn status(manager: &TaskManager, id: TaskId) -> TaskStatus {
    manager.store().get(&id).await.unwrap().expect("stored").status
}

async fn until_status(manager: &TaskManager, id: TaskId, wanted: TaskStatus) {
    wait_until(PATIENCE, &format!("task {id} {wanted}"), || async move {
        (status(manager, id).await == wanted).then_some(())
    })
    .await;
}

async fn cancel_on_a_stops_a_task_running_on_b(shared: Shared) {
    let poll = Duration::from_millis(200);
    let a: Instance =
        instance_with(shared.clone(), move |b| b.run_queues([] as [&str; 0]).poll_every(poll));
    let b: Instance = instance_with(shared, move |b| b.poll_every(poll));
    let (api, client) = (serve(&a.manager).await, reqwest::Client::new());

    // Async: stopped at its await point, through A's API.
    let key = unique("cancel-async");
    let id = a.manager.submit(waits_to_be_cancelled, key.clone(), EnqueueOptions::new()).await;
    let id = id.unwrap();
    until_status(&a.manager, id, TaskStatus::Running).await;
    wait_until(PATIENCE, "the task on B", || async { (!notes(&key).is_empty()).then_some(()) })
        .await;
    let response = client.post(format!("{api}/{id}/cancel")).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["outcome"].as_str(), body["task"]["status"].as_str()),
        (Some("cancelling"), Some("running"))
    );
    until_status(&a.manager, id, TaskStatus::Cancelled).await;
    let again = client.post(format!("{api}/{id}/cancel")).send().await.unwrap();
    assert_eq!(again.status(), reqwest::StatusCode::OK);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["task"]["status"], "cancelled");

    // Blocking: returns early once it sees the request, through A's manager.
    let key = unique("cancel-blocking");
    let id = a.manager.submit(checks_for_cancel, key.clone(), EnqueueOptions::new()).await;
    let id = id.unwrap();
    until_status(&a.manager, id, TaskStatus::Running).await;
    wait_until(PATIENCE, "the task on B", || async { (!notes(&key).is_empty()).then_some(()) })
        .await;
    assert_eq!(a.manager.cancel(id).await.unwrap(), taskflow::CancelOutcome::Cancelling);
    until_status(&a.manager, id, TaskStatus::Cancelled).await;
    wait_until(PATIENCE, "the blocking code to return", || async {
        notes(&key).contains(&"saw the cancel".to_owned()).then_some(())
    })
    .await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_one_instance_stops_a_task_on_another_on_postgres() {
    if let Some(shared) = Shared::postgres().await {
        cancel_on_a_stops_a_task_running_on_b(shared).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_one_instance_stops_a_task_on_another_on_mysql() {
    if let Some(shared) = Shared::mysql().await {
        cancel_on_a_stops_a_task_running_on_b(shared).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_one_instance_stops_a_task_on_another_on_redis() {
    if let Some(shared) = Shared::redis().await {
        cancel_on_a_stops_a_task_running_on_b(shared).await;
    }
}
