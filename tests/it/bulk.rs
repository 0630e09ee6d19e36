//! Bulk enqueue on every store: `add_tasks` and `submit_many` hand a batch to the store at
//! once (more than one insert batch of 512 here); every task runs exactly once, ids come back
//! in order, and idempotency keys hold per task, within the batch and against a task stored
//! before it.

use std::collections::HashSet;
use std::time::Duration;

use taskflow::{EnqueueOptions, TaskManager, TaskManagerBuilder, TaskStatus, task};

use crate::multi::Shared;
use crate::support::{note, notes, unique, wait_until};

const LONG: Duration = Duration::from_secs(120);

#[task]
async fn bulk_noted(key: String, n: u32) -> u32 {
    note(&key, n.to_string());
    n
}

/// Enqueues 600 tasks with `add_tasks` and four keyed ones with `submit_many`, then checks
/// what ran and what the ids say.
async fn bulk_on(name: &str, builder: TaskManagerBuilder) {
    let manager = builder.build().await.unwrap();
    let key = unique(&format!("bulk-{name}"));
    let ids = manager.add_tasks(bulk_noted, (0..600).map(|n| (key.clone(), n)));
    assert_eq!(ids.len(), 600, "{name}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 600, "{name}: distinct ids");

    // A key an earlier task holds, and one key given twice in the batch.
    let held = format!("{key}-held");
    let earlier = manager
        .submit(bulk_noted, (key.clone(), 1000), EnqueueOptions::new().idempotency_key(&held))
        .await
        .unwrap();
    let keyed = |n: u32, k: &str| ((key.clone(), n), EnqueueOptions::new().idempotency_key(k));
    let twice = format!("{key}-twice");
    let batch = vec![
        keyed(1001, &held),
        keyed(1002, &twice),
        keyed(1003, &twice),
        ((key.clone(), 1004), EnqueueOptions::new()),
    ];
    let submitted: Vec<_> = manager
        .submit_many(bulk_noted, batch)
        .await
        .into_iter()
        .map(|result| result.unwrap_or_else(|err| panic!("{name}: {err}")))
        .collect();
    assert_eq!(submitted[0], earlier, "{name}: the held key answers its holder");
    assert_eq!(submitted[1], submitted[2], "{name}: one task for a key given twice");
    assert_ne!(submitted[3], submitted[1], "{name}");

    // 600 + the earlier one + the twice-keyed one + the unkeyed one.
    let ran = wait_until(LONG, &format!("{name}: every task ran"), || async {
        let ran = notes(&key);
        (ran.len() >= 603).then_some(ran)
    })
    .await;
    let mut expected: Vec<String> = (0..600).map(|n| n.to_string()).collect();
    expected.extend(["1000", "1004"].map(String::from));
    let mut ran_sorted = ran.clone();
    ran_sorted.sort();
    expected.sort();
    let twice_ran: Vec<&String> = ran.iter().filter(|n| *n == "1002" || *n == "1003").collect();
    assert_eq!(twice_ran.len(), 1, "{name}: the key given twice ran once: {twice_ran:?}");
    ran_sorted.retain(|n| n != "1002" && n != "1003");
    assert_eq!(ran_sorted, expected, "{name}: each task ran once");
    for id in [ids[0], ids[599], submitted[1], submitted[3]] {
        let record = manager.wait_for(id, LONG).await.unwrap();
        assert_eq!(record.status, TaskStatus::Success, "{name}");
    }
    manager.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_enqueue_in_memory() {
    bulk_on("memory", TaskManager::builder()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_enqueue_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    bulk_on("sqlite", TaskManager::builder().sqlite(dir.path().join("bulk.db"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_enqueue_on_postgres() {
    let Some(shared) = Shared::postgres().await else { return };
    bulk_on("postgres", TaskManager::builder().shared_store(shared.store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_enqueue_on_mysql() {
    let Some(shared) = Shared::mysql().await else { return };
    bulk_on("mysql", TaskManager::builder().shared_store(shared.store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_enqueue_on_redis() {
    let Some(shared) = Shared::redis().await else { return };
    bulk_on("redis", TaskManager::builder().shared_store(shared.store().await)).await;
}
