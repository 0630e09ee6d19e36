//! Conformance of firing: the scheduler over each store at chosen times. Slots fire once
//! however many schedulers tick at once; after a gap the catch-up window fills, older slots
//! are recorded as missed; `overlap = "skip"` records the slots it passes; a pause is
//! persisted and recorded.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use taskflow::store::{ScheduleChange, SlotOutcome, StoredSchedule};
use taskflow::{Overlap, Schedule, Scheduler, Store, TaskQuery, TaskRecord, TaskSource};

/// The task the schedules here fire.
#[taskflow::task]
async fn conformance_tick(n: u32) -> u32 {
    n
}

/// A minute-aligned time well in the past, so that slots are whole minutes.
fn base() -> DateTime<Utc> {
    let now = Utc::now().timestamp();
    DateTime::from_timestamp(now - now % 60 - 86_400, 0).unwrap()
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

async fn define(store: &dyn Store, name: &str, schedule: &Schedule, at: DateTime<Utc>) {
    let stored = StoredSchedule::new(
        name,
        "conformance_tick",
        json!({"n": 7}),
        schedule.definition(),
        schedule.next_after(at),
        at,
    );
    store.change_schedule(name, ScheduleChange::Define(stored), at).await.unwrap().unwrap();
}

async fn fired(store: &dyn Store, name: &str) -> Vec<TaskRecord> {
    let query = TaskQuery {
        tag: Some(("schedule".into(), name.into())),
        oldest_first: true,
        limit: Some(1000),
        ..Default::default()
    };
    let mut tasks = store.list(&query).await.unwrap().tasks;
    tasks.sort_by_key(|task| task.tags["slot"].clone());
    tasks
}

async fn stored(store: &dyn Store, name: &str) -> StoredSchedule {
    store.schedules().await.unwrap().into_iter().find(|s| s.name == name).unwrap()
}

pub(crate) async fn slots_fire_once_and_catch_up_after_a_gap(store: Arc<dyn Store>) {
    let t0 = base();
    let every =
        Schedule::every(Duration::from_secs(60)).unwrap().catch_up(Duration::from_secs(600));
    define(&*store, "minutely", &every, t0).await;
    let tick = Scheduler::new(Arc::clone(&store)).tick(t0 + chrono::Duration::seconds(30)).await;
    assert!(tick.unwrap().fired.is_empty(), "before the first slot");
    // Three schedulers tick at once, 5 slots after: 5 tasks, one per slot.
    let at = t0 + minutes(5) + chrono::Duration::seconds(10);
    let racers: Vec<_> = (0..3)
        .map(|_| {
            let scheduler = Scheduler::new(Arc::clone(&store));
            tokio::spawn(async move { scheduler.tick(at).await.unwrap() })
        })
        .collect();
    let mut total = 0;
    for racer in racers {
        total += racer.await.unwrap().fired.len();
    }
    let tasks = fired(&*store, "minutely").await;
    assert_eq!(total, 5, "the schedulers together report five");
    let slots: Vec<String> = tasks.iter().map(|t| t.tags["slot"].clone()).collect();
    let expected: Vec<String> = (1..=5)
        .map(|n| (t0 + minutes(n)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .collect();
    assert_eq!(slots, expected, "each slot once");
    for task in &tasks {
        assert_eq!(task.source, TaskSource::Scheduled);
        assert_eq!(task.args, json!({"n": 7}));
        assert_eq!(task.func_name, "conformance_tick");
    }
    // Down for 25 minutes: the ten slots within the window fire, oldest first; the fifteen
    // before it are recorded as missed.
    let at = t0 + minutes(30) + chrono::Duration::seconds(10);
    let tick = Scheduler::new(Arc::clone(&store)).tick(at).await.unwrap();
    assert_eq!((tick.fired.len(), tick.skipped), (10, 15));
    let tasks = fired(&*store, "minutely").await;
    assert_eq!(tasks.len(), 15);
    assert_eq!(
        tasks[5].tags["slot"],
        (t0 + minutes(21)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    let schedule = stored(&*store, "minutely").await;
    let missed = schedule.history.iter().find(|h| h.outcome == SlotOutcome::Missed).unwrap();
    assert_eq!(
        (missed.slot, missed.until, missed.count),
        (t0 + minutes(6), Some(t0 + minutes(20)), 15)
    );
    assert_eq!(schedule.next_slot, Some(t0 + minutes(31)));
    assert_eq!(schedule.last_slot, Some(t0 + minutes(30)));
    // Ticking again at the same time, or earlier (a clock set back), fires nothing.
    for at in [at, t0 + minutes(10)] {
        let tick = Scheduler::new(Arc::clone(&store)).tick(at).await.unwrap();
        assert!(tick.fired.is_empty(), "no slot twice");
    }
    assert_eq!(fired(&*store, "minutely").await.len(), 15);
}

pub(crate) async fn overlap_skips_and_pauses_are_recorded(store: Arc<dyn Store>) {
    let t0 = base();
    let skip = Schedule::every(Duration::from_secs(60)).unwrap().overlap(Overlap::Skip);
    define(&*store, "exclusive", &skip, t0).await;
    let scheduler = Scheduler::new(Arc::clone(&store));
    let first = scheduler.tick(t0 + minutes(1)).await.unwrap().fired;
    assert_eq!(first.len(), 1);
    // The first run is still pending at the next slot: skipped, and recorded.
    let tick = scheduler.tick(t0 + minutes(2)).await.unwrap();
    assert_eq!((tick.fired.len(), tick.skipped), (0, 1));
    let history = stored(&*store, "exclusive").await.history;
    assert_eq!(
        history.last().map(|h| (&h.outcome, h.slot)),
        Some((&SlotOutcome::Overlapped { running: first[0] }, t0 + minutes(2)))
    );
    // Once it is over, the next slot fires.
    store.cancel_pending(&first[0]).await.unwrap();
    let third = scheduler.tick(t0 + minutes(3)).await.unwrap().fired;
    assert_eq!(third.len(), 1);
    store.cancel_pending(&third[0]).await.unwrap();

    // A pause is stored: a fresh read shows it, and slots pass as paused, firing nothing.
    let at = t0 + minutes(3);
    let paused = store.change_schedule("exclusive", ScheduleChange::Pause(true), at).await;
    assert!(paused.unwrap().unwrap().paused);
    assert!(stored(&*store, "exclusive").await.paused, "persisted");
    for n in 4..=6 {
        let tick = scheduler.tick(t0 + minutes(n)).await.unwrap();
        assert!(tick.fired.is_empty(), "paused");
    }
    let schedule = stored(&*store, "exclusive").await;
    let last = schedule.history.last().unwrap();
    assert_eq!((&last.outcome, last.slot, last.count), (&SlotOutcome::Paused, t0 + minutes(4), 3));
    store.change_schedule("exclusive", ScheduleChange::Pause(false), at).await.unwrap();
    let before = fired(&*store, "exclusive").await.len();
    assert_eq!(scheduler.tick(t0 + minutes(7)).await.unwrap().fired.len(), 1, "resumed");
    assert_eq!(fired(&*store, "exclusive").await.len(), before + 1);
    // A schedule whose task this binary lacks is reported and left as it is.
    let lost = StoredSchedule::new(
        "lost",
        "gone_after_deploy",
        json!({}),
        skip.definition(),
        Some(t0),
        t0,
    );
    store.change_schedule("lost", ScheduleChange::Define(lost), t0).await.unwrap();
    let tick = scheduler.tick(t0 + minutes(8)).await.unwrap();
    assert!(
        tick.problems
            .iter()
            .any(|p| p.schedule == "lost" && p.reason.contains("gone_after_deploy"))
    );
    assert_eq!(stored(&*store, "lost").await.next_slot, Some(t0), "kept, not advanced");
}
