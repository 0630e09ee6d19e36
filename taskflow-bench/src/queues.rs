//! The cost of queues: the same no-op tasks enqueued + run through four queues (each with
//! its own concurrency, one of them holding a task with a cap of its own, counted in the
//! store at each fetch) against all of them in the one unconfigured default queue, on
//! SQLite and on PostgreSQL (when `TASKFLOW_TEST_POSTGRES_URL` is set).

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
async fn run_tasks(store: std::sync::Arc<dyn Store>, tasks: usize, four: bool) -> f64 {
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

/// One row per store: four queues against one.
pub(crate) async fn run(reps: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut sqlite = (Vec::new(), Vec::new());
    for rep in 0..=reps {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = |name: &str| {
            std::sync::Arc::new(SqliteStore::open(dir.path().join(name)).expect("open"))
                as std::sync::Arc<dyn Store>
        };
        let four = run_tasks(open("four.db"), 20_000, true).await;
        let one = run_tasks(open("one.db"), 20_000, false).await;
        if rep > 0 {
            sqlite.0.push(four);
            sqlite.1.push(one);
        }
    }
    rows.push(Row {
        scenario: "durable SQLite, 20000 no-op tasks over 4 queues (one task capped)".to_owned(),
        unit: "tasks/s",
        taskflow: sqlite.0,
        baseline: sqlite.1,
        baseline_name: "the same tasks in one unconfigured queue",
    });
    if let Some(url) = Backend::Postgres.url() {
        let mut postgres = (Vec::new(), Vec::new());
        for rep in 0..=reps {
            let four = run_tasks(
                Backend::Postgres.store(&Backend::Postgres.fresh(&url).await).await,
                5_000,
                true,
            )
            .await;
            let one = run_tasks(
                Backend::Postgres.store(&Backend::Postgres.fresh(&url).await).await,
                5_000,
                false,
            )
            .await;
            if rep > 0 {
                postgres.0.push(four);
                postgres.1.push(one);
            }
        }
        rows.push(Row {
            scenario: "PostgreSQL, 5000 no-op tasks over 4 queues (one task capped)".to_owned(),
            unit: "tasks/s",
            taskflow: postgres.0,
            baseline: postgres.1,
            baseline_name: "the same tasks in one unconfigured queue",
        });
    }
    rows
}
