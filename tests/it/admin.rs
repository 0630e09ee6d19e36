//! The admin API over real HTTP: every route, bad input, authentication, CSRF, redaction and
//! the live stream.

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};
use taskflow::{Admin, EnqueueOptions, TaskId, TaskManager, TaskStatus, Tasks, task};

use crate::support::{note, notes, unique, wait_until};

pub(crate) const LONG: Duration = Duration::from_secs(20);

#[task]
pub(crate) async fn admin_ok(key: String) -> String {
    note(&key, "ran");
    key
}

#[task]
pub(crate) async fn admin_fails(key: String, secret: String) -> Result<(), String> {
    note(&key, "ran");
    Err(format!("refused <b>{}</b>", secret.len()))
}

#[task]
pub(crate) async fn admin_hangs(key: String) {
    note(&key, "started");
    std::future::pending::<()>().await;
}

async fn enqueue_ok(tasks: Tasks, body: String) -> String {
    tasks.add_task(admin_ok, body).to_string()
}

pub(crate) struct Server {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) manager: TaskManager,
}

impl Server {
    pub(crate) async fn start(configure: impl FnOnce(Admin) -> Admin) -> Server {
        let manager = TaskManager::builder().build().await.unwrap();
        let app = Router::new()
            .route("/enqueue", post(enqueue_ok))
            .merge(configure(manager.admin()).router())
            .layer(manager.layer());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { base, client: reqwest::Client::new(), manager }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, body)
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path))).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.client.post(self.url(path)).json(&body)).await
    }

    pub(crate) async fn finished(&self, id: TaskId) -> taskflow::TaskRecord {
        self.manager.wait_for(id, LONG).await.unwrap()
    }
}

pub(crate) fn ids(body: &Value) -> Vec<String> {
    body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("no error in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_pages_and_rejects_bad_parameters() {
    let server = Server::start(|a| a).await;
    let key = unique("list");
    let mut created = Vec::new();
    for n in 0..5 {
        let options = EnqueueOptions::new().tag("batch", &key).tag("n", n);
        created.push(server.manager.add_task_with(admin_ok, key.clone(), options));
    }
    let failed = server.manager.add_task(admin_fails, (key.clone(), "pw".to_owned()));
    for id in &created {
        server.finished(*id).await;
    }
    server.finished(failed).await;

    let tag = format!("batch:{key}");
    let (status, page) = server.get(&format!("/tasks?tag={tag}&limit=2")).await;
    assert_eq!(status, 200);
    let expected: Vec<String> = created.iter().rev().map(TaskId::to_string).collect();
    assert_eq!(ids(&page), expected[..2]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, second) = server.get(&format!("/tasks?tag={tag}&limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&second), expected[2..4]);
    let (_, oldest) = server.get(&format!("/tasks?tag={tag}&sort=created_at&limit=1")).await;
    assert_eq!(ids(&oldest), [created[0].to_string()]);
    let (_, failures) = server.get("/tasks?status=failed&func_name=admin_fails&since=1h").await;
    assert!(ids(&failures).contains(&failed.to_string()));
    // Ids start with their creation time: a prefix that reaches the random part finds one.
    let prefix = &created[3].to_string()[..28];
    let (_, found) = server.get(&format!("/tasks?q={prefix}")).await;
    assert_eq!(ids(&found), [created[3].to_string()]);
    let (_, none) = server.get(&format!("/tasks?tag={tag}&until=2000-01-01T00:00:00Z")).await;
    assert!(ids(&none).is_empty());

    for (query, parameter) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("since=yesterday", "since"),
        ("tag=nocolon", "tag"),
        ("sort=duration", "sort"),
        ("cursor=zzz", "cursor"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = server.get(&format!("/tasks?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(error_of(&body).contains(&format!("`{parameter}`")), "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_logs_and_errors_for_unknown_or_malformed_ids() {
    let server = Server::start(|a| a).await;
    let id = server.manager.add_task(admin_ok, unique("get"));
    server.finished(id).await;
    let (status, record) = server.get(&format!("/tasks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(record["status"], "success");
    assert_eq!(record["func_name"], "admin_ok");
    let (status, logs) = server.get(&format!("/tasks/{id}/logs")).await;
    assert_eq!(status, 200);
    assert_eq!(logs["task_id"], id.to_string());
    assert!(logs["logs"].is_array());

    let unknown = TaskId::new();
    for path in [format!("/tasks/{unknown}"), format!("/tasks/{unknown}/logs")] {
        let (status, body) = server.get(&path).await;
        assert_eq!(status, 404, "{path}");
        assert!(error_of(&body).contains("not found"));
    }
    let (status, body) = server.post(&format!("/tasks/{unknown}/retry"), json!({})).await;
    assert_eq!(status, 404, "{body}");
    for path in ["/tasks/not-a-uuid", "/tasks/123/logs"] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}");
        assert!(error_of(&body).contains("not a task id"));
    }
    let (status, body) = server.post("/tasks/xyz/cancel", json!({})).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_makes_a_new_linked_task_and_refuses_unfinished_or_successful_ones() {
    let server = Server::start(|a| a).await;
    let key = unique("retry");
    let failed = server.manager.add_task(admin_fails, (key.clone(), "pw".to_owned()));
    assert_eq!(server.finished(failed).await.status, TaskStatus::Failed);
    let (status, body) = server.post(&format!("/tasks/{failed}/retry"), json!({})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["retry_of"], failed.to_string());
    let new: TaskId = body["task_id"].as_str().unwrap().parse().unwrap();
    assert_ne!(new, failed);
    let record = server.finished(new).await;
    assert_eq!(record.retry_of, Some(failed));
    assert_eq!(serde_json::to_value(record.source).unwrap(), "retry");
    assert_eq!(record.args, json!({ "key": key, "secret": "pw" }));
    assert_eq!(notes(&key).len(), 2, "the retry ran the function again");
    let original = server.manager.store().get(&failed).await.unwrap().unwrap();
    assert_eq!(original.status, TaskStatus::Failed, "the original stays in history");

    let ok = server.manager.add_task(admin_ok, unique("retry-ok"));
    server.finished(ok).await;
    let (status, body) = server.post(&format!("/tasks/{ok}/retry"), json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(error_of(&body).contains("success"));

    let (status, audit) = server.get("/tasks/audit").await;
    assert_eq!(status, 200);
    let entry = &audit["entries"][0];
    assert_eq!(entry["action"], "retry");
    assert_eq!(entry["actor"], "anonymous");
    assert_eq!(entry["task_id"], failed.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_pending_and_running_tasks_and_refuses_finished_ones() {
    let server = Server::start(|a| a).await;
    let later = server.manager.add_task_with(
        admin_ok,
        unique("later"),
        EnqueueOptions::new().delay(Duration::from_secs(3600)),
    );
    let (status, body) = server.post(&format!("/tasks/{later}/cancel"), json!({})).await;
    assert_eq!((status, body["outcome"].as_str()), (StatusCode::OK, Some("cancelled")));
    assert_eq!(server.finished(later).await.status, TaskStatus::Cancelled);

    let key = unique("hang");
    let running = server.manager.add_task(admin_hangs, key.clone());
    wait_until(LONG, "the task to start", || async {
        notes(&key).contains(&"started".to_owned()).then_some(())
    })
    .await;
    let (status, body) = server.post(&format!("/tasks/{running}/cancel"), json!({})).await;
    assert_eq!((status, body["outcome"].as_str()), (StatusCode::ACCEPTED, Some("cancelling")));
    assert_eq!(body["task"]["task_id"], running.to_string());
    assert_eq!(server.finished(running).await.status, TaskStatus::Cancelled);

    // Cancelled already: done, with the task.
    let (status, body) = server.post(&format!("/tasks/{running}/cancel"), json!({})).await;
    assert_eq!((status, body["task"]["status"].as_str()), (StatusCode::OK, Some("cancelled")));

    let done = server.manager.add_task(admin_ok, unique("done"));
    assert_eq!(server.finished(done).await.status, TaskStatus::Success);
    let (status, body) = server.post(&format!("/tasks/{done}/cancel"), json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(error_of(&body).contains("already finished"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_retry_replay_of_failures_and_history_deletion() {
    let server = Server::start(|a| a).await;
    let key = unique("bulk");
    let failed: Vec<TaskId> = (0..3)
        .map(|_| server.manager.add_task(admin_fails, (key.clone(), String::new())))
        .collect();
    for id in &failed {
        server.finished(*id).await;
    }
    let ok = server.manager.add_task(admin_ok, unique("bulk-ok"));
    server.finished(ok).await;

    let body = json!({ "ids": [failed[0].to_string(), ok.to_string()] });
    let (status, answer) = server.post("/tasks/bulk-retry", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["retried"].as_array().unwrap().len(), 1);
    assert_eq!(answer["retried"][0]["task_id"], failed[0].to_string());
    assert_eq!(answer["errors"][0]["task_id"], ok.to_string());
    for bad in [json!({ "ids": [] }), json!({ "ids": ["nope"] }), json!({ "id": [] }), json!("x")] {
        let (status, answer) = server.post("/tasks/bulk-retry", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    let raw = server
        .client
        .post(server.url("/tasks/bulk-retry"))
        .body("{not json")
        .header("content-type", "application/json");
    let (status, answer) = server.send(raw).await;
    assert_eq!(status, 400);
    assert!(error_of(&answer).contains("request body"));

    wait_until(LONG, "the first retry to fail too", || async {
        let (_, page) = server.get("/tasks?status=failed&func_name=admin_fails&limit=1000").await;
        (ids(&page).len() >= 4).then_some(())
    })
    .await;
    let replay = json!({ "func_name": "admin_fails", "since": "1h" });
    let (status, answer) = server.post("/tasks/retry-failed", replay).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["retried"].as_array().unwrap().len() >= 4);
    let (status, answer) = server.post("/tasks/retry-failed", json!({ "since": "soon" })).await;
    assert_eq!(status, 400, "{answer}");

    let (status, answer) = server.send(server.client.delete(server.url("/tasks/history"))).await;
    assert_eq!(status, 400);
    assert!(error_of(&answer).contains("`older_than`"));
    let delete = server.client.delete(server.url("/tasks/history?older_than=0s"));
    let (status, answer) = server.send(delete).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["deleted"].as_u64().unwrap() >= 1);
    let (status, _) = server.get(&format!("/tasks/{ok}")).await;
    assert_eq!(status, 404, "finished tasks were deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_in_json_and_prometheus_text() {
    let server = Server::start(|a| a).await;
    let key = unique("metrics");
    let runs = [
        server.manager.add_task(admin_ok, key.clone()),
        server.manager.add_task(admin_ok, key.clone()),
        server.manager.add_task(admin_ok, key.clone()),
        server.manager.add_task(admin_fails, (key.clone(), String::new())),
    ];
    for id in runs {
        server.finished(id).await;
    }
    let (status, metrics) = server.get("/tasks/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metrics["by_status"]["success"], 3);
    assert_eq!(metrics["by_status"]["failed"], 1);
    assert_eq!(metrics["total"], 4);
    let ok = metrics["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["func_name"] == "admin_ok")
        .unwrap();
    assert_eq!((ok["runs"].as_u64(), ok["successes"].as_u64()), (Some(3), Some(3)));
    assert_eq!(ok["success_rate"], 1.0);
    assert!(ok["p95_duration"].as_f64().unwrap() >= 0.0);
    let (status, body) = server.get("/tasks/metrics?since=never").await;
    assert_eq!(status, 400, "{body}");

    let response = server.client.get(server.url("/tasks/metrics/prometheus")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(text.contains("# TYPE taskflow_tasks gauge"));
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics ends so: {text}");
    assert!(text.contains("taskflow_tasks{status=\"success\"} 3"), "{text}");
    assert!(text.contains("taskflow_function_runs{func_name=\"admin_ok\"} 3"), "{text}");
    assert!(
        text.contains("taskflow_function_duration_seconds{func_name=\"admin_ok\",stat=\"p95\"}")
    );
}

/// Reads SSE events from `response` until `done` says enough (or the timeout passes).
async fn read_events(
    response: &mut reqwest::Response,
    mut done: impl FnMut(&[(String, String, String)]) -> bool,
) -> Vec<(String, String, String)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + LONG;
    while !done(&events) {
        let chunk =
            tokio::time::timeout_at(deadline, response.chunk()).await.expect("events in time");
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("stream open")));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v.to_owned();
                }
            }
            if !kind.is_empty() {
                events.push((id, kind, data));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_lifecycle_events_and_replays_after_a_reconnect() {
    let server = Server::start(|a| a).await;
    let mut stream = server.client.get(server.url("/tasks/stream")).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let first = read_events(&mut stream, |e| !e.is_empty()).await;
    assert_eq!(first[0].1, "snapshot");

    let id = server.client.post(server.url("/enqueue")).body(unique("sse")).send().await.unwrap();
    let id = id.text().await.unwrap();
    let events =
        read_events(&mut stream, |e| e.iter().any(|(_, _, d)| d.contains("succeeded"))).await;
    let kinds: Vec<Value> = events
        .iter()
        .filter(|(_, kind, _)| kind == "task")
        .map(|(_, _, data)| serde_json::from_str::<Value>(data).unwrap())
        .filter(|event| event["task_id"] == id.as_str())
        .map(|event| event["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("enqueued"), json!("started"), json!("succeeded")]);
    let last_id = events.iter().rev().find(|(_, kind, _)| kind == "task").unwrap().0.clone();
    drop(stream);

    // Missed while disconnected: replayed on reconnect with Last-Event-ID.
    let missed = server.manager.add_task(admin_ok, unique("missed"));
    server.finished(missed).await;
    let mut again = server
        .client
        .get(server.url("/tasks/stream"))
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    let replayed = read_events(&mut again, |e| {
        e.iter().any(|(_, _, d)| d.contains(&missed.to_string()) && d.contains("succeeded"))
    })
    .await;
    assert_ne!(replayed[0].1, "snapshot", "nothing was lost, so no snapshot");
    assert!(
        replayed
            .iter()
            .all(|(id, _, _)| id.parse::<u64>().unwrap() > last_id.parse::<u64>().unwrap())
    );
    // An id too old (or from another process) gets a fresh snapshot instead.
    let mut stale = server
        .client
        .get(server.url("/tasks/stream"))
        .header("last-event-id", "999999999")
        .send()
        .await
        .unwrap();
    let events = read_events(&mut stale, |e| !e.is_empty()).await;
    assert_eq!(events[0].1, "snapshot");
    assert!(events[0].2.contains("gap"));
}

/// `GET /tasks/export.csv`: the filtered tasks as CSV, every match and not one page, with the
/// same redaction as the API (the defusing of formula cells is unit-tested in `export.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filtered_tasks_export_as_csv() {
    let server = Server::start(|a| a.redact(["secret"])).await;
    let key = unique("csv");
    let mut ok = Vec::new();
    // More than the API's default page of 50: the export holds every match.
    for _ in 0..60 {
        ok.push(server.manager.add_task(admin_ok, key.clone()));
    }
    let formula = server.manager.add_task(admin_ok, "=HYPERLINK(\"http://evil\")".to_owned());
    let failed = server.manager.add_task(admin_fails, (key.clone(), "hunter2".to_owned()));
    for id in ok.iter().chain([&formula, &failed]) {
        server.finished(*id).await;
    }
    let response =
        server.client.get(server.url("/tasks/export.csv?func_name=admin_ok")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains("tasks.csv"));
    assert!(response.headers().get("x-taskflow-truncated").is_none());
    let body = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(&header[..4], ["task_id", "func_name", "queue", "status"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let ids: Vec<&str> = rows.iter().map(|row| &row[0]).collect();
    for id in ok.iter().chain([&formula]) {
        assert!(ids.contains(&id.to_string().as_str()), "{id} exported");
    }
    assert!(!ids.contains(&failed.to_string().as_str()), "the filter holds");
    assert!(rows.iter().all(|row| &row[1] == "admin_ok" && &row[3] == "success"));
    let args = header.iter().position(|c| c == "args").unwrap();
    let quoted = rows.iter().find(|row| row[0] == formula.to_string()).unwrap();
    assert_eq!(&quoted[args], r#"{"key":"=HYPERLINK(\"http://evil\")"}"#, "quoted, whole");

    let failed_rows = server.client.get(server.url("/tasks/export.csv?status=failed"));
    let body = failed_rows.send().await.unwrap().text().await.unwrap();
    assert!(!body.contains("hunter2"), "redacted as in the API: {body}");
    assert!(body.contains(&failed.to_string()));
    let (status, error) = server.get("/tasks/export.csv?status=nope").await;
    assert_eq!(status, 400, "the filters are checked as for GET /tasks: {error}");
}
