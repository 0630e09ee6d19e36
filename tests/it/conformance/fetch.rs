//! Conformance of [`Store::fetch`]: what is available, in which order, to whom; and of the
//! writes that put a task back to wait (retries, snoozes, a lost fetch).

use super::default_queue;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use taskflow::store::{Lease, Transition};
use taskflow::{Store, TaskId, TaskRecord, TaskStatus};

use super::{lease, pending, put, trunc};

fn ids(records: &[TaskRecord]) -> Vec<TaskId> {
    records.iter().map(|r| r.task_id).collect()
}

fn later(hours: i64) -> chrono::DateTime<Utc> {
    trunc(Utc::now() + chrono::Duration::hours(hours))
}

pub(crate) async fn fetch_orders_due_tasks(store: Arc<dyn Store>) {
    let with = |priority: i32, scheduled_at| {
        let mut record = pending("fetched");
        record.priority = priority;
        record.scheduled_at = scheduled_at;
        record
    };
    let a = put(&*store, with(0, None)).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let b = put(&*store, with(5, None)).await;
    let c = put(&*store, with(0, Some(trunc(Utc::now() - chrono::Duration::seconds(5))))).await;
    let d = put(&*store, with(10, Some(later(1)))).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let e = put(&*store, with(0, None)).await;
    let runner = lease("fetcher", Duration::from_secs(60));
    let fetched = store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap();
    assert_eq!(
        ids(&fetched),
        vec![b, c, a, e],
        "highest priority, then earliest due, then enqueue order; the task due later waits"
    );
    for record in &fetched {
        assert_eq!(record.status, TaskStatus::Running);
        assert_eq!(record.lease_owner.as_deref(), Some("fetcher"));
        assert!(record.start_time.is_some());
        let stored = store.get(&record.task_id).await.unwrap().unwrap();
        assert_eq!(stored.status, TaskStatus::Running, "the lease is in the store");
        assert_eq!(stored.args, record.args, "the fetch carries the whole record");
    }
    assert!(
        store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap().is_empty(),
        "each task once"
    );
    let at_its_time = store.fetch(&default_queue(10, later(2), &runner)).await.unwrap();
    assert_eq!(ids(&at_its_time), vec![d], "due once its time has come");
    // The limit: two at a time, in order.
    let mut rest = Vec::new();
    for _ in 0..5 {
        rest.push(put(&*store, with(0, None)).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(ids(&store.fetch(&default_queue(2, Utc::now(), &runner)).await.unwrap()), rest[..2]);
    assert_eq!(
        ids(&store.fetch(&default_queue(2, Utc::now(), &runner)).await.unwrap()),
        rest[2..4]
    );
    assert!(store.fetch(&default_queue(0, Utc::now(), &runner)).await.unwrap().is_empty());
    assert_eq!(ids(&store.fetch(&default_queue(2, Utc::now(), &runner)).await.unwrap()), rest[4..]);
}

/// Priority with aging: tasks are fetched by rank, their due time less `priority` ×
/// [`taskflow::PRIORITY_STEP`], then in enqueue order, so waiting a step is worth a level.
pub(crate) async fn priority_ages_with_waiting(store: Arc<dyn Store>) {
    let step = chrono::Duration::from_std(taskflow::PRIORITY_STEP).unwrap();
    let t0 = trunc(Utc::now() - chrono::Duration::hours(1));
    let due = |priority: i32, at| {
        let mut record = pending("aging");
        record.priority = priority;
        record.created_at = t0 - chrono::Duration::hours(1);
        record.scheduled_at = Some(at);
        record
    };
    let second = chrono::Duration::seconds(1);
    let old = put(&*store, due(0, t0)).await;
    // Ten levels up, due ten steps less a second later: still ahead of the old one.
    let urgent = put(&*store, due(10, t0 + step * 10 - second)).await;
    // Ten levels up, due ten steps and a second later: the old one has aged past it.
    let overtaken = put(&*store, due(10, t0 + step * 10 + second)).await;
    // The same rank as the old one: enqueue order.
    let level = put(&*store, due(5, t0 + step * 5)).await;
    // Below zero: a level down is a step later, here the same rank as `urgent`.
    let low = put(&*store, due(-1, t0 - step - second)).await;
    let runner = lease("ager", Duration::from_secs(60));
    let first = store.fetch(&default_queue(2, Utc::now(), &runner)).await.unwrap();
    assert_eq!(ids(&first), vec![urgent, low], "lowest rank, then enqueue order");
    let rest = store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap();
    assert_eq!(
        ids(&rest),
        vec![old, level, overtaken],
        "a task that waited ten steps longer goes before ten levels of priority"
    );
}

pub(crate) async fn future_tasks_do_not_hide_a_due_one(store: Arc<dyn Store>) {
    let next_week = trunc(Utc::now() + chrono::Duration::days(7));
    let mut writes = Vec::new();
    for _ in 0..10_000 {
        let mut record = pending("next_week");
        record.scheduled_at = Some(next_week);
        writes.extend(store.enqueue(record).unwrap().write);
    }
    for write in writes {
        write.wait().await.unwrap();
    }
    let now = put(&*store, pending("due_now")).await;
    let runner = lease("fetcher", Duration::from_secs(60));
    let fetched = store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap();
    assert_eq!(ids(&fetched), vec![now], "the due task, at once, with a small limit");
}

/// Instances' clocks and fetches interleave: a fetch whose `now` was read later promotes a
/// task (moves it to the available ones) that a fetch with an earlier `now` then meets. That
/// one must leave it: a task never starts before its time by any fetcher's clock.
pub(crate) async fn a_fetch_never_takes_a_task_before_its_time(store: Arc<dyn Store>) {
    let base = trunc(Utc::now());
    let mut first = pending("first");
    first.created_at = base;
    let first = put(&*store, first).await;
    let mut later = pending("later");
    later.created_at = base;
    later.scheduled_at = Some(base + chrono::Duration::seconds(10));
    let later = put(&*store, later).await;
    let runner = lease("fetcher", Duration::from_secs(60));
    let ahead = base + chrono::Duration::seconds(20);
    let fetched = store.fetch(&default_queue(1, ahead, &runner)).await.unwrap();
    assert_eq!(ids(&fetched), vec![first], "the clock ahead takes the first; `later` is due");
    let behind = base + chrono::Duration::seconds(5);
    let fetched = store.fetch(&default_queue(10, behind, &runner)).await.unwrap();
    assert_eq!(ids(&fetched), Vec::<TaskId>::new(), "at its `now`, `later` is not yet due");
    let fetched = store.fetch(&default_queue(10, ahead, &runner)).await.unwrap();
    assert_eq!(ids(&fetched), vec![later], "and it was left available, not lost");
    assert_eq!(fetched[0].start_time, Some(ahead));
}

pub(crate) async fn concurrent_fetchers_take_disjoint_tasks(store: Arc<dyn Store>) {
    let mut writes = Vec::new();
    let mut all = HashSet::new();
    for _ in 0..200 {
        let enqueued = store.enqueue(pending("raced")).unwrap();
        all.insert(enqueued.id);
        writes.extend(enqueued.write);
    }
    for write in writes {
        write.wait().await.unwrap();
    }
    let fetchers = (0..8).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let runner = lease(&format!("fetcher-{n}"), Duration::from_secs(60));
            let mut mine = Vec::new();
            loop {
                let batch = store.fetch(&default_queue(7, Utc::now(), &runner)).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                for record in batch {
                    assert_eq!(record.lease_owner.as_deref(), Some(&*runner.owner));
                    mine.push(record.task_id);
                }
            }
        })
    });
    let mut seen = Vec::new();
    for fetcher in fetchers {
        seen.extend(fetcher.await.unwrap());
    }
    let distinct: HashSet<TaskId> = seen.iter().copied().collect();
    assert_eq!(seen.len(), distinct.len(), "no task was leased twice");
    assert_eq!(distinct, all, "every task was leased");
}

pub(crate) async fn rescheduled_tasks_come_back_when_due(store: Arc<dyn Store>) {
    let id = put(&*store, pending("retried")).await;
    let runner = lease("runner", Duration::from_secs(60));
    let first = store.fetch(&default_queue(1, Utc::now(), &runner)).await.unwrap().pop().unwrap();
    let due = later(1);
    let retry = Transition::Reschedule {
        due,
        retries_used: 1,
        error: Some("boom".into()),
        stacktrace: Some("boom\ncaused by: io".into()),
    };
    let intruder = lease("intruder", Duration::from_secs(60));
    assert!(!store.transition(&id, &intruder, retry.clone()).await.unwrap(), "fenced");
    assert!(store.transition(&id, &runner, retry).await.unwrap());
    let waiting = store.get(&id).await.unwrap().unwrap();
    assert_eq!(waiting.status, TaskStatus::Pending);
    assert_eq!(waiting.scheduled_at, Some(due));
    assert_eq!(waiting.retries_used, 1);
    assert_eq!(waiting.error.as_deref(), Some("boom"));
    assert_eq!(waiting.lease_owner, None);
    assert!(
        store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap().is_empty(),
        "not due yet"
    );
    let second =
        store.fetch(&default_queue(10, later(2), &runner)).await.unwrap().pop().expect("due");
    assert_eq!(second.task_id, id);
    assert_eq!(second.retries_used, 1);
    assert_eq!(second.start_time, first.start_time, "the first start stays");
    // A snooze keeps the attempts and the last error.
    let until = later(3);
    let snooze =
        Transition::Reschedule { due: until, retries_used: 1, error: None, stacktrace: None };
    assert!(store.transition(&id, &runner, snooze).await.unwrap());
    let snoozed = store.get(&id).await.unwrap().unwrap();
    assert_eq!((snoozed.retries_used, snoozed.error.as_deref()), (1, Some("boom")));
    assert_eq!(snoozed.scheduled_at, Some(until));
    // A waiting task can be cancelled, and then never fetched.
    assert_eq!(store.cancel_pending(&id).await.unwrap(), Some(TaskStatus::Pending));
    assert!(store.fetch(&default_queue(10, later(4), &runner)).await.unwrap().is_empty());
}

pub(crate) async fn a_lost_fetch_is_released(store: Arc<dyn Store>) {
    let first = put(&*store, pending("released")).await;
    let second = put(&*store, pending("released")).await;
    let lost = lease("runner", Duration::from_secs(60));
    assert_eq!(store.fetch(&default_queue(2, Utc::now(), &lost)).await.unwrap().len(), 2);
    let other = Lease {
        owner: lost.owner.clone(),
        expires_at: lost.expires_at + chrono::Duration::microseconds(1),
    };
    assert_eq!(store.release(&other).await.unwrap(), 0, "only that very lease");
    assert_eq!(store.release(&lost).await.unwrap(), 2);
    for id in [first, second] {
        let record = store.get(&id).await.unwrap().unwrap();
        assert_eq!((record.status, record.lease_owner), (TaskStatus::Pending, None));
    }
    let again = store
        .fetch(&taskflow::store::Fetch::new(
            "default",
            10,
            Utc::now(),
            &lease("next", Duration::from_secs(60)),
        ))
        .await;
    assert_eq!(ids(&again.unwrap()), vec![first, second], "fetched again, in order");
}

pub(crate) async fn requeued_tasks_are_fetched_again(store: Arc<dyn Store>) {
    let mut record = pending("requeued");
    record.requeue_on_interrupt = true;
    let id = put(&*store, record).await;
    let dead = lease("dead", Duration::from_millis(1));
    assert_eq!(ids(&store.fetch(&default_queue(5, Utc::now(), &dead)).await.unwrap()), vec![id]);
    let reclaimed = store.reclaim_expired(Utc::now() + chrono::Duration::seconds(1), 3).await;
    assert!(reclaimed.unwrap().requeued.contains(&id));
    let runner = lease("alive", Duration::from_secs(60));
    assert_eq!(ids(&store.fetch(&default_queue(5, Utc::now(), &runner)).await.unwrap()), vec![id]);
    assert!(store.transition(&id, &runner, Transition::Requeue).await.unwrap());
    assert_eq!(ids(&store.fetch(&default_queue(5, Utc::now(), &runner)).await.unwrap()), vec![id]);
}

pub(crate) async fn held_tasks_wait_for_their_release(store: Arc<dyn Store>) {
    let hold = later(1);
    let held = store.enqueue_held(pending("held"), hold).unwrap();
    let mut delayed = pending("held_delayed");
    delayed.scheduled_at = Some(later(2));
    let delayed = store.enqueue_held(delayed, hold).unwrap();
    let forgotten = store.enqueue_held(pending("held_forgotten"), hold).unwrap();
    for write in [held.write, delayed.write, forgotten.write].into_iter().flatten() {
        write.wait().await.unwrap();
    }
    let runner = lease("runner", Duration::from_secs(60));
    assert!(
        store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap().is_empty(),
        "held back"
    );
    let listed = store.get(&held.id).await.unwrap().unwrap();
    assert_eq!((listed.status, listed.scheduled_at), (TaskStatus::Pending, None));
    store.release_held(&[held.id, delayed.id]).await.unwrap();
    assert_eq!(
        ids(&store.fetch(&default_queue(10, Utc::now(), &runner)).await.unwrap()),
        vec![held.id]
    );
    // A released task with a due time waits for it; one never released, for its hold.
    let after_hold = trunc(hold + chrono::Duration::seconds(1));
    assert_eq!(
        ids(&store.fetch(&default_queue(10, after_hold, &runner)).await.unwrap()),
        vec![forgotten.id]
    );
    assert_eq!(
        ids(&store.fetch(&default_queue(10, later(3), &runner)).await.unwrap()),
        vec![delayed.id]
    );
}

pub(crate) async fn one_leader_at_a_time_with_failover(store: Arc<dyn Store>) {
    let ttl = chrono::Duration::milliseconds(400);
    let name = "maintenance";
    let now = Utc::now();
    assert!(store.elect(name, "a", now, now + ttl).await.unwrap(), "a free leadership is taken");
    assert!(!store.elect(name, "b", Utc::now(), Utc::now() + ttl).await.unwrap(), "held by a");
    assert!(store.elect(name, "a", Utc::now(), Utc::now() + ttl).await.unwrap(), "a renews");
    assert!(store.elect("other", "b", Utc::now(), Utc::now() + ttl).await.unwrap(), "by name");
    // The leader stops renewing (it died): once its term lapses, another takes over.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(store.elect(name, "b", Utc::now(), Utc::now() + ttl).await.unwrap(), "failover");
    assert!(!store.elect(name, "a", Utc::now(), Utc::now() + ttl).await.unwrap(), "a is out");
    // Resigning hands it over at once; resigning what one does not hold changes nothing.
    store.resign(name, "a").await.unwrap();
    assert!(!store.elect(name, "c", Utc::now(), Utc::now() + ttl).await.unwrap());
    store.resign(name, "b").await.unwrap();
    assert!(store.elect(name, "c", Utc::now(), Utc::now() + ttl).await.unwrap());
}

pub(crate) async fn concurrent_elections_make_one_leader(store: Arc<dyn Store>) {
    let elections = (0..10).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let now = Utc::now();
            let until = now + chrono::Duration::seconds(30);
            store.elect("raced", &format!("owner-{n}"), now, until).await.unwrap()
        })
    });
    let mut leaders = 0;
    for election in elections {
        leaders += usize::from(election.await.unwrap());
    }
    assert_eq!(leaders, 1);
}

pub(crate) async fn the_next_due_time_is_known(store: Arc<dyn Store>) {
    assert_eq!(store.next_due("default").await.unwrap(), None, "nothing waits");
    put(&*store, pending("due_now")).await;
    assert_eq!(store.next_due("default").await.unwrap(), None, "an available task does not wait");
    let (one, two) = (later(1), later(2));
    let mut later_one = pending("due_later");
    later_one.scheduled_at = Some(two);
    put(&*store, later_one).await;
    assert_eq!(store.next_due("default").await.unwrap(), Some(two));
    let mut sooner = pending("due_sooner");
    sooner.scheduled_at = Some(one);
    put(&*store, sooner).await;
    assert_eq!(store.next_due("default").await.unwrap(), Some(one), "the earliest");
    let runner = lease("runner", Duration::from_secs(60));
    let fetched = store
        .fetch(&taskflow::store::Fetch::new(
            "default",
            10,
            one + chrono::Duration::seconds(1),
            &runner,
        ))
        .await
        .unwrap();
    assert_eq!(fetched.len(), 2, "the available one and the one due in an hour");
    assert_eq!(store.next_due("default").await.unwrap(), Some(two));
}
