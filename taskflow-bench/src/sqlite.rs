//! Durable SQLite: enqueue + execute no-op tasks on the SQLite store, against raw rusqlite
//! inserting as many rows of the same size, in batched and in one-row transactions; and the
//! same tasks with their arguments and results sealed (feature `encryption`) against plain.

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use taskflow::{SqliteStore, TaskStatus};

use crate::{Row, all_ran, expect_runs, median, noop_async, rate};

const TASKS: usize = 100_000;
const BATCH: usize = 1_000;

/// Every column of taskflow's `tasks` table, to measure its rows' size.
const TASK_COLUMNS: [&str; 23] = [
    "id",
    "func_name",
    "status",
    "created_at",
    "start_time",
    "end_time",
    "duration",
    "retries_used",
    "max_retries",
    "error",
    "stacktrace",
    "tags",
    "source",
    "priority",
    "args",
    "result",
    "idempotency_key",
    "scheduled_at",
    "retry_of",
    "requeue_on_interrupt",
    "recoveries",
    "lease_owner",
    "lease_expires_at",
];

/// Runs every SQLite scenario; returns its rows.
pub(crate) async fn run(reps: usize) -> Vec<Row> {
    let mut ours = Vec::new();
    let mut sealed = Vec::new();
    let mut batched = Vec::new();
    let mut single = Vec::new();
    let mut row_bytes = 0;
    for rep in 0..=reps {
        let dir = tempfile::tempdir().expect("temp dir");
        let (taskflow, bytes) = durable_tasks(&dir.path().join("tasks.db"), None).await;
        row_bytes = bytes;
        let keyring = taskflow::Keyring::new()
            .primary("bench", taskflow::Key::from_bytes(&[7; 32]).expect("key"))
            .expect("keyring");
        let (encrypted, _) = durable_tasks(&dir.path().join("sealed.db"), Some(keyring)).await;
        let raw_batched = raw_inserts(&dir.path().join("batched.db"), BATCH, row_bytes);
        let raw_single = raw_inserts(&dir.path().join("single.db"), 1, row_bytes);
        if rep > 0 {
            // the first round warms up
            ours.push(taskflow);
            sealed.push(encrypted);
            batched.push(raw_batched);
            single.push(raw_single);
        }
    }
    eprintln!(
        "sqlite: rows of {row_bytes} bytes; taskflow {:.0} tasks/s, rusqlite batched {:.0} rows/s, one-row {:.0} rows/s",
        median(&ours),
        median(&batched),
        median(&single)
    );
    vec![
        Row {
            scenario: format!("durable SQLite, {TASKS} no-op tasks enqueued + run"),
            unit: "tasks/s",
            taskflow: ours.clone(),
            baseline: batched,
            baseline_name: "rusqlite insert, 1,000 rows/tx",
        },
        Row {
            scenario: format!("durable SQLite, {TASKS} no-op tasks enqueued + run"),
            unit: "tasks/s",
            taskflow: ours.clone(),
            baseline: single,
            baseline_name: "rusqlite insert, 1 row/tx",
        },
        Row {
            scenario: format!("durable SQLite, {TASKS} tasks, arguments and results sealed"),
            unit: "tasks/s",
            taskflow: sealed,
            baseline: ours,
            baseline_name: "the same without encryption",
        },
    ]
}

/// Runs the tasks (sealed with `keyring`, if given); returns tasks/s and the average size of
/// their stored rows.
async fn durable_tasks(path: &std::path::Path, keyring: Option<taskflow::Keyring>) -> (f64, usize) {
    let threads_before = crate::thread_cpu();
    let store = SqliteStore::open(path).expect("open");
    let mut builder = crate::builder().store(store);
    if let Some(keyring) = keyring {
        builder = builder.encryption(keyring);
    }
    let manager = builder.build().await.expect("manager");
    expect_runs(TASKS);
    let started = Instant::now();
    let mut last = None;
    for n in 0..TASKS as u64 {
        last = Some(manager.add_task(noop_async, n));
    }
    let enqueued = started.elapsed();
    all_ran().await;
    let ran = started.elapsed();
    let threads_after = crate::thread_cpu();
    // Shutdown waits for every task's final write and closes the store, which commits.
    manager.shutdown(Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    if std::env::var_os("TASKFLOW_BENCH_PHASES").is_some() {
        eprintln!("sqlite phases: enqueued {enqueued:?}, ran {ran:?}, stored {elapsed:?}");
        crate::print_thread_cpu(&threads_before, &threads_after);
    }
    let check = SqliteStore::open(path).expect("reopen");
    let last = taskflow::Store::get(&check, &last.expect("enqueued")).await.expect("get");
    assert_eq!(last.map(|r| r.status), Some(TaskStatus::Success));
    taskflow::Store::close(&check).await.expect("close");
    let sizes: Vec<String> =
        TASK_COLUMNS.iter().map(|c| format!("coalesce(length(CAST({c} AS BLOB)), 0)")).collect();
    let sql = format!("SELECT CAST(avg({}) AS INTEGER) FROM tasks", sizes.join(" + "));
    let conn = Connection::open(path).expect("open raw");
    let bytes: i64 = conn.query_row(&sql, [], |row| row.get(0)).expect("row size");
    (rate(TASKS, elapsed), bytes as usize)
}

/// Inserts [`TASKS`] rows of `row_bytes` in WAL mode with `synchronous = NORMAL`, `per_tx`
/// rows per transaction. Each row has a UUID (a task id) that finds it, as a task does; the
/// baseline keeps nothing else (no status, no other index).
fn raw_inserts(path: &std::path::Path, per_tx: usize, row_bytes: usize) -> f64 {
    let mut conn = Connection::open(path).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE tasks (
             seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, payload TEXT NOT NULL
         );",
    )
    .expect("schema");
    let payload = "x".repeat(row_bytes.saturating_sub(36));
    let started = Instant::now();
    let mut inserted = 0;
    while inserted < TASKS {
        let tx = conn.transaction().expect("begin");
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO tasks (id, payload) VALUES (?1, ?2)").expect("sql");
            for _ in 0..per_tx.min(TASKS - inserted) {
                let id = taskflow::TaskId::new().to_string();
                insert.execute(params![id, payload]).expect("insert");
                inserted += 1;
            }
        }
        tx.commit().expect("commit");
    }
    rate(TASKS, started.elapsed())
}
