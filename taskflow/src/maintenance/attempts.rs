//! What this instance's running attempts say and hear, each poll interval while it runs
//! tasks: their progress reports are written (one store call for all of them) and announced,
//! and the store is asked which of them someone stopped from any instance
//! ([`Store::request_cancel`], through any instance's API or manager); those are stopped as a
//! local cancel would stop them: at the next await point, or when blocking code checks
//! `task_context().is_cancelled()`.
//!
//! [`Store::request_cancel`]: crate::store::Store::request_cancel

use crate::engine::{Engine, StopReason, write_progress};

pub(super) async fn watch(engine: &Engine) {
    let reports = engine.running.unwritten_progress(engine.clock.now());
    if !reports.is_empty() {
        write_progress(engine, reports).await;
    }
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
