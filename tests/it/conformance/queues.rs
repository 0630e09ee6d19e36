//! Conformance of named queues: each fetch takes only its queue's tasks, a pause kept in the
//! store stops every fetch of the queue, counts per queue, and a global limit held by
//! concurrent fetchers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use taskflow::store::Fetch;
use taskflow::{QueueChange, Store, TaskStatus};

use super::{default_queue, lease, pending, put};

fn in_queue(func: &str, queue: &str) -> taskflow::TaskRecord {
    let mut record = pending(func);
    record.queue = queue.to_owned();
    record
}

pub(crate) async fn fetch_takes_only_its_queue(store: Arc<dyn Store>) {
    let email = put(&*store, in_queue("send", "emails")).await;
    let report = put(&*store, in_queue("render", "reports")).await;
    let plain = put(&*store, pending("plain")).await;
    let mut later = in_queue("render", "reports");
    later.scheduled_at = Some(Utc::now() + chrono::Duration::hours(1));
    put(&*store, later).await;
    let runner = lease("queues", Duration::from_secs(60));
    let emails = store.fetch(&Fetch::new("emails", 10, Utc::now(), &runner)).await.unwrap();
    assert_eq!(emails.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![email]);
    assert_eq!(emails[0].queue, "emails", "the record keeps its queue");
    assert!(store.fetch(&Fetch::new("emails", 10, Utc::now(), &runner)).await.unwrap().is_empty());
    let default = store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap();
    assert_eq!(default.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![plain]);
    assert_eq!(store.get(&report).await.unwrap().unwrap().status, TaskStatus::Pending);
    assert_eq!(store.get(&report).await.unwrap().unwrap().queue, "reports");
    let mut counts = store.queue_counts().await.unwrap();
    counts.sort_by(|a, b| a.queue.cmp(&b.queue));
    let seen: Vec<(String, u64, u64, u64)> =
        counts.into_iter().map(|c| (c.queue, c.pending, c.due, c.running)).collect();
    assert_eq!(
        seen,
        vec![
            ("default".to_owned(), 0, 0, 1),
            ("emails".to_owned(), 0, 0, 1),
            ("reports".to_owned(), 2, 1, 0)
        ],
        "(queue, pending, due, running): one of the reports waits an hour"
    );
}

pub(crate) async fn a_paused_queue_is_not_fetched(store: Arc<dyn Store>) {
    let id = put(&*store, in_queue("send", "paused")).await;
    let other = put(&*store, in_queue("send", "running")).await;
    let now = Utc::now();
    let state = store.update_queue("paused", QueueChange::Paused(true), now).await.unwrap();
    assert!(state.paused);
    let state = store.update_queue("paused", QueueChange::Concurrency(Some(3)), now).await.unwrap();
    assert!(state.paused, "a change of one field keeps the others");
    assert_eq!(state.concurrency, Some(3));
    let states = store.queue_states().await.unwrap();
    let kept = states.iter().find(|s| s.name == "paused").expect("the state is stored");
    assert!(kept.paused);
    assert_eq!(kept.concurrency, Some(3));
    let runner = lease("pauser", Duration::from_secs(60));
    assert!(store.fetch(&Fetch::new("paused", 10, Utc::now(), &runner)).await.unwrap().is_empty());
    let others = store.fetch(&Fetch::new("running", 10, Utc::now(), &runner)).await.unwrap();
    assert_eq!(others.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![other]);
    store.update_queue("paused", QueueChange::Paused(false), Utc::now()).await.unwrap();
    let resumed = store.fetch(&Fetch::new("paused", 10, Utc::now(), &runner)).await.unwrap();
    assert_eq!(resumed.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![id]);
    let cleared = store.update_queue("paused", QueueChange::Concurrency(None), Utc::now()).await;
    assert_eq!(cleared.unwrap().concurrency, None);
}

pub(crate) async fn global_limits_hold_across_fetchers(store: Arc<dyn Store>) {
    for _ in 0..12 {
        put(&*store, in_queue("limited", "limited")).await;
    }
    // Three fetchers at once, each asking for more than the limit: together they take 2.
    let fetches = (0..3).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let runner = lease(&format!("fetcher-{n}"), Duration::from_secs(60));
            let request = Fetch::new("limited", 5, Utc::now(), &runner).global_limit(2);
            store.fetch(&request).await.unwrap()
        })
    });
    let mut taken = Vec::new();
    for fetch in fetches {
        taken.extend(fetch.await.unwrap());
    }
    assert_eq!(taken.len(), 2, "never more than the global limit running");
    let ids: HashSet<_> = taken.iter().map(|r| r.task_id).collect();
    assert_eq!(ids.len(), 2);
    let runner = lease("late", Duration::from_secs(60));
    let full = Fetch::new("limited", 5, Utc::now(), &runner).global_limit(2);
    assert!(store.fetch(&full).await.unwrap().is_empty(), "the limit is full");
    // One ends: one more may start.
    let done = &taken[0];
    let holder = lease(done.lease_owner.as_deref().unwrap(), Duration::from_secs(60));
    let holder = taskflow::store::Lease { expires_at: done.lease_expires_at.unwrap(), ..holder };
    let end = taskflow::store::Transition::Finished {
        status: TaskStatus::Success,
        end_time: Utc::now(),
        retries_used: 0,
        result: None,
        error: None,
        stacktrace: None,
    };
    assert!(store.transition(&done.task_id, &holder, end).await.unwrap());
    assert_eq!(store.fetch(&full).await.unwrap().len(), 1);
    let counts = store.queue_counts().await.unwrap();
    let limited = counts.iter().find(|c| c.queue == "limited").unwrap();
    assert_eq!((limited.pending, limited.running), (9, 2));
}
