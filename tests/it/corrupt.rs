//! Stored rows with garbage in them, on every store: arbitrary values written straight into
//! one column (or hash field) of a stored task, behind the store's back. Reading never
//! panics; the damaged task reads as an error naming the task and the column; and the store's
//! other tasks stay readable, listable and runnable (one bad row must not take down the
//! dashboard's list or the engine's poll for every task).

use std::sync::Arc;

use proptest::prelude::*;
use taskflow::{Store, StoreError, TaskId, TaskQuery, TaskStatus};

use crate::conformance::{pending, put};

/// A value to write into a column.
#[derive(Clone, Debug)]
enum Garbage {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Garbage {
    /// As text, for the stores that take every value as a string and cast it.
    fn text(&self) -> Option<String> {
        match self {
            Garbage::Null => None,
            Garbage::Int(n) => Some(n.to_string()),
            Garbage::Real(x) => Some(x.to_string()),
            Garbage::Text(text) => Some(text.clone()),
            Garbage::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        }
    }
}

fn garbage() -> impl Strategy<Value = Garbage> {
    prop_oneof![
        Just(Garbage::Null),
        any::<i64>().prop_map(Garbage::Int),
        prop_oneof![Just(-1i64), Just(0), Just(i64::MAX), Just(i64::from(u32::MAX) + 1)]
            .prop_map(Garbage::Int),
        any::<f64>().prop_map(Garbage::Real),
        ".{0,40}".prop_map(Garbage::Text),
        prop_oneof![
            Just("running"),
            Just("pending"),
            Just("{}"),
            Just("[]"),
            Just("null"),
            Just("{\"a\": 1}"),
            Just("not json"),
            Just("infinity"),
            Just("294276-12-31 00:00:00+00"),
            Just("4713-01-01 00:00:00+00 BC"),
            Just("00000000-0000-0000-0000-000000000000"),
        ]
        .prop_map(|s| Garbage::Text(s.to_owned())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Garbage::Bytes),
    ]
}

/// The columns of the SQL stores' task tables.
const COLUMNS: [&str; 22] = [
    "func_name",
    "status",
    "created_at",
    "start_time",
    "end_time",
    "duration",
    "retries_used",
    "max_retries",
    "error",
    "stacktrace",
    "tags",
    "source",
    "priority",
    "args",
    "result",
    "idempotency_key",
    "scheduled_at",
    "retry_of",
    "requeue_on_interrupt",
    "recoveries",
    "lease_owner",
    "lease_expires_at",
];

/// The fields of a Redis task hash.
const FIELDS: [&str; 17] = [
    "base",
    "seq",
    "status",
    "func",
    "created_us",
    "key",
    "requeue",
    "retries",
    "recoveries",
    "start",
    "end",
    "duration",
    "error",
    "stack",
    "result",
    "owner",
    "expires",
];

/// Checks the store after one of its two pending tasks, `damaged`, was overwritten.
async fn check(store: &dyn Store, damaged: TaskId, healthy: TaskId, column: &str) {
    match store.get(&damaged).await {
        Ok(_) => {}
        Err(StoreError::Corrupt { id, reason }) => {
            assert_eq!(id, damaged.to_string(), "{reason}");
            assert!(reason.contains(column), "the error names `{column}`: {reason}");
        }
        Err(other) => panic!("garbage in `{column}` read as {other:?}, not as corrupt"),
    }
    let healthy_record = store.get(&healthy).await.expect("the other task reads").expect("kept");
    assert_eq!(healthy_record.status, TaskStatus::Pending);
    let page = store.list(&TaskQuery::default()).await.expect("the list still answers");
    assert!(page.tasks.iter().any(|t| t.task_id == healthy), "the other task is listed");
    let runner = taskflow::store::Lease {
        owner: "corrupt".into(),
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(1),
    };
    let fetched = store
        .fetch(&crate::conformance::default_queue(100, chrono::Utc::now(), &runner))
        .await
        .expect("the fetch answers");
    assert!(fetched.iter().any(|t| t.task_id == healthy), "the other task can still run");
    store.stats(None).await.expect("statistics still answer");
    store.reclaim_expired(chrono::Utc::now(), 3).await.expect("reclaim still answers");
}

fn cases() -> ProptestConfig {
    ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn garbage_in_any_sqlite_column() {
    let runtime = runtime();
    proptest!(cases(), |(column in proptest::sample::select(&COLUMNS[..]), value in garbage())| {
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tasks.db");
            let store = taskflow::SqliteStore::open(&path).unwrap();
            let damaged = put(&store, pending("victim")).await;
            let healthy = put(&store, pending("bystander")).await;
            store.close().await.unwrap();
            let value = match &value {
                Garbage::Null => rusqlite::types::Value::Null,
                Garbage::Int(n) => rusqlite::types::Value::Integer(*n),
                Garbage::Real(x) => rusqlite::types::Value::Real(*x),
                Garbage::Text(text) => rusqlite::types::Value::Text(text.clone()),
                Garbage::Bytes(bytes) => rusqlite::types::Value::Blob(bytes.clone()),
            };
            let conn = rusqlite::Connection::open(&path).unwrap();
            let sql = format!("UPDATE tasks SET {column} = ?1 WHERE id = ?2");
            // A NOT NULL column refuses NULL: nothing to check then.
            if conn.execute(&sql, rusqlite::params![value, damaged.to_string()]).is_err() {
                return;
            }
            drop(conn);
            let store = taskflow::SqliteStore::open(&path).unwrap();
            check(&store, damaged, healthy, column).await;
            store.close().await.unwrap();
        });
    });
}

#[test]
fn garbage_in_any_redis_field() {
    let runtime = runtime();
    let Some(url) = std::env::var("TASKFLOW_TEST_REDIS_URL").ok() else {
        println!("skipped: TASKFLOW_TEST_REDIS_URL is not set (.ci/run sets it)");
        return;
    };
    let client = redis::Client::open(url.as_str()).unwrap();
    proptest!(cases(), |(field in proptest::sample::select(&FIELDS[..]), value in garbage())| {
        runtime.block_on(async {
            let prefix = format!("test-{}", TaskId::new());
            let store = taskflow::RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
            let damaged = put(&store, pending("victim")).await;
            let healthy = put(&store, pending("bystander")).await;
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let key = format!("{prefix}:t:{damaged}");
            let bytes = match &value {
                Garbage::Bytes(bytes) => bytes.clone(),
                other => other.text().unwrap_or_default().into_bytes(),
            };
            let command = if matches!(value, Garbage::Null) {
                let mut command = redis::cmd("HDEL");
                command.arg(&key).arg(field);
                command
            } else {
                let mut command = redis::cmd("HSET");
                command.arg(&key).arg(field).arg(bytes);
                command
            };
            let _: i64 = command.query_async(&mut conn).await.unwrap();
            check(&store, damaged, healthy, field).await;
            store.close().await.unwrap();
            // This case's keys, found with SCAN (a KEYS would block the server while it walks
            // every other test's keys too).
            let mut keys: Vec<String> = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{prefix}:*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                keys.extend(found);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
            }
        });
    });
}

#[test]
fn garbage_in_any_postgres_column() {
    let runtime = runtime();
    let Some(schema) = runtime.block_on(crate::conformance::postgres_schema()) else { return };
    let store = runtime.block_on(taskflow::PostgresStore::connect_with_pool_size(&schema.url, 4));
    let store = Arc::new(store.unwrap());
    let (client, connection) =
        runtime.block_on(tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)).unwrap();
    runtime.spawn(connection);
    proptest!(cases(), |(column in proptest::sample::select(&COLUMNS[..]), value in garbage())| {
        runtime.block_on(async {
            client.execute("DELETE FROM taskflow_tasks", &[]).await.unwrap();
            let damaged = put(&*store, pending("victim")).await;
            let healthy = put(&*store, pending("bystander")).await;
            // Every value goes in as text cast to the column's type; what the type refuses
            // (PostgreSQL checks types) is nothing to check.
            let kind: String = client
                .query_one(
                    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                     WHERE attrelid = 'taskflow_tasks'::regclass AND attname = $1",
                    &[&column],
                )
                .await
                .unwrap()
                .get(0);
            let sql = format!("UPDATE taskflow_tasks SET {column} = $1::text::{kind} WHERE id = $2::text::uuid");
            let text = value.text().map(|t| t.replace('\0', ""));
            let written = client.execute(&sql, &[&text, &damaged.to_string()]).await;
            if written.is_ok() {
                check(&*store, damaged, healthy, column).await;
            }
        });
    });
}

#[test]
fn garbage_in_any_mysql_column() {
    use mysql_async::prelude::Queryable;
    let runtime = runtime();
    let Some(url) = runtime.block_on(crate::conformance::mysql_url()) else { return };
    let store = runtime.block_on(taskflow::MysqlStore::connect_with_pool_size(&url, 4));
    let store = Arc::new(store.unwrap());
    let pool = mysql_async::Pool::new(url.as_str());
    proptest!(cases(), |(column in proptest::sample::select(&COLUMNS[..]), value in garbage())| {
        runtime.block_on(async {
            let mut conn = pool.get_conn().await.unwrap();
            conn.query_drop("DELETE FROM taskflow_tasks").await.unwrap();
            let damaged = put(&*store, pending("victim")).await;
            let healthy = put(&*store, pending("bystander")).await;
            let sql = format!("UPDATE taskflow_tasks SET {column} = ? WHERE id = ?");
            let param = match &value {
                Garbage::Null => mysql_async::Value::NULL,
                Garbage::Int(n) => mysql_async::Value::Int(*n),
                Garbage::Real(x) => mysql_async::Value::Double(*x),
                Garbage::Text(text) => mysql_async::Value::Bytes(text.clone().into_bytes()),
                Garbage::Bytes(bytes) => mysql_async::Value::Bytes(bytes.clone()),
            };
            // What the column's type or strict mode refuses is nothing to check.
            let written = conn.exec_drop(&sql, (param, damaged.to_string())).await;
            if written.is_ok() {
                check(&*store, damaged, healthy, column).await;
            }
        });
    });
}
