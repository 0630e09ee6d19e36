//! Priority and per-task caps under full limits: a priority-10 task enqueued while its
//! queue's only slot is taken starts before the priority-0 tasks that waited longer, which
//! keep their FIFO order (async and blocking tasks alike); a task declared with
//! `concurrency = 2` never runs more than two at once, while other tasks of its queue pass it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use taskflow::{EnqueueOptions, Queue, TaskManager, TaskStatus, task};

use crate::support::{note, notes, unique, wait_until};

const LONG: Duration = Duration::from_secs(20);

/// A gate a task waits at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

fn gate(key: &str) -> Arc<Gate> {
    static GATES: OnceLock<Mutex<HashMap<String, Arc<Gate>>>> = OnceLock::new();
    let gates = GATES.get_or_init(Default::default);
    Arc::clone(gates.lock().unwrap().entry(key.to_owned()).or_default())
}

/// Notes its start; the one named `holder` then waits at the test's gate.
#[task]
async fn ordered_async(key: String, name: String) {
    note(&key, name.clone());
    if name == "holder" {
        let gate = gate(&key);
        tokio::task::spawn_blocking(move || gate.wait()).await.unwrap();
    }
}

/// The same, blocking.
#[task]
fn ordered_sync(key: String, name: String) {
    note(&key, name.clone());
    if name == "holder" {
        gate(&key).wait();
    }
}

async fn a_priority_task_overtakes_waiting_ones(blocking: bool) {
    let manager =
        TaskManager::builder().queue("single", Queue::new().concurrency(1)).build().await.unwrap();
    let key = unique("overtake");
    let into = |priority: i32| EnqueueOptions::new().queue("single").priority(priority);
    let submit = |name: &str, priority: i32| {
        let args = (key.clone(), name.to_owned());
        let manager = manager.clone();
        async move {
            if blocking {
                manager.submit(ordered_sync, args, into(priority)).await.unwrap()
            } else {
                manager.submit(ordered_async, args, into(priority)).await.unwrap()
            }
        }
    };
    let mut ids = vec![submit("holder", 0).await];
    wait_until(LONG, "the holder to start", || async { (notes(&key) == ["holder"]).then_some(()) })
        .await;
    for n in 1..=4 {
        ids.push(submit(&format!("low-{n}"), 0).await);
    }
    ids.push(submit("high", 10).await);
    ids.push(submit("low-5", 0).await);
    gate(&key).open();
    for id in ids {
        assert_eq!(manager.wait_for(id, LONG).await.unwrap().status, TaskStatus::Success);
    }
    assert_eq!(
        notes(&key),
        ["holder", "high", "low-1", "low-2", "low-3", "low-4", "low-5"],
        "blocking: {blocking}"
    );
    manager.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_task_overtakes_waiting_ones_under_a_full_limit() {
    a_priority_task_overtakes_waiting_ones(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_priority_task_overtakes_waiting_ones_under_a_full_limit() {
    a_priority_task_overtakes_waiting_ones(true).await;
}

/// At most two at once, by its declaration; notes its start and waits at the gate.
#[task(concurrency = 2)]
async fn capped_pair(key: String, n: u32) {
    let now = CAPPED_RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    CAPPED_PEAK.fetch_max(now, Ordering::SeqCst);
    note(&key, format!("capped {n}"));
    let gate = gate(&key);
    tokio::task::spawn_blocking(move || gate.wait()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    CAPPED_RUNNING.fetch_sub(1, Ordering::SeqCst);
}

static CAPPED_RUNNING: AtomicUsize = AtomicUsize::new(0);
static CAPPED_PEAK: AtomicUsize = AtomicUsize::new(0);

#[task]
fn uncapped(key: String) {
    note(&key, "uncapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_task_runs_at_most_its_concurrency_while_others_pass_it() {
    let registered = taskflow::registry().get("capped_pair").unwrap();
    assert_eq!(registered.options().concurrency_limit(), Some(2));
    let manager = TaskManager::builder().concurrency(8).build().await.unwrap();
    let key = unique("capped");
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(manager.add_task(capped_pair, (key.clone(), n)));
    }
    let other = manager.submit(uncapped, key.clone(), EnqueueOptions::new()).await.unwrap();
    assert_eq!(manager.wait_for(other, LONG).await.unwrap().status, TaskStatus::Success);
    let started = |notes: &[String]| notes.iter().filter(|n| n.starts_with("capped")).count();
    wait_until(LONG, "two capped tasks to start", || async {
        (started(&notes(&key)) == 2).then_some(())
    })
    .await;
    // Slots are free (8), the others wait only for the cap: none starts while two run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(started(&notes(&key)), 2, "{:?}", notes(&key));
    gate(&key).open();
    for id in ids {
        assert_eq!(manager.wait_for(id, LONG).await.unwrap().status, TaskStatus::Success);
    }
    assert_eq!(started(&notes(&key)), 6);
    assert_eq!(CAPPED_PEAK.load(Ordering::SeqCst), 2, "never more than two at once");
    manager.shutdown(LONG).await;
}

/// When each `rated` task started.
static RATED_STARTS: Mutex<Vec<std::time::Instant>> = Mutex::new(Vec::new());

#[task]
fn rated() {
    RATED_STARTS.lock().unwrap().push(std::time::Instant::now());
}

/// A queue limited to 10 starts a second, with a backlog of 120 tasks: after the first
/// second (the burst), 5 s see 50 starts, within 10 %; excess tasks wait, none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_of_ten_a_second_holds_over_five_seconds() {
    let rate = Queue::new().concurrency(8).rate_limit(10, Duration::from_secs(1));
    let manager = TaskManager::builder().queue("rated", rate).build().await.unwrap();
    let into = EnqueueOptions::new().queue("rated");
    let ids: Vec<_> = (0..120).map(|_| manager.add_task_with(rated, (), into.clone())).collect();
    let started = || RATED_STARTS.lock().unwrap().clone();
    let starts = wait_until(Duration::from_secs(60), "seven seconds of starts", || async {
        let starts = started();
        let first = *starts.first()?;
        (first.elapsed() >= Duration::from_secs(7)).then_some(starts)
    })
    .await;
    let first = starts[0];
    let window = |from: u64, to: u64| {
        let (from, to) = (first + Duration::from_secs(from), first + Duration::from_secs(to));
        starts.iter().filter(|at| **at >= from && **at < to).count()
    };
    let steady = window(1, 6);
    println!("starts: {} in the first second, {steady} in the next five", window(0, 1));
    assert!((45..=55).contains(&steady), "{steady} starts in 5 s at 10/s");
    assert!(window(0, 1) <= 10 + 11, "the burst, then the rate");
    for id in ids.iter().take(20) {
        let record = manager.store().get(id).await.unwrap().unwrap();
        assert_ne!(record.status, TaskStatus::Failed, "over the rate, tasks wait");
    }
    manager.shutdown(LONG).await;
}
