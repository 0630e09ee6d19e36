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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_canary_never_reaches_the_file_nor_the_admin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let canary = unique("4111-CANARY");
    let manager = manager(&path, Keyring::new().primary("k1", key(1)).unwrap()).await;
    assert!(manager.encrypts());
    let id = manager.add_task(charge_card, (canary.clone(), false));
    let declined = manager.add_task(charge_card, (canary.clone(), true));
    let done = finished(&manager, id).await;
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.result, Some(Value::String(format!("charged {canary}"))), "opened on read");
    assert_eq!(finished(&manager, declined).await.status, TaskStatus::Failed);

    let router = manager.admin().router();
    for route in [
        format!("/tasks/{id}"),
        format!("/tasks/{declined}"),
        "/tasks".to_owned(),
        "/tasks?status=failed".to_owned(),
        "/tasks/metrics".to_owned(),
        "/tasks/metrics/prometheus".to_owned(),
        "/tasks/audit".to_owned(),
        "/tasks/dashboard".to_owned(),
        format!("/tasks/{id}/logs"),
    ] {
        let (status, body) = get(&router, &route).await;
        assert_eq!(status, 200, "{route}");
        assert!(!contains(&body, &canary), "{route} shows the canary");
    }
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
    let args: String = conn
        .query_row("SELECT args FROM tasks WHERE id = ?1", [tampered.to_string()], |r| r.get(0))
        .unwrap();
    let flipped = {
        let mut value: Value = serde_json::from_str(&args).unwrap();
        let text = value["$sealed"].as_str().unwrap().to_owned();
        let (id, data) = text.split_at(3);
        let mut data = data.as_bytes().to_vec();
        data[10] = if data[10] == b'A' { b'B' } else { b'A' };
        value["$sealed"] = Value::String(format!("{id}{}", String::from_utf8(data).unwrap()));
        value.to_string()
    };
    conn.execute(
        "UPDATE tasks SET args = ?1, scheduled_at = NULL, wait_until = NULL WHERE id = ?2",
        [flipped, tampered.to_string()],
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
