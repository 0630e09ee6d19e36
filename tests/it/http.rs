//! The axum integration over real HTTP: a server on a random loopback port and a real client.

use std::time::Duration;

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use taskflow::{EnqueueOptions, TaskId, TaskManager, TaskStatus, Tasks, task};

use crate::support::{note, notes, unique, wait_until};

const LONG: Duration = Duration::from_secs(20);

#[task]
async fn welcome(key: String) -> String {
    note(&key, "ran");
    format!("welcomed {key}")
}

#[task]
fn area(width: u32, height: u32) -> u32 {
    width * height
}

#[derive(Deserialize)]
struct Probe {
    key: String,
    #[serde(default)]
    eager: bool,
}

/// Enqueues `welcome` for 40 keys at once with `add_tasks`, then gives them every chance to
/// start before the response: none may.
async fn bulk_signup(tasks: Tasks, Query(probe): Query<Probe>) -> Json<Value> {
    let keys: Vec<String> = (0..40).map(|n| format!("{}-{n}", probe.key)).collect();
    let ids = tasks.add_tasks(welcome, keys.clone());
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let started = keys.iter().any(|key| !notes(key).is_empty());
    Json(json!({ "task_ids": ids, "started_before_response": started }))
}

/// Enqueues `welcome`, then gives the task every chance to start before the response: it must
/// not, unless it is eager.
async fn signup(tasks: Tasks, Query(probe): Query<Probe>) -> Json<Value> {
    let options = EnqueueOptions::new().eager(probe.eager);
    let id = tasks.add_task_with(welcome, probe.key.clone(), options);
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let started = !notes(&probe.key).is_empty();
    Json(json!({ "task_id": id, "started_before_response": started }))
}

async fn shapes(tasks: Tasks, Path(shape): Path<String>) -> Response {
    let id = match shape.as_str() {
        "tuple" => tasks.add_task(area, (6, 7)),
        "by-name" => tasks.add_task(area, area::Args { width: 6, height: 7 }),
        "stub" => area::enqueue(&tasks, 6, 7),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    Json(json!({ "task_id": id })).into_response()
}

async fn send_invoice(tasks: Tasks, Path(number): Path<u64>, headers: HeaderMap) -> Json<Value> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| format!("invoice-{number}"), str::to_owned);
    let id =
        tasks.add_task_with(area, (number as u32, 1), EnqueueOptions::new().idempotency_key(key));
    Json(json!({ "task_id": id }))
}

async fn boom(tasks: Tasks, Query(probe): Query<Probe>) -> Json<Value> {
    tasks.add_task(welcome, probe.key);
    panic!("the handler crashed after enqueuing");
}

/// A task record by id: 400 for a malformed id, 404 for an unknown one, both as JSON.
async fn record(manager: axum::extract::State<TaskManager>, Path(raw): Path<String>) -> Response {
    let id: TaskId = match raw.parse() {
        Ok(id) => id,
        Err(err) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": err.to_string() })))
                .into_response();
        }
    };
    match manager.store().get(&id).await {
        Ok(Some(record)) => Json(record).into_response(),
        Ok(None) => {
            (StatusCode::NOT_FOUND, Json(json!({ "error": format!("task {id} not found") })))
                .into_response()
        }
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": err.to_string() })))
            .into_response(),
    }
}

struct Server {
    base: String,
    client: reqwest::Client,
    manager: TaskManager,
}

impl Server {
    async fn start() -> Server {
        let manager = TaskManager::builder().build().await.unwrap();
        let app = Router::new()
            .route("/signup", post(signup))
            .route("/bulk-signup", post(bulk_signup))
            .route("/shapes/{shape}", post(shapes))
            .route("/invoice/{number}/send", post(send_invoice))
            .route("/boom", post(boom))
            .route("/tasks/{id}", get(record))
            .with_state(manager.clone())
            .layer(manager.layer())
            .route("/no-layer", get(|_tasks: Tasks| async { "unreachable" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { base, client: reqwest::Client::new(), manager }
    }

    async fn post(&self, path: &str) -> Value {
        let response = self.client.post(format!("{}{path}", self.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "POST {path}");
        response.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Polls the HTTP record route until the task has finished.
    async fn finished(&self, id: &str) -> Value {
        wait_until(LONG, "the task to finish", || async {
            let (status, record) = self.get(&format!("/tasks/{id}")).await;
            assert_eq!(status, 200);
            let done: TaskStatus = serde_json::from_value(record["status"].clone()).unwrap();
            done.is_finished().then_some(record)
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_id_comes_back_at_once_and_the_task_runs_after_the_response() {
    let server = Server::start().await;
    let key = unique("after-response");
    let body = server.post(&format!("/signup?key={key}")).await;
    assert_eq!(body["started_before_response"], false);
    let id = body["task_id"].as_str().unwrap().to_owned();
    // The record existed as soon as the id did.
    let record = server.finished(&id).await;
    assert_eq!(record["status"], "success");
    assert_eq!(record["result"], json!(format!("welcomed {key}")));
    assert_eq!(record["args"], json!({ "key": key }));

    // The control: an eager task starts during the handler, which the probe sees.
    let key = unique("eager");
    let body = server.post(&format!("/signup?key={key}&eager=true")).await;
    assert_eq!(body["started_before_response"], true, "the probe can see an early start");
}

/// `add_tasks` in a handler: the batch is held like one task until the response is out, then
/// every task runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_batch_starts_after_the_response() {
    let server = Server::start().await;
    let key = unique("bulk-request");
    let body = server.post(&format!("/bulk-signup?key={key}")).await;
    assert_eq!(body["started_before_response"], false);
    let ids = body["task_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 40);
    for id in ids {
        let record = server.finished(id.as_str().unwrap()).await;
        assert_eq!(record["status"], "success");
    }
    for n in 0..40 {
        assert_eq!(notes(&format!("{key}-{n}")), ["ran"], "each ran once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuple_by_name_and_stub_calls_run_with_the_same_arguments() {
    let server = Server::start().await;
    for shape in ["tuple", "by-name", "stub"] {
        let id =
            server.post(&format!("/shapes/{shape}")).await["task_id"].as_str().unwrap().to_owned();
        let record = server.finished(&id).await;
        assert_eq!(record["status"], "success", "{shape}");
        assert_eq!(record["args"], json!({ "width": 6, "height": 7 }), "{shape}");
        assert_eq!(record["result"], json!(42), "{shape}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_idempotency_key_share_one_task() {
    let server = std::sync::Arc::new(Server::start().await);
    let key = unique("idem");
    let mut calls = Vec::new();
    for _ in 0..200 {
        let (server, key) = (std::sync::Arc::clone(&server), key.clone());
        calls.push(tokio::spawn(async move {
            let response = server
                .client
                .post(format!("{}/invoice/9/send", server.base))
                .header("idempotency-key", key)
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()["task_id"].as_str().unwrap().to_owned()
        }));
    }
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1);
    let record = server.finished(&ids[0]).await;
    assert_eq!(record["idempotency_key"], json!(key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_and_missing_layers_are_json_errors() {
    let server = Server::start().await;
    let (status, body) = server.get("/tasks/not-a-uuid").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid task id `not-a-uuid`: expected a UUID");
    let (status, body) = server.get(&format!("/tasks/{}", TaskId::new())).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().ends_with("not found"));
    let (status, body) = server.get("/no-layer").await;
    assert_eq!(status, 500);
    assert!(body["error"].as_str().unwrap().contains("no TaskManager layer"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_handler_that_panics_still_run() {
    let server = Server::start().await;
    let key = unique("panicking-handler");
    let result = server.client.post(format!("{}/boom?key={key}", server.base)).send().await;
    assert!(result.is_err() || result.unwrap().status().is_server_error());
    wait_until(LONG, "the enqueued task to run", || async {
        (!notes(&key).is_empty()).then_some(())
    })
    .await;
    let query = taskflow::TaskQuery {
        func_name: Some("welcome".into()),
        limit: Some(1000),
        ..Default::default()
    };
    let records = server.manager.store().list(&query).await.unwrap().tasks;
    assert!(records.iter().any(|r| r.args["key"] == json!(key)));
}
