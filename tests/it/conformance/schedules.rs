//! Conformance of the schedules' store: one definition per name (the newer wins, a pause
//! survives it), and a slot advanced once however many leaders race.

use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::json;
use taskflow::store::{ScheduleChange, StoredSchedule};
use taskflow::{Store, TaskId};

use super::trunc;

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
    // Advancing from a slot it no longer waits for does nothing.
    let task = TaskId::new();
    let stale = ScheduleChange::Advance { from: Some(t1), next: Some(t3), fired: Some((t1, task)) };
    assert_eq!(store.change_schedule("nightly", stale, later).await.unwrap(), None);
    // Three leaders race to advance from t2: one does.
    let mut racers = Vec::new();
    for _ in 0..3 {
        let store = Arc::clone(&store);
        racers.push(tokio::spawn(async move {
            let change = ScheduleChange::Advance {
                from: Some(t2),
                next: Some(t3),
                fired: Some((t2, TaskId::new())),
            };
            store.change_schedule("nightly", change, later).await.unwrap()
        }));
    }
    let mut won = Vec::new();
    for racer in racers {
        won.extend(racer.await.unwrap());
    }
    assert_eq!(won.len(), 1, "one slot, one advance: {won:?}");
    let stored = store.schedules().await.unwrap().pop().unwrap();
    assert_eq!((stored.next_slot, stored.last_slot), (Some(t3), Some(t2)));
    assert_eq!(stored.last_task, won[0].last_task);
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
