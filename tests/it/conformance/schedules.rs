//! Conformance of the schedules' store: one definition per name (the newer wins, a pause
//! survives it), and a slot advanced once however many leaders race.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use taskflow::store::{ScheduleChange, SlotOutcome, SlotRecord, StoredSchedule};
use taskflow::{Store, TaskQuery, TaskRecord, TaskSource, TaskStatus};

use super::{pending, trunc};

/// A slot's task as a scheduler would make it: keyed by the slot, tagged with it.
fn slot_task(slot: DateTime<Utc>) -> TaskRecord {
    let mut record = pending("report");
    record.source = TaskSource::Scheduled;
    record.idempotency_key = Some(format!("schedule:nightly:{}", slot.timestamp_micros()));
    record.tags =
        [("schedule".to_owned(), "nightly".to_owned()), ("slot".to_owned(), slot.to_rfc3339())]
            .into_iter()
            .collect();
    record
}

/// Fires `task` and moves on to `next`, if the schedule is still at `version`.
fn advance(version: u64, next: DateTime<Utc>, task: TaskRecord) -> ScheduleChange {
    let slot = DateTime::parse_from_rfc3339(&task.tags["slot"]).unwrap().to_utc();
    let history = vec![SlotRecord::new(slot, SlotOutcome::Fired { task: task.task_id }, slot)];
    ScheduleChange::Advance { version, next: Some(next), fire: vec![task], history }
}

/// The stored tasks of slot `slot`.
async fn slot_tasks(store: &dyn Store, slot: DateTime<Utc>) -> Vec<TaskRecord> {
    let query = TaskQuery { tag: Some(("slot".into(), slot.to_rfc3339())), ..Default::default() };
    store.list(&query).await.unwrap().tasks
}

pub(crate) async fn schedules_keep_one_definition_and_advance_once(store: Arc<dyn Store>) {
    let now = trunc(Utc::now());
    let (t1, t2, t3) =
        (now + Duration::minutes(1), now + Duration::minutes(2), now + Duration::minutes(3));
    let define = |definition: &str, next| {
        ScheduleChange::Define(StoredSchedule::new(
            "nightly",
            "report",
            json!({"region": "eu"}),
            definition,
            Some(next),
            now,
        ))
    };
    let first = store.change_schedule("nightly", define("every 1m", t1), now).await.unwrap();
    let first = first.expect("stored");
    assert_eq!((first.definition.as_str(), first.next_slot), ("every 1m", Some(t1)));
    assert_eq!(store.schedules().await.unwrap(), vec![first.clone()]);
    // The same definition again (another instance starting): nothing changes.
    let later = now + Duration::seconds(5);
    let again = store.change_schedule("nightly", define("every 1m", t2), later).await.unwrap();
    assert_eq!(again.as_ref(), Some(&first), "kept as it was, its next slot too");
    // Paused, then redefined by a newer binary: the new definition, still paused.
    let paused =
        store.change_schedule("nightly", ScheduleChange::Pause(true), later).await.unwrap();
    assert!(paused.unwrap().paused);
    let redefined = store.change_schedule("nightly", define("every 2m", t2), later).await.unwrap();
    let redefined = redefined.unwrap();
    assert_eq!((redefined.definition.as_str(), redefined.next_slot), ("every 2m", Some(t2)));
    assert!(redefined.paused, "a pause survives a redefinition");
    assert_eq!(store.schedules().await.unwrap(), vec![redefined.clone()], "one schedule per name");
    // Advancing a version it is no longer at (paused and redefined since) does nothing,
    // and stores none of its tasks.
    let stale = advance(first.version, t3, slot_task(t1));
    assert_eq!(store.change_schedule("nightly", stale, later).await.unwrap(), None);
    assert!(slot_tasks(&*store, t1).await.is_empty(), "a stale advance stores no task");
    // Three leaders race to fire slot t2, each with a task of its own: one advance applies,
    // and its task, alone, is stored.
    let mut racers = Vec::new();
    for _ in 0..3 {
        let store = Arc::clone(&store);
        let version = redefined.version;
        racers.push(tokio::spawn(async move {
            let task = slot_task(t2);
            let id = task.task_id;
            (id, store.change_schedule("nightly", advance(version, t3, task), later).await.unwrap())
        }));
    }
    let mut won = Vec::new();
    for racer in racers {
        let (id, applied) = racer.await.unwrap();
        won.extend(applied.map(|schedule| (id, schedule)));
    }
    assert_eq!(won.len(), 1, "one slot, one advance: {won:?}");
    let stored_tasks = slot_tasks(&*store, t2).await;
    assert_eq!(stored_tasks.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![won[0].0]);
    assert_eq!(stored_tasks[0].status, TaskStatus::Pending, "stored to run");
    let stored = store.schedules().await.unwrap().pop().unwrap();
    assert_eq!((stored.next_slot, stored.last_slot), (Some(t3), Some(t2)));
    assert_eq!(stored.last_task, Some(won[0].0));
    assert_eq!(stored.history.last().and_then(|h| h.task()), Some(won[0].0));
    assert!(stored.paused);
    // Removed: gone, and nothing applies to it any more.
    let removed = store.change_schedule("nightly", ScheduleChange::Remove, later).await.unwrap();
    assert_eq!(removed.map(|s| s.name), Some("nightly".to_owned()));
    assert!(store.schedules().await.unwrap().is_empty());
    let resume =
        store.change_schedule("nightly", ScheduleChange::Pause(false), later).await.unwrap();
    assert_eq!(resume, None, "no such schedule");
    assert!(
        store.schedules().await.unwrap().is_empty(),
        "a change to a missing schedule creates none"
    );
}
