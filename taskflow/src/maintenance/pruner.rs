//! The pruner: deletes finished tasks beyond the retention (by age and by count). Pending and
//! running tasks are never pruned.

use crate::engine::Engine;

/// Prunes on the leader only.
pub(super) async fn prune(engine: &Engine) {
    if !engine.is_leading() {
        return;
    }
    if let Err(err) = engine.store.prune(&engine.retention, engine.clock.now()).await {
        tracing::error!(error = %err, "taskflow: could not prune finished tasks");
    }
}
