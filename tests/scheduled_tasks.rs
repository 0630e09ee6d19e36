//! Schedules declared in `#[task]`: the keys reach the task's options as a `ScheduleSpec`
//! that builds the runtime `Schedule` the keys describe. A binary of its own, so that the
//! other tests' managers do not carry these schedules.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use taskflow::{Overlap, Schedule, ScheduleSpec, Task};

/// Every night at 02:00 in Paris; an hour of missed nights catch up; never two at once.
#[taskflow::task(cron = "0 2 * * *", timezone = "Europe/Paris", catch_up = "1h", overlap = "skip")]
async fn nightly_report() {}

/// Every hour and a half, and once when first defined.
#[taskflow::task(every = "1h 30m", run_on_startup = true)]
fn rotate_keys() {}

#[test]
fn schedule_keys_reach_the_options() {
    let nightly = <nightly_report::nightly_report as Task>::options();
    let spec = nightly.declared_schedule().expect("a declared schedule");
    assert_eq!(
        *spec,
        ScheduleSpec::cron("0 2 * * *")
            .timezone("Europe/Paris")
            .catch_up(Duration::from_secs(3600))
            .overlap(Overlap::Skip)
    );
    let schedule = spec.build().unwrap();
    assert_eq!(schedule.to_string(), "cron `0 2 * * *` in Europe/Paris");
    assert_eq!(schedule.catch_up_window(), Some(Duration::from_secs(3600)));
    assert_eq!(schedule.overlap_policy(), Overlap::Skip);
    assert!(!schedule.runs_on_startup());
    let winter = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
    assert_eq!(
        schedule.next_after(winter),
        Some(Utc.with_ymd_and_hms(2026, 1, 11, 1, 0, 0).unwrap())
    );

    let registered = taskflow::registry().get("rotate_keys").unwrap();
    let schedule = registered.options().declared_schedule().unwrap().build().unwrap();
    assert_eq!(schedule, Schedule::every(Duration::from_secs(5400)).unwrap().run_on_startup(true));
    assert_eq!(schedule.to_string(), "every 1h 30m");
    assert_eq!(schedule.overlap_policy(), Overlap::Allow);
}

/// The admin's registered tasks show a declared schedule with its next slot.
#[tokio::test]
async fn the_admin_lists_declared_schedules() {
    use tower::ServiceExt;
    let manager = taskflow::TaskManager::builder().build().await.unwrap();
    let request = axum::http::Request::get("/tasks/registered").body(axum::body::Body::empty());
    let response = manager.admin().router().oneshot(request.unwrap()).await.unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let tasks = body["tasks"].as_array().unwrap();
    let find = |name: &str| tasks.iter().find(|t| t["name"] == name).unwrap().clone();
    let nightly = find("nightly_report");
    assert_eq!(nightly["schedule"]["definition"], "cron `0 2 * * *` in Europe/Paris");
    assert_eq!(nightly["schedule"]["timezone"], "Europe/Paris");
    assert_eq!(nightly["schedule"]["overlap"], "skip");
    assert_eq!(nightly["schedule"]["catch_up_secs"], 3600.0);
    let next: chrono::DateTime<Utc> =
        serde_json::from_value(nightly["schedule"]["next"].clone()).unwrap();
    assert!(next > Utc::now() && next <= Utc::now() + chrono::Duration::hours(25), "{next}");
    let rotate = find("rotate_keys");
    assert_eq!(rotate["schedule"]["definition"], "every 1h 30m");
    assert_eq!(rotate["schedule"]["run_on_startup"], true);
    assert!(rotate["schedule"]["timezone"].is_null());
    manager.shutdown(Duration::from_secs(10)).await;
}
