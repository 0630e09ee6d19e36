//! Named queues in the engine: each queue's own concurrency, backpressure (`QueueFull`, `429`
//! with `Retry-After` over real HTTP, nothing stored), pause and resume kept in the store, and
//! the builder's checks. Tasks go to queues through `EnqueueOptions::queue`, so that this
//! binary's `#[task]`s stay in the default queue every other test's manager declares.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use taskflow::{EnqueueOptions, Error, Queue, TaskManager, TaskStatus, Tasks, task};

use crate::support::{unique, wait_until};

const LONG: Duration = Duration::from_secs(20);

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Counts how many of its kind run at once, and holds its slot for a moment.
#[task]
async fn queue_counted(pause_ms: u64) {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

#[task]
pub(crate) fn queue_noop(n: u32) -> u32 {
    n
}

fn into(queue: &str) -> EnqueueOptions {
    EnqueueOptions::new().queue(queue)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_runs_no_more_than_its_concurrency() {
    let manager = TaskManager::builder()
        .concurrency(8)
        .queue("single", Queue::new().concurrency(1))
        .build()
        .await
        .unwrap();
    let tasks = manager.tasks();
    let ids: Vec<_> =
        (0..6).map(|_| tasks.add_task_with(queue_counted, 20, into("single"))).collect();
    for id in ids {
        let record = manager.wait_for(id, LONG).await.unwrap();
        assert_eq!(record.status, TaskStatus::Success);
        assert_eq!(record.queue, "single");
    }
    assert_eq!(PEAK.load(Ordering::SeqCst), 1, "one at a time in the queue");
    manager.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_and_stores_nothing() {
    let manager = TaskManager::builder()
        .queue("bounded", Queue::new().max_pending(3))
        .run_queues(["default"]) // nobody takes from `bounded`: its tasks stay pending
        .build()
        .await
        .unwrap();
    let tasks = manager.tasks();
    for n in 0..3 {
        tasks.try_add_task(queue_noop, n, into("bounded")).unwrap();
    }
    let refused = tasks.try_add_task(queue_noop, 3, into("bounded")).unwrap_err();
    match &refused {
        Error::QueueFull { queue, limit, retry_after } => {
            assert_eq!((queue.as_str(), *limit), ("bounded", 3));
            assert!(*retry_after >= 1);
        }
        other => panic!("expected QueueFull, got {other}"),
    }
    let queues = manager.queues().await.unwrap();
    let bounded = queues.iter().find(|q| q.name == "bounded").unwrap();
    assert_eq!(bounded.pending, 3, "the refused task was not stored");
    assert!(!bounded.runs_here);
    assert_eq!(bounded.max_pending, Some(3));
    // Other queues are not affected.
    let id = tasks.try_add_task(queue_noop, 9, EnqueueOptions::new()).unwrap();
    assert_eq!(manager.wait_for(id, LONG).await.unwrap().status, TaskStatus::Success);
    // A higher bound set at run time admits again, on the next count.
    manager.set_max_pending("bounded", Some(4)).await.unwrap();
    tasks.try_add_task(queue_noop, 4, into("bounded")).unwrap();
    manager.shutdown(LONG).await;
}

async fn enqueue_bounded(tasks: Tasks) -> &'static str {
    tasks.add_task_with(queue_noop, 1, into("bounded"));
    "queued"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after() {
    let manager = TaskManager::builder()
        .queue("bounded", Queue::new().max_pending(2))
        .run_queues(["default"])
        .build()
        .await
        .unwrap();
    let app = manager.install(Router::new().route("/enqueue", post(enqueue_bounded)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let response = client.post(format!("{base}/enqueue")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let response = client.post(format!("{base}/enqueue")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    let retry_after = response.headers()["retry-after"].to_str().unwrap().to_owned();
    assert!(retry_after.parse::<u64>().unwrap() >= 1);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["queue"], "bounded");
    assert_eq!(body["max_pending"], 2);
    assert!(body["error"].as_str().unwrap().contains("queue `bounded` is full"), "{body}");
    let queues = manager.queues().await.unwrap();
    assert_eq!(queues.iter().find(|q| q.name == "bounded").unwrap().pending, 2, "nothing stored");
    manager.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_starts_nothing_until_resumed_and_the_pause_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let build = || {
        TaskManager::builder()
            .sqlite(&path)
            .queue("work", Queue::new())
            .poll_every(Duration::from_millis(50))
            .build()
    };
    let manager = build().await.unwrap();
    assert!(manager.pause_queue("work").await.unwrap().paused);
    let tasks = manager.tasks();
    let waiting = tasks.try_add_task(queue_noop, 1, into("work")).unwrap();
    let other = tasks.try_add_task(queue_noop, 2, EnqueueOptions::new()).unwrap();
    assert_eq!(manager.wait_for(other, LONG).await.unwrap().status, TaskStatus::Success);
    // Its producer fetches at every poll: give it a few.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(manager.store().get(&waiting).await.unwrap().unwrap().status, TaskStatus::Pending);
    manager.shutdown(LONG).await;

    let manager = build().await.unwrap();
    let queues = manager.queues().await.unwrap();
    assert!(queues.iter().find(|q| q.name == "work").unwrap().paused, "kept in the store");
    assert_eq!(manager.store().get(&waiting).await.unwrap().unwrap().status, TaskStatus::Pending);
    manager.resume_queue("work").await.unwrap();
    assert_eq!(manager.wait_for(waiting, LONG).await.unwrap().status, TaskStatus::Success);
    manager.shutdown(LONG).await;
}

#[tokio::test]
async fn bad_queue_settings_fail_the_build() {
    for (queue, field) in [
        (Queue::new().concurrency(0), "concurrency"),
        (Queue::new().global_concurrency(0), "global_concurrency"),
        (Queue::new().max_pending(0), "max_pending"),
        (Queue::new().rate_limit(0, Duration::from_secs(1)), "rate limit"),
        (Queue::new().rate_limit(5, Duration::ZERO), "rate limit"),
        (Queue::new().rate_limit(5, Duration::from_secs(1)).burst(0), "burst"),
    ] {
        let err = TaskManager::builder().queue("q", queue).build().await.unwrap_err();
        assert!(matches!(err, Error::InvalidQueue { .. }), "{err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    let err = TaskManager::builder().queue("a b", Queue::new()).build().await.unwrap_err();
    assert!(err.to_string().contains("queue name"), "{err}");
    let err = TaskManager::builder().run_queues(["nope"]).build().await.unwrap_err();
    assert!(matches!(err, Error::UnknownQueue { .. }), "{err}");
}

#[tokio::test]
async fn an_undeclared_queue_is_refused_at_enqueue() {
    let manager = TaskManager::builder().build().await.unwrap();
    let key = unique("undeclared");
    let err = manager.tasks().try_add_task(queue_noop, 1, into(&key)).unwrap_err();
    assert!(matches!(err, Error::UnknownQueue { .. }), "{err}");
    assert!(err.to_string().contains(&key), "{err}");
    assert!(manager.pause_queue(&key).await.is_err());
    assert!(manager.set_concurrency("default", 0).await.is_err(), "zero is refused");
    let state = manager.set_concurrency("default", 3).await.unwrap();
    assert_eq!(state.concurrency, Some(3));
    wait_until(LONG, "the new concurrency to apply", || async {
        let queues = manager.queues().await.unwrap();
        queues.iter().any(|q| q.name == "default" && q.concurrency == 3).then_some(())
    })
    .await;
    manager.shutdown(LONG).await;
}
