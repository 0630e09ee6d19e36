//! taskflow's benchmarks. Each scenario measures taskflow and a baseline doing the same work
//! in the same process, alternating, and reports medians (with min–max) and their ratio:
//! machines here are shared and noisy, so only ratios carry over.
//!
//! `cargo run --release -p taskflow-bench -- [--reps N] [SCENARIO...]`; with no scenario named,
//! every scenario runs. Scenarios: `memory` (or just `memory-async` / `memory-sync`), `costs` (enqueue alone, retries, RSS), `sqlite`,
//! `http` (with `wrk`), `admin`, `list` (a page of 1 MB-argument tasks, peak RSS), `scheduled` (100,000 tasks due over 20 s: CPU and lateness; 1,000,000 due in a week: RSS and idle CPU), `feed` (SSE readers, with `curl`), `shared` (PostgreSQL,
//! MySQL/MariaDB and Redis, when `TASKFLOW_TEST_POSTGRES_URL` / `TASKFLOW_TEST_MYSQL_URL` /
//! `TASKFLOW_TEST_REDIS_URL` are set), `bulk` (`submit_many` of 1,000 on those).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use taskflow::{TaskManager, task};
use tokio::sync::Notify;

mod admin;
mod bulk;
mod costs;
mod feed;
mod http;
mod list;
mod queues;
mod scheduled;
mod shared;
mod sqlite;

/// The system allocator, counting the bytes in use when [`COUNTING`] is on: the memory
/// scenario's child process turns it on first thing, so its figures are exact heap bytes
/// rather than resident pages (which include the allocator's kept free memory).
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static HEAP_BYTES: AtomicIsize = AtomicIsize::new(0);

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn count(bytes: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        HEAP_BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call goes to `System` unchanged; the counting only reads the layouts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        new
    }
}

/// Bytes allocated and not yet freed since counting started.
pub(crate) fn heap_bytes() -> isize {
    HEAP_BYTES.load(Ordering::Relaxed)
}

/// How many no-op tasks have run, and a wake-up when the count a scenario waits for is hit.
pub(crate) static RAN: AtomicUsize = AtomicUsize::new(0);
static TARGET: AtomicUsize = AtomicUsize::new(usize::MAX);
static ALL_RAN: Notify = Notify::const_new();

pub(crate) fn ran_one() {
    if RAN.fetch_add(1, Ordering::Relaxed) + 1 == TARGET.load(Ordering::Relaxed) {
        ALL_RAN.notify_one();
    }
}

/// Expects `n` runs from now on.
pub(crate) fn expect_runs(n: usize) {
    RAN.store(0, Ordering::Relaxed);
    TARGET.store(n, Ordering::Relaxed);
}

pub(crate) async fn all_ran() {
    ALL_RAN.notified().await;
}

/// A builder for every scenario: it declares the queue of [`queues::capped_noop`] (each
/// manager must), which costs the others one idle producer.
pub(crate) fn builder() -> taskflow::TaskManagerBuilder {
    TaskManager::builder().queue(queues::CAPPED, taskflow::Queue::new().concurrency(16))
}

#[task]
async fn noop_async(n: u64) {
    std::hint::black_box(n);
    ran_one();
}

#[task]
fn noop_sync(n: u64) {
    std::hint::black_box(n);
    ran_one();
}

/// One measured figure: a rate in operations per second.
struct Sample {
    taskflow: f64,
    baseline: f64,
}

/// A scenario's row of the table.
struct Row {
    scenario: String,
    unit: &'static str,
    taskflow: Vec<f64>,
    baseline: Vec<f64>,
    baseline_name: &'static str,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 }
}

fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{}–{}", human(min), human(max))
}

fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.1}")
    }
}

pub(crate) fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Runs `measure` `reps` times (after one warm-up) and collects its samples into a row.
async fn repeat<F, Fut>(
    reps: usize,
    scenario: impl Into<String>,
    unit: &'static str,
    baseline_name: &'static str,
    mut measure: F,
) -> Row
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Sample>,
{
    let mut row = Row {
        scenario: scenario.into(),
        unit,
        taskflow: Vec::new(),
        baseline: Vec::new(),
        baseline_name,
    };
    let _warm_up = measure().await;
    for _ in 0..reps {
        let sample = measure().await;
        row.taskflow.push(sample.taskflow);
        row.baseline.push(sample.baseline);
    }
    row
}

const MEMORY_TASKS: usize = 200_000;

/// Enqueue + execute no-op tasks on the in-memory engine vs `tokio::spawn` + join.
async fn memory(reps: usize, sync: bool) -> Row {
    let kind = if sync { "sync" } else { "async" };
    repeat(
        reps,
        format!("in-memory engine, {MEMORY_TASKS} {kind} no-op tasks"),
        "tasks/s",
        "tokio::spawn + join",
        || async move {
            let manager = crate::builder().build().await.expect("manager");
            expect_runs(MEMORY_TASKS);
            let started = Instant::now();
            for n in 0..MEMORY_TASKS as u64 {
                if sync {
                    manager.add_task(noop_sync, n);
                } else {
                    manager.add_task(noop_async, n);
                }
            }
            all_ran().await;
            manager.shutdown(Duration::from_secs(60)).await;
            let taskflow = rate(MEMORY_TASKS, started.elapsed());

            let started = Instant::now();
            let handles: Vec<_> = (0..MEMORY_TASKS as u64)
                .map(|n| {
                    if sync {
                        tokio::task::spawn_blocking(move || std::hint::black_box(n))
                    } else {
                        tokio::spawn(async move { std::hint::black_box(n) })
                    }
                })
                .collect();
            for handle in handles {
                handle.await.expect("join");
            }
            let baseline = rate(MEMORY_TASKS, started.elapsed());
            Sample { taskflow, baseline }
        },
    )
    .await
}

/// CPU seconds used so far by each thread of this process, by thread name.
pub(crate) fn thread_cpu() -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let ticks = 100.0; // USER_HZ on Linux
    for entry in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let used: f64 =
            fields.get(11..13).into_iter().flatten().filter_map(|f| f.parse::<f64>().ok()).sum();
        *by_name.entry(name).or_insert(0.0) += used / ticks;
    }
    by_name
}

/// Prints the CPU seconds each thread name used between two [`thread_cpu`] readings.
pub(crate) fn print_thread_cpu(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
) {
    for (name, &now) in after {
        let used = now - before.get(name).copied().unwrap_or(0.0);
        if used > 0.005 {
            eprintln!("  cpu {name}: {used:.2} s");
        }
    }
}

fn print(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    println!(
        "| scenario | unit | taskflow median (min–max) | baseline | baseline median (min–max) | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows {
        let (ours, theirs) = (median(&row.taskflow), median(&row.baseline));
        println!(
            "| {} | {} | {} ({}) | {} | {} ({}) | {:.2}× |",
            row.scenario,
            row.unit,
            human(ours),
            range(&row.taskflow),
            row.baseline_name,
            human(theirs),
            range(&row.baseline),
            ours / theirs,
        );
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("__memory") {
        COUNTING.store(true, Ordering::Relaxed);
        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        runtime.block_on(costs::memory_child());
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("__scheduled") {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        runtime.block_on(scheduled::child());
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("__list") {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        runtime.block_on(list::child());
        return;
    }
    let mut reps = 5;
    let mut wanted = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reps" => reps = args.next().and_then(|n| n.parse().ok()).expect("--reps N"),
            "-h" | "--help" => {
                println!(
                    "usage: taskflow-bench [--reps N] [memory] [sqlite] [http] [admin] [list] [scheduled] [feed] [shared] [bulk] [queues]"
                );
                return;
            }
            other => wanted.push(other.to_owned()),
        }
    }
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("taskflow-bench: {reps} repetitions per scenario, {cores} cores\n");
    let mut rows = Vec::new();
    runtime.block_on(async {
        if runs("memory") || runs("memory-async") {
            rows.push(memory(reps, false).await);
        }
        if runs("memory") || runs("memory-sync") {
            rows.push(memory(reps, true).await);
        }
        if runs("costs") {
            rows.extend(costs::run(reps).await);
        }
        if runs("sqlite") {
            rows.extend(sqlite::run(reps).await);
        }
        if runs("http") {
            rows.extend(http::run(reps).await);
        }
        if runs("admin") {
            rows.extend(admin::run(reps).await);
        }
        if runs("scheduled") {
            scheduled::run();
        }
        if runs("list") {
            list::run();
        }
        if runs("feed") {
            rows.extend(feed::run(reps).await);
        }
        if runs("shared") {
            rows.extend(shared::run(reps).await);
        }
        if runs("bulk") {
            rows.extend(bulk::run(reps).await);
        }
        if runs("queues") {
            rows.extend(queues::run(reps).await);
        }
    });
    print(&rows);
}
