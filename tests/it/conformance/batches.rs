//! Conformance of [`Store::transition_many`]: a batch of fenced changes of every kind, each
//! applied as [`Store::transition`] would apply it alone.

use super::default_queue;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use taskflow::store::Change;
use taskflow::store::Transition;
use taskflow::{Store, TaskStatus};

use super::{lease, pending, put, trunc};

pub(crate) async fn batched_changes_are_fenced_one_by_one(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(put(&*store, pending("batched")).await);
    }
    let runner = lease("batcher", Duration::from_secs(60));
    let fetched = store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap();
    assert_eq!(fetched.len(), 6);
    let stranger = lease("stranger", Duration::from_secs(60));
    let end = trunc(Utc::now());
    let due = trunc(Utc::now() + chrono::Duration::hours(1));
    let finished = |status| Transition::Finished {
        status,
        end_time: end,
        retries_used: 0,
        result: Some(serde_json::json!({ "ok": true })),
        error: None,
        stacktrace: None,
    };
    let changes = vec![
        Change { id: ids[0], lease: runner.clone(), transition: finished(TaskStatus::Success) },
        Change {
            id: ids[1],
            lease: runner.clone(),
            transition: Transition::Finished {
                status: TaskStatus::Failed,
                end_time: end,
                retries_used: 0,
                result: None,
                error: Some("boom".into()),
                stacktrace: Some("boom\ncaused by: io".into()),
            },
        },
        Change {
            id: ids[2],
            lease: runner.clone(),
            transition: Transition::Reschedule {
                due,
                retries_used: 1,
                error: Some("again".into()),
                stacktrace: None,
            },
        },
        Change { id: ids[3], lease: runner.clone(), transition: Transition::Requeue },
        // Not its lease: refused, and the others go through.
        Change { id: ids[4], lease: stranger, transition: finished(TaskStatus::Success) },
        Change { id: ids[5], lease: runner.clone(), transition: finished(TaskStatus::Cancelled) },
    ];
    let results: Vec<bool> =
        store.transition_many(changes).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(results, [true, true, true, true, false, true]);
    let get = |n: usize| {
        let store = Arc::clone(&store);
        let id = ids[n];
        async move { store.get(&id).await.unwrap().unwrap() }
    };
    let success = get(0).await;
    assert_eq!(success.status, TaskStatus::Success);
    assert_eq!(success.result, Some(serde_json::json!({ "ok": true })));
    assert_eq!(success.lease_owner, None);
    let failed = get(1).await;
    assert_eq!((failed.status, failed.error.as_deref()), (TaskStatus::Failed, Some("boom")));
    let retry = get(2).await;
    assert_eq!((retry.status, retry.retries_used), (TaskStatus::Pending, 1));
    assert_eq!(retry.scheduled_at, Some(due));
    assert_eq!(get(3).await.status, TaskStatus::Pending);
    let refused = get(4).await;
    assert_eq!(refused.status, TaskStatus::Running, "the stranger's change was fenced off");
    assert_eq!(refused.lease_owner.as_deref(), Some("batcher"));
    assert_eq!(get(5).await.status, TaskStatus::Cancelled);
    // The requeued task is available again; the rescheduled one once due.
    let again = store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap();
    assert_eq!(again.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![ids[3]]);
    // A second batch on tasks no longer running: every change refused.
    let stale = vec![Change { id: ids[0], lease: runner.clone(), transition: Transition::Requeue }];
    assert_eq!(
        store.transition_many(stale).await.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [false]
    );
    assert!(store.transition_many(Vec::new()).await.is_empty(), "an empty batch is nothing");
}
