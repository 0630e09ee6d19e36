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

/// A minute's work (of the test's paused clock, less a second, so that a slot frees just
/// before the next enqueue).
#[task]
async fn minute_of_work() {
    tokio::time::sleep(Duration::from_secs(59)).await;
}

/// Aging: a single slot, a steady stream of priority-10 tasks (one a minute, three always
/// waiting) and one priority-0 task. Without aging the old task would never start; with it,
/// it starts once it has waited about ten priority steps, before the newer priority-10
/// tasks. The engine's clock follows tokio's paused clock: nothing waits real minutes.
#[tokio::test(start_paused = true)]
async fn a_steady_stream_of_high_priority_does_not_starve_a_low_one() {
    let manager =
        TaskManager::builder().queue("aging", Queue::new().concurrency(1)).build().await.unwrap();
    let high = EnqueueOptions::new().queue("aging").priority(10);
    let mut highs: Vec<_> =
        (0..3).map(|_| manager.add_task_with(minute_of_work, (), high.clone())).collect();
    let old = manager.add_task_with(minute_of_work, (), EnqueueOptions::new().queue("aging"));
    let mut finished = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        highs.push(manager.add_task_with(minute_of_work, (), high.clone()));
        let record = manager.store().get(&old).await.unwrap().unwrap();
        if record.status == TaskStatus::Success {
            finished = Some(record);
            break;
        }
    }
    let old = finished.expect("the low-priority task ran while the stream went on");
    let waited = (old.start_time.unwrap() - old.created_at).to_std().unwrap();
    let step = taskflow::PRIORITY_STEP;
    println!("the priority-0 task waited {waited:?} behind a stream of priority 10");
    assert!(waited >= step * 10, "ten levels hold for ten steps: it waited {waited:?}");
    assert!(waited < step * 15, "then it goes first: it waited {waited:?}");
    let mut overtaken = 0;
    for id in &highs {
        let record = manager.store().get(id).await.unwrap().unwrap();
        if record.start_time.is_none_or(|start| start > old.start_time.unwrap()) {
            overtaken += 1;
        }
    }
    assert!(overtaken >= 3, "the newer priority-10 tasks wait for it ({overtaken} did)");
    manager.shutdown(Duration::from_secs(120)).await;
}

/// Redis keys of layout 3 (ready tasks scored by priority alone) are ranked when a newer
/// store opens them: the fetch order is then the rank's, with aging.
#[tokio::test]
async fn redis_ready_tasks_of_layout_3_are_ranked_on_open() {
    use taskflow::store::{Fetch, Lease, Store};
    let Ok(url) = std::env::var("TASKFLOW_TEST_REDIS_URL") else {
        println!("skipped: TASKFLOW_TEST_REDIS_URL is not set (.ci/run sets it)");
        return;
    };
    let prefix = format!("test-{}", taskflow::TaskId::new());
    let store = taskflow::RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
    let now = chrono::Utc::now();
    let at = |minutes: i64, priority: i32| {
        let mut record = crate::conformance::pending("layout_3");
        record.created_at = crate::conformance::trunc(now - chrono::Duration::minutes(minutes));
        record.priority = priority;
        record
    };
    let old = crate::conformance::put(&store, at(20, 0)).await;
    let urgent = crate::conformance::put(&store, at(0, 10)).await;
    let recent = crate::conformance::put(&store, at(1, 0)).await;
    // A fetch of the paused queue makes them ready and takes none.
    store.update_queue("default", taskflow::QueueChange::Paused(true), now).await.unwrap();
    let lease = Lease { owner: "layout".into(), expires_at: now + chrono::Duration::minutes(1) };
    assert!(store.fetch(&Fetch::new("default", 10, now, &lease)).await.unwrap().is_empty());
    // Rewrite them as layout 3 wrote them: score -priority, named `<due><seq>:<id>`.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ready = format!("{prefix}:q:default:ready");
    let members: Vec<String> =
        redis::cmd("ZRANGE").arg(&ready).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
    assert_eq!(members.len(), 3);
    for member in members {
        let id = member.rsplit(':').next().unwrap().to_owned();
        let hash = format!("{prefix}:t:{id}");
        let (prio, due, seq): (i64, i64, i64) = redis::cmd("HMGET")
            .arg(&hash)
            .arg("prio")
            .arg("due_us")
            .arg("seq")
            .query_async(&mut conn)
            .await
            .unwrap();
        let old_name = format!("{due:016x}{seq:016x}:{id}");
        let mut pipe = redis::pipe();
        pipe.zrem(&ready, &member).zadd(&ready, &old_name, -prio).hset(&hash, "rk", &old_name);
        pipe.set(format!("{prefix}:layout"), 3);
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }
    store.close().await.unwrap();
    let store = taskflow::RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
    let layout: i64 =
        redis::cmd("GET").arg(format!("{prefix}:layout")).query_async(&mut conn).await.unwrap();
    assert_eq!(layout, 4);
    store.update_queue("default", taskflow::QueueChange::Paused(false), now).await.unwrap();
    let fetched = store.fetch(&Fetch::new("default", 10, now, &lease)).await.unwrap();
    let ids: Vec<_> = fetched.iter().map(|r| r.task_id).collect();
    assert_eq!(ids, [old, urgent, recent], "by rank: twenty minutes of waiting beat ten levels");
}
