//! Run with `cargo run --example basic_app`, then:
//!
//! ```sh
//! curl -X POST '127.0.0.1:8000/signup?email=a@b.c'
//! curl 127.0.0.1:8000/report/<task_id>
//! curl -X POST -H 'Idempotency-Key: send-42' 127.0.0.1:8000/invoice/42/send
//! curl -X POST -H 'content-type: application/json' -d '{"user_id": 7, "plan": "pro"}' 127.0.0.1:8000/invoice
//! curl '127.0.0.1:8000/tasks?status=failed'
//! ```
//!
//! and open the live dashboard at <http://127.0.0.1:8000/tasks/dashboard>.
//!
//! An axum app whose handlers enqueue background tasks that run after the response is sent.
//! Tasks are kept in the SQLite file `tasks.db` (or the path in `TASKFLOW_DB`): stop the app
//! with Ctrl-C or kill it, start it again, and pending tasks run, interrupted ones are
//! recorded. Set `TASKFLOW_ADDR` to serve elsewhere (default `127.0.0.1:8000`).
//!
//! Several instances behind a load balancer: give each the same `TASKFLOW_POSTGRES_URL` (the
//! tasks in PostgreSQL instead of SQLite), `TASKFLOW_ADMIN_USER` and
//! `TASKFLOW_ADMIN_PASSWORD` (the dashboard's login) and `TASKFLOW_SESSION_SECRET` (32 bytes or
//! more, so that a login on one instance is valid on all of them).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use taskflow::{
    EnqueueOptions, Queue, Schedule, StdoutObserver, TaskId, TaskManager, Tasks, task,
    task_context, task_log,
};

#[derive(Debug, thiserror::Error)]
#[error("the mail server refused {0}")]
struct EmailError(String);

/// Sends a welcome email; fails for `@bounce.example` addresses so retries can be seen (the
/// dashboard shows "retry 1 of 2 at ..." while it waits). Emails have a queue of their own.
#[task(retries = 2, delay = "2s", backoff = 2.0, queue = "emails")]
async fn send_email(address: String) -> Result<(), EmailError> {
    task_log!("sending welcome email", address = address);
    tokio::time::sleep(Duration::from_millis(200)).await;
    if address.ends_with("@bounce.example") {
        return Err(EmailError(address));
    }
    Ok(())
}

/// Builds a report on the blocking pool and returns it as the task's result; at most two at
/// once. Reports its progress row by row (the dashboard draws it as a bar) and stops early
/// when cancelled.
#[task(timeout = "30s", concurrency = 2)]
fn build_report(rows: u32) -> Result<Value, String> {
    let ctx = task_context().expect("running as a task");
    ctx.progress_with(0, rows.into(), "reading rows");
    for row in 1..=rows {
        if ctx.is_cancelled() {
            return Err(format!("cancelled at row {row}"));
        }
        std::thread::sleep(Duration::from_millis(3));
        ctx.progress(row.into(), rows.into());
    }
    Ok(json!({ "rows": rows, "total": u64::from(rows) * 42 }))
}

/// Sends an invoice; enqueued with an idempotency key so a retried request sends it once, and
/// safe to run again if the app dies while it runs.
#[task(retries = 3, delay = "1s", requeue_on_interrupt = true)]
async fn send_invoice(invoice_id: u64) -> anyhow::Result<String> {
    task_log!("sending invoice", invoice_id = invoice_id);
    Ok(format!("invoice {invoice_id} sent"))
}

/// Creates an invoice; reads the tags the handler set through the task context.
#[task]
async fn create_invoice(plan: String) -> Value {
    let ctx = task_context().expect("running as a task");
    task_log!("creating invoice", plan = plan, user_id = ctx.tags().get("user_id"));
    json!({ "plan": plan, "user_id": ctx.tags().get("user_id"), "attempt": ctx.attempt() })
}

/// Purges expired sessions every night at 03:00, Paris time: declared on the task, so every
/// instance defines it and the leader fires it once per night; a night missed while no
/// instance ran catches up within 6 hours; never two runs at once.
#[task(cron = "0 3 * * *", timezone = "Europe/Paris", catch_up = "6h", overlap = "skip")]
async fn purge_sessions() -> u32 {
    task_log!("purging expired sessions");
    0
}

#[derive(Deserialize)]
struct Signup {
    email: String,
}

async fn signup(tasks: Tasks, Query(signup): Query<Signup>) -> Json<Value> {
    let id = send_email::enqueue(&tasks, signup.email);
    Json(json!({ "task_id": id }))
}

#[derive(Deserialize)]
struct ReportRequest {
    #[serde(default = "default_rows")]
    rows: u32,
}

fn default_rows() -> u32 {
    100
}

async fn start_report(tasks: Tasks, Query(request): Query<ReportRequest>) -> Json<Value> {
    let id = tasks.add_task(build_report, request.rows);
    Json(json!({ "task_id": id }))
}

/// The task's record, `404` when unknown, `400` when the id is not a UUID; errors are JSON.
async fn report(State(manager): State<TaskManager>, Path(raw): Path<String>) -> Response {
    let id: TaskId = match raw.parse() {
        Ok(id) => id,
        Err(err) => return error(StatusCode::BAD_REQUEST, err.to_string()),
    };
    match manager.store().get(&id).await {
        Ok(Some(record)) => Json(record).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("task {id} not found")),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

async fn send_invoice_route(
    tasks: Tasks,
    Path(invoice_id): Path<u64>,
    headers: HeaderMap,
) -> Json<Value> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| format!("send-invoice-{invoice_id}"), str::to_owned);
    let options = EnqueueOptions::new().idempotency_key(key);
    let id = send_invoice::enqueue_with(&tasks, options, invoice_id);
    Json(json!({ "task_id": id }))
}

#[derive(Deserialize)]
struct NewInvoice {
    user_id: u64,
    plan: String,
}

async fn new_invoice(tasks: Tasks, Json(invoice): Json<NewInvoice>) -> Json<Value> {
    let options = EnqueueOptions::new().tag("user_id", invoice.user_id).tag("plan", &invoice.plan);
    let id = tasks.add_task_with(create_invoice, invoice.plan, options);
    Json(json!({ "task_id": id }))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The admin router's settings from the environment: a login when `TASKFLOW_ADMIN_USER` and
/// `TASKFLOW_ADMIN_PASSWORD` are set, sessions shared by the instances given one
/// `TASKFLOW_SESSION_SECRET`.
fn admin(manager: &TaskManager) -> taskflow::Result<taskflow::Admin> {
    let mut admin = manager.admin();
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    if let (Some(user), Some(password)) =
        (var("TASKFLOW_ADMIN_USER"), var("TASKFLOW_ADMIN_PASSWORD"))
    {
        admin = admin.basic_auth(user, password);
    }
    if let Some(secret) = var("TASKFLOW_SESSION_SECRET") {
        admin = admin.session_secret(secret)?;
    }
    Ok(admin)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let (builder, database) = match env("TASKFLOW_POSTGRES_URL") {
        Some(url) => {
            let store = taskflow::PostgresStore::connect(&url).await?;
            (TaskManager::builder().store(store), "PostgreSQL".to_owned())
        }
        None => {
            let database = env("TASKFLOW_DB").unwrap_or_else(|| "tasks.db".to_owned());
            (TaskManager::builder().sqlite(&database), database)
        }
    };
    let manager = builder
        .observer(StdoutObserver)
        .queue("emails", Queue::new().concurrency(4).max_pending(10_000))
        .build()
        .await?;
    // A schedule with arguments, defined at run time: a 1000-row report every Monday at 08:00.
    let weekly = Schedule::cron("0 8 * * MON")?.timezone("Europe/Paris")?;
    manager.schedule("weekly-report", weekly, build_report, 1000).await?;
    let app = Router::new()
        .route("/signup", post(signup))
        .route("/report", post(start_report))
        .route("/report/{task_id}", get(report))
        .route("/invoice/{invoice_id}/send", post(send_invoice_route))
        .route("/invoice", post(new_invoice))
        .with_state(manager.clone())
        .merge(admin(&manager)?.router())
        .layer(manager.layer());

    let addr = std::env::var("TASKFLOW_ADDR").unwrap_or_else(|_| "127.0.0.1:8000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;
    println!("taskflow basic_app listening on http://{addr} (tasks in {database})");
    println!("dashboard: http://{addr}/tasks/dashboard");
    let shutdown = manager.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Stop the manager first: running tasks get 10s to finish, tasks not started stay
            // pending for the next start, and the dashboard's live streams end, so the server
            // can then close its connections.
            println!("shutting down: running tasks get 10s to finish");
            shutdown.shutdown(Duration::from_secs(10)).await;
        })
        .await?;
    Ok(())
}
