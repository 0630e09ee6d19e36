//! `GET /tasks?limit=1000` over 1,000 finished tasks whose arguments are 1 MB each, in a
//! process of its own: the page's size and time, and the process's peak resident memory
//! while it is served (`VmHWM`, reset just before the request).

use std::time::{Duration, Instant};

use serde_json::json;
use taskflow::{SqliteStore, Store};

const TASKS: usize = 1000;
const ARG_BYTES: usize = 1_000_000;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child: fills the store, then serves and measures one page.
pub(crate) async fn child() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tasks.db");
    let store = SqliteStore::open(&path).expect("open");
    let blob = "a".repeat(ARG_BYTES);
    for n in 0..TASKS {
        let mut record = crate::admin::finished(n);
        record.args = json!({ "blob": blob });
        if let Some(write) = store.enqueue(record).expect("enqueue").write {
            write.wait().await.expect("write");
        }
    }
    store.close().await.expect("close");
    drop(blob);
    let manager = crate::builder().sqlite(&path).build().await.expect("manager");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = manager.admin_router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let _warm = client.get(format!("{base}/tasks?limit=1")).send().await.expect("get");
    // Resets the peak to the current resident size.
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let page = client
        .get(format!("{base}/tasks?limit={TASKS}"))
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    let took = started.elapsed();
    let peak = status_kib("VmHWM:");
    let rows = serde_json::from_slice::<serde_json::Value>(&page).expect("json")["tasks"]
        .as_array()
        .map_or(0, Vec::len);
    let after = status_kib("VmRSS:");
    manager.shutdown(Duration::from_secs(10)).await;
    println!("list {} {rows} {} {before} {peak} {after}", page.len(), took.as_secs_f64() * 1000.0);
}

/// Runs [`child`] in a fresh process and prints its figures.
pub(crate) fn run() {
    let exe = std::env::current_exe().expect("own path");
    let output = std::process::Command::new(exe).arg("__list").output().expect("list run");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.starts_with("list ")).unwrap_or_else(|| {
        panic!("no list line: {text} {}", String::from_utf8_lossy(&output.stderr))
    });
    let figures: Vec<f64> =
        line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let [bytes, rows, millis, before, peak, after] = figures[..] else {
        panic!("bad line: {line}")
    };
    eprintln!(
        "list: GET /tasks?limit={TASKS} over {TASKS} tasks of {} MB arguments: {rows} rows, {:.0} KB in {millis:.0} ms; RSS {:.0} MiB before, peak {:.0} MiB, {:.0} MiB after",
        ARG_BYTES / 1_000_000,
        bytes / 1000.0,
        before / 1024.0,
        peak / 1024.0,
        after / 1024.0
    );
}
