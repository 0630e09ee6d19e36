//! The engine over a store that misbehaves on purpose (`taskflow::faults::FaultyStore`), on
//! every backend: a failed fetch or a fetch whose reply was lost leaves its tasks to run, and a
//! commit whose reply was lost is not reported as "not stored", and a maintenance call that
//! hangs holds up no other.

use std::sync::Arc;
use std::time::Duration;

use taskflow::faults::{Fault, FaultyStore, Operation};
use taskflow::{EnqueueOptions, Store, TaskManager, TaskStatus};

use crate::support::{note, notes, on_every_store, unique};

const LONG: Duration = Duration::from_secs(60);

#[taskflow::task]
async fn fault_probe(key: String, n: u32) -> u32 {
    note(&key, format!("ran {n}"));
    n
}

async fn manager(store: Arc<FaultyStore>) -> TaskManager {
    TaskManager::builder()
        .shared_store(store)
        .poll_every(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

/// Fetches that fail, and fetches that take effect but lose their reply: every task still runs,
/// once.
async fn failed_fetches_leave_tasks_runnable(store: Arc<dyn Store>) {
    let faulty = Arc::new(FaultyStore::new(store));
    let manager = manager(Arc::clone(&faulty)).await;
    let key = unique("fetches");
    faulty.inject(Operation::Fetch, Fault::Fail, 3);
    faulty.inject(Operation::Fetch, Fault::LoseReply, 2);
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(
            manager.submit(fault_probe, (key.clone(), n), EnqueueOptions::new()).await.unwrap(),
        );
    }
    for id in ids {
        let record = manager.wait_for(id, LONG).await.unwrap();
        assert_eq!(record.status, TaskStatus::Success, "{record:?}");
    }
    assert_eq!(faulty.hits(Operation::Fetch, Fault::Fail), 3);
    assert_eq!(faulty.hits(Operation::Fetch, Fault::LoseReply), 2);
    let mut ran = notes(&key);
    ran.sort();
    ran.dedup();
    assert_eq!(ran.len(), 10, "each ran exactly once: {:?}", notes(&key));
    assert_eq!(notes(&key).len(), 10);
    manager.shutdown(Duration::from_secs(5)).await;
}

/// A fetch whose answer was lost, and whose release fails too (the store is still away): the
/// release is retried in the background, so its tasks run once the store answers, long before
/// their 30 s lease would have run out (when the rescuer would mark them interrupted).
async fn a_lost_fetch_is_released_once_the_store_answers(store: Arc<dyn Store>) {
    let faulty = Arc::new(FaultyStore::new(store));
    let key = unique("released");
    // Stored before the instance starts, so that its first fetch takes it (and loses it).
    let mut record = crate::conformance::pending("fault_probe");
    record.args = serde_json::json!({ "key": key, "n": 1 });
    let id = crate::conformance::put(&*faulty, record).await;
    faulty.inject(Operation::Fetch, Fault::LoseReply, 1);
    faulty.inject(Operation::Release, Fault::Fail, 3);
    let manager = TaskManager::builder()
        .shared_store(Arc::clone(&faulty) as Arc<dyn Store>)
        .lease(Duration::from_secs(30))
        .poll_every(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let record = manager.wait_for(id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(record.status, TaskStatus::Success, "{record:?}");
    assert_eq!(faulty.hits(Operation::Fetch, Fault::LoseReply), 1);
    assert_eq!(faulty.hits(Operation::Release, Fault::Fail), 3);
    assert_eq!(notes(&key), ["ran 1"]);
    manager.shutdown(Duration::from_secs(5)).await;
}

/// A commit that went through but whose reply was lost: `submit` says stored (it is), and the
/// task runs once. A 503 would make a client retry and get a duplicate.
async fn lost_commit_replies_are_read_back(store: Arc<dyn Store>) {
    let faulty = Arc::new(FaultyStore::new(store));
    let manager = manager(Arc::clone(&faulty)).await;
    let key = unique("commits");
    faulty.inject(Operation::Commit, Fault::LoseReply, 3);
    let mut ids = Vec::new();
    for n in 0..6 {
        let submitted = manager.submit(fault_probe, (key.clone(), n), EnqueueOptions::new()).await;
        ids.push(submitted.expect("a stored task is reported stored"));
    }
    assert_eq!(faulty.hits(Operation::Commit, Fault::LoseReply), 3);
    for id in ids {
        assert_eq!(manager.wait_for(id, LONG).await.unwrap().status, TaskStatus::Success);
    }
    assert_eq!(notes(&key).len(), 6, "each ran once: {:?}", notes(&key));

    // Through the axum layer: a request whose commit reply was lost is answered 200, never a
    // 503 for a task that was stored (a client retrying a 503 would get a duplicate).
    let web_key = unique("web-commits");
    let route_key = web_key.clone();
    let enqueue = move |tasks: taskflow::Tasks,
                        axum::extract::Path(n): axum::extract::Path<u32>| {
        let key = route_key.clone();
        async move { tasks.add_task(fault_probe, (key, n)).to_string() }
    };
    let app = axum::Router::new()
        .route("/enqueue/{n}", axum::routing::post(enqueue))
        .layer(manager.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    faulty.inject(Operation::Commit, Fault::LoseReply, 10);
    let http = reqwest::Client::new();
    let mut unavailable = 0;
    for n in 0..20 {
        let response = http.post(format!("{base}/enqueue/{n}")).send().await.unwrap();
        unavailable += usize::from(response.status() == 503);
    }
    assert_eq!(faulty.hits(Operation::Commit, Fault::LoseReply), 13);
    crate::support::wait_until(LONG, "the 20 web tasks to run", || async {
        (notes(&web_key).len() >= 20).then_some(())
    })
    .await;
    println!("lost commit replies over HTTP: 10 of 20 requests, {unavailable} answered 503");
    assert_eq!(unavailable, 0, "every request's task was stored");
    assert_eq!(notes(&web_key).len(), 20, "each ran once: {:?}", notes(&web_key));
    manager.shutdown(Duration::from_secs(5)).await;
}

/// Writes of an attempt's outcome that fail or lose their reply: the outcome is still recorded.
async fn failed_outcome_writes_are_retried(store: Arc<dyn Store>) {
    let faulty = Arc::new(FaultyStore::new(store));
    let manager = manager(Arc::clone(&faulty)).await;
    let key = unique("outcomes");
    faulty.inject(Operation::Transition, Fault::Fail, 2);
    let id = manager.submit(fault_probe, (key.clone(), 7), EnqueueOptions::new()).await.unwrap();
    let record = manager.wait_for(id, LONG).await.unwrap();
    assert_eq!(record.status, TaskStatus::Success);
    assert_eq!(record.result, Some(serde_json::json!(7)));
    assert_eq!(faulty.hits(Operation::Transition, Fault::Fail), 2);
    manager.shutdown(Duration::from_secs(5)).await;
}

/// Batches of outcome writes that fail, lose their reply, or never answer (then the store's
/// timeout ends them; only shared stores have one): each change is written alone, and every
/// task ends as it should.
async fn failed_outcome_batches_fall_back_to_single_writes(store: Arc<dyn Store>) {
    let shared = store.enqueued_elsewhere().is_some();
    let faulty = Arc::new(FaultyStore::new(store));
    let manager = TaskManager::builder()
        .shared_store(Arc::clone(&faulty) as Arc<dyn Store>)
        .store_timeouts(taskflow::StoreTimeouts {
            operation: Duration::from_secs(2),
            ..Default::default()
        })
        .poll_every(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let key = unique("batches");
    let faults = if shared {
        &[Fault::Fail, Fault::LoseReply, Fault::Hang][..]
    } else {
        &[Fault::Fail, Fault::LoseReply][..]
    };
    for &fault in faults {
        faulty.inject(Operation::TransitionBatch, fault, 1);
        let mut ids = Vec::new();
        for n in 0..20 {
            let args = (key.clone(), n);
            ids.push(manager.submit(fault_probe, args, EnqueueOptions::new()).await.unwrap());
        }
        for (n, id) in ids.into_iter().enumerate() {
            let record = manager.wait_for(id, LONG).await.unwrap();
            assert_eq!(record.status, TaskStatus::Success, "{fault:?}");
            assert_eq!(record.result, Some(serde_json::json!(n)));
        }
        assert_eq!(faulty.hits(Operation::TransitionBatch, fault), 1, "{fault:?}");
    }
    manager.shutdown(Duration::from_secs(5)).await;
}

#[taskflow::task(requeue_on_interrupt = true)]
async fn reclaim_probe(key: String) {
    note(&key, "ran".to_owned());
}

/// A task claimed by a runner that died (its lease lapses in a second), on a store whose
/// prune never answers: the survivor still reclaims it and runs it, because no maintenance
/// duty waits for another.
async fn a_hung_prune_does_not_hold_up_reclaim(store: Arc<dyn Store>) {
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&store)));
    faulty.inject(Operation::Prune, Fault::Hang, 1);
    let key = unique("reclaim");
    let now = chrono::Utc::now();
    let record = taskflow::TaskRecord {
        task_id: taskflow::TaskId::new(),
        func_name: "reclaim_probe".to_owned(),
        status: TaskStatus::Pending,
        created_at: now,
        start_time: None,
        end_time: None,
        duration: None,
        retries_used: 0,
        max_retries: 0,
        error: None,
        stacktrace: None,
        logs: Vec::new(),
        tags: Default::default(),
        source: taskflow::TaskSource::Manual,
        priority: 0,
        queue: taskflow::DEFAULT_QUEUE.to_owned(),
        args: serde_json::json!({ "key": key }),
        result: None,
        idempotency_key: None,
        run_key: None,
        scheduled_at: None,
        retry_of: None,
        requeue_on_interrupt: true,
        recoveries: 0,
        lease_owner: None,
        lease_expires_at: None,
        progress: None,
    };
    let id = record.task_id;
    if let Some(write) = store.enqueue(record).unwrap().write {
        write.wait().await.unwrap();
    }
    let dead = taskflow::store::Lease {
        owner: "a runner that died".into(),
        expires_at: now + chrono::Duration::seconds(1),
    };
    let fetched = store.fetch(&crate::conformance::default_queue(1, now, &dead)).await.unwrap();
    assert_eq!(fetched.len(), 1, "fetched by the dead runner");
    let manager = TaskManager::builder()
        .shared_store(Arc::clone(&faulty) as Arc<dyn Store>)
        .lease(Duration::from_millis(600))
        .prune_every(Duration::from_millis(10))
        .recover(false)
        .build()
        .await
        .unwrap();
    // Within the bound a hung maintenance call gets on shared stores (60 s), with room.
    let record = manager.wait_for(id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(record.status, TaskStatus::Success, "{record:?}");
    assert_eq!(record.recoveries, 1);
    assert_eq!(faulty.hits(Operation::Prune, Fault::Hang), 1, "the prune did hang");
    assert_eq!(notes(&key), ["ran"]);
    manager.shutdown(Duration::from_secs(5)).await;
}

on_every_store!(
    failed_fetches_leave_tasks_runnable,
    lost_commit_replies_are_read_back,
    failed_outcome_writes_are_retried,
    a_lost_fetch_is_released_once_the_store_answers,
    failed_outcome_batches_fall_back_to_single_writes,
    a_hung_prune_does_not_hold_up_reclaim,
);
