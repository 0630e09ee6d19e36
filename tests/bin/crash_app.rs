//! The app the crash test kills: it serves routes that durably enqueue tasks, and every task
//! start is appended to a file, so the test can count runs across processes.
//!
//! Usage: `CRASH_APP_RUNS=<runs-file> crash-app <database>`; prints `listening <url>` once it
//! serves. `<database>` is an SQLite file, or a URL shared with other instances: `postgres://`,
//! `mysql://`, or `redis://...#<key prefix>`;
//! `CRASH_APP_LEASE_MS` and `CRASH_APP_POLL_MS` shorten the lease and the polling interval;
//! `CRASH_APP_SCHEDULE=1` defines the schedule `every-second` (every second, catching up a
//! minute of missed slots) that fires `scheduled_work`.
//! Routes: `POST /enqueue/{requeued,plain,flaky,later}/{n}` (`flaky` fails its first attempt
//! and retries 2 s later, `later` runs 3 s after the request), `GET /tasks/{id}`, and
//! `GET /leader` (`{"leader": bool}`: whether this instance leads the maintenance), and
//! `GET /fired` (every task of the schedule `every-second`).

use std::io::Write;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use taskflow::{TaskId, TaskManager, Tasks, task, task_context};

/// Idempotent work: run again after a crash.
#[task(requeue_on_interrupt = true)]
async fn requeued_work(n: u64) -> u64 {
    started();
    tokio::time::sleep(Duration::from_millis(100)).await;
    n
}

/// Work that must not run twice: a crash leaves it `interrupted`.
#[task]
async fn plain_work(n: u64) -> u64 {
    started();
    tokio::time::sleep(Duration::from_millis(100)).await;
    n
}

/// Fails its first attempt; the retry is due 2 s later.
#[task(retries = 2, delay = "2s")]
async fn flaky_work(n: u64) -> Result<u64, String> {
    match started() {
        0 => Err("the first attempt fails".to_owned()),
        _ => Ok(n),
    }
}

/// A schedule's work: counted like the others; idempotent, so run again after a crash.
#[task(requeue_on_interrupt = true)]
async fn scheduled_work() {
    started();
}

/// Appends `start <task id> <process id> <attempt> <unix micros>` to the runs file, in one
/// write; returns the attempt.
fn started() -> u32 {
    let context = task_context();
    let id = context.as_ref().map(|c| c.task_id().to_string()).unwrap_or_default();
    let attempt = context.map_or(0, |c| c.attempt());
    let path = std::env::var("CRASH_APP_RUNS").expect("CRASH_APP_RUNS");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let (pid, at) = (std::process::id(), chrono::Utc::now().timestamp_micros());
    file.write_all(format!("start {id} {pid} {attempt} {at}\n").as_bytes()).unwrap();
    attempt
}

async fn enqueue(tasks: Tasks, Path((kind, n)): Path<(String, u64)>) -> Response {
    let id = match kind.as_str() {
        "requeued" => tasks.add_task(requeued_work, n),
        "plain" => tasks.add_task(plain_work, n),
        "flaky" => tasks.add_task(flaky_work, n),
        "later" => {
            let at = chrono::Utc::now() + chrono::Duration::seconds(3);
            tasks.add_task_with(plain_work, n, taskflow::EnqueueOptions::new().run_at(at))
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    Json(json!({ "id": id })).into_response()
}

async fn leader(State(manager): State<TaskManager>) -> Json<serde_json::Value> {
    Json(json!({ "leader": manager.is_leader() }))
}

async fn fired(State(manager): State<TaskManager>) -> Response {
    let mut query = taskflow::TaskQuery {
        tag: Some(("schedule".into(), "every-second".into())),
        limit: Some(1000),
        ..Default::default()
    };
    let mut tasks = Vec::new();
    loop {
        match manager.store().list(&query).await {
            Ok(page) => {
                tasks.extend(page.tasks);
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => return Json(tasks).into_response(),
                }
            }
            Err(err) => return (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response(),
        }
    }
}

async fn record(State(manager): State<TaskManager>, Path(id): Path<TaskId>) -> Response {
    match manager.store().get(&id).await {
        Ok(Some(record)) => Json(record).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() {
    let database = std::env::args().nth(1).expect("usage: crash-app <database>");
    assert!(std::env::var_os("CRASH_APP_RUNS").is_some(), "set CRASH_APP_RUNS");
    let millis = |name: &str| {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).map(Duration::from_millis)
    };
    let mut builder = TaskManager::builder();
    if let Some(lease) = millis("CRASH_APP_LEASE_MS") {
        builder = builder.lease(lease);
    }
    if let Some(poll) = millis("CRASH_APP_POLL_MS") {
        builder = builder.poll_every(poll);
    }
    let builder = if database.starts_with("postgres") {
        let store = taskflow::PostgresStore::connect_with_pool_size(&database, 8).await.unwrap();
        builder.store(store)
    } else if database.starts_with("mysql") {
        builder.store(taskflow::MysqlStore::connect_with_pool_size(&database, 8).await.unwrap())
    } else if let Some((url, prefix)) =
        database.split_once('#').filter(|_| database.starts_with("redis"))
    {
        builder.store(taskflow::RedisStore::connect_with_prefix(url, prefix).await.unwrap())
    } else {
        builder.sqlite(&database)
    };
    let manager = builder.build().await.unwrap();
    if std::env::var_os("CRASH_APP_SCHEDULE").is_some() {
        let every = taskflow::Schedule::every(Duration::from_secs(1)).unwrap();
        let every = every.catch_up(Duration::from_secs(60));
        manager.schedule("every-second", every, scheduled_work, ()).await.unwrap();
    }
    let app = Router::new()
        .route("/enqueue/{kind}/{n}", post(enqueue))
        .route("/tasks/{id}", get(record))
        .route("/leader", get(leader))
        .route("/fired", get(fired))
        .with_state(manager.clone())
        .layer(manager.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening http://{}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    axum::serve(listener, app).await.unwrap();
}
