//! `GET /tasks/registered`: the tasks this binary can run, with the options `#[task]` gave
//! them (what fastapi-taskflow's Tasks tab lists), and the schedule a task declares.

use axum::Json;
use serde_json::{Value, json};

use crate::registry::registry;

/// `GET /tasks/registered`: every registered task, by name.
pub(crate) async fn list() -> Json<Value> {
    let mut tasks: Vec<Value> = registry()
        .iter()
        .map(|task| {
            let options = task.options();
            json!({
                "name": task.name(),
                "queue": options.default_queue(),
                "retries": options.max_retries(),
                "priority": options.default_priority(),
                "concurrency": options.concurrency_limit(),
                "timeout_secs": options.attempt_timeout().map(|t| t.as_secs_f64()),
                "eager": options.is_eager(),
                "blocking": options.is_blocking(),
                "requeue_on_interrupt": options.requeues_on_interrupt(),
                "schedule": options.declared_schedule().map(schedule),
                "location": task.location(),
            })
        })
        .collect();
    tasks.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Json(json!({ "tasks": tasks }))
}

/// A declared schedule: its definition, policies and next slot from now.
fn schedule(spec: &crate::ScheduleSpec) -> Value {
    match spec.build() {
        Ok(schedule) => json!({
            "definition": schedule.to_string(),
            "timezone": schedule.zone().map(|zone| zone.name()),
            "catch_up_secs": schedule.catch_up_window().map(|w| w.as_secs_f64()),
            "overlap": schedule.overlap_policy(),
            "run_on_startup": schedule.runs_on_startup(),
            "next": schedule.next_after(chrono::Utc::now()),
        }),
        Err(err) => json!({ "error": err.to_string() }),
    }
}
