//! The engine without HTTP: lifecycle, retries and their timing, failures, panics, timeouts,
//! idempotency, context, logs, observers, cancel, shutdown, concurrency and priority.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use taskflow::{
    CancelOutcome, EnqueueOptions, EventKind, LogLevel, MemoryObserver, TaskManager, TaskStatus,
    task, task_context, task_log,
};

use crate::support::{note, notes, unique, wait_until};

const LONG: Duration = Duration::from_secs(20);

#[task(retries = 3, delay = "1s", backoff = 2.0)]
async fn flaky(key: String, failures: usize) -> Result<String, std::io::Error> {
    note(&key, "attempt");
    if notes(&key).len() <= failures {
        return Err(std::io::Error::other(format!("attempt {} failed", notes(&key).len())));
    }
    Ok(format!("done after {}", notes(&key).len()))
}

#[task(retries = 4, delay = "1s", backoff = 10.0, max_delay = "5s")]
async fn timed(key: String) -> Result<(), String> {
    TIMES.lock().unwrap().entry(key).or_default().push(tokio::time::Instant::now());
    Err("always".to_owned())
}

static TIMES: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, Vec<tokio::time::Instant>>>,
> = std::sync::LazyLock::new(Default::default);

/// The gaps between attempts, to the 10 ms (the timer's granularity and the store's round
/// trip add a little to each wait).
fn attempt_gaps(key: &str) -> Vec<Duration> {
    let times = TIMES.lock().unwrap().get(key).cloned().unwrap_or_default();
    let to_10ms = |gap: Duration| Duration::from_millis(gap.as_millis() as u64 / 10 * 10);
    times.windows(2).map(|w| to_10ms(w[1] - w[0])).collect()
}

#[task(retries = 3, delay = "1s", backoff = 2.0)]
async fn backing_off(key: String, failures: usize) -> Result<usize, String> {
    let mut times = TIMES.lock().unwrap();
    let list = times.entry(key).or_default();
    list.push(tokio::time::Instant::now());
    if list.len() <= failures {
        Err(format!("attempt {} failed", list.len()))
    } else {
        Ok(list.len())
    }
}

#[tokio::test(start_paused = true)]
async fn retries_wait_delay_times_backoff_to_the_power_of_the_retry() {
    let manager = TaskManager::in_memory();
    let key = unique("backoff");
    let id = manager.add_task(backing_off, (key.clone(), 2));
    let record = manager.wait_for(id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(record.status, TaskStatus::Success);
    assert_eq!(record.retries_used, 2);
    assert_eq!(record.result, Some(json!(3)));
    // delay * backoff^(n-1): 1s before the first retry, 2s before the second.
    assert_eq!(attempt_gaps(&key), [Duration::from_secs(1), Duration::from_secs(2)]);
}

#[tokio::test(start_paused = true)]
async fn retry_waits_are_capped_by_max_delay() {
    let manager = TaskManager::in_memory();
    let key = unique("cap");
    let id = manager.add_task(timed, key.clone());
    let record = manager.wait_for(id, Duration::from_secs(120)).await.unwrap();
    assert_eq!(record.status, TaskStatus::Failed);
    assert_eq!(record.retries_used, 4, "1 + retries runs in all");
    let s = Duration::from_secs;
    assert_eq!(attempt_gaps(&key), [s(1), s(5), s(5), s(5)]);
}

#[tokio::test(start_paused = true)]
async fn final_failure_keeps_attempts_error_and_chain() {
    let observer = MemoryObserver::new();
    let manager = TaskManager::builder().observer(Arc::clone(&observer)).build().await.unwrap();
    let key = unique("fails");
    let id = manager.add_task_with(flaky, (key.clone(), 10), EnqueueOptions::new().retries(2));
    let record = manager.wait_for(id, LONG).await.unwrap();
    assert_eq!(record.status, TaskStatus::Failed);
    assert_eq!(record.retries_used, 2);
    assert_eq!(record.max_retries, 2);
    assert_eq!(record.error.as_deref(), Some("attempt 3 failed"));
    assert_eq!(notes(&key).len(), 3);
    assert!(record.start_time.is_some() && record.end_time.is_some() && record.duration.is_some());
    use EventKind::*;
    assert_eq!(
        observer.kinds_of(id),
        [Enqueued, Started, Retrying, Started, Retrying, Started, Failed]
    );
    let json = serde_json::to_value(&record).unwrap();
    for key in [
        "task_id",
        "func_name",
        "status",
        "created_at",
        "start_time",
        "end_time",
        "duration",
        "retries_used",
        "error",
        "stacktrace",
        "logs",
        "tags",
        "source",
        "priority",
        "args",
        "result",
        "idempotency_key",
        "max_retries",
    ] {
        assert!(json.get(key).is_some(), "missing JSON key {key}");
    }
    assert_eq!(json["status"], "failed");
    assert_eq!(json["source"], "manual");
    assert_eq!(json["func_name"], "flaky");
}

#[task]
fn explodes(message: String) -> u32 {
    panic!("{message}");
}

#[tokio::test]
async fn panics_are_recorded_and_the_process_goes_on() {
    let manager = TaskManager::in_memory();
    let id = manager.add_task(explodes, "the disk is on fire".to_owned());
    let other = manager.add_task(flaky, (unique("after-panic"), 0));
    let record = manager.wait_for(id, LONG).await.unwrap();
    assert_eq!(record.status, TaskStatus::Failed);
    assert_eq!(record.error.as_deref(), Some("panic: the disk is on fire"));
    let trace = record.stacktrace.unwrap();
    assert!(trace.contains("engine.rs"), "{trace}");
    assert_eq!(manager.wait_for(other, LONG).await.unwrap().status, TaskStatus::Success);
}

#[task(timeout = "50ms", retries = 1)]
async fn sleepy(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_a_failed_attempt() {
    let manager = TaskManager::in_memory();
    let id = manager.add_task(sleepy, 10);
    let record = manager.wait_for(id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(record.status, TaskStatus::Failed);
    assert_eq!(record.retries_used, 1);
    assert_eq!(record.error.as_deref(), Some("timed out after 50ms"));
}

#[task]
async fn charge(invoice: u64) -> u64 {
    invoice
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_under_a_thousand_concurrent_calls_makes_one_task() {
    let manager = TaskManager::in_memory();
    let key = unique("invoice-7");
    let mut calls = Vec::new();
    for _ in 0..1000 {
        let (manager, key) = (manager.clone(), key.clone());
        calls.push(tokio::spawn(async move {
            manager.add_task_with(charge, 7, EnqueueOptions::new().idempotency_key(key))
        }));
    }
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "every call got the same id");
    let query = taskflow::TaskQuery {
        func_name: Some("charge".into()),
        limit: Some(10_000),
        ..Default::default()
    };
    let stored = manager.store().list(&query).await.unwrap().tasks;
    assert_eq!(stored.iter().filter(|r| r.idempotency_key.as_deref() == Some(&*key)).count(), 1);
    assert_eq!(manager.wait_for(ids[0], LONG).await.unwrap().status, TaskStatus::Success);

    // A failed task frees its key: the next enqueue creates a new task.
    let fkey = unique("retry-after-failure");
    let first = manager.add_task_with(
        explodes,
        "x".to_owned(),
        EnqueueOptions::new().idempotency_key(&fkey),
    );
    manager.wait_for(first, LONG).await.unwrap();
    let second = manager.add_task_with(
        explodes,
        "x".to_owned(),
        EnqueueOptions::new().idempotency_key(&fkey),
    );
    assert_ne!(first, second);
}

fn describe_context() -> BTreeMap<String, String> {
    let ctx = task_context().expect("called from inside a task");
    let mut out = ctx.tags().clone();
    out.insert("func_name".into(), ctx.func_name().to_owned());
    out.insert("attempt".into(), ctx.attempt().to_string());
    out.insert("task_id".into(), ctx.task_id().to_string());
    out
}

#[task(retries = 1)]
async fn async_with_context(fail_first: bool) -> Result<BTreeMap<String, String>, String> {
    tokio::task::yield_now().await;
    let seen = describe_context();
    if fail_first && seen["attempt"] == "0" {
        return Err("first attempt fails".into());
    }
    Ok(seen)
}

#[task]
fn sync_with_context() -> BTreeMap<String, String> {
    std::thread::scope(|_| describe_context())
}

#[tokio::test]
async fn tags_and_context_are_visible_in_helpers_of_sync_and_async_tasks() {
    let manager = TaskManager::in_memory();
    let options = || EnqueueOptions::new().tag("user_id", 42).tags([("plan", "pro")]);
    let id = manager.add_task_with(async_with_context, true, options());
    let record = manager.wait_for(id, LONG).await.unwrap();
    let result = record.result.unwrap();
    assert_eq!(result["user_id"], "42");
    assert_eq!(result["plan"], "pro");
    assert_eq!(result["func_name"], "async_with_context");
    assert_eq!(result["attempt"], "1", "the retry sees attempt 1");
    assert_eq!(result["task_id"], id.to_string());
    assert_eq!(record.tags["user_id"], "42");

    let id = manager.add_task_with(sync_with_context, (), options());
    let record = manager.wait_for(id, LONG).await.unwrap();
    let result = record.result.unwrap();
    assert_eq!(result["user_id"], "42");
    assert_eq!(result["attempt"], "0");
    assert!(task_context().is_none(), "no context outside a task");
}

#[task]
async fn chatty(items: Vec<String>) {
    task_log!("starting", count = items.len());
    for (i, item) in items.iter().enumerate() {
        task_log!(debug, "item {i}", item = item);
    }
    task_log!(warn, "done", skipped = Vec::<u8>::new());
}

#[task]
fn chatty_sync(n: u32) {
    task_log!(error, "sync line", n = n);
}

#[tokio::test]
async fn task_logs_are_stored_in_order_with_fields_and_observed() {
    let observer = MemoryObserver::new();
    let manager = TaskManager::builder().observer(Arc::clone(&observer)).build().await.unwrap();
    let options = EnqueueOptions::new().tag("batch", "b1");
    let id = manager.add_task_with(chatty, vec!["a".to_owned(), "b".to_owned()], options);
    let record = manager.wait_for(id, LONG).await.unwrap();
    let lines: Vec<_> = record.logs.iter().map(|l| (l.level, l.message.as_str())).collect();
    assert_eq!(
        lines,
        [
            (LogLevel::Info, "starting"),
            (LogLevel::Debug, "item 0"),
            (LogLevel::Debug, "item 1"),
            (LogLevel::Warn, "done")
        ]
    );
    assert_eq!(record.logs[0].fields["count"], json!(2));
    assert_eq!(record.logs[2].fields["item"], json!("b"));
    assert_eq!(record.logs[3].fields["skipped"], json!([]));
    assert!(record.logs.iter().all(|l| l.attempt == 0));
    let log_events: Vec<_> = observer
        .events()
        .into_iter()
        .filter(|e| e.task_id == id && e.kind == EventKind::Log)
        .collect();
    assert_eq!(log_events.len(), 4);
    assert!(log_events.iter().all(|e| e.tags["batch"] == "b1"), "events carry the tags");

    let id = manager.add_task(chatty_sync, 5);
    let record = manager.wait_for(id, LONG).await.unwrap();
    assert_eq!(record.logs[0].message, "sync line");
    assert_eq!(record.logs[0].fields["n"], json!(5));
}

#[task]
async fn hangs(key: String) {
    note(&key, "started");
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn cancel_stops_pending_and_running_tasks() {
    let observer = MemoryObserver::new();
    let manager = TaskManager::builder().observer(Arc::clone(&observer)).build().await.unwrap();
    let key = unique("cancel-pending");
    let later = EnqueueOptions::new().delay(Duration::from_secs(3600));
    let pending = manager.add_task_with(hangs, key.clone(), later);
    assert_eq!(manager.cancel(pending).await.unwrap(), CancelOutcome::Cancelled);
    let record = manager.store().get(&pending).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Cancelled);
    assert!(notes(&key).is_empty(), "a cancelled pending task never runs");
    assert_eq!(observer.kinds_of(pending), [EventKind::Enqueued, EventKind::Cancelled]);

    let key = unique("cancel-running");
    let running = manager.add_task(hangs, key.clone());
    wait_until(LONG, "the task to start", || async { (!notes(&key).is_empty()).then_some(()) })
        .await;
    assert_eq!(manager.cancel(running).await.unwrap(), CancelOutcome::Cancelling);
    let record = manager.wait_for(running, LONG).await.unwrap();
    assert_eq!(record.status, TaskStatus::Cancelled);
    assert_eq!(
        manager.cancel(running).await.unwrap(),
        CancelOutcome::AlreadyFinished(TaskStatus::Cancelled)
    );
    assert_eq!(manager.cancel(taskflow::TaskId::new()).await.unwrap(), CancelOutcome::NotFound);
}

#[task(requeue_on_interrupt = true)]
async fn hangs_requeued(key: String) {
    note(&key, "started");
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn shutdown_interrupts_running_tasks_and_keeps_unstarted_ones_pending() {
    let manager = TaskManager::builder().concurrency(2).build().await.unwrap();
    let (a, b, c) = (unique("shut-a"), unique("shut-b"), unique("shut-c"));
    let interrupted = manager.add_task(hangs, a.clone());
    let requeued = manager.add_task(hangs_requeued, b.clone());
    wait_until(LONG, "both tasks to start", || async {
        (!notes(&a).is_empty() && !notes(&b).is_empty()).then_some(())
    })
    .await;
    let queued = manager.add_task(hangs, c.clone()); // no free slot: it waits
    manager.shutdown(Duration::from_millis(50)).await;
    let get = |id| {
        let store = Arc::clone(manager.store());
        async move { store.get(&id).await.unwrap().unwrap() }
    };
    let record = get(interrupted).await;
    assert_eq!(record.status, TaskStatus::Interrupted);
    assert_eq!(record.error.as_deref(), Some("interrupted by shutdown"));
    assert_eq!(get(requeued).await.status, TaskStatus::Pending, "requeue_on_interrupt");
    assert_eq!(get(queued).await.status, TaskStatus::Pending, "not started, not lost");
    assert!(notes(&c).is_empty());

    // After shutdown, new tasks are stored but not started.
    let after = manager.add_task(charge, 1);
    assert_eq!(get(after).await.status, TaskStatus::Pending);
}

#[task]
async fn counted(key: String, gate: u64) {
    let _ = gate;
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    note(&key, "ran");
}

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MAX_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

#[tokio::test]
async fn the_concurrency_limit_bounds_running_tasks_and_drops_nothing() {
    let manager = TaskManager::builder().concurrency(3).build().await.unwrap();
    let key = unique("limit");
    let ids: Vec<_> = (0..30).map(|i| manager.add_task(counted, (key.clone(), i))).collect();
    for id in ids {
        assert_eq!(manager.wait_for(id, LONG).await.unwrap().status, TaskStatus::Success);
    }
    assert_eq!(notes(&key).len(), 30);
    assert!(MAX_IN_FLIGHT.load(Ordering::SeqCst) <= 3, "{}", MAX_IN_FLIGHT.load(Ordering::SeqCst));
}

#[task]
async fn ordered(key: String, label: String) {
    note(&key, label);
}

#[tokio::test]
async fn queued_tasks_start_by_priority() {
    let manager = TaskManager::builder().concurrency(1).build().await.unwrap();
    let key = unique("priority");
    let gate = manager.add_task(hangs, key.clone());
    wait_until(LONG, "the gate task to hold the only slot", || async {
        (!notes(&key).is_empty()).then_some(())
    })
    .await;
    let low = manager.add_task_with(
        ordered,
        (key.clone(), "low".into()),
        EnqueueOptions::new().priority(1),
    );
    let high = manager.add_task_with(
        ordered,
        (key.clone(), "high".into()),
        EnqueueOptions::new().priority(9),
    );
    let mid = manager.add_task_with(
        ordered,
        (key.clone(), "mid".into()),
        EnqueueOptions::new().priority(5),
    );
    for id in [low, high, mid] {
        let record = manager.store().get(&id).await.unwrap().unwrap();
        assert_eq!(record.status, TaskStatus::Pending, "waiting in the store for the slot");
    }
    assert_eq!(manager.running_count(), 1);
    manager.cancel(gate).await.unwrap();
    for id in [low, high, mid] {
        manager.wait_for(id, LONG).await.unwrap();
    }
    assert_eq!(notes(&key), ["started", "high", "mid", "low"]);
}

#[task]
async fn parent(key: String) -> String {
    let tasks = task_context().and_then(|c| c.tasks()).expect("a task can enqueue others");
    let child = tasks.add_task(ordered, (key, "child".to_owned()));
    child.to_string()
}

#[tokio::test]
async fn a_task_can_enqueue_other_tasks() {
    let manager = TaskManager::in_memory();
    let key = unique("parent");
    let id = manager.add_task(parent, key.clone());
    let record = manager.wait_for(id, LONG).await.unwrap();
    let child: taskflow::TaskId = record.result.unwrap().as_str().unwrap().parse().unwrap();
    assert_eq!(manager.wait_for(child, LONG).await.unwrap().status, TaskStatus::Success);
    assert_eq!(notes(&key), ["child"]);
}

#[task(retries = 2, delay = "1s", jitter = true)]
async fn jittery() {}

#[test]
fn jitter_is_declared_on_the_task() {
    use taskflow::Task;
    assert!(<jittery::jittery as Task>::options().has_jitter());
    assert!(!<ordered::ordered as Task>::options().has_jitter(), "off unless asked for");
    let wait = <jittery::jittery as Task>::options().retry_wait(1);
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
}
