//! Several instances on one PostgreSQL database: three managers, each with its own runtime
//! and connection pool, share tasks; every task's function runs exactly once, counted in the
//! database, and one idempotency key makes one task across instances.

use std::sync::OnceLock;
use std::time::Duration;

use taskflow::{EnqueueOptions, Store, TaskManager, TaskQuery, TaskStatus, task, task_context};

use crate::conformance::{pending, postgres_schema};

/// Where `counted_once` records its runs: a table in the test's schema.
static RUNS: OnceLock<(tokio_postgres::Client, String)> = OnceLock::new();

#[task]
async fn counted_once(n: u64) -> u64 {
    let id = task_context().expect("in a task").task_id();
    let (client, schema) = RUNS.get().expect("the runs table");
    client
        .execute(&format!("INSERT INTO {schema}.runs (task_id) VALUES ($1)"), &[id.as_uuid()])
        .await
        .expect("record the run");
    n
}

/// One instance: a manager on a thread and runtime of its own, over its own pool on `url`.
struct Instance {
    manager: TaskManager,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn instance(url: String) -> Instance {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let store = taskflow::PostgresStore::connect_with_pool_size(&url, 8).await.unwrap();
            let manager =
                TaskManager::builder().store(store).concurrency(32).build().await.unwrap();
            tx.send(manager).unwrap();
            let _ = stopped.await;
        });
    });
    Instance { manager: rx.recv().unwrap(), stop, thread }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_run_each_of_ten_thousand_tasks_once() {
    let Some(schema) = postgres_schema().await else { return };
    let url = schema.url.clone();
    let schema = schema.name;
    let seed = taskflow::PostgresStore::connect_with_pool_size(&url, 8).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE TABLE {schema}.runs (task_id UUID NOT NULL)"))
        .await
        .unwrap();
    assert!(RUNS.set((client, schema.clone())).is_ok(), "one multi-instance test per binary");

    // 5,000 tasks wait in the database before any instance starts: all three find them at
    // start, and race to claim each.
    let mut ids = Vec::new();
    let mut writes = Vec::new();
    for n in 0..5_000u64 {
        let mut record = pending("counted_once");
        record.args = serde_json::json!({ "n": n });
        let enqueued = seed.enqueue(record).unwrap();
        ids.push(enqueued.id);
        writes.extend(enqueued.write);
    }
    for write in writes {
        write.wait().await.unwrap();
    }

    let instances: Vec<Instance> = (0..3).map(|_| instance(url.clone())).collect();
    // 5,000 more, enqueued across the three while they run.
    for n in 0..5_000u64 {
        ids.push(instances[n as usize % 3].manager.add_task(counted_once, 5_000 + n));
    }
    // One idempotency key, 1,000 concurrent enqueues spread over the three: one task.
    let key = format!("charge-{}", taskflow::TaskId::new());
    let mut keyed = Vec::new();
    for n in 0..1_000usize {
        let manager = instances[n % 3].manager.clone();
        let key = key.clone();
        keyed.push(tokio::spawn(async move {
            manager
                .submit(counted_once, 99_999, EnqueueOptions::new().idempotency_key(key))
                .await
                .unwrap()
        }));
    }
    let mut keyed_ids = Vec::new();
    for handle in keyed {
        keyed_ids.push(handle.await.unwrap());
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (client, _) = RUNS.get().unwrap();
    loop {
        let done: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {schema}.taskflow_tasks WHERE status = 'success'"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if done == 10_001 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {done} of 10,001 tasks finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = client
        .query_one(&format!("SELECT count(*), count(DISTINCT task_id) FROM {schema}.runs"), &[])
        .await
        .unwrap();
    let (runs, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((runs, distinct), (10_001, 10_001), "each task's function ran exactly once");
    let keyed_tasks: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {schema}.taskflow_tasks WHERE idempotency_key = $1"),
            &[&key],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(keyed_tasks, 1, "1,000 enqueues of one key across three instances: one task");
    let holder = seed.get(&keyed_ids[0]).await.unwrap().unwrap();
    for id in &keyed_ids {
        assert_eq!(seed.get(id).await.unwrap().unwrap().task_id, holder.task_id);
    }
    for id in ids.iter().step_by(997) {
        assert_eq!(seed.get(id).await.unwrap().unwrap().status, TaskStatus::Success);
    }
    let all = TaskQuery { status: Some(TaskStatus::Pending), ..Default::default() };
    assert!(seed.list(&all).await.unwrap().tasks.is_empty());
    for instance in instances {
        instance.manager.shutdown(Duration::from_secs(10)).await;
        instance.stop.send(()).unwrap();
        instance.thread.join().unwrap();
    }
}

#[task]
async fn receipt(key: String, order: u64) -> u64 {
    crate::support::note(&key, format!("receipt {order}"));
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_added_in_a_transaction_exists_only_if_it_commits() {
    let Some(schema) = postgres_schema().await else { return };
    let store = taskflow::PostgresStore::connect_with_pool_size(&schema.url, 4).await.unwrap();
    let manager = TaskManager::builder()
        .store(store)
        .poll_every(Duration::from_secs(3600)) // only the commit's notification wakes it
        .build()
        .await
        .unwrap();
    let (mut client, connection) =
        tokio_postgres::connect(&schema.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("CREATE TABLE orders (id BIGINT PRIMARY KEY)").await.unwrap();
    let key = crate::support::unique("receipt");

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO orders (id) VALUES (1)", &[]).await.unwrap();
    let rolled_back =
        manager.add_task_in(&tx, receipt, (key.clone(), 1), EnqueueOptions::new()).await.unwrap();
    tx.rollback().await.unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO orders (id) VALUES (2)", &[]).await.unwrap();
    let committed =
        manager.add_task_in(&tx, receipt, (key.clone(), 2), EnqueueOptions::new()).await.unwrap();
    // Not visible to the instances before the commit.
    assert!(manager.store().get(&committed).await.unwrap().is_none());
    tx.commit().await.unwrap();

    let record = manager.wait_for(committed, Duration::from_secs(20)).await.unwrap();
    assert_eq!(record.status, TaskStatus::Success);
    assert!(manager.store().get(&rolled_back).await.unwrap().is_none(), "rolled back: no task");
    assert_eq!(crate::support::notes(&key), ["receipt 2"]);
    manager.shutdown(Duration::from_secs(5)).await;
}
