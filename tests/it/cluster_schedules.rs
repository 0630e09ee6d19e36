//! Schedules over real processes: three app processes on PostgreSQL, MySQL and Redis share a
//! schedule that fires every second; each second's slot fires exactly once, also when the
//! leader is killed with SIGKILL halfway; and one process on SQLite, killed and started again
//! after a 5 s outage, fires each missed slot once (the schedule catches up a minute).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use taskflow::{TaskRecord, TaskStatus};

use crate::crash::{App, start};
use crate::support::wait_until;

const LONG: Duration = Duration::from_secs(90);
const ENV: [(&str, &str); 3] =
    [("CRASH_APP_LEASE_MS", "900"), ("CRASH_APP_POLL_MS", "200"), ("CRASH_APP_SCHEDULE", "1")];

/// The schedule's tasks by slot, as the first live app of `apps` reads them from the
/// store; `None` while none answers. Panics if a slot has two.
async fn by_slot(
    http: &reqwest::Client,
    apps: &[Option<App>],
) -> Option<BTreeMap<DateTime<Utc>, TaskRecord>> {
    for app in apps.iter().flatten() {
        let Ok(response) = http.get(format!("{}/fired", app.base)).send().await else { continue };
        let Ok(tasks) = response.json::<Vec<TaskRecord>>().await else { continue };
        let mut slots = BTreeMap::new();
        for task in tasks {
            let slot: DateTime<Utc> = task.tags["slot"].parse().unwrap();
            if let Some(other) = slots.insert(slot, task.clone()) {
                panic!("slot {slot} fired twice: {} and {}", other.task_id, task.task_id);
            }
        }
        return Some(slots);
    }
    None
}

/// Waits until the schedule has fired a slot at or after `at` and every slot up to it has
/// run; returns the slots.
async fn fired_through(
    http: &reqwest::Client,
    apps: &[Option<App>],
    at: DateTime<Utc>,
) -> BTreeMap<DateTime<Utc>, TaskRecord> {
    wait_until(LONG, "the slots fired and run", || async {
        let slots = by_slot(http, apps).await?;
        let through = slots.last_key_value().is_some_and(|(slot, _)| *slot >= at);
        let run = slots.range(..=at).all(|(_, task)| task.status == TaskStatus::Success);
        (through && run).then_some(slots)
    })
    .await
}

/// Each slot from the first to `last` fired once, one second apart, none missing.
fn assert_every_second(
    slots: &BTreeMap<DateTime<Utc>, TaskRecord>,
    last: DateTime<Utc>,
    what: &str,
) {
    let first = *slots.keys().next().unwrap();
    let seconds: Vec<i64> =
        slots.range(..=last).map(|(slot, _)| (*slot - first).num_seconds()).collect();
    let expected: Vec<i64> = (0..=(last - first).num_seconds()).collect();
    assert_eq!(seconds, expected, "{what}: every second's slot, once each");
}

/// Start counts by task id, from the apps' runs file.
fn starts(runs: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(runs).unwrap_or_default().lines() {
        if let Some(id) = line.split_whitespace().nth(1) {
            *counts.entry(id.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// Three processes on `database` share the schedule: the ten slots from the first fired one
/// fire once each; with `kill`, the leader is killed with SIGKILL after five of them.
async fn three_processes_fire_each_second_once(database: &str, backend: &str, kill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs.log");
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(Some(start(database, &runs, &ENV).await));
    }
    let http = reqwest::Client::new();
    let first = wait_until(LONG, "the first slot", || async {
        by_slot(&http, &apps).await?.keys().next().copied()
    })
    .await;
    if kill {
        fired_through(&http, &apps, first + chrono::Duration::seconds(4)).await;
        let leader = wait_until(LONG, "the leader", || async {
            crate::leader::leading(&http, &apps).await.first().copied()
        })
        .await;
        let mut app = apps[leader].take().unwrap();
        app.child.start_kill().unwrap();
        app.child.wait().await.unwrap();
    }
    let last = first + chrono::Duration::seconds(9);
    let slots = fired_through(&http, &apps, last).await;
    for app in apps.iter_mut().flatten() {
        app.child.start_kill().unwrap();
        app.child.wait().await.unwrap();
    }
    let window: Vec<&TaskRecord> = slots.range(first..=last).map(|(_, task)| task).collect();
    assert_eq!(window.len(), 10, "{backend}: ten slots in ten seconds");
    assert_every_second(&slots, last, backend);
    let starts = starts(&runs);
    for task in window {
        let n = starts.get(&task.task_id.to_string()).copied().unwrap_or(0);
        // A task the killed leader had started runs again (it is requeued on interrupt).
        assert!(n == 1 || (kill && n == 2), "{backend}: {} started {n} times", task.task_id);
        assert_eq!(task.source, taskflow::TaskSource::Scheduled);
    }
    println!("{backend}: slots {first} to {last} fired once each (leader killed: {kill})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_postgres_fire_each_second_once() {
    let Some(schema) = crate::conformance::postgres_schema().await else { return };
    three_processes_fire_each_second_once(&schema.url, "postgres", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_postgres_fire_each_second_once_when_the_leader_is_killed() {
    let Some(schema) = crate::conformance::postgres_schema().await else { return };
    three_processes_fire_each_second_once(&schema.url, "postgres", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_mysql_fire_each_second_once() {
    let Some(url) = crate::conformance::mysql_url().await else { return };
    three_processes_fire_each_second_once(&url, "mysql", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_mysql_fire_each_second_once_when_the_leader_is_killed() {
    let Some(url) = crate::conformance::mysql_url().await else { return };
    three_processes_fire_each_second_once(&url, "mysql", true).await;
}

fn redis_url() -> Option<String> {
    let Ok(url) = std::env::var("TASKFLOW_TEST_REDIS_URL") else {
        println!("skipped: TASKFLOW_TEST_REDIS_URL is not set (.ci/run sets it)");
        return None;
    };
    Some(format!("{url}#schedules-{}", taskflow::TaskId::new()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_redis_fire_each_second_once() {
    let Some(url) = redis_url() else { return };
    three_processes_fire_each_second_once(&url, "redis", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_redis_fire_each_second_once_when_the_leader_is_killed() {
    let Some(url) = redis_url() else { return };
    three_processes_fire_each_second_once(&url, "redis", true).await;
}

/// One process on SQLite, killed, and started again after five seconds: the slots of the
/// outage fire after the restart (within the minute it catches up), once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_app_back_after_an_outage_fires_each_missed_slot_once() {
    let dir = tempfile::tempdir().unwrap();
    let (runs, database) = (dir.path().join("runs.log"), dir.path().join("tasks.db"));
    let database = database.to_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let mut apps = [Some(start(&database, &runs, &ENV).await)];
    let first = wait_until(LONG, "the first slot", || async {
        by_slot(&http, &apps).await?.keys().next().copied()
    })
    .await;
    fired_through(&http, &apps, first + chrono::Duration::seconds(2)).await;
    let mut app = apps[0].take().unwrap();
    app.child.start_kill().unwrap();
    app.child.wait().await.unwrap();
    let down = Utc::now();
    // The outage itself: five seconds with no process running the schedule.
    tokio::time::sleep(Duration::from_secs(5)).await;
    apps[0] = Some(start(&database, &runs, &ENV).await);
    let back = Utc::now();
    let last = back + chrono::Duration::seconds(2);
    let slots = fired_through(&http, &apps, last).await;
    for app in apps.iter_mut().flatten() {
        app.child.start_kill().unwrap();
        app.child.wait().await.unwrap();
    }
    assert_every_second(&slots, last, "sqlite");
    let missed: Vec<&TaskRecord> = slots
        .range(down + chrono::Duration::seconds(1)..back - chrono::Duration::seconds(1))
        .map(|(_, task)| task)
        .collect();
    assert!(missed.len() >= 3, "the outage's slots: {}", missed.len());
    for task in &missed {
        assert!(task.created_at >= back - chrono::Duration::seconds(1), "fired after the restart");
    }
    let starts = starts(&runs);
    for (slot, task) in slots.range(..=last) {
        let n = starts.get(&task.task_id.to_string()).copied().unwrap_or(0);
        assert!(n == 1 || n == 2, "slot {slot}: {} started {n} times", task.task_id);
    }
    println!("sqlite: {} slots of the outage fired after the restart, once each", missed.len());
}
