//! The database goes away and comes back: PostgreSQL, MySQL/MariaDB or Redis behind a TCP
//! proxy that the test cuts.
//! The app keeps serving, enqueues fail clearly while the store is unreachable, running tasks'
//! results are written once it returns, and no task a client holds an id for is lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use taskflow::{EnqueueOptions, TaskManager, TaskStatus, Tasks, task};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::conformance::postgres_schema;
use crate::support::{note, notes, unique, wait_until};

/// A TCP proxy to `target` that can be cut (every connection dropped, new ones refused),
/// frozen (connections held open, new ones accepted, no byte passing either way) and restored.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    frozen: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Copies `from` to `to`, holding every byte while `frozen`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        while frozen.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    pub(crate) async fn start(target: &'static str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (accepting, tracked, held) = (up.clone(), links.clone(), frozen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { return };
                if !accepting.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the database is "down"
                }
                let held = held.clone();
                let link = tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else { return };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    let up = tokio::spawn(pump(in_read, out_write, held.clone()));
                    pump(out_read, in_write, held).await;
                    up.abort();
                });
                tracked.lock().unwrap().push(link);
            }
        });
        Proxy { port, up, frozen, links }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Connections stay open and new ones are accepted, but nothing passes: a hung server.
    pub(crate) fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn restore(&self) {
        self.frozen.store(false, std::sync::atomic::Ordering::SeqCst);
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[task]
async fn outlives_outage(key: String) -> String {
    note(&key, "started");
    while !notes(&key).iter().any(|n| n == "finish") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    key
}

#[task]
async fn quick(key: String) {
    note(&key, "ran");
}

async fn enqueue(tasks: Tasks, key: String) -> String {
    tasks.add_task(quick, key).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_and_back_loses_nothing() {
    let Some(schema) = postgres_schema().await else { return };
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let url = schema.url.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(url, schema.url, "TASKFLOW_TEST_POSTGRES_URL names 127.0.0.1:5432");
    let store = taskflow::PostgresStore::connect_with_pool_size(&url, 4).await.unwrap();
    outage(Arc::new(store), &proxy, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_going_away_and_back_loses_nothing() {
    let Some(url) = crate::conformance::mysql_url().await else { return };
    let proxy = Proxy::start("127.0.0.1:3306").await;
    let proxied = url.replacen("127.0.0.1:3306", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(proxied, url, "TASKFLOW_TEST_MYSQL_URL names 127.0.0.1:3306");
    // mysql_async moves local connections to the server's Unix socket unless told not to.
    let proxied = format!("{proxied}?prefer_socket=false");
    let store = taskflow::MysqlStore::connect_with_pool_size(&proxied, 4).await.unwrap();
    outage(Arc::new(store), &proxy, "mysql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_and_back_loses_nothing() {
    let Ok(url) = std::env::var("TASKFLOW_TEST_REDIS_URL") else {
        println!("skipped: TASKFLOW_TEST_REDIS_URL is not set (.ci/run sets it)");
        return;
    };
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let proxied = url.replacen("127.0.0.1:6379", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(proxied, url, "TASKFLOW_TEST_REDIS_URL names 127.0.0.1:6379");
    let prefix = format!("outage-{}", taskflow::TaskId::new());
    let store = taskflow::RedisStore::connect_with_prefix(&proxied, &prefix).await.unwrap();
    outage(Arc::new(store), &proxy, "redis").await;
}

/// With `store` behind `proxy`: cut the database while a task runs and requests come in, then
/// bring it back.
async fn outage(store: Arc<dyn taskflow::Store>, proxy: &Proxy, backend: &str) {
    let manager = TaskManager::builder().shared_store(store).build().await.unwrap();
    let app = Router::new().route("/enqueue", post(enqueue)).layer(manager.layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();

    let key = unique("outage");
    let running =
        manager.submit(outlives_outage, key.clone(), EnqueueOptions::new()).await.unwrap();
    wait_until(Duration::from_secs(20), "the task to start", || async {
        notes(&key).contains(&"started".to_owned()).then_some(())
    })
    .await;

    proxy.cut();
    // While the database is away: enqueues fail clearly, the app keeps serving, and the
    // running task finishes in memory, its result waiting to be written.
    let err = manager.submit(quick, unique("refused"), EnqueueOptions::new()).await.unwrap_err();
    assert!(err.to_string().contains(backend), "{err}");
    let response =
        http.post(format!("{base}/enqueue")).body(unique("refused")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("could not enqueue"), "{body}");
    note(&key, "finish");
    tokio::time::sleep(Duration::from_millis(300)).await;

    proxy.restore();
    let record = manager.wait_for(running, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        record.status,
        TaskStatus::Success,
        "{backend}: the result was written once it came back"
    );
    assert_eq!(record.result, Some(serde_json::json!(key)));
    let after = unique("after");
    let response = http.post(format!("{base}/enqueue")).body(after.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200, "{backend}: enqueues work again");
    let id: taskflow::TaskId = response.text().await.unwrap().parse().unwrap();
    assert_eq!(
        manager.wait_for(id, Duration::from_secs(20)).await.unwrap().status,
        TaskStatus::Success
    );
    assert_eq!(notes(&after), ["ran"]);
    manager.shutdown(Duration::from_secs(5)).await;
}
