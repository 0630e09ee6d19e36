//! What one task costs: an enqueue alone, a retry, and the memory a retained record holds.

use std::time::{Duration, Instant};

use taskflow::{Retention, task, task_context};

use crate::{Row, all_ran, expect_runs, noop_async, ran_one, rate};

const ENQUEUES: usize = 200_000;
const RETRIED: usize = 10_000;
const FINISHED: usize = 1_000_000;

/// Fails its first attempt, succeeds on the retry (no delay).
#[task(retries = 1)]
async fn fails_once(n: u64) -> Result<u64, String> {
    let first = task_context().is_some_and(|c| c.attempt() == 0);
    if first {
        return Err("first attempt".to_owned());
    }
    ran_one();
    Ok(n)
}

/// Succeeds at once: the no-failure run of the same shape.
#[task(retries = 1)]
async fn succeeds(n: u64) -> Result<u64, String> {
    ran_one();
    Ok(n)
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// `add_task` alone (stored as pending in memory, not run: the manager is stopped) vs
/// building the same arguments as JSON with serde_json.
async fn enqueue_cost(reps: usize) -> Row {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..=reps {
        let manager = crate::builder().recover(false).build().await.expect("manager");
        manager.shutdown(Duration::from_secs(1)).await; // stores, never starts
        let started = Instant::now();
        for n in 0..ENQUEUES as u64 {
            std::hint::black_box(manager.add_task(noop_async, n));
        }
        ours.push(started.elapsed().as_nanos() as f64 / ENQUEUES as f64);
        let started = Instant::now();
        for n in 0..ENQUEUES as u64 {
            std::hint::black_box(
                serde_json::to_value(serde_json::json!({ "n": n })).expect("json"),
            );
        }
        theirs.push(started.elapsed().as_nanos() as f64 / ENQUEUES as f64);
    }
    ours.remove(0);
    theirs.remove(0);
    Row {
        scenario: format!("enqueue alone (in-memory store, not run), {ENQUEUES} calls"),
        unit: "ns/call (lower is better)",
        taskflow: ours,
        baseline: theirs,
        baseline_name: "serde_json building the same arguments",
    }
}

/// 10,000 tasks that fail once then succeed vs 10,000 that succeed at once.
async fn retries(reps: usize) -> Row {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for rep in 0..=reps {
        let measure = async |retry: bool| {
            let manager = crate::builder().build().await.expect("manager");
            expect_runs(RETRIED);
            let started = Instant::now();
            for n in 0..RETRIED as u64 {
                if retry {
                    manager.add_task(fails_once, n);
                } else {
                    manager.add_task(succeeds, n);
                }
            }
            all_ran().await;
            manager.shutdown(Duration::from_secs(30)).await;
            rate(RETRIED, started.elapsed())
        };
        let (with, without) = (measure(true).await, measure(false).await);
        if rep > 0 {
            ours.push(with);
            theirs.push(without);
        }
    }
    Row {
        scenario: format!("{RETRIED} tasks failing once then succeeding (no delay)"),
        unit: "tasks/s",
        taskflow: ours,
        baseline: theirs,
        baseline_name: "the same tasks succeeding at once",
    }
}

/// Runs 1,000,000 no-op tasks on the default (in-memory) store, whose retention keeps the
/// newest 10,000 finished, at most 10,000 waiting at a time (as a service under steady load
/// would); then prunes every finished task. Prints `rss <start> <full> <after> <kept>` and
/// `heap <start> <full> <after>` (bytes; heap is what the program holds allocated, RSS what the
/// process holds, including the allocator's free pages).
/// Run in a process of its own ([`memory`]), so that other scenarios' memory is not counted.
pub(crate) async fn memory_child() {
    let start = rss();
    let heap_start = crate::heap_bytes();
    let manager = crate::builder().build().await.expect("manager");
    expect_runs(FINISHED);
    for n in 0..FINISHED {
        manager.add_task(noop_async, n as u64);
        while n >= 10_000 && crate::RAN.load(std::sync::atomic::Ordering::Relaxed) < n - 10_000 {
            tokio::task::yield_now().await;
        }
    }
    all_ran().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let full = rss();
    let heap_full = crate::heap_bytes();
    let query = taskflow::TaskQuery { limit: Some(FINISHED), ..Default::default() };
    let kept = manager.store().list(&query).await.expect("list").tasks.len();
    let none = Retention { max_age: None, max_finished: Some(0) };
    manager.store().prune(&none, chrono::Utc::now()).await.expect("prune");
    let after = rss();
    let heap_after = crate::heap_bytes();
    manager.shutdown(Duration::from_secs(10)).await;
    println!("rss {start} {full} {after} {kept}");
    println!("heap {heap_start} {heap_full} {heap_after}");
}

/// RSS after 1,000,000 finished tasks with the default retention and after pruning them all,
/// and bytes per retained record, measured in a fresh process.
fn memory() -> Vec<Row> {
    let exe = std::env::current_exe().expect("own path");
    let output = std::process::Command::new(exe).arg("__memory").output().expect("memory run");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.starts_with("rss ")).expect("an rss line");
    let figures: Vec<f64> =
        line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let [start, full, after, kept] = figures[..] else { panic!("bad rss line: {line}") };
    let line = text.lines().find(|l| l.starts_with("heap ")).expect("a heap line");
    let figures: Vec<f64> =
        line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let [heap_start, heap_full, heap_after] = figures[..] else { panic!("bad heap line: {line}") };
    let mib = |bytes: f64| bytes / 1_048_576.0;
    eprintln!(
        "memory: RSS {:.1} MiB at start, {:.1} MiB after {FINISHED} tasks ({kept} kept), {:.1} MiB after pruning; heap {:.1} / {:.1} / {:.1} MiB",
        mib(start),
        mib(full),
        mib(after),
        mib(heap_start),
        mib(heap_full),
        mib(heap_after)
    );
    let row = |scenario: String, unit, ours: f64, theirs: f64, baseline_name| Row {
        scenario,
        unit,
        taskflow: vec![ours],
        baseline: vec![theirs],
        baseline_name,
    };
    let (mib_unit, bytes_unit) = ("MiB (lower is better)", "bytes (lower is better)");
    let target = "the 2 KiB target";
    vec![
        row(
            format!("RSS after {FINISHED} finished tasks, default retention ({kept} kept)"),
            mib_unit,
            mib(full),
            mib(start),
            "RSS of the same process at start",
        ),
        row(
            "RSS after pruning every finished task".to_owned(),
            mib_unit,
            mib(after),
            mib(start),
            "RSS of the same process at start",
        ),
        row(
            "heap in use after pruning every finished task".to_owned(),
            mib_unit,
            mib(heap_after),
            mib(heap_start),
            "heap in use at start",
        ),
        row(
            "heap per retained finished record ((heap full - heap at start) / kept)".to_owned(),
            bytes_unit,
            (heap_full - heap_start).max(0.0) / kept.max(1.0),
            2048.0,
            target,
        ),
        row(
            "memory per retained finished record ((RSS full - RSS at start) / kept)".to_owned(),
            bytes_unit,
            (full - start).max(0.0) / kept.max(1.0),
            2048.0,
            target,
        ),
    ]
}

/// Runs the scenarios; returns their rows.
pub(crate) async fn run(reps: usize) -> Vec<Row> {
    let mut rows = vec![enqueue_cost(reps).await, retries(reps).await];
    rows.extend(memory());
    rows
}
