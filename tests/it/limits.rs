//! Limits on what a task carries and produces: an oversized enqueue is a typed error (a `413`
//! in a request) that stores nothing, list pages carry previews of large arguments, and long
//! error text is cut with a marker.

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use taskflow::{EnqueueOptions, Error, Limits, TaskManager, TaskQuery, TaskStatus, Tasks, task};

const LONG: Duration = Duration::from_secs(20);

#[task]
async fn carries(blob: String) -> usize {
    blob.len()
}

#[task]
async fn fails_loudly(size: usize) -> Result<(), String> {
    Err("x".repeat(size))
}

async fn enqueue_blob(tasks: Tasks, body: String) -> String {
    tasks.add_task(carries, body).to_string()
}

async fn stored_count(manager: &TaskManager, func: &str) -> usize {
    let query =
        TaskQuery { func_name: Some(func.to_owned()), limit: Some(1000), ..Default::default() };
    manager.store().list(&query).await.unwrap().tasks.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_enqueues_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { max_args_bytes: 4096, ..Limits::default() };
    let manager = TaskManager::builder()
        .sqlite(dir.path().join("t.db"))
        .limits(limits)
        .build()
        .await
        .unwrap();
    let err = manager.submit(carries, "x".repeat(10_000), EnqueueOptions::new()).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { what: "arguments", limit: 4096, .. }), "{err}");
    let long_tag = EnqueueOptions::new().tag("k", "v".repeat(300));
    let err = manager.submit(carries, "ok".to_owned(), long_tag).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { what: "tag value", size: 300, limit: 256 }), "{err}");
    let long_key = EnqueueOptions::new().idempotency_key("k".repeat(1000));
    let err = manager.submit(carries, "ok".to_owned(), long_key).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { what: "idempotency key", .. }), "{err}");
    let many = EnqueueOptions::new().tags((0..40).map(|n| (format!("t{n}"), n)));
    assert!(matches!(
        manager.tasks().try_add_task(carries, "ok".to_owned(), many),
        Err(Error::TooLarge { what: "tags", size: 40, limit: 32 })
    ));
    assert_eq!(stored_count(&manager, "carries").await, 0, "nothing was stored");

    // Over HTTP: 413, and still nothing stored.
    let app = Router::new().route("/blob", post(enqueue_blob)).layer(manager.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let response = http.post(format!("{base}/blob")).body("y".repeat(10_000)).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("too large"), "{body}");
    let small = http.post(format!("{base}/blob")).body("small").send().await.unwrap();
    assert_eq!(small.status(), 200);
    let id: taskflow::TaskId = small.text().await.unwrap().parse().unwrap();
    assert_eq!(manager.wait_for(id, LONG).await.unwrap().status, TaskStatus::Success);
    assert_eq!(stored_count(&manager, "carries").await, 1, "only the small one");
    manager.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_carry_previews_and_errors_are_cut() {
    let manager = TaskManager::builder().build().await.unwrap();
    let big = manager.add_task(carries, "z".repeat(200_000));
    assert_eq!(manager.wait_for(big, LONG).await.unwrap().status, TaskStatus::Success);
    let loud = manager.add_task(fails_loudly, 100_000);
    let failed = manager.wait_for(loud, LONG).await.unwrap();
    assert_eq!(failed.status, TaskStatus::Failed);
    let error = failed.error.unwrap();
    assert!(error.len() < 17 * 1024, "{}", error.len());
    assert!(error.contains("bytes dropped]"), "the cut is marked");

    let app = manager.admin_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let page = reqwest::get(format!("{base}/tasks?func_name=carries")).await.unwrap();
    let text = page.text().await.unwrap();
    assert!(text.len() < 4096, "a list row is small: {} bytes", text.len());
    let page: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(page["tasks"][0]["args_truncated"], true);
    let whole: serde_json::Value =
        reqwest::get(format!("{base}/tasks/{big}")).await.unwrap().json().await.unwrap();
    assert_eq!(whole["args"]["blob"].as_str().unwrap().len(), 200_000, "the detail is whole");
    manager.shutdown(Duration::from_secs(5)).await;
}

#[task]
async fn verbose(lines: usize) {
    let wide = "w".repeat(1000);
    taskflow::task_log!("{wide}");
    for n in 0..lines {
        taskflow::task_log!("line {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_bounded_per_attempt_with_a_marker() {
    let limits = Limits { max_log_entries: 100, max_log_message_bytes: 64, ..Limits::default() };
    let manager = TaskManager::builder().limits(limits).build().await.unwrap();
    let id = manager.add_task(verbose, 1_500);
    let done = manager.wait_for(id, LONG).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    let logs = manager.store().get(&id).await.unwrap().unwrap().logs;
    assert_eq!(logs.len(), 101, "100 kept lines and the marker");
    assert!(logs[0].message.contains("1401 earlier log lines dropped"), "{}", logs[0].message);
    assert_eq!(logs[1].message, "line 1400", "the oldest were dropped");
    assert_eq!(logs[100].message, "line 1499", "the newest kept");

    let short = manager.add_task(verbose, 0);
    manager.wait_for(short, LONG).await.unwrap();
    let logs = manager.store().get(&short).await.unwrap().unwrap().logs;
    assert_eq!(logs.len(), 1);
    assert!(logs[0].message.len() < 128, "a long line is cut: {}", logs[0].message.len());
    assert!(logs[0].message.contains("bytes dropped]"), "{}", logs[0].message);
    manager.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_list_page_is_read_in_chunks_and_pages_on_correctly() {
    let manager = TaskManager::builder().build().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..130 {
        ids.push(manager.add_task(carries, format!("blob {n}")));
    }
    for id in &ids {
        manager.wait_for(*id, LONG).await.unwrap();
    }
    let app = manager.admin_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let get = |url: String| async move {
        reqwest::get(url).await.unwrap().json::<serde_json::Value>().await.unwrap()
    };
    let first = get(format!("{base}/tasks?func_name=carries&limit=120&sort=created_at")).await;
    let seen: Vec<String> = first["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(seen, expected[..120], "120 rows, oldest first, none twice");
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let rest =
        get(format!("{base}/tasks?func_name=carries&limit=120&sort=created_at&cursor={cursor}"))
            .await;
    let rest: Vec<&str> =
        rest["tasks"].as_array().unwrap().iter().map(|t| t["task_id"].as_str().unwrap()).collect();
    assert_eq!(rest, expected[120..], "the next page has the other 10");
    manager.shutdown(Duration::from_secs(5)).await;
}
