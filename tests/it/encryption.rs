//! Arguments and results sealed at rest: a canary secret never reaches the SQLite file nor
//! any admin response; keys rotate (old ones still open, new writes use the primary); a task
//! sealed with a missing key waits, pending; a tampered one fails naming the key; a retry of
//! a sealed task gets exactly its original arguments.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use taskflow::{EnqueueOptions, Key, Keyring, SqliteStore, Store, TaskManager, TaskStatus};
use tower::ServiceExt;

use crate::support::{unique, wait_until};

const LONG: Duration = Duration::from_secs(30);

/// The cards `charge_card` was called with, in order.
static CHARGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Charges `card`: declined when `decline` is set.
#[taskflow::task(retries = 0)]
async fn charge_card(card: String, decline: bool) -> Result<String, String> {
    CHARGED.lock().unwrap().push(card.clone());
    if decline { Err("declined by the bank".to_owned()) } else { Ok(format!("charged {card}")) }
}

fn key(byte: u8) -> Key {
    Key::from_bytes(&[byte; 32]).unwrap()
}

async fn manager(path: &Path, keyring: Keyring) -> TaskManager {
    TaskManager::builder()
        .sqlite(path)
        .encryption(keyring)
        .poll_every(Duration::from_millis(50))
        .build()
        .await
        .unwrap()
}

async fn finished(manager: &TaskManager, id: taskflow::TaskId) -> taskflow::TaskRecord {
    manager.wait_for(id, LONG).await.unwrap()
}

/// Every byte of the database's files.
fn file_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        bytes.extend(std::fs::read(file).unwrap_or_default());
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

async fn get(router: &Router, path: &str) -> (u16, Vec<u8>) {
    let request = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    (status, axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap().to_vec())
}

/// Everything written by the `tracing` events and spans of this thread, at every level.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every event and span of this thread from now until the guard drops.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// What the SSE stream sends when asked to replay every event still kept, up to the first
/// chunk that names `until`.
async fn replayed_events(router: &Router, until: &str) -> Vec<u8> {
    let request = axum::http::Request::get("/tasks/stream")
        .header("last-event-id", "0")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body().into_data_stream();
    let mut seen = Vec::new();
    while !contains(&seen, until) {
        let next = tokio::time::timeout(LONG, futures_util::StreamExt::next(&mut body)).await;
        seen.extend_from_slice(&next.expect("the replay within 30 s").unwrap().unwrap());
    }
    seen
}

// On the test's own thread (a current-thread runtime), so that the subscriber set for it sees
// every event and span of the engine, the stores' callers and the admin.
#[tokio::test]
async fn a_sealed_canary_never_reaches_the_file_nor_the_admin() {
    let (logs, _logging) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let canary = unique("4111-CANARY");
    let manager = manager(&path, Keyring::new().primary("k1", key(1)).unwrap()).await;
    assert!(manager.encrypts());
    let router = manager.admin().router(); // the admin's feed keeps events from now on
    let id = manager.add_task(charge_card, (canary.clone(), false));
    let declined = manager.add_task(charge_card, (canary.clone(), true));
    let done = finished(&manager, id).await;
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.result, Some(Value::String(format!("charged {canary}"))), "opened on read");
    assert_eq!(finished(&manager, declined).await.status, TaskStatus::Failed);

    for route in [
        format!("/tasks/{id}"),
        format!("/tasks/{declined}"),
        "/tasks".to_owned(),
        "/tasks?status=failed".to_owned(),
        "/tasks/metrics".to_owned(),
        "/tasks/metrics/prometheus".to_owned(),
        "/tasks/export.csv".to_owned(),
        "/tasks/audit".to_owned(),
        "/tasks/dashboard".to_owned(),
        format!("/tasks/{id}/logs"),
    ] {
        let (status, body) = get(&router, &route).await;
        assert_eq!(status, 200, "{route}");
        assert!(!contains(&body, &canary), "{route} shows the canary");
    }
    let events = replayed_events(&router, &declined.to_string()).await;
    assert!(!contains(&events, &canary), "the event stream shows the canary");
    // A mismatched sealed argument: serde's message would quote the value into the error.
    let mismatched = manager.store().enqueue(mismatched_args(&canary)).unwrap().id;
    let failed = finished(&manager, mismatched).await;
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains("invalid arguments for task") && !error.contains(&canary), "{error}");
    let (_, body) = get(&router, &format!("/tasks/{id}")).await;
    let shown: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((&shown["args"], &shown["result"]), (&"[sealed]".into(), &"[sealed]".into()));
    let trusted = manager.admin().display_sealed(true).router();
    let (_, body) = get(&trusted, &format!("/tasks/{id}")).await;
    assert!(contains(&body, &canary), "an admin allowed to see them sees them");
    manager.shutdown(LONG).await;
    assert!(!contains(&file_bytes(&path), &canary), "the SQLite file holds the canary");

    // What the file holds: sealed values naming the key, not the plaintext.
    let raw = SqliteStore::open(&path).unwrap();
    let stored = raw.get(&id).await.unwrap().unwrap();
    let sealed = stored.args["$sealed"].as_str().unwrap();
    assert!(sealed.starts_with("k1:"), "{sealed}");
    raw.close().await.unwrap();
    let logged = logs.0.lock().unwrap().clone();
    assert!(contains(&logged, &id.to_string()), "the capture holds the engine's spans");
    assert!(contains(&logged, "name=charge_card"), "the tasks' attempt spans");
    assert!(!contains(&logged, &canary), "a log line shows the canary");
}

/// A `charge_card` task whose `decline` holds the canary, a string where a bool belongs.
fn mismatched_args(canary: &str) -> taskflow::TaskRecord {
    let mut record = crate::conformance::pending("charge_card");
    record.args = serde_json::json!({ "card": "4000", "decline": canary });
    record.max_retries = 0;
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_a_missing_key_waits_and_a_tampered_value_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let later = EnqueueOptions::new().run_at(chrono::Utc::now() + chrono::Duration::days(1));
    // Written with k1, to run tomorrow.
    let first = manager(&path, Keyring::new().primary("k1", key(1)).unwrap()).await;
    let old = first.submit(charge_card, (unique("old-card"), false), later.clone()).await.unwrap();
    first.shutdown(LONG).await;
    // k2 is primary, k1 still opens: both read back; new writes use k2.
    let both = Keyring::new().primary("k2", key(2)).unwrap().old("k1", key(1)).unwrap();
    let second = manager(&path, both).await;
    let record = second.store().get(&old).await.unwrap().unwrap();
    assert!(record.args["card"].as_str().unwrap().starts_with("old-card"), "k1 still opens");
    let new = second.submit(charge_card, (unique("new-card"), false), later.clone()).await.unwrap();
    second.shutdown(LONG).await;
    let raw = SqliteStore::open(&path).unwrap();
    let key_of =
        |record: taskflow::TaskRecord| record.args["$sealed"].as_str().unwrap()[..3].to_owned();
    assert_eq!(key_of(raw.get(&old).await.unwrap().unwrap()), "k1:");
    assert_eq!(key_of(raw.get(&new).await.unwrap().unwrap()), "k2:");
    raw.close().await.unwrap();
    // Both due now; one tampered with in the file.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE tasks SET scheduled_at = NULL, wait_until = NULL", []).unwrap();
    let tampered = {
        let third = manager(&path, Keyring::new().primary("k2", key(2)).unwrap()).await;
        let id =
            third.submit(charge_card, (unique("tampered"), false), later.clone()).await.unwrap();
        third.shutdown(LONG).await;
        id
    };
    // Stored as bytes (`<key id>:<nonce, value, tag>`): flip one of the value's.
    let mut flipped: Vec<u8> = conn
        .query_row("SELECT args FROM tasks WHERE id = ?1", [tampered.to_string()], |r| r.get(0))
        .unwrap();
    assert!(flipped.starts_with(b"k2:"), "a sealed value is stored as its bytes");
    let at = 3 + 24 + 2;
    flipped[at] ^= 0x01;
    conn.execute(
        "UPDATE tasks SET args = ?1, scheduled_at = NULL, wait_until = NULL WHERE id = ?2",
        rusqlite::params![flipped, tampered.to_string()],
    )
    .unwrap();
    drop(conn);
    // k1 is gone: its task waits, pending, naming the key; k2's runs; the tampered one fails.
    let fourth = manager(&path, Keyring::new().primary("k2", key(2)).unwrap()).await;
    assert_eq!(finished(&fourth, new).await.status, TaskStatus::Success);
    let failed = finished(&fourth, tampered).await;
    assert_eq!(failed.status, TaskStatus::Failed);
    let error = failed.error.unwrap();
    assert!(error.contains("`k2`") && error.contains("cannot decrypt"), "{error}");
    let waiting = wait_until(LONG, "the k1 task to wait for its key", || async {
        let record = fourth.store().get(&old).await.unwrap()?;
        let waits = record.error.as_deref().is_some_and(|e| e.contains("`k1`"));
        waits.then_some(record)
    })
    .await;
    assert_eq!(waiting.status, TaskStatus::Pending, "waits for its key, not failed");
    assert_eq!(waiting.retries_used, 0, "no attempt used");
    fourth.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_sealed_failed_task_gets_its_original_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let manager = manager(&path, Keyring::new().primary("k1", key(1)).unwrap()).await;
    let card = unique("retry-card");
    let id = manager.add_task(charge_card, (card.clone(), true));
    assert_eq!(finished(&manager, id).await.status, TaskStatus::Failed);
    let again = manager.retry(id).await.unwrap();
    assert_eq!(finished(&manager, again).await.status, TaskStatus::Failed, "declined again");
    let calls: Vec<String> =
        CHARGED.lock().unwrap().iter().filter(|c| **c == card).cloned().collect();
    assert_eq!(calls, [card.clone(), card.clone()], "the retry ran with the same card");
    manager.shutdown(LONG).await;
    assert!(!contains(&file_bytes(&path), &card));
}

#[test]
fn bad_keys_are_clear_errors_that_never_show_the_key() {
    use taskflow::KeyError;
    assert_eq!(Key::from_bytes(&[7; 31]).unwrap_err(), KeyError::Length(31));
    let err = Key::from_base64("c2VjcmV0").unwrap_err();
    assert_eq!(err, KeyError::Length(6));
    assert!(matches!(Key::from_base64("not base64!"), Err(KeyError::Base64(_))));
    let missing = Key::from_env("TASKFLOW_TEST_NO_SUCH_KEY").unwrap_err();
    assert!(missing.to_string().contains("TASKFLOW_TEST_NO_SUCH_KEY"));
    assert!(matches!(Keyring::new().primary("bad id", key(1)), Err(KeyError::Id(_))));
    let twice = Keyring::new().primary("k1", key(1)).unwrap().old("k1", key(2));
    assert!(matches!(twice, Err(KeyError::Duplicate(_))));
    assert_eq!(format!("{:?}", key(9)), "Key(..)");
}

#[tokio::test]
async fn a_keyring_without_a_primary_key_fails_the_build() {
    let keyring = Keyring::new().old("k1", key(1)).unwrap();
    let err = TaskManager::builder().encryption(keyring).build().await.unwrap_err();
    assert!(err.to_string().contains("no primary key"), "{err}");
}

/// A schedule with arguments, the tasks it fires, and a task with a result, all carrying
/// `canary`, on `store`; returns once they ran.
async fn seal_a_canary_into(store: std::sync::Arc<dyn Store>, canary: &str) {
    let keyring = Keyring::new().primary("k1", key(1)).unwrap();
    let manager = TaskManager::builder()
        .shared_store(store)
        .encryption(keyring)
        .declared_schedules(false)
        .poll_every(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let id = manager.submit(charge_card, (canary.to_owned(), false), EnqueueOptions::new());
    assert_eq!(finished(&manager, id.await.unwrap()).await.status, TaskStatus::Success);
    let hourly = taskflow::Schedule::every(Duration::from_secs(3600)).unwrap();
    let stored = manager.schedule("canary", hourly, charge_card, (canary.to_owned(), false));
    assert_eq!(stored.await.unwrap().args["card"], canary, "opened for the caller");
    let fired = manager.trigger_schedule("canary").await.unwrap();
    assert_eq!(finished(&manager, fired).await.status, TaskStatus::Success);
    manager.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_canary_never_reaches_a_postgres_table() {
    let Some(schema) = crate::conformance::postgres_schema().await else { return };
    let canary = unique("CANARY-PG");
    let store = taskflow::PostgresStore::connect(&schema.url).await.unwrap();
    seal_a_canary_into(std::sync::Arc::new(store), &canary).await;
    let (client, connection) =
        tokio_postgres::connect(&schema.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let tables = client
        .query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()", &[])
        .await
        .unwrap();
    assert!(tables.len() >= 3, "the store's tables");
    for table in tables {
        let name: String = table.get(0);
        let dump = client
            .query_one(&format!("SELECT COALESCE(string_agg(t::text, ' '), '') FROM {name} t"), &[])
            .await
            .unwrap();
        let dump: String = dump.get(0);
        assert!(!dump.contains(&canary), "table {name} holds the canary");
        if name == "taskflow_tasks" {
            assert!(dump.contains("$sealed"), "{name}: sealed values");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_canary_never_reaches_a_mysql_table() {
    use mysql_async::prelude::Queryable;
    let Some(url) = crate::conformance::mysql_url().await else { return };
    let canary = unique("CANARY-MY");
    let store = taskflow::MysqlStore::connect(&url).await.unwrap();
    seal_a_canary_into(std::sync::Arc::new(store), &canary).await;
    let pool = mysql_async::Pool::new(url.as_str());
    let mut conn = pool.get_conn().await.unwrap();
    let tables: Vec<String> = conn.query("SHOW TABLES").await.unwrap();
    assert!(tables.len() >= 3, "the store's tables");
    for table in tables {
        let rows: Vec<mysql_async::Row> =
            conn.query(format!("SELECT * FROM {table}")).await.unwrap();
        let mut bytes = Vec::new();
        for row in rows {
            for value in row.unwrap() {
                if let mysql_async::Value::Bytes(cell) = value {
                    bytes.extend(cell);
                }
            }
        }
        assert!(!contains(&bytes, &canary), "table {table} holds the canary");
    }
    drop(conn);
    pool.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_canary_never_reaches_a_redis_key() {
    let Ok(url) = std::env::var("TASKFLOW_TEST_REDIS_URL") else {
        println!("skipped: TASKFLOW_TEST_REDIS_URL is not set (.ci/run sets it)");
        return;
    };
    let prefix = unique("sealed");
    let canary = unique("CANARY-RD");
    let store = taskflow::RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
    seal_a_canary_into(std::sync::Arc::new(store), &canary).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    assert!(keys.len() > 5, "the store's keys");
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query_async(&mut conn).await.unwrap();
        assert!(!contains(&dump, &canary), "DUMP {key} holds the canary");
        // DUMP may compress: read each value as its type too.
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let command = match kind.as_str() {
            "string" => vec!["GET"],
            "hash" => vec!["HGETALL"],
            "list" => vec!["LRANGE", "0", "-1"],
            "set" => vec!["SMEMBERS"],
            "zset" => vec!["ZRANGE", "0", "-1"],
            _ => continue,
        };
        let mut cmd = redis::cmd(command[0]);
        cmd.arg(&key);
        for arg in &command[1..] {
            cmd.arg(*arg);
        }
        let values: redis::Value = cmd.query_async(&mut conn).await.unwrap();
        assert!(!format!("{values:?}").contains(&canary), "{key} holds the canary");
    }
}

/// Rotation to the end: written with k1; k2 made primary with k1 kept; `reseal` seals
/// everything again with k2; then k1 is dropped and every task still opens, and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resealing_lets_the_old_key_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let later = EnqueueOptions::new().run_at(chrono::Utc::now() + chrono::Duration::days(1));
    let first = manager(&path, Keyring::new().primary("k1", key(1)).unwrap()).await;
    let done = first.submit(charge_card, (unique("done-card"), false), EnqueueOptions::new());
    let done = done.await.unwrap();
    assert_eq!(finished(&first, done).await.status, TaskStatus::Success);
    let waiting = first.submit(charge_card, (unique("waiting-card"), false), later).await.unwrap();
    let yearly = taskflow::Schedule::cron("0 0 1 1 *").unwrap();
    let card = unique("schedule-card");
    let defined = first.schedule("yearly", yearly.clone(), charge_card, (card.clone(), false));
    let defined = defined.await.unwrap();
    // Defined again with the same arguments (as at every start): nothing changes, though
    // sealing them again would give other bytes.
    let again = first.schedule("yearly", yearly, charge_card, (card.clone(), false)).await;
    assert_eq!(again.unwrap().version, defined.version, "the same definition is no change");
    first.shutdown(LONG).await;

    let both = Keyring::new().primary("k2", key(2)).unwrap().old("k1", key(1)).unwrap();
    let second = manager(&path, both).await;
    assert_eq!(second.reseal().await.unwrap(), 3, "both tasks (arguments, result), the schedule");
    assert_eq!(second.reseal().await.unwrap(), 0, "nothing left sealed with k1");
    second.shutdown(LONG).await;
    let raw = SqliteStore::open(&path).unwrap();
    let schedule = raw.schedules().await.unwrap().pop().unwrap();
    assert!(schedule.args["$sealed"].as_str().unwrap().starts_with("k2:"), "the schedule's");
    assert_eq!(schedule.next_slot, defined.next_slot, "resealed, it waits for the same slot");
    for id in [done, waiting] {
        let record = raw.get(&id).await.unwrap().unwrap();
        assert!(record.args["$sealed"].as_str().unwrap().starts_with("k2:"), "{id}: args");
    }
    let result = raw.get(&done).await.unwrap().unwrap().result.unwrap();
    assert!(result["$sealed"].as_str().unwrap().starts_with("k2:"), "the result too");
    raw.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE tasks SET scheduled_at = NULL, wait_until = NULL", []).unwrap();
    drop(conn);

    let third = manager(&path, Keyring::new().primary("k2", key(2)).unwrap()).await;
    let schedules = third.schedules().await.unwrap();
    assert_eq!(schedules[0].args["card"], serde_json::json!(card), "opens with k2 alone");
    let record = third.store().get(&done).await.unwrap().unwrap();
    assert!(record.result.unwrap().as_str().unwrap().starts_with("charged done-card"));
    assert_eq!(finished(&third, waiting).await.status, TaskStatus::Success, "runs with k2 only");
    third.shutdown(LONG).await;
}

// Current-thread, for the captured warning (see `capture_logs`).
#[tokio::test]
async fn a_missing_key_at_start_is_a_warning_that_counts_the_tasks_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let tomorrow = EnqueueOptions::new().run_at(chrono::Utc::now() + chrono::Duration::days(1));
    let first = manager(&path, Keyring::new().primary("k1", key(1)).unwrap()).await;
    for n in 0..3 {
        first.submit(charge_card, (format!("card {n}"), false), tomorrow.clone()).await.unwrap();
    }
    first.shutdown(LONG).await;
    let (logs, _logging) = capture_logs();
    let second = manager(&path, Keyring::new().primary("k2", key(2)).unwrap()).await;
    let warning = "3 stored tasks are sealed with key `k1`, which the keyring lacks";
    wait_until(LONG, "the missing key's warning", || async {
        contains(&logs.0.lock().unwrap(), warning).then_some(())
    })
    .await;
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = logged.lines().find(|line| line.contains(warning)).unwrap();
    assert!(line.contains("WARN"), "{line}");
    second.shutdown(LONG).await;
    // With the key back, nothing waits for a missing one: no warning.
    let (logs, _logging) = capture_logs();
    let keys = Keyring::new().primary("k2", key(2)).unwrap().old("k1", key(1)).unwrap();
    let third = manager(&path, keys).await;
    third.submit(charge_card, ("now".to_owned(), false), EnqueueOptions::new()).await.unwrap();
    wait_until(LONG, "a task to run", || async {
        CHARGED.lock().unwrap().contains(&"now".to_owned()).then_some(())
    })
    .await;
    third.shutdown(LONG).await;
    assert!(!contains(&logs.0.lock().unwrap(), "which the keyring lacks"));
}
