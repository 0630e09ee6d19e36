//! HTTP: an axum route that durably enqueues one task (SQLite, the default store) and returns
//! its id, beside the same route returning a fixed id without a task, both under the same
//! load from `wrk` (Debian's package; installed if missing) at 32 connections for 10 s.

use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde_json::json;
use taskflow::{TaskId, Tasks};

use crate::{Row, noop_async};

/// `wrk` for the load, installed from Debian's packages when missing.
fn wrk() -> Option<&'static str> {
    let found = |path: &str| std::path::Path::new(path).exists();
    if !found("/usr/bin/wrk") {
        eprintln!("http: installing wrk");
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-q", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    if found("/usr/bin/wrk") {
        Some("/usr/bin/wrk")
    } else {
        eprintln!("http: skipped: wrk is not installed and could not be");
        None
    }
}

/// Requests/s, p50 and p99 latency (ms) of one `wrk` run against `url`.
fn load(wrk: &str, url: &str, seconds: u64) -> (f64, f64, f64) {
    let script =
        std::env::temp_dir().join(format!("taskflow-bench-post-{}.lua", std::process::id()));
    std::fs::write(&script, "wrk.method = \"POST\"\n").expect("wrk script");
    let output = Command::new(wrk)
        .args(["-t2", "-c32", &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(&script)
        .arg(url)
        .output()
        .expect("run wrk");
    if std::env::var_os("TASKFLOW_BENCH_VERBOSE").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| -> f64 {
        let line = text.lines().find(|l| l.trim_start().starts_with(prefix)).unwrap_or("");
        let value = line.trim_start().trim_start_matches(prefix).trim();
        let value = value.split_whitespace().next().unwrap_or("0");
        let (number, scale) = if let Some(v) = value.strip_suffix("ms") {
            (v, 1.0)
        } else if let Some(v) = value.strip_suffix("us") {
            (v, 0.001)
        } else if let Some(v) = value.strip_suffix('s') {
            (v, 1000.0)
        } else {
            (value, 1.0)
        };
        number.parse::<f64>().unwrap_or(0.0) * scale
    };
    // A figure from failed requests would be a lie: stop instead.
    assert!(
        !text.lines().any(|l| l.contains("Non-2xx") || l.contains("Socket errors")),
        "wrk reported errors for {url}:\n{text}"
    );
    (field("Requests/sec:"), field("50%"), field("99%"))
}

async fn enqueue(tasks: Tasks) -> axum::Json<serde_json::Value> {
    let id = tasks.add_task(noop_async, 1);
    axum::Json(json!({ "task_id": id }))
}

async fn fixed() -> axum::Json<serde_json::Value> {
    static ID: std::sync::OnceLock<TaskId> = std::sync::OnceLock::new();
    axum::Json(json!({ "task_id": ID.get_or_init(TaskId::new) }))
}

/// Runs the scenario; returns its rows (requests/s, p50, p99).
pub(crate) async fn run(reps: usize) -> Vec<Row> {
    let Some(wrk) = wrk() else { return Vec::new() };
    let dir = tempfile::tempdir().expect("temp dir");
    let manager =
        crate::builder().sqlite(dir.path().join("tasks.db")).build().await.expect("manager");
    let app = Router::new()
        .route("/enqueue", post(enqueue))
        .route("/fixed", post(fixed))
        .layer(manager.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let seconds = 10;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        // Alternate, so drift hits both alike; wrk runs on its own threads, so the server's
        // runtime keeps running while this thread waits for it.
        let enqueue_url = format!("{base}/enqueue");
        let fixed_url = format!("{base}/fixed");
        let before = crate::thread_cpu();
        ours.push(
            tokio::task::spawn_blocking(move || load(wrk, &enqueue_url, seconds))
                .await
                .expect("wrk"),
        );
        if std::env::var_os("TASKFLOW_BENCH_PHASES").is_some() {
            eprintln!("http: CPU seconds by thread during one {seconds} s enqueue run:");
            crate::print_thread_cpu(&before, &crate::thread_cpu());
        }
        theirs.push(
            tokio::task::spawn_blocking(move || load(wrk, &fixed_url, seconds)).await.expect("wrk"),
        );
    }
    manager.shutdown(Duration::from_secs(30)).await;
    let column = |runs: &[(f64, f64, f64)], pick: fn(&(f64, f64, f64)) -> f64| -> Vec<f64> {
        runs.iter().map(pick).collect()
    };
    let route = "POST route that durably enqueues one task (SQLite), wrk -c32 10 s";
    let baseline = "the same route returning a fixed id, no task";
    vec![
        Row {
            scenario: route.to_owned(),
            unit: "requests/s",
            taskflow: column(&ours, |r| r.0),
            baseline: column(&theirs, |r| r.0),
            baseline_name: baseline,
        },
        Row {
            scenario: format!("{route}: p50 latency"),
            unit: "ms (lower is better)",
            taskflow: column(&ours, |r| r.1),
            baseline: column(&theirs, |r| r.1),
            baseline_name: baseline,
        },
        Row {
            scenario: format!("{route}: p99 latency"),
            unit: "ms (lower is better)",
            taskflow: column(&ours, |r| r.2),
            baseline: column(&theirs, |r| r.2),
            baseline_name: baseline,
        },
    ]
}
