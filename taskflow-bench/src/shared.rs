//! Shared backends: enqueue + execute no-op tasks on PostgreSQL, MySQL/MariaDB and Redis with
//! one and with three managers (each its own pool), beside the same driver writing as many
//! task-sized rows (hashes, for Redis) with as many connections. Needs
//! `TASKFLOW_TEST_POSTGRES_URL` / `TASKFLOW_TEST_MYSQL_URL` / `TASKFLOW_TEST_REDIS_URL`; a
//! backend without its variable is skipped, and says so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use taskflow::{MysqlStore, PostgresStore, RedisStore, Store};

use crate::{Row, all_ran, expect_runs, noop_async, rate};

const TASKS: usize = 5_000;
const POOL: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Postgres,
    Mysql,
    Redis,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Mysql => "MySQL/MariaDB",
            Backend::Redis => "Redis",
        }
    }

    pub(crate) fn url(self) -> Option<String> {
        let variable = match self {
            Backend::Postgres => "TASKFLOW_TEST_POSTGRES_URL",
            Backend::Mysql => "TASKFLOW_TEST_MYSQL_URL",
            Backend::Redis => "TASKFLOW_TEST_REDIS_URL",
        };
        let url = std::env::var(variable).ok();
        if url.is_none() {
            eprintln!("shared: {} skipped: {variable} is not set", self.name());
        }
        url
    }

    /// A fresh schema (PostgreSQL) or database (MySQL) on `url`; the URL that uses it.
    pub(crate) async fn fresh(self, url: &str) -> String {
        let name = format!("bench_{}", taskflow::TaskId::new().to_string().replace('-', ""));
        match self {
            Backend::Postgres => {
                let (client, connection) =
                    tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
                tokio::spawn(connection);
                client.batch_execute(&format!("CREATE SCHEMA {name}")).await.expect("schema");
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}options=-csearch_path%3D{name}")
            }
            Backend::Mysql => {
                let pool = mysql_async::Pool::new(url);
                let mut conn = pool.get_conn().await.expect("connect");
                conn.query_drop(format!("CREATE DATABASE {name}")).await.expect("database");
                drop(conn);
                pool.disconnect().await.expect("disconnect");
                let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
                format!("{base}/{name}")
            }
            // A key prefix of its own, after `#`.
            Backend::Redis => format!("{url}#{name}"),
        }
    }

    /// Drops what [`Backend::fresh`] made on `url` (the base URL) for `fresh` (the URL it
    /// returned), so that runs do not pile up data on the shared servers.
    pub(crate) async fn clear(self, url: &str, fresh: &str) {
        match self {
            Backend::Postgres => {
                let name = fresh.rsplit_once("%3D").map_or("", |(_, name)| name);
                let (client, connection) =
                    tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
                tokio::spawn(connection);
                let sql = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                client.batch_execute(&sql).await.expect("drop schema");
            }
            Backend::Mysql => {
                let name = fresh.rsplit_once('/').map_or("", |(_, name)| name);
                let pool = mysql_async::Pool::new(url);
                let mut conn = pool.get_conn().await.expect("connect");
                let sql = format!("DROP DATABASE IF EXISTS {name}");
                conn.query_drop(sql).await.expect("drop database");
                drop(conn);
                pool.disconnect().await.expect("disconnect");
            }
            Backend::Redis => {
                let (url, prefix) = fresh.split_once('#').expect("a prefix");
                let client = redis::Client::open(url).expect("client");
                let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
                let mut cursor: u64 = 0;
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{prefix}:*"))
                        .arg("COUNT")
                        .arg(10_000)
                        .query_async(&mut conn)
                        .await
                        .expect("scan");
                    if !keys.is_empty() {
                        let _: () = redis::cmd("UNLINK")
                            .arg(&keys)
                            .query_async(&mut conn)
                            .await
                            .expect("unlink");
                    }
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
    }

    pub(crate) async fn store(self, url: &str) -> Arc<dyn Store> {
        match self {
            Backend::Postgres => {
                Arc::new(PostgresStore::connect_with_pool_size(url, POOL).await.expect("store"))
            }
            Backend::Mysql => {
                Arc::new(MysqlStore::connect_with_pool_size(url, POOL).await.expect("store"))
            }
            Backend::Redis => {
                let (url, prefix) = url.split_once('#').expect("a prefix");
                Arc::new(RedisStore::connect_with_prefix(url, prefix).await.expect("store"))
            }
        }
    }

    /// Raw driver baseline: [`TASKS`] single-row inserts of a task-sized row, over `POOL`
    /// concurrent connections, each its own transaction (as taskflow's enqueues are).
    async fn raw_inserts(self, url: &str, connections: usize) -> f64 {
        let payload = format!("{{\"n\": 1, \"pad\": \"{}\"}}", "x".repeat(100));
        let per = TASKS / connections;
        let started;
        match self {
            Backend::Postgres => {
                let mut clients = Vec::new();
                for _ in 0..connections {
                    let (client, connection) =
                        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
                    tokio::spawn(connection);
                    clients.push(client);
                }
                clients[0]
                    .batch_execute(
                        "CREATE TABLE raw (seq BIGSERIAL PRIMARY KEY, id UUID UNIQUE NOT NULL,
                         status TEXT NOT NULL, payload JSONB NOT NULL)",
                    )
                    .await
                    .expect("table");
                started = Instant::now();
                let mut workers = Vec::new();
                for client in clients {
                    let payload: serde_json::Value = serde_json::from_str(&payload).expect("json");
                    workers.push(tokio::spawn(async move {
                        let insert = client
                            .prepare(
                                "INSERT INTO raw (id, status, payload) VALUES ($1, 'pending', $2)",
                            )
                            .await
                            .expect("prepare");
                        for _ in 0..per {
                            let id = *taskflow::TaskId::new().as_uuid();
                            client.execute(&insert, &[&id, &payload]).await.expect("insert");
                        }
                    }));
                }
                for worker in workers {
                    worker.await.expect("worker");
                }
            }
            Backend::Mysql => {
                let pool = mysql_async::Pool::new(
                    format!("{url}?pool_min=1&pool_max={connections}").as_str(),
                );
                let mut conn = pool.get_conn().await.expect("connect");
                conn.query_drop(
                    "CREATE TABLE raw (seq BIGINT AUTO_INCREMENT PRIMARY KEY,
                     id CHAR(36) NOT NULL UNIQUE, status VARCHAR(16) NOT NULL,
                     payload LONGTEXT NOT NULL)",
                )
                .await
                .expect("table");
                drop(conn);
                started = Instant::now();
                let mut workers = Vec::new();
                for _ in 0..connections {
                    let (pool, payload) = (pool.clone(), payload.clone());
                    workers.push(tokio::spawn(async move {
                        let mut conn = pool.get_conn().await.expect("connect");
                        for _ in 0..per {
                            let id = taskflow::TaskId::new().to_string();
                            conn.exec_drop(
                                "INSERT INTO raw (id, status, payload) VALUES (?, 'pending', ?)",
                                (id, payload.clone()),
                            )
                            .await
                            .expect("insert");
                        }
                    }));
                }
                for worker in workers {
                    worker.await.expect("worker");
                }
                pool.disconnect().await.expect("disconnect");
            }
            Backend::Redis => {
                let (url, prefix) = url.split_once('#').expect("a prefix");
                let client = redis::Client::open(url).expect("client");
                started = Instant::now();
                let mut workers = Vec::new();
                for _ in 0..connections {
                    let (client, payload, prefix) =
                        (client.clone(), payload.clone(), prefix.to_owned());
                    workers.push(tokio::spawn(async move {
                        let mut conn =
                            client.get_multiplexed_async_connection().await.expect("connect");
                        for seq in 0..per {
                            let id = taskflow::TaskId::new().to_string();
                            let _: () = redis::pipe()
                                .atomic()
                                .hset_multiple(
                                    format!("{prefix}:raw:{id}"),
                                    &[("status", "pending"), ("payload", payload.as_str())],
                                )
                                .zadd(format!("{prefix}:raw"), &id, seq)
                                .query_async(&mut conn)
                                .await
                                .expect("write");
                        }
                    }));
                }
                for worker in workers {
                    worker.await.expect("worker");
                }
            }
        }
        rate(per * connections, started.elapsed())
    }
}

/// Enqueues [`TASKS`] no-op tasks round-robin over `instances` managers and waits until all
/// ran and their final states are written.
async fn run_tasks(backend: Backend, url: &str, instances: usize) -> f64 {
    let mut managers = Vec::new();
    for _ in 0..instances {
        let store = backend.store(url).await;
        managers.push(crate::builder().shared_store(store).build().await.expect("manager"));
    }
    expect_runs(TASKS);
    let started = Instant::now();
    for n in 0..TASKS {
        managers[n % instances].add_task(noop_async, n as u64);
    }
    all_ran().await;
    for manager in &managers {
        manager.shutdown(Duration::from_secs(60)).await;
    }
    rate(TASKS, started.elapsed())
}

/// Runs the scenario for every backend with its URL set; returns its rows.
pub(crate) async fn run(reps: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for backend in [Backend::Postgres, Backend::Mysql, Backend::Redis] {
        let Some(url) = backend.url() else { continue };
        for instances in [1, 3] {
            let mut ours = Vec::new();
            let mut raw = Vec::new();
            for rep in 0..=reps {
                let fresh = backend.fresh(&url).await;
                let tasks = run_tasks(backend, &fresh, instances).await;
                backend.clear(&url, &fresh).await;
                let fresh = backend.fresh(&url).await;
                let inserts = backend.raw_inserts(&fresh, POOL * instances).await;
                backend.clear(&url, &fresh).await;
                if rep > 0 {
                    ours.push(tasks);
                    raw.push(inserts);
                }
            }
            rows.push(Row {
                scenario: format!(
                    "{}, {TASKS} no-op tasks enqueued + run, {instances} instance(s)",
                    backend.name()
                ),
                unit: "tasks/s",
                taskflow: ours,
                baseline: raw,
                baseline_name: if backend == Backend::Redis {
                    "same driver, one HSET + ZADD transaction per row, same connections"
                } else {
                    "same driver, 1-row INSERT transactions, same connections"
                },
            });
        }
    }
    rows
}
