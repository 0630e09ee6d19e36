//! Progress reports: written to the record while the task runs (each poll interval) and as
//! it ends, from async and blocking code, on the SQLite store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskflow::{TaskId, TaskManager, TaskStatus, task, task_context};
use tokio::sync::Notify;

use crate::support::{unique, wait_until};

const PATIENCE: Duration = Duration::from_secs(60);

/// Each test's gate, by key: the task waits at it until the test opens it.
fn gates() -> &'static Mutex<std::collections::HashMap<String, Arc<Notify>>> {
    static GATES: std::sync::OnceLock<Mutex<std::collections::HashMap<String, Arc<Notify>>>> =
        std::sync::OnceLock::new();
    GATES.get_or_init(Default::default)
}

fn gate(key: &str) -> Arc<Notify> {
    Arc::clone(gates().lock().unwrap().entry(key.to_owned()).or_default())
}

#[task]
async fn reports_then_waits(key: String) {
    let ctx = task_context().expect("in a task");
    for done in 1..=40 {
        ctx.progress(done, 100);
    }
    ctx.progress_with(40, 100, "waiting at the gate");
    gate(&key).notified().await;
    ctx.progress(100, 100);
}

#[task]
fn reports_from_blocking_code(rows: u64) {
    let ctx = task_context().expect("in a task");
    for row in 1..=rows {
        ctx.progress_with(row, rows, format!("row {row}"));
    }
}

async fn manager() -> (TaskManager, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let manager = TaskManager::builder()
        .sqlite(dir.path().join("tasks.db"))
        .poll_every(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    (manager, dir)
}

async fn record(manager: &TaskManager, id: TaskId) -> taskflow::TaskRecord {
    manager.store().get(&id).await.unwrap().expect("stored")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_written_while_a_task_runs_and_as_it_ends() {
    let (manager, _dir) = manager().await;
    let key = unique("progress");
    let id = manager.add_task(reports_then_waits, key.clone());
    let running =
        wait_until(PATIENCE, "the first report", || async { record(&manager, id).await.progress })
            .await;
    assert_eq!((running.done, running.total), (40, 100));
    assert_eq!(running.message.as_deref(), Some("waiting at the gate"));
    assert_eq!(record(&manager, id).await.status, TaskStatus::Running);
    gate(&key).notify_one();
    let done = wait_until(PATIENCE, "the task to end", || async {
        let record = record(&manager, id).await;
        (record.status == TaskStatus::Success).then_some(record)
    })
    .await;
    let last = done.progress.clone().expect("the last report, written as it ended");
    assert_eq!((last.done, last.total), (100, 100));
    assert_eq!(last.message.as_deref(), Some("waiting at the gate"), "a message stays");
    let json = serde_json::to_value(&done).unwrap();
    assert_eq!(json["progress"]["done"], 100);
    manager.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_code_reports_and_a_task_that_never_does_has_none() {
    let (manager, _dir) = manager().await;
    let id = manager.add_task(reports_from_blocking_code, 10_000);
    let done = wait_until(PATIENCE, "the task to end", || async {
        let record = record(&manager, id).await;
        (record.status == TaskStatus::Success).then_some(record)
    })
    .await;
    let last = done.progress.expect("reported");
    assert_eq!(
        (last.done, last.total, last.message.as_deref()),
        (10_000, 10_000, Some("row 10000"))
    );
    let quiet = manager.add_task(reports_from_blocking_code, 0);
    let quiet = wait_until(PATIENCE, "the quiet task", || async {
        let record = record(&manager, quiet).await;
        (record.status == TaskStatus::Success).then_some(record)
    })
    .await;
    assert_eq!(quiet.progress, None);
    manager.shutdown(Duration::from_secs(10)).await;
}
