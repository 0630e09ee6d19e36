//! effectum on the peer workloads: `peer-effectum WORKLOAD N` prints one `RESULT effectum
//! sqlite WORKLOAD RATE` line. Default settings but concurrency 16, as for every system here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use effectum::{Job, JobRunner, Queue, RunningJob, Worker};

#[derive(Debug, Default)]
struct Done(AtomicU64);

async fn noop(job: RunningJob, done: Arc<Done>) -> Result<(), effectum::Error> {
    std::hint::black_box(job.payload.len());
    done.0.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn job(n: u64) -> Job {
    Job::builder("noop").json_payload(&serde_json::json!({ "n": n })).expect("payload").build()
}

async fn worker(queue: &Queue, done: &Arc<Done>) -> Worker {
    let runner = JobRunner::builder("noop", noop).build();
    Worker::builder(queue, Arc::clone(done))
        .max_concurrency(16)
        .jobs([runner])
        .build()
        .await
        .expect("worker")
}

async fn until(done: &Done, n: u64) {
    while done.0.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn bulk(queue: &Queue, n: u64) {
    for chunk in (0..n).step_by(1000) {
        let jobs = (chunk..(chunk + 1000).min(n)).map(job).collect();
        queue.add_jobs(jobs).await.expect("add");
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let workload = args.next().expect("WORKLOAD: e2e, exec or bulk");
    let n: u64 = args.next().and_then(|n| n.parse().ok()).expect("N");
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::new(&dir.path().join("effectum.db")).await.expect("queue");
    let done = Arc::new(Done::default());
    let elapsed = match workload.as_str() {
        // One job at a time, each add awaited, with a worker running; until every job ran.
        "e2e" => {
            let worker = worker(&queue, &done).await;
            let started = Instant::now();
            for n in 0..n {
                queue.add_job(job(n)).await.expect("add");
            }
            until(&done, n).await;
            let elapsed = started.elapsed();
            worker.unregister(Some(Duration::from_secs(30))).await.expect("stop");
            elapsed
        }
        // Jobs added in bulk first; then a worker runs them all.
        "exec" => {
            bulk(&queue, n).await;
            let started = Instant::now();
            let worker = worker(&queue, &done).await;
            until(&done, n).await;
            let elapsed = started.elapsed();
            worker.unregister(Some(Duration::from_secs(30))).await.expect("stop");
            elapsed
        }
        // `add_jobs` of 1,000 at a time, no worker running.
        "bulk" => {
            let started = Instant::now();
            bulk(&queue, n).await;
            started.elapsed()
        }
        other => panic!("unknown workload {other}"),
    };
    let rate = n as f64 / elapsed.as_secs_f64();
    println!("RESULT effectum sqlite {workload} {rate:.0}");
    queue.close(Duration::from_secs(30)).await.expect("close");
}
