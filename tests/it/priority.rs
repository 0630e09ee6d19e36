//! Priority under a full limit: a priority-10 task enqueued while its queue's only slot is
//! taken starts before the priority-0 tasks that waited longer, which keep their FIFO order;
//! async and blocking tasks alike.

use std::collections::HashMap;
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
