//! [`Schedule`]'s slots and missed-slot policy, with explicit times (the scheduler's clock is
//! injected): the grid, time zones across daylight-saving changes, gaps after downtime with
//! and without a catch-up window, clock jumps, and the errors for bad definitions.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use taskflow::{MIN_INTERVAL, Schedule, ScheduleError};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// Every slot in `(from, to]`.
fn slots(schedule: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut found = Vec::new();
    let mut at = from;
    while let Some(next) = schedule.next_after(at).filter(|next| *next <= to) {
        found.push(next);
        at = next;
    }
    found
}

#[test]
fn intervals_are_on_a_grid_from_the_epoch() {
    let five = Schedule::every(Duration::from_secs(300)).unwrap();
    assert_eq!(five.next_after(utc(2026, 1, 1, 10, 2, 30)), Some(utc(2026, 1, 1, 10, 5, 0)));
    assert_eq!(five.next_after(utc(2026, 1, 1, 10, 5, 0)), Some(utc(2026, 1, 1, 10, 10, 0)));
    assert_eq!(five.last_at_or_before(utc(2026, 1, 1, 10, 5, 0)), Some(utc(2026, 1, 1, 10, 5, 0)));
    assert_eq!(five.last_at_or_before(utc(2026, 1, 1, 10, 9, 59)), Some(utc(2026, 1, 1, 10, 5, 0)));
    // 1 h 30 m: the epoch's grid, not the hour's.
    let odd = Schedule::every(Duration::from_secs(5400)).unwrap();
    let next = odd.next_after(utc(2026, 1, 1, 0, 0, 0)).unwrap();
    assert_eq!(next.timestamp() % 5400, 0);
    assert_eq!(Schedule::every(Duration::from_millis(999)).unwrap_err(), {
        ScheduleError::TooOften(Duration::from_millis(999))
    });
    assert!(Schedule::every(MIN_INTERVAL).is_ok());
}

#[test]
fn a_cron_expression_is_read_in_its_zone() {
    let nightly = Schedule::cron("0 2 * * *").unwrap().timezone("Europe/Paris").unwrap();
    // Winter: 02:00 in Paris is 01:00 UTC; summer: 00:00 UTC.
    assert_eq!(nightly.next_after(utc(2026, 1, 10, 12, 0, 0)), Some(utc(2026, 1, 11, 1, 0, 0)));
    assert_eq!(nightly.next_after(utc(2026, 7, 10, 12, 0, 0)), Some(utc(2026, 7, 11, 0, 0, 0)));
    let utc_nightly = Schedule::cron("0 2 * * *").unwrap();
    assert_eq!(utc_nightly.next_after(utc(2026, 7, 10, 12, 0, 0)), Some(utc(2026, 7, 11, 2, 0, 0)));
    assert_eq!(nightly.to_string(), "cron `0 2 * * *` in Europe/Paris");
    assert_eq!(Schedule::every(Duration::from_secs(5400)).unwrap().to_string(), "every 1h 30m");
}

#[test]
fn daylight_saving_days_fire_once() {
    let half_past_two = Schedule::cron("30 2 * * *").unwrap().timezone("Europe/Paris").unwrap();
    // 2026-03-29: clocks go from 02:00 to 03:00, so 02:30 does not exist: it fires once, at
    // 03:00 local (01:00 UTC).
    let spring = slots(&half_past_two, utc(2026, 3, 28, 12, 0, 0), utc(2026, 3, 29, 12, 0, 0));
    assert_eq!(spring, [utc(2026, 3, 29, 1, 0, 0)]);
    // 2026-10-25: clocks go from 03:00 back to 02:00, so 02:30 happens twice: it fires once,
    // at the first (00:30 UTC).
    let fall = slots(&half_past_two, utc(2026, 10, 24, 12, 0, 0), utc(2026, 10, 25, 12, 0, 0));
    assert_eq!(fall, [utc(2026, 10, 25, 0, 30, 0)]);
    // The days around them are ordinary.
    let week = slots(&half_past_two, utc(2026, 3, 26, 12, 0, 0), utc(2026, 4, 1, 12, 0, 0));
    assert_eq!(week.len(), 6);
}

#[test]
fn after_downtime_the_most_recent_missed_slot_fires_once() {
    let hourly = Schedule::every(Duration::from_secs(3600)).unwrap();
    let next = utc(2026, 5, 1, 10, 0, 0);
    // On time: that slot.
    let due = hourly.due(next, utc(2026, 5, 1, 10, 0, 2));
    assert_eq!(due.fire, [next]);
    assert_eq!(due.skipped, 0);
    assert_eq!(due.next, Some(utc(2026, 5, 1, 11, 0, 0)));
    // Five hours down: 15:00 fires; 10:00 to 14:00 are skipped, and said so.
    let due = hourly.due(next, utc(2026, 5, 1, 15, 20, 0));
    assert_eq!(due.fire, [utc(2026, 5, 1, 15, 0, 0)]);
    assert_eq!(due.skipped, 5);
    assert_eq!(due.skipped_range, Some((next, utc(2026, 5, 1, 14, 0, 0))));
    assert_eq!(due.next, Some(utc(2026, 5, 1, 16, 0, 0)));
}

#[test]
fn a_catch_up_window_fills_the_missed_slots_in_it_oldest_first() {
    let hourly =
        Schedule::every(Duration::from_secs(3600)).unwrap().catch_up(Duration::from_secs(3 * 3600));
    let next = utc(2026, 5, 1, 10, 0, 0);
    let due = hourly.due(next, utc(2026, 5, 1, 15, 20, 0));
    let in_window =
        [utc(2026, 5, 1, 13, 0, 0), utc(2026, 5, 1, 14, 0, 0), utc(2026, 5, 1, 15, 0, 0)];
    assert_eq!(due.fire, in_window, "12:20 to 15:20");
    assert_eq!(due.skipped, 3, "10:00, 11:00 and 12:00 are older than the window");
    assert_eq!(due.skipped_range, Some((next, utc(2026, 5, 1, 12, 0, 0))));
    // A window reaching back past the gap: everything fires.
    let wide =
        Schedule::every(Duration::from_secs(3600)).unwrap().catch_up(Duration::from_secs(86_400));
    let due = wide.due(next, utc(2026, 5, 1, 15, 20, 0));
    assert_eq!(due.fire.len(), 6);
    assert_eq!(due.skipped, 0);
    // A window with no slot in it: the most recent fires, as without one.
    let daily = Schedule::cron("0 2 * * *").unwrap().catch_up(Duration::from_secs(3600));
    let due = daily.due(utc(2026, 5, 1, 2, 0, 0), utc(2026, 5, 3, 10, 0, 0));
    assert_eq!(due.fire, [utc(2026, 5, 3, 2, 0, 0)]);
    assert_eq!(due.skipped, 2);
    // A huge backlog fills 1,000 at a time, going on from where it stopped.
    let seconds =
        Schedule::every(Duration::from_secs(1)).unwrap().catch_up(Duration::from_secs(86_400));
    let start = utc(2026, 5, 1, 0, 0, 0);
    let now = utc(2026, 5, 1, 1, 0, 0);
    let first = seconds.due(start, now);
    assert_eq!(first.fire.len(), 1000);
    assert_eq!(first.fire[0], start);
    let resume = first.next.unwrap();
    assert_eq!(resume, start + chrono::Duration::seconds(1000));
    let second = seconds.due(resume, now);
    assert_eq!(second.fire[0], resume, "no slot twice, none lost");
}

#[test]
fn a_clock_that_jumps_back_fires_no_slot_twice() {
    let minutely = Schedule::cron("* * * * *").unwrap();
    let fired = utc(2026, 5, 1, 10, 0, 0);
    let next = minutely.due(fired, utc(2026, 5, 1, 10, 0, 1)).next.unwrap();
    assert_eq!(next, utc(2026, 5, 1, 10, 1, 0));
    // An hour back: nothing is due until the clock passes `next` again.
    let back = minutely.due(next, utc(2026, 5, 1, 9, 0, 30));
    assert!(back.fire.is_empty());
    assert_eq!(back.next, Some(next));
    // Then forward by a day: the missed-slot policy, the most recent once.
    let forward = minutely.due(next, utc(2026, 5, 2, 10, 0, 30));
    assert_eq!(forward.fire, [utc(2026, 5, 2, 10, 0, 0)]);
    assert_eq!(forward.skipped, 24 * 60 - 1);
}

#[test]
fn bad_definitions_say_what_is_accepted() {
    let err = Schedule::cron("61 * * * *").unwrap_err();
    assert!(matches!(err, ScheduleError::Cron { .. }), "{err:?}");
    assert!(err.to_string().contains("`0 2 * * *`"), "{err}");
    assert!(Schedule::cron("* * *").is_err());
    assert!(Schedule::cron("@daily").is_ok());
    let err = Schedule::cron("0 2 * * *").unwrap().timezone("Europe/Pariss").unwrap_err();
    assert_eq!(err, ScheduleError::Zone("Europe/Pariss".to_owned()));
    assert!(err.to_string().contains("Europe/Paris"), "{err}");
    // The 30th of February never comes.
    let never = Schedule::cron("0 0 30 2 *").unwrap();
    assert_eq!(never.next_after(utc(2026, 1, 1, 0, 0, 0)), None);
}

/// The scheduler over a store with its clock injected: a daily 02:30 in Paris fires once on
/// the spring-forward day (at 03:00) and once on the fall-back day; a clock set back an hour
/// fires nothing again, and set forward a day fires the most recent missed slot (the others
/// are recorded as missed).
#[tokio::test]
async fn the_scheduler_follows_daylight_saving_and_clock_jumps() {
    use std::sync::Arc;
    use taskflow::store::{ScheduleChange, SlotOutcome, StoredSchedule};
    use taskflow::{Scheduler, Store};

    let store: Arc<dyn Store> = Arc::new(taskflow::MemoryStore::new());
    let daily = Schedule::cron("30 2 * * *").unwrap().timezone("Europe/Paris").unwrap();
    let start = utc(2026, 3, 28, 12, 0, 0);
    let define = |name: &'static str, at: DateTime<Utc>| {
        let (store, daily) = (Arc::clone(&store), daily.clone());
        async move {
            let stored = StoredSchedule::new(
                name,
                "conformance_tick",
                serde_json::json!({"n": 1}),
                daily.definition(),
                daily.next_after(at),
                at,
            );
            store.change_schedule(name, ScheduleChange::Define(stored), at).await.unwrap();
        }
    };
    define("daily", start).await;
    let scheduler = Scheduler::new(Arc::clone(&store));
    // Every ten minutes across the spring-forward night (29 March 2026, 02:00 -> 03:00).
    let mut fired = Vec::new();
    let mut at = start;
    while at < utc(2026, 3, 30, 12, 0, 0) {
        fired.extend(scheduler.tick(at).await.unwrap().fired);
        at += chrono::Duration::minutes(10);
    }
    let slot_of = |id| {
        let store = Arc::clone(&store);
        async move { store.get(&id).await.unwrap().unwrap().tags["slot"].clone() }
    };
    let mut slots = Vec::new();
    for id in &fired {
        slots.push(slot_of(*id).await);
    }
    // 03:00 CEST on the 29th (01:00 UTC), then 02:30 CEST on the 30th (00:30 UTC).
    assert_eq!(slots, ["2026-03-29T01:00:00.000000Z", "2026-03-30T00:30:00.000000Z"]);

    // The clock set back an hour: nothing fires twice.
    let back = at - chrono::Duration::hours(1);
    assert!(scheduler.tick(back).await.unwrap().fired.is_empty());
    // Set forward four days: the most recent slot fires, the three before are missed.
    let ahead = at + chrono::Duration::days(4);
    let tick = scheduler.tick(ahead).await.unwrap();
    assert_eq!((tick.fired.len(), tick.skipped), (1, 3));
    assert_eq!(slot_of(tick.fired[0]).await, "2026-04-03T00:30:00.000000Z");
    let schedule = store.schedules().await.unwrap().pop().unwrap();
    let missed = schedule.history.iter().find(|h| h.outcome == SlotOutcome::Missed).unwrap();
    assert_eq!(missed.count, 3);

    // The fall-back night (25 October 2026, 03:00 -> 02:00): 02:30 occurs twice, fires once.
    let autumn = utc(2026, 10, 24, 12, 0, 0);
    define("autumn", autumn).await;
    let mut fired = 0;
    let mut at = autumn;
    while at < utc(2026, 10, 25, 12, 0, 0) {
        let tick = scheduler.tick(at).await.unwrap();
        for id in tick.fired {
            let record = store.get(&id).await.unwrap().unwrap();
            if record.tags["schedule"] == "autumn" {
                assert_eq!(record.tags["slot"], "2026-10-25T00:30:00.000000Z", "the first 02:30");
                fired += 1;
            }
        }
        at += chrono::Duration::minutes(10);
    }
    assert_eq!(fired, 1, "once on the fall-back day");
}
