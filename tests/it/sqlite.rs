//! The SQLite store with the engine: restart recovery, graceful shutdown, stored tasks this
//! binary cannot run, and a database that is unusable or fills up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use serde_json::{Value, json};
use taskflow::{
    EnqueueOptions, SqliteOptions, SqliteStore, Store, StoreError, TaskManager, TaskStatus, Tasks,
    task, task_log,
};

use crate::conformance::pending;
use crate::support::{note, notes, unique, wait_until};

const LONG: Duration = Duration::from_secs(20);

/// Runs until the test notes "release" under `key` (or the task is stopped).
#[task]
async fn hold(key: String) {
    note(&key, "held");
    while !notes(&key).iter().any(|n| n == "release") {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[task(requeue_on_interrupt = true)]
async fn hold_requeued(key: String) {
    note(&key, "held");
    while !notes(&key).iter().any(|n| n == "release") {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    note(&key, "finished");
}

#[task]
async fn count(key: String, n: u32) -> u32 {
    note(&key, format!("ran {n}"));
    n * 2
}

#[task]
async fn slow_logged(key: String) -> &'static str {
    task_log!("started slowly", key = key.as_str());
    tokio::time::sleep(Duration::from_millis(150)).await;
    task_log!(warn, "almost done");
    note(&key, "done");
    "ok"
}

#[task]
fn thumbnail(image_id: u64, width: u32) -> u64 {
    image_id + u64::from(width)
}

fn db() -> PathBuf {
    tempfile::tempdir().unwrap().keep().join("tasks.db")
}

async fn manager(path: &PathBuf) -> TaskManager {
    TaskManager::builder().sqlite(path).build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_tasks_run_after_a_restart() {
    let path = db();
    let key = unique("restart");
    let first = TaskManager::builder().sqlite(&path).concurrency(1).build().await.unwrap();
    let blocker = first.add_task(hold, key.clone());
    wait_until(LONG, "the blocker to run", || async {
        notes(&key).contains(&"held".to_owned()).then_some(())
    })
    .await;
    let queued: Vec<_> = (0..5).map(|n| first.add_task(count, (key.clone(), n))).collect();
    first.shutdown(Duration::from_millis(50)).await;
    assert!(!notes(&key).iter().any(|n| n.starts_with("ran")), "nothing else ran");
    drop(first);

    let second = manager(&path).await;
    for (n, id) in queued.iter().enumerate() {
        let record = second.wait_for(*id, LONG).await.unwrap();
        assert_eq!(record.status, TaskStatus::Success);
        assert_eq!(record.result, Some(json!(n * 2)));
    }
    let mut ran = notes(&key);
    ran.retain(|n| n.starts_with("ran"));
    ran.sort();
    assert_eq!(ran, ["ran 0", "ran 1", "ran 2", "ran 3", "ran 4"], "each ran exactly once");
    let blocker = second.store().get(&blocker).await.unwrap().unwrap();
    assert_eq!(blocker.status, TaskStatus::Interrupted);
    assert_eq!(blocker.error.as_deref(), Some("interrupted by shutdown"));
    second.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_running_tasks_and_keeps_their_logs() {
    let path = db();
    let key = unique("graceful");
    let first = manager(&path).await;
    let ids: Vec<_> = (0..3).map(|_| first.add_task(slow_logged, key.clone())).collect();
    let requeued_key = unique("graceful-requeue");
    let requeued = first.add_task(hold_requeued, requeued_key.clone());
    wait_until(LONG, "tasks to start", || async {
        let records = futures_all(&first, &ids).await;
        let running = records.iter().all(|r| r.status == TaskStatus::Running);
        (running && notes(&requeued_key).contains(&"held".to_owned())).then_some(())
    })
    .await;
    first.shutdown(Duration::from_secs(1)).await;
    assert_eq!(notes(&key).len(), 3, "the grace period let all three finish");
    drop(first);

    // The file holds what happened, read by a fresh store.
    let store = SqliteStore::open(&path).unwrap();
    for id in &ids {
        let record = store.get(id).await.unwrap().unwrap();
        assert_eq!(record.status, TaskStatus::Success);
        let messages: Vec<_> = record.logs.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["started slowly", "almost done"]);
        assert_eq!(record.logs[0].fields["key"], json!(key));
    }
    let held = store.get(&requeued).await.unwrap().unwrap();
    assert_eq!(held.status, TaskStatus::Pending, "requeue_on_interrupt puts it back");
    store.close().await.unwrap();

    note(&requeued_key, "release");
    let second = manager(&path).await;
    let record = second.wait_for(requeued, LONG).await.unwrap();
    assert_eq!(record.status, TaskStatus::Success);
    assert!(notes(&requeued_key).contains(&"finished".to_owned()));
    second.shutdown(LONG).await;
}

async fn futures_all(manager: &TaskManager, ids: &[taskflow::TaskId]) -> Vec<taskflow::TaskRecord> {
    let mut records = Vec::new();
    for id in ids {
        records.push(manager.store().get(id).await.unwrap().unwrap());
    }
    records
}

/// Writes tasks into a database as an older or newer deploy would have left them.
async fn seed(path: &PathBuf, records: Vec<taskflow::TaskRecord>) {
    let store = SqliteStore::open(path).unwrap();
    for record in records {
        store.enqueue(record).unwrap().write.unwrap().wait().await.unwrap();
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_tasks_this_binary_cannot_run_fail_clearly_and_stay_stored() {
    let path = db();
    let removed = pending("send_fax");
    let mut changed = pending("thumbnail");
    changed.args = json!({ "image_id": 7, "height": 600 });
    let mut mistyped = pending("thumbnail");
    mistyped.args = json!({ "image_id": "seven", "width": 600 });
    let unreadable = pending("thumbnail");
    let runnable = {
        let mut record = pending("thumbnail");
        record.args = json!({ "image_id": 1, "width": 2 });
        record
    };
    let ids = [removed.task_id, changed.task_id, mistyped.task_id, unreadable.task_id];
    let runnable_id = runnable.task_id;
    seed(&path, vec![removed, changed, mistyped, unreadable, runnable]).await;
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("UPDATE tasks SET args = '{not json' WHERE id = ?1", [ids[3].to_string()]).unwrap();
    drop(raw);

    let manager = manager(&path).await;
    let ok = manager.wait_for(runnable_id, LONG).await.unwrap();
    assert_eq!(ok.status, TaskStatus::Success);
    assert_eq!(ok.result, Some(json!(3)));
    let expected = [
        vec!["send_fax", "not registered"],
        vec!["thumbnail", "width"],
        vec!["thumbnail", "image_id"],
        vec!["args", "cannot be read"],
    ];
    for (id, words) in ids.iter().zip(expected) {
        let record = wait_until(LONG, "the stored task to be settled", || async {
            let record = manager.store().get(id).await.unwrap().unwrap();
            record.status.is_finished().then_some(record)
        })
        .await;
        assert_eq!(record.status, TaskStatus::Failed);
        let error = record.error.unwrap();
        for word in words {
            assert!(error.contains(word), "`{error}` should mention `{word}`");
        }
    }
    // Nothing was rewritten: the stored arguments stay as they were, for a retry once fixed.
    let changed = manager.store().get(&ids[1]).await.unwrap().unwrap();
    assert_eq!(changed.args, json!({ "image_id": 7, "height": 600 }));
    manager.shutdown(LONG).await;
    let raw = rusqlite::Connection::open(&path).unwrap();
    let args: String = raw
        .query_row("SELECT args FROM tasks WHERE id = ?1", [ids[3].to_string()], |r| r.get(0))
        .unwrap();
    assert_eq!(args, "{not json");
}

#[tokio::test]
async fn unusable_database_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
    let err = SqliteStore::open(&garbage).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
    assert!(err.to_string().contains("garbage.db"), "{err}");

    let missing_dir = dir.path().join("no/such/dir/tasks.db");
    let err = SqliteStore::open(&missing_dir).unwrap_err();
    assert!(err.to_string().contains("no/such/dir/tasks.db"), "{err}");

    let newer = dir.path().join("newer.db");
    SqliteStore::open(&newer).unwrap().close().await.unwrap();
    rusqlite::Connection::open(&newer).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let err = SqliteStore::open(&newer).unwrap_err();
    assert!(
        matches!(err, StoreError::IncompatibleSchema { found: 99, supported: 10, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade taskflow"), "{err}");

    let shared = dir.path().join("shared.db");
    let owner = SqliteStore::open(&shared).unwrap();
    let err = SqliteStore::open(&shared).unwrap_err();
    assert!(err.to_string().contains("one process owns"), "{err}");
    let err = TaskManager::builder().sqlite(&shared).build().await.unwrap_err();
    assert!(err.to_string().contains("one process owns"), "{err}");
    owner.close().await.unwrap();
    SqliteStore::open(&shared).unwrap().close().await.unwrap();
}

async fn big(tasks: Tasks) -> (axum::http::StatusCode, axum::Json<Value>) {
    match tasks.try_add_task(count, ("x".repeat(16 * 1024), 1), EnqueueOptions::new()) {
        Ok(id) => (axum::http::StatusCode::OK, axum::Json(json!({ "id": id }))),
        Err(err) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "error": err.to_string() })),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_fails_requests_clearly_and_the_app_keeps_serving() {
    let path = db();
    let store = SqliteStore::open_with(&path, SqliteOptions::new().max_size(256 * 1024)).unwrap();
    let manager = TaskManager::builder().store(store).build().await.unwrap();
    let app = Router::new()
        .route("/big", post(big))
        .layer(manager.layer())
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();

    let mut accepted = Vec::new();
    let mut refusal = None;
    for _ in 0..200 {
        let response = client.post(format!("{base}/big")).send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if status == 200 {
            accepted.push(body["id"].as_str().unwrap().parse::<taskflow::TaskId>().unwrap());
        } else {
            refusal = Some((status, body));
            break;
        }
    }
    let (status, body) = refusal.expect("the database filled up");
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("could not enqueue background task"), "{error}");
    assert!(error.contains("full"), "{error}");
    assert!(!accepted.is_empty());

    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    // Outside a request, `submit` reports the commit failure itself.
    let err =
        manager.submit(count, ("x".repeat(64 * 1024), 1), EnqueueOptions::new()).await.unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    // Every id a client received is stored.
    for id in &accepted {
        assert!(manager.store().get(id).await.unwrap().is_some(), "task {id} was lost");
    }
    manager.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_task_runs_from_the_store() {
    let path = db();
    let manager = manager(&path).await;
    let id = manager.add_task(thumbnail, (40, 2));
    let record = manager.wait_for(id, LONG).await.unwrap();
    assert_eq!(record.result, Some(json!(42)));
    manager.shutdown(LONG).await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    assert_eq!(store.get(&id).await.unwrap().unwrap().status, TaskStatus::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_finished_tasks_in_the_background() {
    let path = db();
    let retention = taskflow::Retention { max_age: None, max_finished: Some(10) };
    let manager = TaskManager::builder()
        .sqlite(&path)
        .retention(retention)
        .prune_every(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let key = unique("retention");
    for n in 0..100 {
        manager.add_task(count, (key.clone(), n));
    }
    // Tasks may be pruned as soon as they end: wait for the runs, not for one record.
    wait_until(LONG, "every task to run", || async { (notes(&key).len() == 100).then_some(()) })
        .await;
    let all = taskflow::TaskQuery { limit: Some(1000), ..Default::default() };
    wait_until(LONG, "retention to prune", || async {
        let kept = manager.store().list(&all).await.unwrap().tasks;
        let finished = kept.iter().all(|r| r.status.is_finished());
        (finished && kept.len() <= 10).then_some(())
    })
    .await;
    manager.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_many_tasks_goes_in_chunks_and_keeps_the_newest() {
    let store = SqliteStore::open(db()).unwrap();
    let mut writes = Vec::new();
    let mut ids = Vec::new();
    let start = chrono::Utc::now() - chrono::Duration::hours(1);
    for n in 0..5_000i64 {
        let mut record = pending("thumbnail");
        record.status = TaskStatus::Success;
        record.end_time = Some(start + chrono::Duration::milliseconds(n));
        ids.push(record.task_id);
        writes.extend(store.enqueue(record).unwrap().write);
    }
    let waiting = pending("thumbnail");
    let waiting_id = waiting.task_id;
    writes.extend(store.enqueue(waiting).unwrap().write);
    for write in writes {
        write.wait().await.unwrap();
    }
    let keep = taskflow::Retention { max_age: None, max_finished: Some(10) };
    let removed = store.prune(&keep, chrono::Utc::now()).await.unwrap();
    assert_eq!(removed, 4_990, "more than one chunk of 2,000");
    for id in &ids[..4_990] {
        assert!(store.get(id).await.unwrap().is_none());
    }
    for id in &ids[4_990..] {
        assert!(store.get(id).await.unwrap().is_some(), "the newest ten stay");
    }
    assert!(store.get(&waiting_id).await.unwrap().is_some(), "pending is never pruned");
    store.close().await.unwrap();
}

/// The full-disk episode: eight clients enqueue until the database is full, then
/// space is freed. Every task a client got an id for runs; none stays `pending`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_disk_episode_every_acknowledged_task_runs() {
    let path = db();
    let store = SqliteStore::open_with(&path, SqliteOptions::new().max_size(512 * 1024)).unwrap();
    let manager = TaskManager::builder()
        .store(store)
        .poll_every(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let app = Router::new().route("/big", post(big)).layer(manager.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut clients = Vec::new();
    for _ in 0..8 {
        let url = format!("{base}/big");
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut accepted = Vec::new();
            for _ in 0..500 {
                let response = client.post(&url).send().await.unwrap();
                if response.status() != 200 {
                    assert_eq!(response.status(), 503);
                    return accepted;
                }
                let body: Value = response.json().await.unwrap();
                accepted.push(body["id"].as_str().unwrap().parse::<taskflow::TaskId>().unwrap());
            }
            panic!("the database never filled up");
        }));
    }
    let mut accepted = Vec::new();
    for client in clients {
        accepted.extend(client.await.unwrap());
    }
    // Space comes back: finished tasks are pruned until every acknowledged one has run.
    let everything = taskflow::Retention { max_age: None, max_finished: Some(0) };
    let store = Arc::clone(manager.store());
    let mut stuck = accepted.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !stuck.is_empty() && tokio::time::Instant::now() < deadline {
        let _ = store.prune(&everything, chrono::Utc::now()).await;
        let mut still = Vec::new();
        for id in stuck {
            match store.get(&id).await {
                Ok(None) => {} // finished, then pruned
                Ok(Some(record)) if record.status.is_finished() => {
                    assert_eq!(record.status, TaskStatus::Success, "{record:?}");
                }
                _ => still.push(id),
            }
        }
        stuck = still;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "full-disk episode: {} tasks acknowledged, {} stuck afterwards",
        accepted.len(),
        stuck.len()
    );
    assert!(stuck.is_empty(), "{} acknowledged tasks never ran: {stuck:?}", stuck.len());
    manager.shutdown(LONG).await;
}

/// A file written by a taskflow before fetching (schema version 1) opens with its waiting
/// tasks still waiting and its due ones available.
#[tokio::test]
async fn a_version_1_file_is_migrated_for_fetching() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let store = SqliteStore::open(&path).unwrap();
    let mut later = pending("migrated_later");
    later.scheduled_at = Some(chrono::Utc::now() + chrono::Duration::hours(1));
    let later = crate::conformance::put(&store, later).await;
    let due = crate::conformance::put(&store, pending("migrated_due")).await;
    store.close().await.unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE task_counts; DROP TABLE task_minutes;
         ALTER TABLE tasks DROP COLUMN progress;
         DROP TABLE revoked_sessions; DROP TABLE schedules; DROP TABLE instances;
         DROP INDEX tasks_queue_active;
         DROP TABLE queues;
         DROP INDEX tasks_waiting_key;
         ALTER TABLE tasks DROP COLUMN run_key;
         DROP INDEX tasks_available; DROP INDEX tasks_waiting; DROP TABLE leaders;
         ALTER TABLE tasks DROP COLUMN wait_until; ALTER TABLE tasks DROP COLUMN queue;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    // The counters start from the rows there were.
    let counts = store.counts().await.unwrap();
    assert_eq!(
        counts.iter().map(|c| (c.status.as_str(), c.tasks)).collect::<Vec<_>>(),
        [("pending", 1), ("pending", 1)]
    );
    let lease = taskflow::store::Lease {
        owner: "migrated".into(),
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(1),
    };
    let now = store
        .fetch(&crate::conformance::default_queue(10, chrono::Utc::now(), &lease))
        .await
        .unwrap();
    assert_eq!(now.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![due]);
    let at = chrono::Utc::now() + chrono::Duration::hours(2);
    let then = store.fetch(&crate::conformance::default_queue(10, at, &lease)).await.unwrap();
    assert_eq!(then.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![later]);
}

/// A damaged schedule row is skipped by `schedules()` (and logged), kept in the file, and
/// replaced by the next definition of that name.
#[tokio::test]
async fn a_damaged_schedule_row_is_skipped_kept_and_replaced() {
    use taskflow::store::{ScheduleChange, StoredSchedule};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schedules.db");
    SqliteStore::open(&path).unwrap().close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schedules (name, body, updated_at) VALUES ('nightly', '{not json', 0)",
        [],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.schedules().await.unwrap().is_empty(), "skipped, not an error for the rest");
    let now = chrono::Utc::now();
    let pause = store.change_schedule("nightly", ScheduleChange::Pause(true), now).await;
    assert_eq!(pause.unwrap(), None, "nothing to pause in a damaged row");
    let define =
        StoredSchedule::new("nightly", "report", serde_json::json!(null), "every 1m", None, now);
    let stored =
        store.change_schedule("nightly", ScheduleChange::Define(define), now).await.unwrap();
    assert_eq!(stored.unwrap().definition, "every 1m");
    assert_eq!(store.schedules().await.unwrap().len(), 1, "the definition replaced the damage");
    store.close().await.unwrap();
}

/// A schedule change whose task cannot be stored (here, an id the file already holds) fails
/// as a whole: the schedule keeps its state, nothing half-written is committed with the
/// other writes of that commit, and the store goes on.
#[tokio::test]
async fn a_schedule_change_whose_task_fails_is_taken_back_whole() {
    use taskflow::store::{ScheduleChange, StoredSchedule};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("tasks.db")).unwrap();
    let now = chrono::Utc::now();
    let define =
        StoredSchedule::new("nightly", "report", serde_json::json!({}), "every 1m", None, now);
    let defined =
        store.change_schedule("nightly", ScheduleChange::Define(define), now).await.unwrap();
    let held = crate::conformance::put(&store, crate::conformance::pending("report")).await;
    let mut clash = crate::conformance::pending("report");
    clash.task_id = held;
    let trigger = ScheduleChange::Trigger(Box::new(clash));
    let err = store.change_schedule("nightly", trigger, now).await.unwrap_err();
    assert!(err.to_string().contains("sqlite"), "{err}");
    assert_eq!(store.schedules().await.unwrap(), vec![defined.unwrap()], "as it was");
    let fresh = ScheduleChange::Trigger(Box::new(crate::conformance::pending("report")));
    let triggered = store.change_schedule("nightly", fresh, now).await.unwrap().unwrap();
    assert_eq!(triggered.history.len(), 1, "the next change applies");
    store.close().await.unwrap();
}
