//! The admin API on a big store: 1,000,000 finished tasks in SQLite, and in PostgreSQL when
//! `TASKFLOW_TEST_POSTGRES_URL` is set, then the latency of the dashboard's requests, beside
//! a trivial JSON route of the same server.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use chrono::Utc;
use serde_json::json;
use taskflow::{Retention, SqliteStore, Store, TaskId, TaskRecord, TaskSource, TaskStatus};

use crate::Row;

const RECORDS: usize = 1_000_000;
const FUNCTIONS: [&str; 5] = ["send_email", "resize_image", "charge_card", "sync_crm", "report"];

pub(crate) fn finished(n: usize) -> TaskRecord {
    let created = Utc::now() - chrono::Duration::seconds((RECORDS - n) as i64);
    let failed = n.is_multiple_of(10);
    TaskRecord {
        task_id: TaskId::new(),
        func_name: FUNCTIONS[n % FUNCTIONS.len()].to_owned(),
        status: if failed { TaskStatus::Failed } else { TaskStatus::Success },
        created_at: created,
        start_time: Some(created),
        end_time: Some(created + chrono::Duration::milliseconds((n % 200) as i64)),
        duration: Some((n % 200) as f64 / 1000.0),
        retries_used: u32::from(failed) * 2,
        max_retries: 2,
        error: failed.then(|| "the mail server refused".to_owned()),
        stacktrace: failed.then(|| "the mail server refused".to_owned()),
        logs: Vec::new(),
        tags: BTreeMap::from([("user_id".to_owned(), (n % 1000).to_string())]),
        source: TaskSource::Manual,
        priority: 0,
        queue: taskflow::DEFAULT_QUEUE.to_owned(),
        args: json!({ "address": format!("user{n}@example.com") }),
        result: None,
        idempotency_key: None,
        run_key: None,
        scheduled_at: None,
        retry_of: None,
        requeue_on_interrupt: false,
        recoveries: 0,
        lease_owner: None,
        lease_expires_at: None,
        progress: None,
    }
}

/// Fills a store with [`RECORDS`] finished tasks, a window of writes in flight at a time.
async fn fill(store: &dyn Store, name: &str) {
    let started = Instant::now();
    for n in 0..RECORDS {
        let enqueued = store.enqueue(finished(n)).expect("enqueue");
        if n % 20_000 == 19_999
            && let Some(write) = enqueued.write
        {
            write.wait().await.expect("write");
        }
    }
    store.flush().await.expect("flush");
    // As the leader does every second.
    store.compact_counters(Utc::now()).await.expect("compact");
    eprintln!("admin: stored {RECORDS} finished tasks in {name} in {:.1?}", started.elapsed());
}

/// Median, min and max of `times` GETs of each path, in milliseconds.
async fn time_gets(client: &reqwest::Client, base: &str, paths: &[&str], times: usize) -> Vec<f64> {
    let mut samples = Vec::new();
    for _ in 0..times {
        let started = Instant::now();
        for path in paths {
            let response = client.get(format!("{base}{path}")).send().await.expect("get");
            assert!(response.status().is_success(), "{path}: {}", response.status());
            response.bytes().await.expect("body");
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples
}

/// Runs the scenario on SQLite, and on PostgreSQL when its URL is set; returns its rows.
pub(crate) async fn run(reps: usize) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("tasks.db")).expect("open");
    fill(&store, "SQLite").await;
    let mut rows = run_on(store, "SQLite", reps).await;
    if let Some(url) = crate::shared::Backend::Postgres.url() {
        let (schema, url) = postgres_schema(&url).await;
        let store = taskflow::PostgresStore::connect(&url).await.expect("store");
        fill(&store, "PostgreSQL").await;
        rows.extend(run_on(store, "PostgreSQL", reps).await);
        schema.drop().await;
    }
    rows
}

/// A PostgreSQL schema of the benchmark's own, dropped at the end (it holds a million rows).
struct Schema {
    client: tokio_postgres::Client,
    name: String,
}

impl Schema {
    async fn drop(self) {
        let sql = format!("DROP SCHEMA {} CASCADE", self.name);
        self.client.batch_execute(&sql).await.expect("drop schema");
    }
}

async fn postgres_schema(url: &str) -> (Schema, String) {
    let name = format!("bench_{}", TaskId::new().to_string().replace('-', ""));
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE SCHEMA {name}")).await.expect("schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}options=-csearch_path%3D{name}");
    (Schema { client, name }, url)
}

/// The admin requests against `store`, filled already.
async fn run_on(store: impl Store, backend: &str, reps: usize) -> Vec<Row> {
    let manager = crate::builder()
        .store(store)
        .retention(Retention { max_age: None, max_finished: None })
        .build()
        .await
        .expect("manager");
    let app = Router::new()
        .route("/ping", get(|| async { axum::Json(json!({ "ok": true })) }))
        .merge(manager.admin_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let client = reqwest::Client::new();
    let times = reps.max(5) * 4;
    let baseline = time_gets(&client, &base, &["/ping"], times).await;
    let scenarios: [(&str, &[&str]); 9] = [
        ("GET /tasks?limit=50", &["/tasks?limit=50"]),
        ("GET /tasks?status=failed&limit=50", &["/tasks?status=failed&limit=50"]),
        ("GET /tasks?func_name=charge_card&limit=50", &["/tasks?func_name=charge_card&limit=50"]),
        ("GET /tasks?tag=user_id:7&limit=50", &["/tasks?tag=user_id:7&limit=50"]),
        ("GET /tasks/metrics (from the counters, not cached)", &["/tasks/metrics"]),
        ("GET /tasks/metrics/history?window=1h", &["/tasks/metrics/history?window=1h"]),
        ("GET /tasks/metrics/history?window=24h", &["/tasks/metrics/history?window=24h"]),
        ("GET /tasks/metrics/prometheus", &["/tasks/metrics/prometheus"]),
        (
            "dashboard first load (page, session, stat cards, chart, first page)",
            &[
                "/tasks/dashboard",
                "/tasks/session",
                "/tasks/metrics",
                "/tasks/metrics/history?window=1h",
                "/tasks?limit=50&sort=-created_at",
            ],
        ),
    ];
    let mut rows = Vec::new();
    for (name, paths) in scenarios {
        let samples = time_gets(&client, &base, paths, times).await;
        rows.push(Row {
            scenario: format!("{name}, {RECORDS} finished tasks in {backend}"),
            unit: "ms (lower is better)",
            taskflow: samples,
            baseline: baseline.clone(),
            baseline_name: "GET of a small JSON route, same server",
        });
    }
    // A `since` window scans the tasks created in it; the admin router caches that for a
    // second. Each sample waits that out, so it measures a full computation.
    let mut samples = Vec::new();
    for _ in 0..reps.max(5) {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        samples.extend(time_gets(&client, &base, &["/tasks/metrics?since=24h"], 1).await);
    }
    rows.push(Row {
        scenario: format!(
            "GET /tasks/metrics?since=24h uncached (a scan), {RECORDS} finished tasks in {backend}"
        ),
        unit: "ms (lower is better)",
        taskflow: samples,
        baseline: baseline.clone(),
        baseline_name: "GET of a small JSON route, same server",
    });
    manager.shutdown(Duration::from_secs(10)).await;
    rows
}
