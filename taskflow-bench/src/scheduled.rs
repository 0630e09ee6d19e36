//! Tasks that wait, in a process of their own on durable SQLite:
//! (a) 100,000 tasks due over the next 20 s: the CPU the process uses over those 20 s
//! (waiting and running them) and how late each starts against its due time, p50 and p99;
//! (b) 1,000,000 tasks due a week ahead: resident memory before and after they are stored, and
//! the CPU of 5 idle seconds with them waiting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use taskflow::{EnqueueOptions, TaskManager, task};

/// How late each task started, in microseconds.
static LATENESS: Mutex<Vec<i64>> = Mutex::new(Vec::new());

#[task]
async fn due_at(micros: i64) {
    let late = chrono::Utc::now().timestamp_micros() - micros;
    LATENESS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(late);
}

#[task]
async fn next_week() {}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The process's user + system CPU time so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // utime, stime (fields 14, 15), at 100 ticks a second
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// Enqueues `count` tasks from 32 concurrent submitters, each waiting for its writes.
async fn submit_all(
    manager: &TaskManager,
    count: usize,
    options: impl Fn(usize) -> (i64, EnqueueOptions) + Send + Sync + 'static,
    week: bool,
) {
    let options = std::sync::Arc::new(options);
    let mut workers = Vec::new();
    for worker in 0..32 {
        let (manager, options) = (manager.clone(), std::sync::Arc::clone(&options));
        workers.push(tokio::spawn(async move {
            let mut n = worker;
            while n < count {
                let (micros, opts) = options(n);
                let submitted = if week {
                    manager.submit(next_week, (), opts).await
                } else {
                    manager.submit(due_at, micros, opts).await
                };
                submitted.expect("submit");
                n += 32;
            }
        }));
    }
    for worker in workers {
        worker.await.expect("submitter");
    }
}

/// The child: runs (a) then (b) and prints their figures on one line.
pub(crate) async fn child() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manager = crate::builder().sqlite(dir.path().join("a.db")).build().await.expect("manager");
    const SPREAD: i64 = 20_000_000;
    const COUNT: usize = 100_000;
    let start = chrono::Utc::now().timestamp_micros() + 5_000_000; // after enqueueing
    submit_all(
        &manager,
        COUNT,
        move |n| {
            let at = start + SPREAD * n as i64 / COUNT as i64;
            let due = chrono::DateTime::from_timestamp_micros(at).expect("time");
            (at, EnqueueOptions::new().run_at(due))
        },
        false,
    )
    .await;
    let until_start = start - chrono::Utc::now().timestamp_micros();
    tokio::time::sleep(Duration::from_micros(until_start.max(0) as u64)).await;
    let cpu = cpu_seconds();
    let began = Instant::now();
    loop {
        if LATENESS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len() >= COUNT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(began.elapsed() < Duration::from_secs(120), "the scheduled tasks did not all run");
    }
    let cpu_a = cpu_seconds() - cpu;
    let window = began.elapsed().as_secs_f64();
    let mut late = LATENESS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    late.sort_unstable();
    let (p50, p99) = (percentile(&late, 0.5), percentile(&late, 0.99));
    manager.shutdown(Duration::from_secs(10)).await;

    let manager = crate::builder().sqlite(dir.path().join("b.db")).build().await.expect("manager");
    let rss_before = status_kib("VmRSS:");
    let week = chrono::Utc::now() + chrono::Duration::days(7);
    submit_all(&manager, 1_000_000, move |_| (0, EnqueueOptions::new().run_at(week)), true).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = status_kib("VmRSS:");
    let cpu = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cpu = cpu_seconds() - cpu;
    manager.shutdown(Duration::from_secs(10)).await;
    println!("scheduled {cpu_a} {window} {p50} {p99} {rss_before} {rss_after} {idle_cpu}");
}

/// Runs [`child`] in a fresh process and prints its figures.
pub(crate) fn run() {
    let exe = std::env::current_exe().expect("own path");
    let output =
        std::process::Command::new(exe).arg("__scheduled").output().expect("scheduled run");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.starts_with("scheduled ")).unwrap_or_else(|| {
        panic!("no scheduled line: {text} {}", String::from_utf8_lossy(&output.stderr))
    });
    let figures: Vec<f64> =
        line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let [cpu_a, window, p50, p99, before, after, idle] = figures[..] else {
        panic!("bad line: {line}")
    };
    eprintln!(
        "scheduled (a): 100,000 tasks due over 20 s: {cpu_a:.2} CPU s over {window:.1} s, started p50 {p50:.1} ms / p99 {p99:.1} ms after their due time\n\
         scheduled (b): 1,000,000 tasks due in a week: RSS {:.0} MiB before, {:.0} MiB after; {idle:.2} CPU s in 5 idle s",
        before / 1024.0,
        after / 1024.0
    );
}
