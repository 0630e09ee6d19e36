//! Queues across three instances on one shared store (PostgreSQL, MySQL/MariaDB, Redis): a
//! global concurrency of 2 holds over 2,000 tasks however the three fetch (the peak is counted
//! by the tasks themselves), a pause made on one instance stops starts on all three until
//! another resumes the queue, and a queue's `max_pending` holds across instances without
//! waiting for a poll interval.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use taskflow::{EnqueueOptions, Error, Queue, TaskId, TaskStatus, task};

use crate::multi::{Instance, STRESS_TIMEOUTS, Shared, instance_with};
use crate::support::wait_until;

/// One slot per backend (the tests may share a process): tasks running now, the most ever
/// at once, and starts.
static RUNNING: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
static PEAK: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
static STARTS: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

/// Counts itself among the tasks running at once for its backend, across an await.
#[task]
async fn globally_limited(lane: usize) {
    let now = RUNNING[lane].fetch_add(1, Ordering::SeqCst) + 1;
    PEAK[lane].fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1)).await;
    RUNNING[lane].fetch_sub(1, Ordering::SeqCst);
}

/// Counts its start.
#[task]
fn start_counted(lane: usize) {
    STARTS[lane].fetch_add(1, Ordering::SeqCst);
}

fn into(queue: &str) -> EnqueueOptions {
    EnqueueOptions::new().queue(queue)
}

/// Three instances on `shared`, each running the queue `name` with `queue`'s settings.
fn three(shared: &Shared, name: &'static str, queue: Queue) -> Vec<Instance> {
    (0..3)
        .map(|_| {
            let queue = queue.clone();
            instance_with(shared.clone(), move |builder| {
                builder
                    .concurrency(8)
                    .queue(name, queue)
                    .poll_every(Duration::from_millis(100))
                    .store_timeouts(STRESS_TIMEOUTS)
            })
        })
        .collect()
}

/// Waits until every one of `ids` has succeeded.
async fn all_succeed(instance: &Instance, ids: &[TaskId], backend: &str) {
    let store = instance.manager.store();
    for id in ids {
        let record = wait_until(Duration::from_secs(240), "a task to finish", || async {
            store.get(id).await.unwrap().filter(|r| r.status.is_finished())
        })
        .await;
        assert_eq!(record.status, TaskStatus::Success, "{backend}: {id}");
    }
}

async fn a_global_limit_of_two_holds_over_three_instances(shared: Shared, lane: usize) {
    let backend = ["postgres", "mysql", "redis"][lane];
    let instances = three(&shared, "limited", Queue::new().concurrency(8).global_concurrency(2));
    let mut ids = Vec::new();
    for n in 0..2_000 {
        let manager = &instances[n % 3].manager;
        ids.push(manager.add_task_with(globally_limited, lane, into("limited")));
    }
    all_succeed(&instances[0], &ids, backend).await;
    let peak = PEAK[lane].load(Ordering::SeqCst);
    println!("{backend}: at most {peak} of 2,000 tasks ran at once across three instances");
    assert!(peak <= 2, "{backend}: {peak} ran at once under a global limit of 2");
    assert_eq!(peak, 2, "{backend}: the limit is 2, not 1 (the instances do share the work)");
    for instance in instances {
        instance.stop().await;
    }
}

async fn a_pause_on_one_instance_stops_all_three(shared: Shared, lane: usize) {
    let backend = ["postgres", "mysql", "redis"][lane];
    let instances = three(&shared, "pausable", Queue::new().concurrency(4));
    let live = instances[1].manager.instances().await.unwrap();
    assert_eq!(live.len(), 3, "{backend}: each instance heartbeats at start");
    assert!(live.iter().all(|i| i.queues.contains(&"pausable".to_owned())), "{live:?}");
    let paused = instances[0].manager.pause_queue("pausable").await.unwrap();
    assert!(paused.paused);
    let mut ids = Vec::new();
    for n in 0..30 {
        let manager = &instances[n % 3].manager;
        ids.push(manager.submit(start_counted, lane, into("pausable")).await.unwrap());
    }
    // An observation window of many poll intervals: no instance may start any of them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(STARTS[lane].load(Ordering::SeqCst), 0, "{backend}: a task started while paused");
    for instance in &instances {
        let queues = instance.manager.queues().await.unwrap();
        let pausable = queues.iter().find(|q| q.name == "pausable").unwrap();
        assert!(pausable.paused, "{backend}: every instance sees the pause");
        assert_eq!(pausable.pending, 30);
    }
    let resumed = instances[2].manager.resume_queue("pausable").await.unwrap();
    assert!(!resumed.paused);
    all_succeed(&instances[1], &ids, backend).await;
    assert_eq!(STARTS[lane].load(Ordering::SeqCst), 30);
    let mut instances = instances;
    let stopped = instances.pop().unwrap();
    let gone = stopped.manager.instance_id().to_owned();
    stopped.stop().await;
    let live = instances[0].manager.instances().await.unwrap();
    assert_eq!(live.len(), 2, "{backend}: a stopped instance leaves the list");
    assert!(live.iter().all(|i| i.id != gone), "{backend}: {gone} is gone");
    for instance in instances {
        instance.stop().await;
    }
}

/// The bound of the queue `bounded` in [`a_bound_holds_across_instances`].
const BOUND: u64 = 100;

/// Whether `submit` was refused because the queue `bounded` is full; panics on other errors.
fn refused(submit: taskflow::Result<TaskId>, backend: &str) -> bool {
    match submit {
        Ok(_) => false,
        Err(Error::QueueFull { queue, limit, .. }) => {
            assert_eq!((queue.as_str(), limit), ("bounded", BOUND), "{backend}");
            true
        }
        Err(other) => panic!("{backend}: expected QueueFull, got {other}"),
    }
}

/// One instance fills most of a bounded queue, then two others enqueue into it: they refuse
/// once the store holds the bound, within seconds of poll interval (10 s here) to spare, so
/// the count they admit against is the store's, read again as they enqueue. No instance runs
/// the queue: its tasks stay pending.
async fn a_bound_holds_across_instances(shared: Shared, lane: usize) {
    let backend = ["postgres", "mysql", "redis"][lane];
    let instances: Vec<Instance> = (0..3)
        .map(|_| {
            instance_with(shared.clone(), |builder| {
                builder
                    .queue("bounded", Queue::new().max_pending(BOUND))
                    .run_queues(["default"])
                    .poll_every(Duration::from_secs(10))
                    .store_timeouts(STRESS_TIMEOUTS)
            })
        })
        .collect();
    for _ in 0..60 {
        let first = instances[0].manager.submit(start_counted, lane, into("bounded")).await;
        assert!(!refused(first, backend), "{backend}: 60 of 100 fit");
    }
    // The other two take turns, one enqueue at a time, until both are refused.
    let mut admitted = [0u64; 2];
    let mut full = [false; 2];
    for turn in 0..400 {
        let at = turn % 2;
        if full[at] {
            continue;
        }
        let next = instances[at + 1].manager.submit(start_counted, lane, into("bounded")).await;
        if refused(next, backend) {
            full[at] = true;
        } else {
            admitted[at] += 1;
        }
        if full == [true, true] {
            break;
        }
        // Paced like requests, not a burst: a recount in flight has time to land.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(full, [true, true], "{backend}: the others were refused once the queue was full");
    let queues = instances[0].manager.queues().await.unwrap();
    let stored = queues.iter().find(|q| q.name == "bounded").unwrap().pending;
    println!("{backend}: {stored} stored under a bound of {BOUND} ({admitted:?} by the others)");
    assert_eq!(stored, 60 + admitted[0] + admitted[1], "{backend}: a refusal stores nothing");
    // Without reading the store as they enqueue, each would admit 100 by its own count.
    assert!(stored <= BOUND + 10, "{backend}: {stored} stored under a bound of {BOUND}");
    assert!(stored >= BOUND - 10, "{backend}: refused at {stored}, well before the bound");
    for instance in instances {
        instance.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_holds_across_instances_on_postgres() {
    let Some(shared) = Shared::postgres().await else { return };
    a_bound_holds_across_instances(shared, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_holds_across_instances_on_mysql() {
    let Some(shared) = Shared::mysql().await else { return };
    a_bound_holds_across_instances(shared, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_holds_across_instances_on_redis() {
    let Some(shared) = Shared::redis().await else { return };
    a_bound_holds_across_instances(shared, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_limit_of_two_holds_over_three_instances_on_postgres() {
    let Some(shared) = Shared::postgres().await else { return };
    a_global_limit_of_two_holds_over_three_instances(shared, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_limit_of_two_holds_over_three_instances_on_mysql() {
    let Some(shared) = Shared::mysql().await else { return };
    a_global_limit_of_two_holds_over_three_instances(shared, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_limit_of_two_holds_over_three_instances_on_redis() {
    let Some(shared) = Shared::redis().await else { return };
    a_global_limit_of_two_holds_over_three_instances(shared, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_on_one_instance_stops_all_three_on_postgres() {
    let Some(shared) = Shared::postgres().await else { return };
    a_pause_on_one_instance_stops_all_three(shared, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_on_one_instance_stops_all_three_on_mysql() {
    let Some(shared) = Shared::mysql().await else { return };
    a_pause_on_one_instance_stops_all_three(shared, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_on_one_instance_stops_all_three_on_redis() {
    let Some(shared) = Shared::redis().await else { return };
    a_pause_on_one_instance_stops_all_three(shared, 2).await;
}
