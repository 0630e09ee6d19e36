//! Several instances on one shared store (PostgreSQL, MySQL/MariaDB, Redis): three managers, each
//! with its own runtime and connection pool, share tasks; every task's function runs exactly
//! once, counted in the database, and one idempotency key makes one task across instances.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use taskflow::{
    EnqueueOptions, Store, TaskManager, TaskManagerBuilder, TaskQuery, TaskStatus, task,
    task_context,
};

use crate::conformance::{mysql_url, pending, postgres_schema};

/// Bounds for the stress tests here, where slowness is load, not a hung database.
pub(crate) const STRESS_TIMEOUTS: taskflow::StoreTimeouts =
    taskflow::StoreTimeouts { operation: Duration::from_secs(120), bulk: Duration::from_secs(300) };

/// A shared database under test, and where its tasks count their runs.
#[derive(Clone)]
pub(crate) enum Shared {
    Postgres { url: String, runs: Arc<tokio_postgres::Client> },
    Mysql { url: String, runs: mysql_async::Pool },
    Redis { url: String, prefix: String, runs: redis::aio::MultiplexedConnection },
}

/// Where `counted_once` records its runs, by backend (the two tests run at once).
static POSTGRES_RUNS: OnceLock<Shared> = OnceLock::new();
static MYSQL_RUNS: OnceLock<Shared> = OnceLock::new();
static REDIS_RUNS: OnceLock<Shared> = OnceLock::new();

impl Shared {
    pub(crate) async fn postgres() -> Option<Shared> {
        let schema = postgres_schema().await?;
        let (client, connection) =
            tokio_postgres::connect(&schema.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute("CREATE TABLE runs (task_id UUID NOT NULL)").await.unwrap();
        Some(Shared::Postgres { url: schema.url, runs: Arc::new(client) })
    }

    pub(crate) async fn mysql() -> Option<Shared> {
        let url = mysql_url().await?;
        let runs = mysql_async::Pool::new(format!("{url}?pool_min=1&pool_max=8").as_str());
        let mut conn = runs.get_conn().await.unwrap();
        conn.query_drop("CREATE TABLE runs (task_id CHAR(36) NOT NULL)").await.unwrap();
        Some(Shared::Mysql { url, runs })
    }

    pub(crate) async fn redis() -> Option<Shared> {
        let Ok(url) = std::env::var("TASKFLOW_TEST_REDIS_URL") else {
            println!("skipped: TASKFLOW_TEST_REDIS_URL is not set (.ci/run sets it)");
            return None;
        };
        let client = redis::Client::open(url.as_str()).unwrap();
        // A generous response timeout: under load a timed-out RPUSH may still have been
        // applied, and the task's retry would then count its run twice.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(120)));
        let runs = client.get_multiplexed_async_connection_with_config(&config).await.unwrap();
        Some(Shared::Redis { url, prefix: format!("multi-{}", taskflow::TaskId::new()), runs })
    }

    pub(crate) async fn store(&self) -> Arc<dyn Store> {
        match self {
            Shared::Postgres { url, .. } => {
                Arc::new(taskflow::PostgresStore::connect_with_pool_size(url, 8).await.unwrap())
            }
            Shared::Mysql { url, .. } => {
                Arc::new(taskflow::MysqlStore::connect_with_pool_size(url, 8).await.unwrap())
            }
            Shared::Redis { url, prefix, .. } => {
                Arc::new(taskflow::RedisStore::connect_with_prefix(url, prefix).await.unwrap())
            }
        }
    }

    async fn record_run(&self, id: taskflow::TaskId) {
        match self {
            Shared::Postgres { runs, .. } => {
                runs.execute("INSERT INTO runs (task_id) VALUES ($1)", &[id.as_uuid()])
                    .await
                    .unwrap();
            }
            Shared::Mysql { runs, .. } => {
                let mut conn = runs.get_conn().await.unwrap();
                conn.exec_drop("INSERT INTO runs (task_id) VALUES (?)", (id.to_string(),))
                    .await
                    .unwrap();
            }
            Shared::Redis { prefix, runs, .. } => {
                let mut conn = runs.clone();
                let _: () = redis::AsyncCommands::rpush(
                    &mut conn,
                    format!("{prefix}:runs"),
                    id.to_string(),
                )
                .await
                .unwrap();
            }
        }
    }

    /// Runs recorded, and distinct tasks among them.
    async fn runs(&self) -> (i64, i64) {
        let sql = "SELECT count(*), count(DISTINCT task_id) FROM runs";
        match self {
            Shared::Postgres { runs, .. } => {
                let row = runs.query_one(sql, &[]).await.unwrap();
                (row.get(0), row.get(1))
            }
            Shared::Mysql { runs, .. } => {
                let mut conn = runs.get_conn().await.unwrap();
                conn.query_first(sql).await.unwrap().unwrap()
            }
            Shared::Redis { prefix, runs, .. } => {
                let mut conn = runs.clone();
                let runs: Vec<String> =
                    redis::AsyncCommands::lrange(&mut conn, format!("{prefix}:runs"), 0, -1)
                        .await
                        .unwrap();
                let distinct: std::collections::HashSet<&String> = runs.iter().collect();
                (runs.len() as i64, distinct.len() as i64)
            }
        }
    }
}

#[task]
async fn counted_once(n: u64, backend: String) -> u64 {
    let id = task_context().expect("in a task").task_id();
    let shared = match backend.as_str() {
        "postgres" => POSTGRES_RUNS.get(),
        "redis" => REDIS_RUNS.get(),
        _ => MYSQL_RUNS.get(),
    };
    shared.expect("the runs table").record_run(id).await;
    n
}

/// One instance: a manager on a thread and runtime of its own, over its own pool.
pub(crate) struct Instance {
    pub(crate) manager: TaskManager,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Instance {
    /// Shuts the manager down, then its runtime.
    pub(crate) async fn stop(self) {
        self.manager.shutdown(Duration::from_secs(10)).await;
        self.stop.send(()).unwrap();
        self.thread.join().unwrap();
    }
}

/// An instance on `shared`, its manager built by `configure` from a builder that has the
/// store.
pub(crate) fn instance_with(
    shared: Shared,
    configure: impl FnOnce(TaskManagerBuilder) -> TaskManagerBuilder + Send + 'static,
) -> Instance {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let store = shared.store().await;
            let builder = TaskManager::builder().shared_store(store);
            let manager = configure(builder).build().await.unwrap();
            tx.send(manager).unwrap();
            let _ = stopped.await;
        });
    });
    Instance { manager: rx.recv().unwrap(), stop, thread }
}

/// The admin API of `manager` on a port of its own; its base URL (`.../tasks`).
pub(crate) async fn serve_admin(manager: &TaskManager) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/tasks", listener.local_addr().unwrap());
    let app = manager.admin_router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn instance(shared: Shared) -> Instance {
    instance_with(shared, |builder| {
        builder
            .concurrency(32)
            // 10,000 tasks on a busy 2-core machine in a debug build: a durable enqueue
            // may queue behind thousands of others for longer than the 5 s default.
            .store_timeouts(STRESS_TIMEOUTS)
    })
}

/// 5,000 tasks wait in the database before three instances start (all three find them and
/// race to fetch each), every other one due at a staggered time over the next 4 s; 5,000 more
/// are enqueued across the three while they run, due at staggered times over 5 s; 1,000
/// concurrent enqueues of one key go to the three. Every function runs exactly once, none
/// before its time.
async fn ten_thousand_tasks_on_three_instances(shared: Shared, backend: &str) {
    let seed = shared.store().await;
    let mut ids = Vec::new();
    let mut writes = Vec::new();
    for n in 0..5_000u64 {
        let mut record = pending("counted_once");
        record.args = serde_json::json!({ "n": n, "backend": backend });
        if n % 2 == 1 {
            let at = chrono::Utc::now() + chrono::Duration::milliseconds((n % 40 * 100) as i64);
            record.scheduled_at = chrono::DateTime::from_timestamp_micros(at.timestamp_micros());
        }
        let enqueued = seed.enqueue(record).unwrap();
        ids.push(enqueued.id);
        writes.extend(enqueued.write);
    }
    for write in writes {
        write.wait().await.unwrap();
    }
    let started = std::time::Instant::now();
    let instances: Vec<Instance> = (0..3).map(|_| instance(shared.clone())).collect();
    for n in 0..5_000u64 {
        let manager = &instances[n as usize % 3].manager;
        let at = chrono::Utc::now() + chrono::Duration::milliseconds((n % 50 * 100) as i64);
        let options = EnqueueOptions::new().run_at(at);
        ids.push(manager.add_task_with(counted_once, (5_000 + n, backend.to_owned()), options));
    }
    let key = format!("charge-{}", taskflow::TaskId::new());
    let mut keyed = Vec::new();
    for n in 0..1_000usize {
        let manager = instances[n % 3].manager.clone();
        let (key, backend) = (key.clone(), backend.to_owned());
        keyed.push(tokio::spawn(async move {
            let options = EnqueueOptions::new().idempotency_key(key);
            manager.submit(counted_once, (99_999, backend), options).await.unwrap()
        }));
    }
    let mut keyed_ids = Vec::new();
    for handle in keyed {
        keyed_ids.push(handle.await.unwrap());
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let done = seed.stats(None).await.unwrap().by_status["success"];
        if done == 10_001 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{backend}: {done} of 10,001 finished; the others: {}",
                unfinished(&*seed).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{backend}: 10,001 tasks over 3 instances in {:.2?} ({:.0} tasks/s end to end)",
        started.elapsed(),
        10_001.0 / started.elapsed().as_secs_f64()
    );
    assert_eq!(shared.runs().await, (10_001, 10_001), "{backend}: each ran exactly once");
    let query = TaskQuery {
        func_name: Some("counted_once".into()),
        limit: Some(1000),
        ..Default::default()
    };
    let mut holders = 0;
    let mut page = seed.list(&TaskQuery { oldest_first: true, ..query.clone() }).await.unwrap();
    loop {
        holders +=
            page.tasks.iter().filter(|r| r.idempotency_key.as_deref() == Some(&*key)).count();
        let Some(next) = page.next.take() else { break };
        page = seed
            .list(&TaskQuery { oldest_first: true, after: Some(next), ..query.clone() })
            .await
            .unwrap();
    }
    assert_eq!(holders, 1, "{backend}: 1,000 enqueues of one key across three instances: one task");
    let holder = seed.get(&keyed_ids[0]).await.unwrap().unwrap().task_id;
    for id in &keyed_ids {
        assert_eq!(seed.get(id).await.unwrap().unwrap().task_id, holder);
    }
    for id in ids.iter().step_by(97) {
        let record = seed.get(id).await.unwrap().unwrap();
        assert_eq!(record.status, TaskStatus::Success);
        if let Some(due) = record.scheduled_at {
            assert!(record.start_time.unwrap() >= due, "{backend}: {id} started before its time");
        }
    }
    for instance in instances {
        instance.stop().await;
    }
}

/// The first tasks that did not succeed, with their state and error, for a failure message.
async fn unfinished(store: &dyn Store) -> String {
    let mut found = Vec::new();
    for status in
        [TaskStatus::Pending, TaskStatus::Running, TaskStatus::Failed, TaskStatus::Interrupted]
    {
        let query = TaskQuery { status: Some(status), limit: Some(5), ..Default::default() };
        for record in store.list(&query).await.map(|page| page.tasks).unwrap_or_default() {
            found.push(format!(
                "{} {} retries {} lease {:?} until {:?} due {:?}: {:?}",
                record.task_id,
                record.status,
                record.retries_used,
                record.lease_owner,
                record.lease_expires_at,
                record.scheduled_at,
                record.error
            ));
        }
    }
    found.join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_postgres_run_each_of_ten_thousand_tasks_once() {
    let Some(shared) = Shared::postgres().await else { return };
    assert!(POSTGRES_RUNS.set(shared.clone()).is_ok());
    ten_thousand_tasks_on_three_instances(shared, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_mysql_run_each_of_ten_thousand_tasks_once() {
    let Some(shared) = Shared::mysql().await else { return };
    assert!(MYSQL_RUNS.set(shared.clone()).is_ok());
    ten_thousand_tasks_on_three_instances(shared, "mysql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_redis_run_each_of_ten_thousand_tasks_once() {
    let Some(shared) = Shared::redis().await else { return };
    assert!(REDIS_RUNS.set(shared.clone()).is_ok());
    ten_thousand_tasks_on_three_instances(shared, "redis").await;
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

/// On Redis, a task that another process makes available (here a second connection enqueues
/// it directly, as another instance's enqueue would) wakes an idle instance through the
/// store's pub/sub channel: it runs at once, though the instance polls only hourly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_elsewhere_wakes_an_idle_instance_on_redis() {
    let Ok(url) = std::env::var("TASKFLOW_TEST_REDIS_URL") else {
        println!("skipped: TASKFLOW_TEST_REDIS_URL is not set (.ci/run sets it)");
        return;
    };
    let prefix = format!("wake-{}", taskflow::TaskId::new());
    let store = taskflow::RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
    let manager = TaskManager::builder()
        .store(store)
        .poll_every(Duration::from_secs(3600)) // only the channel wakes it
        .build()
        .await
        .unwrap();
    let elsewhere = taskflow::RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
    let key = crate::support::unique("woken");
    for order in 0..3u64 {
        // Let the instance go idle first: its producer then sleeps until woken.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut record = crate::conformance::pending("receipt");
        record.args = serde_json::json!({ "key": key, "order": order });
        let id = crate::conformance::put(&elsewhere, record).await;
        let done = manager.wait_for(id, Duration::from_secs(20)).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success, "woken for task {order}");
    }
    assert_eq!(crate::support::notes(&key).len(), 3);
    manager.shutdown(Duration::from_secs(5)).await;
}
