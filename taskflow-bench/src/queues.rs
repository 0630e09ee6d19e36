//! The cost of queues: the same no-op tasks enqueued + run through four queues (each with
//! its own concurrency, one of them holding a task with a cap of its own, counted in the
//! store at each fetch) against all of them in the one unconfigured default queue, on
//! SQLite and on PostgreSQL (when `TASKFLOW_TEST_POSTGRES_URL` is set).

use std::sync::Arc;
use std::time::{Duration, Instant};

use taskflow::{EnqueueOptions, Queue, SqliteStore, Store, TaskManager, task};

use crate::shared::Backend;
use crate::{Row, all_ran, expect_runs, noop_async, ran_one, rate};

/// The queue of [`capped_noop`]; every bench manager declares it.
pub(crate) const CAPPED: &str = "capped";

/// The three other queues of the four-queue run.
const OTHERS: [&str; 3] = ["q1", "q2", "q3"];

/// A no-op with a cap of its own, in its own queue.
#[task(queue = "capped", concurrency = 8)]
pub(crate) async fn capped_noop(n: u64) {
    std::hint::black_box(n);
    ran_one();
}

/// Enqueues `tasks` no-op tasks (a quarter of them capped, the rest spread over three
/// queues, when `four` is set) and waits until all ran; the rate end to end.
async fn run_tasks(store: Arc<dyn Store>, tasks: usize, four: bool) -> f64 {
    let mut builder = crate::builder().shared_store(store);
    if four {
        for queue in OTHERS {
            builder = builder.queue(queue, Queue::new().concurrency(16));
        }
    }
    let manager: TaskManager = builder.build().await.expect("manager");
    expect_runs(tasks);
    let started = Instant::now();
    for n in 0..tasks {
        if !four {
            manager.add_task(noop_async, n as u64);
        } else if n % 4 == 0 {
            manager.add_task(capped_noop, n as u64);
        } else {
            let into = EnqueueOptions::new().queue(OTHERS[n % 4 - 1]);
            manager.add_task_with(noop_async, n as u64, into);
        }
    }
    all_ran().await;
    manager.shutdown(Duration::from_secs(120)).await;
    rate(tasks, started.elapsed())
}

/// Four queues against one, `reps` times after a warm-up, each run on a fresh store from
/// `open` (with the directory that holds it, if any, kept until the run ends).
async fn compare<F, Fut>(reps: usize, store: &str, tasks: usize, mut open: F) -> Row
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (Arc<dyn Store>, Option<tempfile::TempDir>)>,
{
    let (mut four, mut one) = (Vec::new(), Vec::new());
    for rep in 0..=reps {
        let (store, _dir) = open().await;
        let with_queues = run_tasks(store, tasks, true).await;
        let (store, _dir) = open().await;
        let plain = run_tasks(store, tasks, false).await;
        if rep > 0 {
            four.push(with_queues);
            one.push(plain);
        }
    }
    Row {
        scenario: format!("{store}, {tasks} no-op tasks over 4 queues (one task capped)"),
        unit: "tasks/s",
        taskflow: four,
        baseline: one,
        baseline_name: "the same tasks in one unconfigured queue",
    }
}

/// One row per store: four queues against one.
pub(crate) async fn run(reps: usize) -> Vec<Row> {
    let sqlite = compare(reps, "durable SQLite", 20_000, || async {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("tasks.db")).expect("open");
        (Arc::new(store) as Arc<dyn Store>, Some(dir))
    })
    .await;
    let mut rows = vec![sqlite];
    if let Some(url) = Backend::Postgres.url() {
        let postgres = compare(reps, "PostgreSQL", 5_000, || async {
            (Backend::Postgres.store(&Backend::Postgres.fresh(&url).await).await, None)
        })
        .await;
        rows.push(postgres);
    }
    rows
}
