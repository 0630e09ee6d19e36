//! Waiting tasks across a real restart: an app process is SIGKILLed while a task waits for
//! its retry, or for its `run_at`, and started again on the same SQLite file. The wait is in
//! the store, so the task runs when due, with the right attempt number, once.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use taskflow::{TaskId, TaskStatus};

use crate::crash::{App, start};
use crate::support::wait_until;

const LONG: Duration = Duration::from_secs(60);

/// One line of the runs file: a start of `id` in process `pid`, attempt `attempt`, at `at`.
struct Start {
    pid: String,
    attempt: u32,
    at: chrono::DateTime<chrono::Utc>,
}

fn starts(runs: &Path, id: TaskId) -> Vec<Start> {
    let log = std::fs::read_to_string(runs).unwrap_or_default();
    log.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            (words.get(1) == Some(&id.to_string().as_str())).then(|| Start {
                pid: words[2].to_owned(),
                attempt: words[3].parse().unwrap(),
                at: chrono::DateTime::from_timestamp_micros(words[4].parse().unwrap()).unwrap(),
            })
        })
        .collect()
}

async fn enqueue(app: &App, kind: &str) -> TaskId {
    let url = format!("{}/enqueue/{kind}/1", app.base);
    let body: Value = reqwest::Client::new().post(url).send().await.unwrap().json().await.unwrap();
    body["id"].as_str().unwrap().parse().unwrap()
}

async fn record(app: &App, id: TaskId) -> Value {
    let url = format!("{}/tasks/{id}", app.base);
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

fn status(record: &Value) -> TaskStatus {
    serde_json::from_value(record["status"].clone()).unwrap()
}

fn time(record: &Value, key: &str) -> chrono::DateTime<chrono::Utc> {
    serde_json::from_value(record[key].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_killed_during_its_retry_backoff_retries_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("tasks.db").display().to_string();
    let runs = dir.path().join("runs.log");
    let mut first = start(&database, &runs, &[]).await;
    let id = enqueue(&first, "flaky").await;
    let waiting = wait_until(LONG, "the first attempt to fail", || async {
        let record = record(&first, id).await;
        (status(&record) == TaskStatus::Pending && record["retries_used"] == 1).then_some(record)
    })
    .await;
    let due = time(&waiting, "scheduled_at");
    first.child.kill().await.unwrap(); // SIGKILL, during the 2 s backoff
    let second = start(&database, &runs, &[]).await;
    let done = wait_until(LONG, "the retry to run after the restart", || async {
        let record = record(&second, id).await;
        status(&record).is_finished().then_some(record)
    })
    .await;
    assert_eq!(status(&done), TaskStatus::Success, "{done}");
    assert_eq!(done["retries_used"], 1, "one retry used: {done}");
    let runs = starts(&runs, id);
    assert_eq!(runs.len(), 2, "the failed attempt, then the retry, nothing repeated");
    assert_eq!((runs[0].attempt, runs[1].attempt), (0, 1));
    assert_ne!(runs[0].pid, runs[1].pid, "the retry ran in the restarted process");
    assert!(runs[1].at >= due, "the retry waited for its due time: {} < {due}", runs[1].at);
    println!("retry across a SIGKILL: due {due}, ran {} after it", runs[1].at - due);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_scheduled_for_later_survives_a_restart_and_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("tasks.db").display().to_string();
    let runs = dir.path().join("runs.log");
    let mut first = start(&database, &runs, &[]).await;
    let id = enqueue(&first, "later").await;
    let waiting = record(&first, id).await;
    assert_eq!(status(&waiting), TaskStatus::Pending);
    let due = time(&waiting, "scheduled_at");
    first.child.kill().await.unwrap();
    assert!(starts(&runs, id).is_empty(), "not run before its time");
    let second = start(&database, &runs, &[]).await;
    let done = wait_until(LONG, "the task to run at its time", || async {
        let record = record(&second, id).await;
        status(&record).is_finished().then_some(record)
    })
    .await;
    assert_eq!(status(&done), TaskStatus::Success, "{done}");
    let runs = starts(&runs, id);
    assert_eq!(runs.len(), 1, "once");
    assert!(runs[0].at >= due, "at its time: {} < {due}", runs[0].at);
    println!("run_at across a SIGKILL: due {due}, ran {} after it", runs[0].at - due);
}
