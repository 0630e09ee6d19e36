//! Bulk enqueue on the shared backends: [`TaskManager::submit_many`] of 1,000 no-op tasks at a
//! time, awaited until durable, on an instance that only enqueues, beside the same driver
//! writing the same number of task-sized rows as one multi-row statement (one `MULTI`
//! pipeline of hashes, for Redis) per 1,000, on one connection.
//!
//! [`TaskManager::submit_many`]: taskflow::TaskManager::submit_many

use std::time::Instant;

use mysql_async::prelude::Queryable;
use taskflow::EnqueueOptions;

use crate::shared::Backend;
use crate::{Row, noop_async, rate};

const TASKS: usize = 10_000;
const CHUNK: usize = 1_000;

/// `submit_many` in chunks of [`CHUNK`]: tasks stored per second.
async fn ours(backend: Backend, url: &str) -> f64 {
    let store = backend.store(url).await;
    let manager = crate::builder()
        .shared_store(store)
        .run_queues([] as [&str; 0])
        .build()
        .await
        .expect("manager");
    let started = Instant::now();
    for chunk in 0..TASKS / CHUNK {
        let first = (chunk * CHUNK) as u64;
        let batch = (first..first + CHUNK as u64).map(|n| (n, EnqueueOptions::new()));
        for result in manager.submit_many(noop_async, batch).await {
            result.expect("stored");
        }
    }
    let elapsed = started.elapsed();
    manager.shutdown(std::time::Duration::from_secs(30)).await;
    rate(TASKS, elapsed)
}

/// The same rows through the driver, [`CHUNK`] per statement or pipeline.
async fn raw(backend: Backend, url: &str) -> f64 {
    let payload = format!("{{\"n\": 1, \"pad\": \"{}\"}}", "x".repeat(100));
    let ids = || (0..CHUNK).map(|_| *taskflow::TaskId::new().as_uuid()).collect::<Vec<_>>();
    let started;
    match backend {
        Backend::Postgres => {
            let (client, connection) =
                tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(connection);
            client
                .batch_execute(
                    "CREATE TABLE raw (seq BIGSERIAL PRIMARY KEY, id UUID UNIQUE NOT NULL,
                     status TEXT NOT NULL, payload JSONB NOT NULL)",
                )
                .await
                .expect("table");
            let insert = client
                .prepare(
                    "INSERT INTO raw (id, status, payload)
                     SELECT id, 'pending', $2::jsonb FROM unnest($1::uuid[]) AS t (id)",
                )
                .await
                .expect("prepare");
            let payload: serde_json::Value = serde_json::from_str(&payload).expect("json");
            started = Instant::now();
            for _ in 0..TASKS / CHUNK {
                client.execute(&insert, &[&ids(), &payload]).await.expect("insert");
            }
        }
        Backend::Mysql => {
            let pool = mysql_async::Pool::new(url);
            let mut conn = pool.get_conn().await.expect("connect");
            conn.query_drop(
                "CREATE TABLE raw (seq BIGINT AUTO_INCREMENT PRIMARY KEY,
                 id CHAR(36) NOT NULL UNIQUE, status VARCHAR(16) NOT NULL,
                 payload LONGTEXT NOT NULL)",
            )
            .await
            .expect("table");
            let row = format!("(?, 'pending', '{payload}')");
            let sql = format!(
                "INSERT INTO raw (id, status, payload) VALUES {}",
                vec![row.as_str(); CHUNK].join(", ")
            );
            started = Instant::now();
            for _ in 0..TASKS / CHUNK {
                let params: Vec<String> = ids().iter().map(ToString::to_string).collect();
                conn.exec_drop(&sql, params).await.expect("insert");
            }
            drop(conn);
            pool.disconnect().await.expect("disconnect");
        }
        Backend::Redis => {
            let (url, prefix) = url.split_once('#').expect("a prefix");
            let client = redis::Client::open(url).expect("client");
            let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
            started = Instant::now();
            for chunk in 0..TASKS / CHUNK {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for (n, id) in ids().into_iter().enumerate() {
                    let id = id.to_string();
                    let fields = [("status", "pending"), ("payload", payload.as_str())];
                    pipe.hset_multiple(format!("{prefix}:raw:{id}"), &fields).ignore();
                    pipe.zadd(format!("{prefix}:raw"), &id, chunk * CHUNK + n).ignore();
                }
                let () = pipe.query_async(&mut conn).await.expect("write");
            }
        }
    }
    rate(TASKS, started.elapsed())
}

/// Runs the scenario for every backend with its URL set; returns its rows.
pub(crate) async fn run(reps: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for backend in [Backend::Postgres, Backend::Mysql, Backend::Redis] {
        let Some(url) = backend.url() else { continue };
        let (mut taskflow, mut baseline) = (Vec::new(), Vec::new());
        for rep in 0..=reps {
            let fresh = backend.fresh(&url).await;
            let stored = ours(backend, &fresh).await;
            backend.clear(&url, &fresh).await;
            let fresh = backend.fresh(&url).await;
            let written = raw(backend, &fresh).await;
            backend.clear(&url, &fresh).await;
            if rep > 0 {
                taskflow.push(stored);
                baseline.push(written);
            }
        }
        rows.push(Row {
            scenario: format!(
                "{}, bulk enqueue: submit_many of {CHUNK} no-op tasks, until durable",
                backend.name()
            ),
            unit: "tasks/s",
            taskflow,
            baseline,
            baseline_name: if backend == Backend::Redis {
                "same driver, one MULTI of 1,000 HSET + ZADD, one connection"
            } else {
                "same driver, one 1,000-row INSERT per statement, one connection"
            },
        });
    }
    rows
}
