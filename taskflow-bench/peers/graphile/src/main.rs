//! graphile_worker_rs on the peer workloads: `peer-graphile WORKLOAD N` with
//! `TASKFLOW_TEST_POSTGRES_URL` set prints one `RESULT graphile postgres WORKLOAD RATE` line.
//! Settings as graphile publishes its fast setup: a local queue (500 jobs) and completion in
//! 5 ms batches; concurrency 16 as for every system here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use graphile_worker::{
    IntoTaskHandlerResult, JobSpec, LocalQueueConfig, RawJobSpec, TaskHandler, WorkerContext,
    WorkerOptions,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug)]
struct Done(Arc<AtomicU64>);

#[derive(Debug, Deserialize, Serialize)]
struct Noop {
    n: u64,
}

impl TaskHandler for Noop {
    const IDENTIFIER: &'static str = "noop";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        std::hint::black_box(self.n);
        if let Some(done) = ctx.get_ext::<Done>() {
            done.0.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<(), String>(())
    }
}

fn schema() -> String {
    format!("peer_graphile_{}", std::process::id())
}

async fn worker(url: &str, schema: &str, done: &Done) -> graphile_worker::Worker {
    WorkerOptions::default()
        .database_url(url)
        .schema(schema)
        .concurrency(16)
        .local_queue(LocalQueueConfig::builder().size(500).build())
        .complete_job_batch_delay(Duration::from_millis(5))
        .add_extension(done.clone())
        .define_job::<Noop>()
        .init()
        .await
        .expect("worker")
}

fn raw(range: std::ops::Range<u64>) -> Vec<RawJobSpec> {
    range
        .map(|n| RawJobSpec {
            identifier: "noop".into(),
            payload: serde_json::json!({ "n": n }),
            spec: JobSpec::default(),
        })
        .collect()
}

async fn until(done: &Done, n: u64) {
    while done.0.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let workload = args.next().expect("WORKLOAD: e2e, exec or bulk");
    let n: u64 = args.next().and_then(|n| n.parse().ok()).expect("N");
    let url = std::env::var("TASKFLOW_TEST_POSTGRES_URL").expect("TASKFLOW_TEST_POSTGRES_URL");
    let schema = schema();
    let done = Done(Arc::default());
    let worker = Arc::new(worker(&url, &schema, &done).await);
    let utils = worker.create_utils();
    let elapsed = match workload.as_str() {
        // One job at a time, each add awaited (as a request handler would), with the worker
        // running; until every job ran.
        "e2e" => {
            let running = Arc::clone(&worker);
            let handle = tokio::spawn(async move { running.run().await });
            let started = Instant::now();
            for n in 0..n {
                utils.add_job(Noop { n }, JobSpec::default()).await.expect("add");
            }
            until(&done, n).await;
            let elapsed = started.elapsed();
            worker.request_shutdown();
            let _ = handle.await;
            elapsed
        }
        // Jobs added in bulk first; then the worker runs them all.
        "exec" => {
            for chunk in (0..n).step_by(1000) {
                utils.add_raw_jobs(&raw(chunk..(chunk + 1000).min(n))).await.expect("add");
            }
            let started = Instant::now();
            let running = Arc::clone(&worker);
            let handle = tokio::spawn(async move { running.run().await });
            until(&done, n).await;
            let elapsed = started.elapsed();
            worker.request_shutdown();
            let _ = handle.await;
            elapsed
        }
        // `add_raw_jobs` of 1,000 at a time, no worker running.
        "bulk" => {
            let started = Instant::now();
            for chunk in (0..n).step_by(1000) {
                utils.add_raw_jobs(&raw(chunk..(chunk + 1000).min(n))).await.expect("add");
            }
            started.elapsed()
        }
        other => panic!("unknown workload {other}"),
    };
    let rate = n as f64 / elapsed.as_secs_f64();
    println!("RESULT graphile postgres {workload} {rate:.0}");
    drop(worker);
    let (client, connection) =
        tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let _ = client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await;
}
