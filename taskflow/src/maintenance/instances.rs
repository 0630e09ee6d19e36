//! The heartbeat: every instance tells the store who it is, which queues it runs and how
//! much it runs, every third of a lease; the entry lives for a lease, so an instance that
//! stops (or loses the store) drops off the list within one.

use std::sync::OnceLock;

use crate::engine::Engine;
use crate::instance::{Instance, host_name};

/// This instance as its next heartbeat describes it, at the engine's `now`.
pub(crate) fn describe(engine: &Engine) -> Instance {
    static HOST: OnceLock<String> = OnceLock::new();
    let now = engine.clock.now();
    let mut queues: Vec<String> =
        engine.queues.iter().filter(|q| q.runs).map(|q| q.name.to_string()).collect();
    queues.sort();
    Instance {
        id: engine.runner.to_string(),
        host: HOST.get_or_init(host_name).clone(),
        pid: std::process::id(),
        started_at: engine.started_at,
        queues,
        running: engine.running.len() as u64,
        seen_at: now,
        expires_at: now
            + chrono::TimeDelta::from_std(engine.lease).unwrap_or(chrono::TimeDelta::MAX),
        serves_feed: engine.observers.feed().enabled(),
    }
}

/// Records this instance's heartbeat (a failure is logged: the next tick tries again).
pub(crate) async fn heartbeat(engine: &Engine) {
    if let Err(err) = engine.store.heartbeat(&describe(engine)).await {
        tracing::debug!(error = %err, "taskflow: could not record this instance's heartbeat");
    }
}

/// Takes this instance off the list, at shutdown.
pub(crate) async fn forget(engine: &Engine) {
    if let Err(err) = engine.store.forget_instance(&engine.runner).await {
        tracing::debug!(error = %err, "taskflow: could not remove this instance's heartbeat");
    }
}
