//! Conformance of a task's life in the store: fetch and fenced writes, logs, idempotency
//! keys, cancel, list and statistics, rescue of dead runners, retention.

use super::default_queue;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use taskflow::store::Transition;
use taskflow::{LogEntry, LogLevel, Retention, Store, TaskId, TaskQuery, TaskRecord, TaskStatus};

use super::{lease, pending, put, take, trunc};

pub(crate) async fn lifecycle_and_logs(store: Arc<dyn Store>) {
    let id = put(&*store, pending("lifecycle")).await;
    let runner = lease("runner-a", Duration::from_secs(60));
    let claimed = take(&*store, &id, &runner).await;
    assert_eq!(claimed.status, TaskStatus::Running);
    assert!(claimed.start_time.is_some());
    assert_eq!(claimed.lease_owner.as_deref(), Some("runner-a"));
    // What the fetch answers is what the store holds (a store may answer from memory).
    let stored = store.get(&id).await.unwrap().expect("stored");
    assert_eq!(
        TaskRecord { lease_expires_at: None, ..claimed.clone() },
        TaskRecord { lease_expires_at: None, ..stored.clone() }
    );
    let expiry = |r: &TaskRecord| r.lease_expires_at.map(|at| at.timestamp_millis());
    assert_eq!(expiry(&claimed), expiry(&stored));
    let change = Transition::Reschedule {
        due: trunc(Utc::now()),
        retries_used: 1,
        error: Some("boom".into()),
        stacktrace: Some("boom\ncaused by: io".into()),
    };
    assert!(store.transition(&id, &runner, change).await.unwrap());
    let retried = store.get(&id).await.unwrap().unwrap();
    assert_eq!((retried.status, retried.retries_used), (TaskStatus::Pending, 1));
    assert_eq!(retried.lease_owner, None);
    let runner = lease("runner-b", Duration::from_secs(60));
    let again = take(&*store, &id, &runner).await;
    assert_eq!(again.retries_used, 1, "the next attempt knows its number");
    assert_eq!(again.start_time, claimed.start_time, "the start of the first attempt stays");
    let log = LogEntry {
        at: trunc(Utc::now()),
        level: LogLevel::Warn,
        message: "retrying <soon>".into(),
        attempt: 1,
        fields: serde_json::from_value(json!({ "n": 1, "s": "x" })).unwrap(),
    };
    store.append_logs(&id, vec![log.clone(), log.clone()]).await.unwrap();
    let end = trunc(Utc::now());
    let finished = Transition::Finished {
        status: TaskStatus::Success,
        end_time: end,
        retries_used: 1,
        result: Some(json!({ "sent": true })),
        error: None,
        stacktrace: None,
    };
    assert!(store.transition(&id, &runner, finished).await.unwrap());
    let record = store.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Success);
    assert_eq!(record.end_time, Some(end));
    assert!(record.duration.unwrap() >= 0.0);
    assert_eq!(record.retries_used, 1);
    assert_eq!(record.result, Some(json!({ "sent": true })));
    assert_eq!(record.error.as_deref(), Some("boom"), "the last failure stays visible");
    assert_eq!(record.logs, vec![log.clone(), log]);
    assert_eq!(record.lease_owner, None);
    // A finished task is not running: no more fenced writes, no second fetch.
    assert!(!store.transition(&id, &runner, Transition::Requeue).await.unwrap());
    assert!(store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap().is_empty());
}

pub(crate) async fn claim_is_exclusive(store: Arc<dyn Store>) {
    let id = put(&*store, pending("claim")).await;
    let fetches = (0..50).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let runner = lease(&format!("runner-{n}"), Duration::from_secs(60));
            store.fetch(&default_queue(1, Utc::now(), &runner)).await
        })
    });
    let mut winners = Vec::new();
    for fetch in fetches {
        winners.extend(fetch.await.unwrap().unwrap().into_iter().map(|r| r.task_id));
    }
    assert_eq!(winners, vec![id], "one fetcher of 50 gets it");
}

pub(crate) async fn writes_are_fenced(store: Arc<dyn Store>) {
    let id = put(&*store, pending("fenced")).await;
    let owner = lease("owner", Duration::from_secs(60));
    take(&*store, &id, &owner).await;
    let intruder = lease("intruder", Duration::from_secs(60));
    let done = Transition::Finished {
        status: TaskStatus::Failed,
        end_time: Utc::now(),
        retries_used: 0,
        result: None,
        error: Some("not mine".into()),
        stacktrace: Some("not mine".into()),
    };
    assert!(!store.transition(&id, &intruder, done).await.unwrap());
    assert_eq!(store.get(&id).await.unwrap().unwrap().status, TaskStatus::Running);
}

pub(crate) async fn idempotency_keys_hold_under_concurrency(store: Arc<dyn Store>) {
    let key = format!("key-{}", TaskId::new());
    let enqueues = (0..1000).map(|_| {
        let store = Arc::clone(&store);
        let key = key.clone();
        tokio::spawn(async move {
            let mut record = pending("idempotent");
            record.idempotency_key = Some(key);
            let enqueued = store.enqueue(record).unwrap();
            if let Some(write) = enqueued.write {
                write.wait().await.unwrap();
            }
            (enqueued.id, enqueued.created)
        })
    });
    let mut ids = Vec::new();
    for enqueue in enqueues {
        ids.push(enqueue.await.unwrap().0);
    }
    // Every caller's id finds the one task that holds the key (a remote store may hand out a
    // fresh id that it records as an alias of the holder).
    let mut holders = Vec::new();
    for id in &ids {
        holders.push(store.get(id).await.unwrap().expect("every returned id finds a task").task_id);
    }
    holders.dedup();
    assert_eq!(holders.len(), 1, "one task holds the key");
    let query =
        TaskQuery { func_name: Some("idempotent".into()), limit: Some(2000), ..Default::default() };
    let stored = store.list(&query).await.unwrap().tasks;
    assert_eq!(stored.iter().filter(|r| r.idempotency_key.as_deref() == Some(&*key)).count(), 1);
    // A cancelled task frees its key; a new task may take it.
    let first = holders[0];
    assert_eq!(store.cancel_pending(&first).await.unwrap(), Some(TaskStatus::Pending));
    let mut again = pending("idempotent");
    again.idempotency_key = Some(key);
    let new_id = put(&*store, again).await;
    assert_ne!(new_id, first);
    assert_eq!(store.get(&new_id).await.unwrap().unwrap().task_id, new_id, "a task of its own");
}

pub(crate) async fn cancel_only_pending(store: Arc<dyn Store>) {
    let id = put(&*store, pending("cancel")).await;
    assert_eq!(store.cancel_pending(&id).await.unwrap(), Some(TaskStatus::Pending));
    let record = store.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Cancelled);
    assert!(record.end_time.is_some());
    assert_eq!(store.cancel_pending(&id).await.unwrap(), Some(TaskStatus::Cancelled));
    let runner = lease("r", Duration::from_secs(5));
    assert!(
        store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap().is_empty(),
        "never runs"
    );
    assert_eq!(store.cancel_pending(&TaskId::new()).await.unwrap(), None);
}

pub(crate) async fn pending_and_list(store: Arc<dyn Store>) {
    let func = format!("listed_{}", TaskId::new().to_string().replace('-', ""));
    let mut ids = Vec::new();
    for priority in [0, 5, -1] {
        let mut record = pending(&func);
        record.priority = priority;
        ids.push(put(&*store, record).await);
        tokio::time::sleep(Duration::from_millis(2)).await; // distinct created_at
    }
    // The highest priority runs first.
    take(&*store, &ids[1], &lease("r", Duration::from_secs(60))).await;
    let query = TaskQuery {
        status: Some(TaskStatus::Pending),
        func_name: Some(func.clone()),
        limit: Some(10),
        ..Default::default()
    };
    let listed: Vec<TaskId> =
        store.list(&query).await.unwrap().tasks.into_iter().map(|r| r.task_id).collect();
    assert_eq!(listed, vec![ids[2], ids[0]], "newest first, running one filtered out");
}

pub(crate) async fn list_filters_and_pages(store: Arc<dyn Store>) {
    let func = format!("paged_{}", TaskId::new().to_string().replace('-', ""));
    let mut ids = Vec::new();
    for n in 0..7 {
        let mut record = pending(&func);
        record.tags = BTreeMap::from([
            ("user".to_owned(), format!("{}", n % 2)),
            ("odd \"key\"".to_owned(), "v".to_owned()),
        ]);
        ids.push(put(&*store, record).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mid = store.get(&ids[3]).await.unwrap().unwrap().created_at;
    let base = TaskQuery { func_name: Some(func.clone()), ..Default::default() };
    // Pages of 3, newest first, then oldest first: every task once, in order.
    for oldest_first in [false, true] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let query = TaskQuery { limit: Some(3), after, oldest_first, ..base.clone() };
            let page = store.list(&query).await.unwrap();
            assert!(page.tasks.len() <= 3);
            seen.extend(page.tasks.iter().map(|r| r.task_id));
            assert!(page.tasks.iter().all(|r| r.logs.is_empty()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut expected = ids.clone();
        if !oldest_first {
            expected.reverse();
        }
        assert_eq!(seen, expected, "oldest_first = {oldest_first}");
    }
    let ids_of = |page: taskflow::TaskPage| -> Vec<TaskId> {
        page.tasks.into_iter().map(|r| r.task_id).collect()
    };
    let tagged = TaskQuery { tag: Some(("user".into(), "1".into())), ..base.clone() };
    assert_eq!(ids_of(store.list(&tagged).await.unwrap()), vec![ids[5], ids[3], ids[1]]);
    let quoted = TaskQuery { tag: Some(("odd \"key\"".into(), "v".into())), ..base.clone() };
    assert_eq!(store.list(&quoted).await.unwrap().tasks.len(), 7);
    let window = TaskQuery { since: Some(mid), oldest_first: true, ..base.clone() };
    assert_eq!(ids_of(store.list(&window).await.unwrap()), ids[3..].to_vec());
    let before = TaskQuery { until: Some(mid), oldest_first: true, ..base.clone() };
    assert_eq!(ids_of(store.list(&before).await.unwrap()), ids[..3].to_vec());
    // Ids start with their creation time: a prefix that reaches the random part finds one.
    let prefix = ids[4].to_string()[..28].to_owned();
    let by_id = TaskQuery { search: Some(prefix), ..base.clone() };
    assert_eq!(ids_of(store.list(&by_id).await.unwrap()), vec![ids[4]]);
    let suffix = ids[4].to_string()[24..].to_owned();
    let by_id_end = TaskQuery { search: Some(suffix), ..base.clone() };
    assert_eq!(ids_of(store.list(&by_id_end).await.unwrap()), vec![ids[4]]);
    let by_name = TaskQuery { search: Some(func[7..20].to_owned()), ..Default::default() };
    assert_eq!(store.list(&by_name).await.unwrap().tasks.len(), 7);
    let wildcard = TaskQuery { search: Some("%".into()), ..base.clone() };
    assert!(store.list(&wildcard).await.unwrap().tasks.is_empty(), "% is not a wildcard");
    let bad = TaskQuery { after: Some("not a cursor".into()), ..base };
    assert!(matches!(store.list(&bad).await, Err(taskflow::StoreError::InvalidCursor(_))));
}

pub(crate) async fn stats_count_outcomes_and_durations(store: Arc<dyn Store>) {
    let func = format!("stats_{}", TaskId::new().to_string().replace('-', ""));
    let since = Utc::now() - chrono::Duration::seconds(1);
    let outcomes =
        [TaskStatus::Success, TaskStatus::Success, TaskStatus::Success, TaskStatus::Failed];
    for status in outcomes {
        let id = put(&*store, pending(&func)).await;
        let runner = lease("r", Duration::from_secs(60));
        let claimed = take(&*store, &id, &runner).await;
        let end = claimed.start_time.unwrap() + chrono::Duration::milliseconds(100);
        let done = Transition::Finished {
            status,
            end_time: end,
            retries_used: 0,
            result: None,
            error: None,
            stacktrace: None,
        };
        assert!(store.transition(&id, &runner, done).await.unwrap());
    }
    put(&*store, pending(&func)).await;
    let stats = store.stats(Some(since)).await.unwrap();
    assert!(stats.by_status["success"] >= 3);
    assert!(stats.by_status["pending"] >= 1);
    assert_eq!(stats.by_status.len(), 6, "every status is listed");
    let function = stats.functions.iter().find(|f| f.func_name == func).unwrap();
    assert_eq!((function.runs, function.successes, function.failures), (4, 3, 1));
    assert!((function.success_rate - 0.75).abs() < 1e-9);
    for duration in
        [function.avg_duration, function.min_duration, function.max_duration, function.p95_duration]
    {
        let duration = duration.unwrap();
        assert!((duration - 0.1).abs() < 1e-3, "{duration}");
    }
    let all_time = store.stats(None).await.unwrap();
    assert!(all_time.functions.iter().any(|f| f.func_name == func && f.runs == 4));
    let later = store.stats(Some(Utc::now() + chrono::Duration::hours(1))).await.unwrap();
    assert!(later.functions.iter().all(|f| f.func_name != func));
}

pub(crate) async fn reclaim_settles_dead_runners(store: Arc<dyn Store>) {
    let plain = put(&*store, pending("reclaim_plain")).await;
    let mut requeue = pending("reclaim_requeue");
    requeue.requeue_on_interrupt = true;
    let requeue = put(&*store, requeue).await;
    let alive = put(&*store, pending("reclaim_alive")).await;
    let dead = lease("dead", Duration::from_millis(1));
    take(&*store, &plain, &dead).await;
    take(&*store, &requeue, &dead).await;
    take(&*store, &alive, &lease("alive", Duration::from_secs(600))).await;
    let now = Utc::now() + chrono::Duration::seconds(1);
    let reclaimed = store.reclaim_expired(now, 2).await.unwrap();
    assert!(reclaimed.interrupted.contains(&plain));
    assert!(reclaimed.requeued.contains(&requeue));
    assert!(!reclaimed.interrupted.contains(&alive));
    let record = store.get(&plain).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Interrupted);
    assert!(record.error.unwrap().contains("process running it stopped"));
    assert_eq!(store.get(&alive).await.unwrap().unwrap().status, TaskStatus::Running);
    // The old runner's late write is refused: the task was rescued.
    let late = Transition::Finished {
        status: TaskStatus::Success,
        end_time: Utc::now(),
        retries_used: 0,
        result: None,
        error: None,
        stacktrace: None,
    };
    assert!(!store.transition(&plain, &dead, late).await.unwrap());
    // A task that keeps killing its process is failed as a poison pill after 2 recoveries.
    for round in 1..=3 {
        let record = store.get(&requeue).await.unwrap().unwrap();
        assert_eq!(record.status, TaskStatus::Pending, "round {round}");
        take(&*store, &requeue, &lease("dead", Duration::from_millis(1))).await;
        let now = Utc::now() + chrono::Duration::seconds(1);
        let reclaimed = store.reclaim_expired(now, 2).await.unwrap();
        if round < 2 {
            assert!(reclaimed.requeued.contains(&requeue));
        } else {
            assert!(reclaimed.poisoned.contains(&requeue));
            break;
        }
    }
    let record = store.get(&requeue).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Failed);
    assert!(record.error.unwrap().contains("poison pill"));
}

pub(crate) async fn retention_prunes_only_finished(store: Arc<dyn Store>) {
    let mut finished = Vec::new();
    for _ in 0..5 {
        let id = put(&*store, pending("retained")).await;
        assert_eq!(store.cancel_pending(&id).await.unwrap(), Some(TaskStatus::Pending));
        finished.push(id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let running = put(&*store, pending("retained")).await;
    take(&*store, &running, &lease("r", Duration::from_secs(60))).await;
    let waiting = put(&*store, pending("retained")).await;
    let keep_two = Retention { max_age: None, max_finished: Some(2) };
    let removed = store.prune(&keep_two, Utc::now()).await.unwrap();
    assert!(removed >= 3, "removed {removed}");
    for old in &finished[..3] {
        assert_eq!(store.get(old).await.unwrap(), None);
    }
    for kept in &finished[3..] {
        assert!(store.get(kept).await.unwrap().is_some());
    }
    let by_age = Retention { max_age: Some(Duration::from_secs(60)), max_finished: None };
    store.prune(&by_age, Utc::now() + chrono::Duration::hours(1)).await.unwrap();
    for kept in &finished[3..] {
        assert_eq!(store.get(kept).await.unwrap(), None);
    }
    assert!(store.get(&waiting).await.unwrap().is_some(), "pending is never pruned");
    assert!(store.get(&running).await.unwrap().is_some(), "running is never pruned");
}

/// A rewrite of a task's stored values (re-sealing) applies only while the fields hold what
/// was read, and changes nothing else.
pub(crate) async fn values_are_rewritten_only_from_what_was_read(store: Arc<dyn Store>) {
    use taskflow::store::Rewrite;
    let id = put(&*store, pending("rewritten")).await;
    let before = store.get(&id).await.unwrap().unwrap();
    let sealed = json!({ "$sealed": "k2:AAAA" });
    let mut stale = Rewrite::new(id);
    stale.args = Some((json!({ "other": 1 }), sealed.clone()));
    assert!(!store.rewrite_values(&stale).await.unwrap(), "not what it holds");
    assert_eq!(store.get(&id).await.unwrap().unwrap(), before);
    let mut rewrite = Rewrite::new(id);
    rewrite.args = Some((before.args.clone(), sealed.clone()));
    assert!(store.rewrite_values(&rewrite).await.unwrap());
    let after = store.get(&id).await.unwrap().unwrap();
    assert_eq!(after.args, sealed);
    assert_eq!(TaskRecord { args: before.args.clone(), ..after }, before, "nothing else changed");
    assert!(!store.rewrite_values(&rewrite).await.unwrap(), "a second time: it changed");
    let mut missing = Rewrite::new(TaskId::new());
    missing.args = Some((before.args, sealed));
    assert!(!store.rewrite_values(&missing).await.unwrap(), "no such task");
}
