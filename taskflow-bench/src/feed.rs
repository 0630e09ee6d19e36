//! The live feed's cost: durable SQLite tasks enqueued and run while 10 clients read the
//! admin stream (`curl -N`, separate processes), beside the same run with nobody reading.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Row, all_ran, expect_runs, median, noop_async, rate};

const TASKS: usize = 100_000;
const READERS: usize = 10;

/// One stream reader: a `curl` child whose output a thread counts.
struct Reader {
    child: Child,
    bytes: Arc<AtomicU64>,
}

fn reader(url: &str) -> Reader {
    let mut child = Command::new("curl")
        .args(["-sN", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl (the feed scenario needs it)");
    let mut stdout = child.stdout.take().expect("piped");
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&bytes);
    std::thread::spawn(move || {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(n) = stdout.read(&mut buffer) {
            if n == 0 {
                break;
            }
            counted.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    Reader { child, bytes }
}

/// CPU seconds (user + system) process `pid` has used, from `/proc` (0 where unreadable).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// tasks/s with `readers` stream clients, and the bytes each received on average.
async fn run_once(readers: usize) -> (f64, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let manager =
        crate::builder().sqlite(dir.path().join("tasks.db")).build().await.expect("manager");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/tasks/stream", listener.local_addr().expect("addr"));
    let app = manager.admin_router();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut clients: Vec<Reader> = (0..readers).map(|_| reader(&url)).collect();
    // Every client has its first event (the `connected` snapshot) before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while clients.iter().any(|c| c.bytes.load(Ordering::Relaxed) == 0) {
        assert!(Instant::now() < deadline, "stream clients did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    expect_runs(TASKS);
    let cpu_before = cpu_seconds("self");
    let started = Instant::now();
    for n in 0..TASKS as u64 {
        manager.add_task(noop_async, n);
    }
    all_ran().await;
    manager.shutdown(Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    server.abort();
    let server_cpu = cpu_seconds("self") - cpu_before;
    let readers_cpu: f64 = clients.iter().map(|c| cpu_seconds(&c.child.id().to_string())).sum();
    if std::env::var_os("TASKFLOW_BENCH_PHASES").is_some() {
        eprintln!(
            "feed: {readers} readers, {:.1} s; CPU s: taskflow process {server_cpu:.1}, readers {readers_cpu:.1}",
            elapsed.as_secs_f64()
        );
    }
    let mut received = 0;
    for client in &mut clients {
        let _ = client.child.kill();
        let _ = client.child.wait();
        received += client.bytes.load(Ordering::Relaxed);
    }
    (rate(TASKS, elapsed), received / readers.max(1) as u64)
}

pub(crate) async fn run(reps: usize) -> Vec<Row> {
    let mut read = Vec::new();
    let mut alone = Vec::new();
    let mut bytes = Vec::new();
    for rep in 0..=reps {
        let (with_readers, per_reader) = run_once(READERS).await;
        let (without, _) = run_once(0).await;
        if rep > 0 {
            read.push(with_readers);
            alone.push(without);
            bytes.push(per_reader as f64);
        }
    }
    eprintln!(
        "feed: each of {READERS} readers received {:.1} MB (median) for {TASKS} tasks",
        median(&bytes) / 1e6
    );
    vec![Row {
        scenario: format!("durable SQLite, {TASKS} tasks, {READERS} SSE readers (curl)"),
        unit: "tasks/s",
        taskflow: read,
        baseline: alone,
        baseline_name: "same, no reader",
    }]
}
