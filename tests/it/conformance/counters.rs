//! Conformance of the counters ([`Store::counts`], [`Store::history`]): after a mixed run
//! (two functions in two queues; successes, failures, retries in the store and in the
//! process, cancels of pending and running tasks, a requeue, a lost fetch, crashed runners
//! reclaimed, old tasks pruned) the counts equal a recount of the rows, and the history holds
//! each event once, in the minute it happened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use taskflow::store::counters::{FINE_MINUTES, bucket_of, merge_counts};
use taskflow::store::{Change, Fetch, Lease, MinuteCounts, Retention, TaskQuery, Transition};
use taskflow::{Store, TaskId, TaskRecord, TaskStatus};

use super::{lease, pending, put};

/// The start of the minute two hours ago: old tasks start and end 5 s into it.
fn long_ago() -> DateTime<Utc> {
    let at = Utc::now() - chrono::Duration::hours(2);
    DateTime::from_timestamp(at.timestamp().div_euclid(60) * 60, 0).unwrap()
}

async fn fetch_one(
    store: &dyn Store,
    queue: &str,
    id: &TaskId,
    lease: &Lease,
    now: DateTime<Utc>,
) -> TaskRecord {
    let fetched = store.fetch(&Fetch::new(queue, 1, now, lease)).await.unwrap();
    assert_eq!(fetched.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![*id], "fetched next");
    fetched.into_iter().next().unwrap()
}

fn finished(status: TaskStatus, record: &TaskRecord, millis: i64, retries_used: u32) -> Transition {
    Transition::Finished {
        status,
        end_time: record.start_time.unwrap() + chrono::Duration::milliseconds(millis),
        retries_used,
        result: None,
        error: None,
        stacktrace: None,
    }
}

/// Every stored task, through [`Store::list`].
async fn every_task(store: &dyn Store) -> Vec<TaskRecord> {
    let mut all = Vec::new();
    let mut query = TaskQuery { limit: Some(500), ..TaskQuery::default() };
    loop {
        let page = store.list(&query).await.unwrap();
        all.extend(page.tasks);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return all,
        }
    }
}

pub(crate) async fn counters_equal_a_recount(store: Arc<dyn Store>) {
    let store = &*store;
    let runner = lease("runner", Duration::from_secs(600));
    let now = Utc::now();
    let (mut ran, mut retried) = (BTreeMap::<&str, i64>::new(), 0);

    // Old tasks: created three hours ago, run two hours ago for 40 ms, pruned below.
    let old_minute = long_ago();
    let old_at = old_minute + chrono::Duration::seconds(5);
    for status in [TaskStatus::Success, TaskStatus::Failed] {
        let mut record = pending("counted_a");
        record.created_at = old_at - chrono::Duration::hours(1);
        let id = put(store, record).await;
        let claimed = fetch_one(store, "default", &id, &runner, old_at).await;
        assert!(store.transition(&id, &runner, finished(status, &claimed, 40, 0)).await.unwrap());
        *ran.entry(status.as_str()).or_default() += 1;
    }

    // Successes of three durations in two queues; a failure after two in-process retries:
    // one batch of outcomes.
    let mut outcomes = Vec::new();
    for (func, queue, millis) in
        [("counted_a", "default", 3), ("counted_a", "default", 300), ("counted_b", "other", 2_000)]
    {
        let mut record = pending(func);
        record.queue = queue.to_owned();
        let id = put(store, record).await;
        let claimed = fetch_one(store, queue, &id, &runner, Utc::now()).await;
        let transition = finished(TaskStatus::Success, &claimed, millis, 0);
        outcomes.push(Change { id, lease: runner.clone(), transition });
        *ran.entry("success").or_default() += 1;
    }
    let id = put(store, pending("counted_b")).await;
    let claimed = fetch_one(store, "default", &id, &runner, Utc::now()).await;
    let transition = finished(TaskStatus::Failed, &claimed, 20, 2);
    outcomes.push(Change { id, lease: runner.clone(), transition });
    *ran.entry("failed").or_default() += 1;
    retried += 2;
    for applied in store.transition_many(outcomes).await {
        assert!(applied.unwrap());
    }

    // A retry through the store, then a success on the next attempt.
    let id = put(store, pending("counted_a")).await;
    fetch_one(store, "default", &id, &runner, Utc::now()).await;
    let retry = Transition::Reschedule {
        due: now,
        retries_used: 1,
        error: Some("boom".into()),
        stacktrace: None,
    };
    assert!(store.transition(&id, &runner, retry).await.unwrap());
    retried += 1;
    let claimed = fetch_one(store, "default", &id, &runner, Utc::now()).await;
    assert!(
        store
            .transition(&id, &runner, finished(TaskStatus::Success, &claimed, 10, 1))
            .await
            .unwrap()
    );
    *ran.entry("success").or_default() += 1;

    // Cancels: a pending task, a running one.
    let id = put(store, pending("counted_a")).await;
    assert_eq!(store.cancel_pending(&id).await.unwrap(), Some(TaskStatus::Pending));
    let id = put(store, pending("counted_b")).await;
    let claimed = fetch_one(store, "default", &id, &runner, Utc::now()).await;
    assert!(
        store
            .transition(&id, &runner, finished(TaskStatus::Cancelled, &claimed, 5, 0))
            .await
            .unwrap()
    );
    let cancelled = 2;

    // Crashed runners: one interrupted, one put back (requeue_on_interrupt).
    let dead = lease("dead", Duration::from_millis(1));
    let plain = put(store, pending("counted_b")).await;
    let mut again = pending("counted_b");
    again.requeue_on_interrupt = true;
    let again = put(store, again).await;
    let taken = store.fetch(&Fetch::new("default", 10, Utc::now(), &dead)).await.unwrap();
    let taken: Vec<TaskId> = taken.into_iter().map(|r| r.task_id).collect();
    assert!(taken.contains(&plain) && taken.contains(&again), "{taken:?}");
    let reclaimed =
        store.reclaim_expired(Utc::now() + chrono::Duration::seconds(1), 2).await.unwrap();
    assert_eq!((reclaimed.interrupted.len(), reclaimed.requeued.len()), (1, 1));
    *ran.entry("interrupted").or_default() += 1;

    // A requeue, a lost fetch released: both pending again.
    let mut record = pending("counted_a");
    record.queue = "other".to_owned();
    let id = put(store, record).await;
    fetch_one(store, "other", &id, &runner, Utc::now()).await;
    assert!(store.transition(&id, &runner, Transition::Requeue).await.unwrap());
    let lost = lease("lost", Duration::from_secs(600));
    fetch_one(store, "other", &id, &lost, Utc::now()).await;
    assert_eq!(store.release(&lost).await.unwrap(), 1);

    // Stored finished (as an import would): it ends as it is stored.
    let mut done = pending("counted_b");
    done.status = TaskStatus::Success;
    done.start_time = Some(done.created_at);
    done.end_time = Some(done.created_at + chrono::Duration::milliseconds(500));
    done.duration = Some(0.5);
    put(store, done).await;
    *ran.entry("success").or_default() += 1;

    // Still pending, one held, one not due yet.
    store.enqueue_held(pending("counted_a"), now + chrono::Duration::minutes(5)).unwrap();
    let mut later = pending("counted_b");
    later.scheduled_at = Some(now + chrono::Duration::hours(1));
    put(store, later).await;
    store.flush().await.unwrap();

    // The old tasks go; their history stays until trimmed.
    let retention = Retention { max_age: Some(Duration::from_secs(3600)), max_finished: None };
    assert_eq!(store.prune(&retention, Utc::now()).await.unwrap(), 2);

    // Folding the shards (where a store has them) changes no figure.
    store.compact_counters(Utc::now()).await.unwrap();

    // Counts: a recount of the rows.
    let rows = every_task(store).await;
    let mut recount: BTreeMap<(String, String, String), (i64, i64, f64)> = BTreeMap::new();
    for row in &rows {
        let key = (row.func_name.clone(), row.queue.clone(), row.status.as_str().to_owned());
        let entry = recount.entry(key).or_default();
        entry.0 += 1;
        if let Some(duration) = row.duration {
            entry.1 += 1;
            entry.2 += duration;
        }
    }
    let counts = merge_counts(store.counts().await.unwrap());
    let found: BTreeMap<_, _> = counts
        .iter()
        .map(|c| {
            (
                (c.func_name.clone(), c.queue.clone(), c.status.clone()),
                (c.tasks, c.timed, c.seconds),
            )
        })
        .collect();
    assert_eq!(found.keys().collect::<Vec<_>>(), recount.keys().collect::<Vec<_>>(), "keys");
    for (key, (tasks, timed, seconds)) in &recount {
        let (n, t, s) = found[key];
        assert_eq!((n, t), (*tasks, *timed), "{key:?}");
        assert!((s - seconds).abs() < 1e-6, "{key:?}: {s} against {seconds}");
    }
    assert_eq!(rows.len(), 13, "tasks left after the prune");

    // History: each event once.
    let history = store.history(old_at - chrono::Duration::hours(2), 1).await.unwrap();
    let total = |f: fn(&MinuteCounts) -> i64| history.iter().map(f).sum::<i64>();
    assert_eq!(total(|m| m.enqueued), 15, "every enqueue, pruned tasks too");
    assert_eq!(total(|m| m.succeeded), ran["success"]);
    assert_eq!(total(|m| m.failed), ran["failed"]);
    assert_eq!(total(|m| m.interrupted), ran["interrupted"]);
    assert_eq!(total(|m| m.cancelled), cancelled);
    assert_eq!(total(|m| m.retried), retried);
    assert!(history.windows(2).all(|w| w[0].minute <= w[1].minute), "oldest first");
    // The old runs sit in the minute they ended (or its quarter hour, where the store rolled
    // that old history up), with their durations.
    let quarter =
        DateTime::from_timestamp(old_minute.timestamp().div_euclid(900) * 900, 0).unwrap();
    let old: Vec<_> = history
        .iter()
        .filter(|m| (m.minute == old_minute || m.minute == quarter) && m.func_name == "counted_a")
        .filter(|m| m.succeeded + m.failed > 0)
        .collect();
    assert_eq!(old.len(), 1, "{history:#?}");
    assert_eq!(
        (old[0].func_name.as_str(), old[0].succeeded, old[0].failed, old[0].timed),
        ("counted_a", 1, 1, 2)
    );
    assert_eq!(old[0].histogram[bucket_of(0.04)], 2);
    assert!((old[0].min_duration.unwrap() - 0.04).abs() < 1e-6);
    // The 2 s run is in its bucket; a cancelled run's duration is not a run's.
    // (Summed over minutes: a run may end in the minute after it was enqueued.)
    let mut b = [0; taskflow::store::counters::BUCKETS];
    for minute in history.iter().filter(|m| m.func_name == "counted_b" && m.queue == "other") {
        for (sum, n) in b.iter_mut().zip(minute.histogram) {
            *sum += n;
        }
    }
    assert_eq!(b[bucket_of(2.0)], 1);
    assert_eq!(b.iter().sum::<i64>(), 1);
    let stored: i64 = history
        .iter()
        .filter(|m| m.func_name == "counted_b" && m.queue == "default")
        .map(|m| m.histogram[bucket_of(0.5)])
        .sum();
    assert_eq!(stored, 1, "the task stored finished");
    let timed: i64 = history.iter().map(|m| m.histogram.iter().sum::<i64>()).sum();
    assert_eq!(timed, total(|m| m.timed));
    assert_eq!(timed, ran["success"] + ran["failed"], "the interrupted run has no duration");

    // In steps: a step of a day holds every event of the day in one entry per function and
    // queue, at the step's start.
    let since = old_at - chrono::Duration::hours(2);
    let daily = store.history(since, 24 * 60).await.unwrap();
    let pairs: std::collections::BTreeSet<_> =
        history.iter().map(|m| (m.func_name.clone(), m.queue.clone())).collect();
    assert_eq!(daily.len(), pairs.len(), "{daily:#?}");
    let start = DateTime::from_timestamp(since.timestamp().div_euclid(60) * 60, 0).unwrap();
    assert!(daily.iter().all(|m| m.minute == start));
    assert_eq!(daily.iter().map(|m| m.enqueued).sum::<i64>(), 15);
    assert_eq!(daily.iter().map(|m| m.timed).sum::<i64>(), timed);
    let a = daily.iter().find(|m| m.func_name == "counted_a" && m.queue == "default").unwrap();
    assert!((a.min_duration.unwrap() - 0.003).abs() < 1e-6, "{a:?}");

    // Trimming forgets the old minutes only.
    let trimmed = store.trim_history(Utc::now() - chrono::Duration::minutes(30)).await.unwrap();
    assert!(trimmed >= 2, "the enqueue minute and the run minute of the old tasks: {trimmed}");
    let kept = store.history(old_at - chrono::Duration::hours(2), 1).await.unwrap();
    assert!(kept.iter().all(|m| m.minute > old_at), "{kept:#?}");
    assert_eq!(kept.iter().map(|m| m.enqueued).sum::<i64>(), 13);
}

/// Old history is merged into quarter hours, with the same figures; recent minutes stay.
pub(crate) async fn old_history_rolls_up_into_quarter_hours(store: Arc<dyn Store>) {
    let store = &*store;
    let now = chrono::Utc::now();
    // Three hours ago, at minutes 1 and 7 of a quarter hour: one row once rolled up.
    let quarter = (now.timestamp() / 60 - FINE_MINUTES - 60) / 15 * 15;
    for (offset, millis) in [(1, 3), (7, 700)] {
        let mut record = pending("rolled");
        let end = chrono::DateTime::from_timestamp((quarter + offset) * 60, 0).unwrap();
        record.status = TaskStatus::Success;
        record.created_at = end;
        record.start_time = Some(end);
        record.end_time = Some(end);
        record.duration = Some(f64::from(millis) / 1000.0);
        put(store, record).await;
    }
    let since = chrono::DateTime::from_timestamp(quarter * 60, 0).unwrap();
    let before = store.history(since, 1).await.unwrap();
    assert_eq!(before.len(), 2, "{before:#?}");
    store.compact_counters(now).await.unwrap();
    let after = store.history(since, 1).await.unwrap();
    assert_eq!(after.len(), 1, "{after:#?}");
    let row = &after[0];
    assert_eq!(row.minute, since);
    assert_eq!((row.enqueued, row.succeeded, row.timed), (2, 2, 2));
    assert_eq!((row.min_duration, row.max_duration), (Some(0.003), Some(0.7)));
    assert_eq!(row.histogram[bucket_of(0.003)], 1);
    assert_eq!(row.histogram[bucket_of(0.7)], 1);
    // The recent minutes are left as they are.
    let recent = put(store, pending("recent")).await;
    let _ = recent;
    store.compact_counters(now).await.unwrap();
    let minute = store.history(now - chrono::Duration::minutes(1), 1).await.unwrap();
    assert_eq!(minute.iter().map(|m| m.enqueued).sum::<i64>(), 1);
}
