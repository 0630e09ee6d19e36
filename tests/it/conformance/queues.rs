//! Conformance of named queues: each fetch takes only its queue's tasks, a pause kept in the
//! store stops every fetch of the queue, counts per queue (and the bounded pending count), and a global limit held by
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
    // A new store has no queue state nor counts, and reading them is no error.
    assert!(store.queue_states().await.unwrap().is_empty());
    assert!(store.queue_counts().await.unwrap().is_empty());
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
    // The backpressure read: pending tasks of one queue (due or not), counted up to a cap.
    assert_eq!(store.count_pending("reports", 100).await.unwrap(), 2);
    assert_eq!(store.count_pending("reports", 1).await.unwrap(), 1, "counting stops at the cap");
    assert_eq!(store.count_pending("emails", 100).await.unwrap(), 0, "its task is running");
    assert_eq!(store.count_pending("nowhere", 100).await.unwrap(), 0);
    let query = taskflow::TaskQuery { queue: Some("reports".into()), ..Default::default() };
    let listed = store.list(&query).await.unwrap().tasks;
    assert_eq!(listed.len(), 2, "the list filters by queue");
    assert!(listed.iter().all(|r| r.queue == "reports"));
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
    finish(&*store, &taken[0]).await;
    assert_eq!(store.fetch(&full).await.unwrap().len(), 1);
    let counts = store.queue_counts().await.unwrap();
    let limited = counts.iter().find(|c| c.queue == "limited").unwrap();
    assert_eq!((limited.pending, limited.running), (9, 2));
}

/// Ends the fetched task `done` as a success, under the lease it was fetched with.
async fn finish(store: &dyn Store, done: &taskflow::TaskRecord) {
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
}

/// A per-task cap: a fetch passes over the capped function's tasks beyond its room and takes
/// the next ones, three concurrent fetchers together stay within it, and a finished task
/// frees room for one more.
pub(crate) async fn task_limits_hold_across_fetchers(store: Arc<dyn Store>) {
    // Six capped tasks first in fetch order, then four others.
    let mut capped = Vec::new();
    for _ in 0..6 {
        capped.push(put(&*store, in_queue("capped", "caps")).await);
    }
    let mut free = Vec::new();
    for _ in 0..4 {
        free.push(put(&*store, in_queue("free", "caps")).await);
    }
    let caps: &[(&str, u32)] = &[("capped", 2), ("absent", 1)];
    let runner = lease("caps", Duration::from_secs(60));
    let request = Fetch::new("caps", 10, Utc::now(), &runner).task_limits(caps);
    let first = store.fetch(&request).await.unwrap();
    let funcs: Vec<&str> = first.iter().map(|r| r.func_name.as_str()).collect();
    assert_eq!(funcs, ["capped", "capped", "free", "free", "free", "free"], "in fetch order");
    assert_eq!(first[0].task_id, capped[0]);
    assert!(store.fetch(&request).await.unwrap().is_empty(), "the capped function is full");
    finish(&*store, &first[0]).await;
    let next = store.fetch(&request).await.unwrap();
    assert_eq!(next.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![capped[2]]);

    // Concurrent fetchers of another queue: together they take the cap, no more.
    for _ in 0..10 {
        put(&*store, in_queue("capped", "caps2")).await;
    }
    let fetches = (0..3).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let runner = lease(&format!("capper-{n}"), Duration::from_secs(60));
            let caps: &[(&str, u32)] = &[("capped", 3)];
            let request = Fetch::new("caps2", 5, Utc::now(), &runner).task_limits(caps);
            store.fetch(&request).await.unwrap().len()
        })
    });
    let mut taken = 0;
    for fetch in fetches {
        taken += fetch.await.unwrap();
    }
    assert_eq!(taken, 3, "never more than the task's cap running");
}

/// A rate limit: a fetch takes no more than the queue's token bucket holds at its `now` (a
/// full bucket at first), the bucket refills with time up to its burst, and concurrent
/// fetchers share one bucket.
pub(crate) async fn rate_limits_share_one_bucket(store: Arc<dyn Store>) {
    for _ in 0..10 {
        put(&*store, in_queue("rated", "rated")).await;
    }
    let rate = taskflow::Rate { limit: 5, per: Duration::from_secs(1), burst: 3 };
    let runner = lease("rated", Duration::from_secs(60));
    let t0 = Utc::now() + chrono::Duration::seconds(1);
    let at = |ms: i64| {
        let now = t0 + chrono::Duration::milliseconds(ms);
        Fetch::new("rated", 10, now, &runner).rate(rate)
    };
    assert_eq!(store.fetch(&at(0)).await.unwrap().len(), 3, "a full bucket: the burst");
    assert_eq!(store.fetch(&at(0)).await.unwrap().len(), 0, "empty until it refills");
    assert_eq!(store.fetch(&at(250)).await.unwrap().len(), 1, "5/s: 1.25 tokens after 250 ms");
    assert_eq!(store.fetch(&at(300)).await.unwrap().len(), 0, "0.5 tokens");
    assert_eq!(store.fetch(&at(5_000)).await.unwrap().len(), 3, "refilled up to the burst only");
    assert_eq!(store.fetch(&at(5_000)).await.unwrap().len(), 0);

    // Three fetchers at one instant: together they take what the bucket holds.
    for _ in 0..10 {
        put(&*store, in_queue("rated", "rated2")).await;
    }
    let fetches = (0..3).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let runner = lease(&format!("rater-{n}"), Duration::from_secs(60));
            let rate = taskflow::Rate { limit: 5, per: Duration::from_secs(1), burst: 4 };
            store.fetch(&Fetch::new("rated2", 3, t0, &runner).rate(rate)).await.unwrap().len()
        })
    });
    let mut taken = 0;
    for fetch in fetches {
        taken += fetch.await.unwrap();
    }
    assert_eq!(taken, 4, "one bucket of 4 for every fetcher");
}

/// Heartbeats: each instance is listed until its entry expires, a later heartbeat extends
/// it, and a forgotten one is gone.
pub(crate) async fn instances_are_listed_until_they_expire(store: Arc<dyn Store>) {
    let now = Utc::now();
    let beat = |id: &str, seen: i64, lasts: i64| taskflow::Instance {
        id: id.to_owned(),
        host: "web-1".to_owned(),
        pid: 4242,
        started_at: now,
        queues: vec!["default".to_owned(), "emails".to_owned()],
        running: 3,
        seen_at: now + chrono::Duration::seconds(seen),
        expires_at: now + chrono::Duration::seconds(seen + lasts),
        serves_feed: id == "a",
    };
    let at = |secs: i64| now + chrono::Duration::seconds(secs);
    store.heartbeat(&beat("a", 0, 60)).await.unwrap();
    store.heartbeat(&beat("b", 0, 2)).await.unwrap();
    let live = store.instances(at(1)).await.unwrap();
    assert_eq!(live.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(live[0], beat("a", 0, 60), "stored as given, to the microsecond");
    let ids = |live: Vec<taskflow::Instance>| live.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(store.instances(at(5)).await.unwrap()), ["a"], "b stopped beating");
    store.heartbeat(&beat("b", 5, 30)).await.unwrap();
    assert_eq!(ids(store.instances(at(10)).await.unwrap()), ["a", "b"], "b is back");
    store.forget_instance("a").await.unwrap();
    assert_eq!(ids(store.instances(at(10)).await.unwrap()), ["b"]);
    assert!(store.instances(at(100)).await.unwrap().is_empty());
}

/// Revoked admin sessions: revoked until they lapse, for every reader of the store; a
/// second revocation never shortens the first.
pub(crate) async fn sessions_stay_revoked_until_they_lapse(store: Arc<dyn Store>) {
    let now = Utc::now();
    let at = |secs: i64| now + chrono::Duration::seconds(secs);
    assert!(!store.session_revoked("s1", now).await.unwrap(), "nothing revoked yet");
    store.revoke_session("s1", at(3600)).await.unwrap();
    assert!(store.session_revoked("s1", now).await.unwrap());
    assert!(store.session_revoked("s1", at(3500)).await.unwrap());
    assert!(!store.session_revoked("s1", at(3700)).await.unwrap(), "lapsed with its cookie");
    assert!(!store.session_revoked("s2", now).await.unwrap(), "only the session revoked");
    store.revoke_session("s1", at(60)).await.unwrap();
    assert!(store.session_revoked("s1", at(1800)).await.unwrap(), "not shortened");
    store.revoke_session("s3", at(-10)).await.unwrap();
    assert!(!store.session_revoked("s3", now).await.unwrap(), "lapsed already");
}
