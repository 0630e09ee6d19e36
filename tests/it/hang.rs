//! The database hangs: PostgreSQL, MySQL/MariaDB or Redis behind a proxy that holds every
//! connection open and lets no byte through. Enqueues answer `503` within the store's
//! timeouts (never hanging for the outage), the app keeps serving, nothing acknowledged is
//! lost, and enqueues work again once the database answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use taskflow::{StoreTimeouts, TaskManager, TaskStatus, Tasks, task};
use tokio::net::TcpListener;

use crate::conformance::postgres_schema;
use crate::outage::Proxy;
use crate::support::{note, notes, unique};

const TIMEOUTS: StoreTimeouts =
    StoreTimeouts { operation: Duration::from_secs(2), bulk: Duration::from_secs(10) };

#[task]
async fn after_hang(key: String) {
    note(&key, "ran");
}

async fn enqueue(tasks: Tasks, key: String) -> String {
    tasks.add_task(after_hang, key).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hanging_answers_503_in_time() {
    let Some(schema) = postgres_schema().await else { return };
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let url = schema.url.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    let store = taskflow::PostgresStore::connect_with_pool_size(&url, 4).await.unwrap();
    hang(Arc::new(store), &proxy, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_hanging_answers_503_in_time() {
    let Some(url) = crate::conformance::mysql_url().await else { return };
    let proxy = Proxy::start("127.0.0.1:3306").await;
    let proxied = url.replacen("127.0.0.1:3306", &format!("127.0.0.1:{}", proxy.port), 1);
    let proxied = format!("{proxied}?prefer_socket=false");
    let store = taskflow::MysqlStore::connect_with_pool_size(&proxied, 4).await.unwrap();
    hang(Arc::new(store), &proxy, "mysql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hanging_answers_503_in_time() {
    let Ok(url) = std::env::var("TASKFLOW_TEST_REDIS_URL") else {
        println!("skipped: TASKFLOW_TEST_REDIS_URL is not set (.ci/run sets it)");
        return;
    };
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let proxied = url.replacen("127.0.0.1:6379", &format!("127.0.0.1:{}", proxy.port), 1);
    let prefix = format!("hang-{}", taskflow::TaskId::new());
    let store = taskflow::RedisStore::connect_with_prefix(&proxied, &prefix).await.unwrap();
    hang(Arc::new(store), &proxy, "redis").await;
}

async fn hang(store: Arc<dyn taskflow::Store>, proxy: &Proxy, backend: &str) {
    let manager =
        TaskManager::builder().shared_store(store).store_timeouts(TIMEOUTS).build().await.unwrap();
    let app = Router::new()
        .route("/enqueue", post(enqueue))
        .route("/health", get(|| async { "ok" }))
        .layer(manager.layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();

    let before = unique("before");
    let response = http.post(format!("{base}/enqueue")).body(before.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let acknowledged: taskflow::TaskId = response.text().await.unwrap().parse().unwrap();
    manager.wait_for(acknowledged, Duration::from_secs(30)).await.unwrap();

    proxy.freeze();
    let requests = (0..8).map(|_| {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let response = http.post(format!("{base}/enqueue")).body(unique("hung")).send().await;
            (response.map(|r| r.status().as_u16()), started.elapsed())
        })
    });
    let mut worst = Duration::ZERO;
    for request in requests {
        let (status, took) = request.await.unwrap();
        worst = worst.max(took);
        assert_eq!(status.unwrap(), 503, "{backend}: an enqueue during the hang is refused");
    }
    println!("{backend}: the worst enqueue answer during the hang took {worst:?}");
    // Generous against a busy machine: the bound is 2 s to write plus 2 s to read back; a
    // hang without timeouts would last until the proxy is restored below.
    assert!(worst < Duration::from_secs(30), "{backend}: {worst:?}");
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the app keeps serving");

    proxy.restore();
    let after = unique("after");
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let response = http.post(format!("{base}/enqueue")).body(after.clone()).send().await;
        if let Ok(response) = response
            && response.status() == 200
        {
            break response.text().await.unwrap().parse::<taskflow::TaskId>().unwrap();
        }
        assert!(Instant::now() < deadline, "{backend}: enqueues work again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let record = manager.wait_for(id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(record.status, TaskStatus::Success);
    assert!(notes(&after).contains(&"ran".to_owned()));
    let kept = manager.store().get(&acknowledged).await.unwrap().expect("acknowledged kept");
    assert_eq!(kept.status, TaskStatus::Success);
    assert_eq!(notes(&before), ["ran"]);
    manager.shutdown(Duration::from_secs(5)).await;
}
