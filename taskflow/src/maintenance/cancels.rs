//! Cancel requests from other instances: every instance asks the store, each poll interval
//! while it runs tasks, which of them someone asked to stop ([`Store::request_cancel`]
//! through any instance's API or manager), and stops them as a local cancel would: at the
//! next await point, or when blocking code checks `task_context().is_cancelled()`.
//!
//! [`Store::request_cancel`]: crate::store::Store::request_cancel

use crate::engine::{Engine, StopReason};

pub(super) async fn watch(engine: &Engine) {
    let ids = engine.running.ids();
    if ids.is_empty() {
        return;
    }
    match engine.store.cancel_requests(&engine.runner, &ids).await {
        Ok(asked) => {
            for id in asked {
                if let Some(running) = engine.running.get(&id) {
                    tracing::info!(task_id = %id, "taskflow: cancelling a task on request from another instance");
                    running.stop(StopReason::Cancel);
                }
            }
        }
        Err(err) => tracing::warn!(error = %err, "taskflow: could not read cancel requests"),
    }
}
