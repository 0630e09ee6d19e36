//! Task metrics through the `metrics` facade (feature `metrics`): `MetricsObserver` counts
//! each lifecycle event by task and queue, times each attempt by its outcome, and keeps a
//! gauge of running attempts. Its own test binary: the recorder is the process's global one.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use taskflow::{EnqueueOptions, MetricsObserver, Queue, TaskManager, TaskStatus};

const LONG: Duration = Duration::from_secs(30);

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    })
}

static FLAKY: AtomicU32 = AtomicU32::new(0);

#[taskflow::task(queue = "emails")]
async fn send_email(to: String) {
    let _ = to;
}

/// Fails its first attempt.
#[taskflow::task(retries = 1, delay = "10ms")]
async fn flaky_sync() -> Result<(), String> {
    if FLAKY.fetch_add(1, Ordering::SeqCst) == 0 { Err("first".into()) } else { Ok(()) }
}

#[taskflow::task(retries = 0)]
async fn always_fails() -> Result<(), String> {
    Err("no".into())
}

/// Everything recorded so far, summed over snapshots (a snapshot of the debugging recorder
/// takes counters and histograms out of it): counters added up, histograms' values
/// gathered, gauges as last seen. Keyed by name and sorted labels.
#[derive(Default)]
struct Totals(HashMap<(String, Vec<(String, String)>), DebugValue>);

impl Totals {
    fn gather(&mut self) {
        for (key, _, _, value) in snapshotter().snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<(String, String)> =
                key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            labels.sort();
            let slot = (key.name().to_owned(), labels);
            match (self.0.get_mut(&slot), value) {
                (Some(DebugValue::Counter(total)), DebugValue::Counter(n)) => *total += n,
                (Some(DebugValue::Histogram(all)), DebugValue::Histogram(more)) => all.extend(more),
                (_, value) => {
                    self.0.insert(slot, value);
                }
            }
        }
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut labels: Vec<(String, String)> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        labels.sort();
        self.0.get(&(name.to_owned(), labels))
    }

    fn counter(&self, name: &str, task: &str, queue: &str) -> u64 {
        match self.get(name, &[("task", task), ("queue", queue)]) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn durations(&self, task: &str, queue: &str, outcome: &str) -> usize {
        let labels = [("task", task), ("queue", queue), ("outcome", outcome)];
        match self.get("taskflow_task_duration_seconds", &labels) {
            Some(DebugValue::Histogram(values)) => values.len(),
            None => 0,
            Some(other) => panic!("not a histogram: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_become_counters_durations_and_a_running_gauge() {
    snapshotter();
    let manager = TaskManager::builder()
        .observer(MetricsObserver::new())
        .queue("emails", Queue::new())
        .build()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(manager.add_task(send_email, format!("user{n}@example.com")));
    }
    let flaky = manager.add_task(flaky_sync, ());
    let failing = manager.add_task(always_fails, ());
    let later = EnqueueOptions::new().run_at(chrono::Utc::now() + chrono::Duration::hours(1));
    let cancelled = manager.submit(send_email, "later@example.com".to_owned(), later).await;
    let cancelled = cancelled.unwrap();
    manager.cancel(cancelled).await.unwrap();
    for id in ids.iter().chain([&flaky]) {
        assert_eq!(manager.wait_for(*id, LONG).await.unwrap().status, TaskStatus::Success);
    }
    assert_eq!(manager.wait_for(failing, LONG).await.unwrap().status, TaskStatus::Failed);

    // Events are sent as the changes are made; the last ones may trail the wait by a moment.
    let mut totals = Totals::default();
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        totals.gather();
        if totals.counter("taskflow_tasks_failed_total", "always_fails", "default") > 0
            && totals.durations("always_fails", "default", "failed") > 0
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the failure is counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counter = |name: &str, task: &str, queue: &str| totals.counter(name, task, queue);
    assert_eq!(counter("taskflow_tasks_enqueued_total", "send_email", "emails"), 4);
    assert_eq!(counter("taskflow_tasks_started_total", "send_email", "emails"), 3);
    assert_eq!(counter("taskflow_tasks_succeeded_total", "send_email", "emails"), 3);
    assert_eq!(counter("taskflow_tasks_cancelled_total", "send_email", "emails"), 1);
    assert_eq!(counter("taskflow_tasks_started_total", "flaky_sync", "default"), 2);
    assert_eq!(counter("taskflow_tasks_retried_total", "flaky_sync", "default"), 1);
    assert_eq!(counter("taskflow_tasks_succeeded_total", "flaky_sync", "default"), 1);
    assert_eq!(counter("taskflow_tasks_failed_total", "always_fails", "default"), 1);
    assert_eq!(counter("taskflow_tasks_succeeded_total", "always_fails", "default"), 0);
    assert_eq!(totals.durations("send_email", "emails", "succeeded"), 3, "one per attempt");
    assert_eq!(totals.durations("flaky_sync", "default", "retried"), 1);
    assert_eq!(totals.durations("flaky_sync", "default", "succeeded"), 1);
    assert_eq!(totals.durations("send_email", "emails", "cancelled"), 0, "it never started");
    for queue in ["emails", "default"] {
        match totals.get("taskflow_tasks_running", &[("queue", queue)]) {
            Some(DebugValue::Gauge(running)) => assert_eq!(running.into_inner(), 0.0, "{queue}"),
            other => panic!("the running gauge of {queue}: {other:?}"),
        }
    }
    manager.shutdown(LONG).await;
}
