//! The crash test: an app process serving requests that enqueue tasks is killed with SIGKILL
//! mid-load and started again on the same database. Every task id a client received must end
//! `success` (requeued tasks) or `interrupted` (the others), none lost, none run twice unless
//! requeued after the crash.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use taskflow::{TaskId, TaskStatus};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::wait_until;

pub(crate) struct App {
    pub(crate) child: Child,
    pub(crate) base: String,
}

pub(crate) async fn start(database: &str, runs: &Path, env: &[(&str, &str)]) -> App {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crash-app"));
    command.arg(database).env("CRASH_APP_RUNS", runs).envs(env.iter().copied());
    let mut child =
        command.stdout(Stdio::piped()).kill_on_drop(true).spawn().expect("start crash-app");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("crash-app did not start in time")
        .unwrap()
        .expect("crash-app exited before serving");
    let base = line.strip_prefix("listening ").expect("the listening line").to_owned();
    App { child, base }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Requeued,
    Plain,
}

/// Eight clients enqueue without pause into `apps` (client `i` into app `i % apps.len()`),
/// until at least `enough` ids came back; then `apps[0]` is killed with SIGKILL. Returns every
/// id a client received, with its kind, and when the kill was sent.
async fn load_then_kill(
    apps: &mut [App],
    enough: usize,
) -> (Vec<(TaskId, Kind)>, chrono::DateTime<chrono::Utc>) {
    let received: Arc<Mutex<Vec<(TaskId, Kind)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let mut clients = Vec::new();
    for worker in 0..8u64 {
        let (received, stop, client) = (received.clone(), stop.clone(), client.clone());
        let base = apps[worker as usize % apps.len()].base.clone();
        clients.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let kind = if n % 2 == 0 { Kind::Requeued } else { Kind::Plain };
                let path = if kind == Kind::Requeued { "requeued" } else { "plain" };
                n += 8;
                let Ok(response) = client.post(format!("{base}/enqueue/{path}/{n}")).send().await
                else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue; // the app is gone: this client received no id
                };
                let Ok(body) = response.json::<Value>().await else { continue };
                let id: TaskId = body["id"].as_str().unwrap().parse().unwrap();
                received.lock().unwrap().push((id, kind));
            }
        }));
    }
    wait_until(Duration::from_secs(60), "clients to receive their ids", || async {
        (received.lock().unwrap().len() >= enough).then_some(())
    })
    .await;
    let killed_at = chrono::Utc::now();
    apps[0].child.kill().await.unwrap(); // SIGKILL
    tokio::time::sleep(Duration::from_millis(200)).await; // the others go on a moment
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let received = received.lock().unwrap().clone();
    (received, killed_at)
}

/// Waits until every received id has ended (asking `base`), then checks each ran as its kind
/// allows: requeued tasks succeed, at most once more per recovery; the others succeed after
/// one run or end `interrupted`. Returns how many the kill caught running, and when the last
/// of the recovered ones finished.
async fn check_outcomes(
    base: &str,
    received: &[(TaskId, Kind)],
    runs: &Path,
) -> (usize, Option<chrono::DateTime<chrono::Utc>>) {
    let http = reqwest::Client::new();
    let mut records = HashMap::new();
    for (id, kind) in received {
        let url = format!("{base}/tasks/{id}");
        let record: Value = wait_until(Duration::from_secs(60), "the task to finish", || async {
            let response = http.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "task {id} ({kind:?}) was lost");
            let record: Value = response.json().await.unwrap();
            let status: TaskStatus = serde_json::from_value(record["status"].clone()).unwrap();
            status.is_finished().then_some(record)
        })
        .await;
        records.insert(*id, (*kind, record));
    }
    let log = std::fs::read_to_string(runs).unwrap();
    let mut starts: HashMap<TaskId, u32> = HashMap::new();
    let mut per_process: std::collections::BTreeMap<String, usize> = Default::default();
    for line in log.lines() {
        let mut words = line.strip_prefix("start ").unwrap().split(' ');
        let id = words.next().unwrap().parse().unwrap();
        *per_process.entry(words.next().unwrap_or("?").to_owned()).or_default() += 1;
        *starts.entry(id).or_default() += 1;
    }
    let mut crashed = 0;
    let mut last_recovered = None;
    for (id, (kind, record)) in &records {
        let status: TaskStatus = serde_json::from_value(record["status"].clone()).unwrap();
        let recoveries = record["recoveries"].as_u64().unwrap() as u32;
        let started = starts.get(id).copied().unwrap_or(0);
        match kind {
            Kind::Requeued => {
                assert_eq!(status, TaskStatus::Success, "{record}");
                assert!(started >= 1, "{id} never ran");
                assert!(
                    started <= recoveries + 1,
                    "{id} ran {started} times with {recoveries} recoveries"
                );
                crashed += usize::from(recoveries > 0);
                if recoveries > 0 {
                    let ended = serde_json::from_value(record["end_time"].clone()).unwrap();
                    last_recovered = last_recovered.max(Some(ended));
                }
            }
            Kind::Plain => {
                match status {
                    TaskStatus::Success => assert_eq!(started, 1, "{id}: {record}"),
                    TaskStatus::Interrupted => {
                        assert!(started <= 1, "{id} ran {started} times");
                        crashed += 1;
                    }
                    other => panic!("{id} ended {other}: {record}"),
                }
                assert_eq!(recoveries, 0);
            }
        }
    }
    println!("runs per process: {per_process:?}");
    (crashed, last_recovered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_app_loses_no_task_and_runs_none_twice_unless_requeued() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("tasks.db").display().to_string();
    let runs = dir.path().join("runs.log");
    let mut apps = [start(&database, &runs, &[]).await];
    let (received, _) = load_then_kill(&mut apps, 400).await;
    let restarted = start(&database, &runs, &[]).await;
    let (crashed, _) = check_outcomes(&restarted.base, &received, &runs).await;
    assert!(crashed > 0, "the kill should have caught some tasks running");
    println!("crash test: {} ids received, {crashed} caught running by the kill", received.len());
}

/// Three app processes on one shared store at `url`; one is killed mid-load; the survivors
/// reclaim its tasks once its lease lapses and take its pending ones.
async fn kill_one_of_three(url: &str, backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs.log");
    // A short lease, so the survivors reclaim the dead instance's tasks quickly.
    let env = [("CRASH_APP_LEASE_MS", "1500"), ("CRASH_APP_POLL_MS", "200")];
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(start(url, &runs, &env).await);
    }
    let (received, killed_at) = load_then_kill(&mut apps, 600).await;
    let (crashed, last_recovered) = check_outcomes(&apps[1].base, &received, &runs).await;
    assert!(crashed > 0, "{backend}: the kill should have caught some tasks running");
    let recovered_after = last_recovered.map(|at| (at - killed_at).as_seconds_f64());
    println!(
        "kill test ({backend}, 3 instances, lease 1.5 s): {} ids received, {crashed} caught \
         running by the kill, the last recovered one finished {recovered_after:.1?} s after it",
        received.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_instances_killed_on_postgres_loses_no_task() {
    let Some(schema) = crate::conformance::postgres_schema().await else { return };
    kill_one_of_three(&schema.url, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_instances_killed_on_mysql_loses_no_task() {
    let Some(url) = crate::conformance::mysql_url().await else { return };
    kill_one_of_three(&url, "mysql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_instances_killed_on_redis_loses_no_task() {
    let Ok(url) = std::env::var("TASKFLOW_TEST_REDIS_URL") else {
        println!("skipped: TASKFLOW_TEST_REDIS_URL is not set (.ci/run sets it)");
        return;
    };
    kill_one_of_three(&format!("{url}#kill-{}", TaskId::new()), "redis").await;
}
