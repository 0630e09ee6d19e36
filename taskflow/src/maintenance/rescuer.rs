//! The rescuer: settles the tasks whose runner died (its lease expired): requeued
//! (`requeue_on_interrupt`), failed as a poison pill after too many, or `interrupted`. Atomic
//! per task in every store, so instances rescuing at once settle each task once.

use crate::engine::Engine;
use crate::store::{MAX_RECOVERIES, StoreError};

/// Rescues what there is to rescue; wakes the producer for requeued tasks.
pub(crate) async fn rescue(engine: &Engine) -> Result<(), StoreError> {
    let reclaimed = engine.store.reclaim_expired(engine.clock.now(), MAX_RECOVERIES).await?;
    if !reclaimed.interrupted.is_empty() || !reclaimed.poisoned.is_empty() {
        tracing::warn!(
            interrupted = reclaimed.interrupted.len(),
            poisoned = reclaimed.poisoned.len(),
            requeued = reclaimed.requeued.len(),
            "taskflow: recovered tasks left running by a process that died"
        );
    }
    if !reclaimed.requeued.is_empty() {
        engine.queues.wake_all();
    }
    Ok(())
}

/// Rescues on the leader only.
pub(super) async fn rescue_quietly(engine: &Engine) {
    if !engine.is_leading() {
        return;
    }
    if let Err(err) = rescue(engine).await {
        tracing::error!(error = %err, "taskflow: could not reclaim expired tasks");
    }
}
