//! taskflow on the peer workloads: `peer-taskflow STORE WORKLOAD N` (STORE `postgres`, with
//! `TASKFLOW_TEST_POSTGRES_URL` set, or `sqlite`) prints one `RESULT taskflow STORE WORKLOAD
//! RATE` line. Default settings but concurrency 16, as for every system here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use taskflow::{EnqueueOptions, PostgresStore, TaskManager, TaskManagerBuilder, task};

static DONE: AtomicU64 = AtomicU64::new(0);

#[task]
async fn noop(n: u64) {
    std::hint::black_box(n);
    DONE.fetch_add(1, Ordering::Relaxed);
}

/// Where the run's tasks live: a fresh PostgreSQL schema or SQLite file.
enum Place {
    Postgres { url: String, base: String, schema: String },
    Sqlite { _dir: tempfile::TempDir, path: std::path::PathBuf },
}

impl Place {
    async fn new(store: &str) -> Place {
        match store {
            "postgres" => {
                let base = std::env::var("TASKFLOW_TEST_POSTGRES_URL")
                    .expect("TASKFLOW_TEST_POSTGRES_URL");
                let schema = format!("peer_taskflow_{}", std::process::id());
                let client = connect(&base).await;
                client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("schema");
                let separator = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
                Place::Postgres { url, base, schema }
            }
            "sqlite" => {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("peer.db");
                Place::Sqlite { _dir: dir, path }
            }
            other => panic!("unknown store {other}"),
        }
    }

    async fn builder(&self) -> TaskManagerBuilder {
        let builder = TaskManager::builder().concurrency(16);
        match self {
            Place::Postgres { url, .. } => {
                builder.shared_store(Arc::new(PostgresStore::connect(url).await.expect("connect")))
            }
            Place::Sqlite { path, .. } => builder.sqlite(path),
        }
    }

    async fn drop(self) {
        if let Place::Postgres { base, schema, .. } = self {
            let client = connect(&base).await;
            let _ = client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await;
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

async fn until(n: u64) {
    while DONE.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `submit_many` of 1,000 at a time, each batch durable before the next.
async fn bulk(manager: &TaskManager, n: u64) {
    for chunk in (0..n).step_by(1000) {
        let batch = (chunk..(chunk + 1000).min(n)).map(|n| (n, EnqueueOptions::new()));
        for result in manager.submit_many(noop, batch).await {
            result.expect("stored");
        }
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let store = args.next().expect("STORE: postgres or sqlite");
    let workload = args.next().expect("WORKLOAD: e2e, exec or bulk");
    let n: u64 = args.next().and_then(|n| n.parse().ok()).expect("N");
    let place = Place::new(&store).await;
    let quiet = Duration::from_secs(30);
    let elapsed = match workload.as_str() {
        // One task at a time, each `submit` awaited until durable (as graphile's `add_job`),
        // with the instance running; until every task ran.
        "e2e" => {
            let manager = place.builder().await.build().await.expect("manager");
            let started = Instant::now();
            for n in 0..n {
                manager.submit(noop, n, EnqueueOptions::new()).await.expect("stored");
            }
            until(n).await;
            let elapsed = started.elapsed();
            manager.shutdown(quiet).await;
            elapsed
        }
        // Tasks stored in bulk by an instance that runs no queue; then an instance that runs
        // them (its start counted) until every task ran.
        "exec" => {
            let enqueuer = place.builder().await.run_queues([] as [&str; 0]).build().await;
            let enqueuer = enqueuer.expect("manager");
            bulk(&enqueuer, n).await;
            enqueuer.shutdown(quiet).await;
            let started = Instant::now();
            let manager = place.builder().await.build().await.expect("manager");
            until(n).await;
            let elapsed = started.elapsed();
            manager.shutdown(quiet).await;
            elapsed
        }
        // `submit_many` of 1,000 at a time, no queue running.
        "bulk" => {
            let manager = place.builder().await.run_queues([] as [&str; 0]).build().await;
            let manager = manager.expect("manager");
            let started = Instant::now();
            bulk(&manager, n).await;
            let elapsed = started.elapsed();
            manager.shutdown(quiet).await;
            elapsed
        }
        other => panic!("unknown workload {other}"),
    };
    let rate = n as f64 / elapsed.as_secs_f64();
    println!("RESULT taskflow {store} {workload} {rate:.0}");
    place.drop().await;
}
