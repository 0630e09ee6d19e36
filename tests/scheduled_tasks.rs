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

static MINUTELY_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Every minute, counting its runs.
#[taskflow::task(every = "1m")]
async fn every_minute() {
    MINUTELY_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Sends a digest to `to`: scheduled at run time, with arguments.
#[taskflow::task]
async fn digest(to: String) -> String {
    format!("digest for {to}")
}

/// The tasks a schedule fired, by slot.
async fn fired_by(manager: &taskflow::TaskManager, name: &str) -> Vec<taskflow::TaskRecord> {
    let query = taskflow::TaskQuery {
        tag: Some(("schedule".into(), name.into())),
        limit: Some(1000),
        ..Default::default()
    };
    let mut tasks = manager.store().list(&query).await.unwrap().tasks;
    tasks.sort_by_key(|task| task.tags["slot"].clone());
    tasks
}

/// On the engine's clock (tokio's, paused here): ten minutes pass in no real time, and the
/// leader fires each minute's slot once, on the grid, besides the startup run.
#[tokio::test(start_paused = true)]
async fn declared_schedules_fire_each_slot_once_on_the_grid() {
    let manager = taskflow::TaskManager::builder().build().await.unwrap();
    let defined = manager.schedules().await.unwrap();
    let names: Vec<&str> = defined.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["every_minute", "nightly_report", "rotate_keys"], "declared at build");
    let first = defined[0].next_slot.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    let last = manager.schedules().await.unwrap()[0].last_slot.unwrap();
    let tasks = fired_by(&manager, "every_minute").await;
    let expected = (last - first).num_minutes() as usize + 1;
    assert!(expected >= 9, "about ten minutes of slots: {expected}");
    assert_eq!(tasks.len(), expected, "one task per slot, none missed");
    for (n, task) in tasks.iter().enumerate() {
        let slot = first + chrono::Duration::minutes(n as i64);
        assert_eq!(task.tags["slot"], slot.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        assert_eq!(task.source, taskflow::TaskSource::Scheduled);
        let done = manager.wait_for(task.task_id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(done.status, taskflow::TaskStatus::Success);
    }
    assert_eq!(MINUTELY_RUNS.load(std::sync::atomic::Ordering::SeqCst), expected);
    // `run_on_startup`: once, when first defined, and not again for another instance.
    // (Counted by the history, not by time: the startup run comes at the leader's first
    // tick, which may be after `first`, and a regular 90-minute slot may fall in the window.)
    let rotated = fired_by(&manager, "rotate_keys").await;
    let rotate = manager.schedules().await.unwrap().pop().unwrap();
    assert!(matches!(rotate.history[0].outcome, taskflow::store::SlotOutcome::Startup { .. }));
    let startups: Vec<_> = rotate
        .history
        .iter()
        .filter(|r| matches!(r.outcome, taskflow::store::SlotOutcome::Startup { .. }))
        .collect();
    assert_eq!(startups.len(), 1, "one startup run");
    let startup = startups[0].task().unwrap();
    assert!(rotated.iter().any(|task| task.task_id == startup), "stored as a schedule's task");
    manager.shutdown(Duration::from_secs(10)).await;
}

/// A schedule defined at run time, with arguments: it fires with them; "run now" fires at
/// once, also while paused; a pause stops the slots; a stored schedule whose task this
/// binary lacks is named as such and never fires.
#[tokio::test(start_paused = true)]
async fn runtime_schedules_take_arguments_pause_and_trigger() {
    let manager = taskflow::TaskManager::builder().declared_schedules(false).build().await.unwrap();
    assert!(manager.schedules().await.unwrap().is_empty(), "declared_schedules(false)");
    let every = Schedule::every(Duration::from_secs(60)).unwrap();
    let stored =
        manager.schedule("digest-ops", every.clone(), digest, "ops@example.com".to_owned());
    let stored = stored.await.unwrap();
    assert_eq!(stored.args, serde_json::json!({"to": "ops@example.com"}));
    tokio::time::sleep(Duration::from_secs(61)).await;
    let tasks = fired_by(&manager, "digest-ops").await;
    assert_eq!(tasks.len(), 1);
    let done = manager.wait_for(tasks[0].task_id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(done.result, Some(serde_json::json!("digest for ops@example.com")));

    assert!(manager.pause_schedule("digest-ops").await.unwrap().paused);
    tokio::time::sleep(Duration::from_secs(180)).await;
    assert_eq!(fired_by(&manager, "digest-ops").await.len(), 1, "paused: no slot fires");
    let now = manager.trigger_schedule("digest-ops").await.unwrap();
    let done = manager.wait_for(now, Duration::from_secs(60)).await.unwrap();
    assert_eq!(done.status, taskflow::TaskStatus::Success, "run now, even while paused");
    let schedule = manager.resume_schedule("digest-ops").await.unwrap();
    assert_eq!(schedule.last_task, Some(now));
    let kinds: Vec<String> = schedule
        .history
        .iter()
        .map(|h| serde_json::to_value(&h.outcome).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["fired", "paused", "triggered"]);
    assert!(manager.trigger_schedule("nope").await.is_err(), "no such schedule");

    let foreign = define_foreign(&manager).await;
    let problem = manager.schedule_problem(&foreign).expect("cannot fire here");
    assert!(problem.reason.contains("not_in_this_binary"), "{problem}");
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(fired_by(&manager, "foreign").await.is_empty());
    assert!(manager.unschedule("foreign").await.unwrap());
    manager.shutdown(Duration::from_secs(10)).await;
}

/// Stores the schedule `foreign`, as another binary would, for a task this one lacks.
async fn define_foreign(manager: &taskflow::TaskManager) -> taskflow::store::StoredSchedule {
    let at = chrono::Utc::now();
    let every = Schedule::every(Duration::from_secs(60)).unwrap();
    let foreign = taskflow::store::StoredSchedule::new(
        "foreign",
        "not_in_this_binary",
        serde_json::json!({}),
        every.definition(),
        Some(at),
        at,
    );
    let change = taskflow::store::ScheduleChange::Define(foreign);
    manager.store().change_schedule("foreign", change, at).await.unwrap().unwrap()
}

/// One request to the admin `router` (one router: one audit log); the status and the JSON
/// body.
async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
) -> (axum::http::StatusCode, serde_json::Value) {
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// `GET {p}/schedules` lists each stored schedule with its definition, next slot, last run
/// and history; pause, resume and trigger change it for every instance and are audited; an
/// unknown schedule is a 404; one whose task this binary lacks shows why and cannot be run.
#[tokio::test(start_paused = true)]
async fn the_admin_lists_pauses_and_triggers_schedules() {
    let manager = taskflow::TaskManager::builder().build().await.unwrap();
    let router = manager.admin().router();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = call(&router, "GET", "/tasks/schedules").await;
    assert_eq!(status, 200, "{body}");
    let find = |body: &serde_json::Value, name: &str| {
        body["schedules"].as_array().unwrap().iter().find(|s| s["name"] == name).cloned().unwrap()
    };
    let nightly = find(&body, "nightly_report");
    assert_eq!(nightly["definition"], "cron `0 2 * * *` in Europe/Paris");
    assert_eq!(
        (&nightly["timezone"], &nightly["overlap"]),
        (&"Europe/Paris".into(), &"skip".into())
    );
    assert_eq!(nightly["paused"], false);
    assert!(nightly["next"].is_string() && nightly["problem"].is_null());
    let rotate = find(&body, "rotate_keys");
    assert_eq!(rotate["history"][0]["outcome"]["kind"], "startup", "{rotate}");
    assert!(rotate["last_task"].is_string());

    let (status, body) = call(&router, "POST", "/tasks/schedules/nightly_report/pause").await;
    assert_eq!((status.as_u16(), &body["schedule"]["paused"]), (200, &true.into()), "{body}");
    assert!(
        manager.schedules().await.unwrap().iter().any(|s| s.name == "nightly_report" && s.paused)
    );
    let (status, body) = call(&router, "POST", "/tasks/schedules/nightly_report/resume").await;
    assert_eq!((status.as_u16(), &body["schedule"]["paused"]), (200, &false.into()));
    let (status, body) = call(&router, "POST", "/tasks/schedules/nightly_report/trigger").await;
    assert_eq!(status, 200, "{body}");
    let id: taskflow::TaskId = body["task_id"].as_str().unwrap().parse().unwrap();
    let done = manager.wait_for(id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        (done.status, done.source),
        (taskflow::TaskStatus::Success, taskflow::TaskSource::Scheduled)
    );
    assert_eq!(done.tags["schedule"], "nightly_report");
    let (_, body) = call(&router, "GET", "/tasks/schedules").await;
    let nightly = find(&body, "nightly_report");
    assert_eq!(
        (&nightly["last_task"], &nightly["last_status"]),
        (&id.to_string().into(), &"success".into())
    );
    let (_, audit) = call(&router, "GET", "/tasks/audit").await;
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["pause-schedule", "resume-schedule", "trigger-schedule"] {
        assert!(actions.contains(&action), "{action} audited: {audit}");
    }

    for path in [
        "/tasks/schedules/nope/pause",
        "/tasks/schedules/nope/resume",
        "/tasks/schedules/nope/trigger",
    ] {
        let (status, body) = call(&router, "POST", path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    }
    define_foreign(&manager).await;
    let (_, body) = call(&router, "GET", "/tasks/schedules").await;
    let problem = find(&body, "foreign")["problem"].as_str().unwrap().to_owned();
    assert!(
        problem.contains("not_in_this_binary") && problem.contains("not registered"),
        "{problem}"
    );
    let (status, body) = call(&router, "POST", "/tasks/schedules/foreign/trigger").await;
    assert_eq!(status, 422, "{body}");
    manager.shutdown(Duration::from_secs(10)).await;
}
