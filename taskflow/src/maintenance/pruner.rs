//! The pruner: deletes finished tasks beyond the retention (by age and by count), and the
//! per-minute history beyond its window. Pending and running
//! tasks are never pruned.

use crate::engine::Engine;

/// Prunes on the leader only.
pub(super) async fn prune(engine: &Engine) {
    if !engine.is_leading() {
        return;
    }
    let now = engine.clock.now();
    if let Err(err) = engine.store.prune(&engine.retention, now).await {
        tracing::error!(error = %err, "taskflow: could not prune finished tasks");
    }
    let window = chrono::Duration::from_std(engine.history).unwrap_or(chrono::Duration::MAX);
    let cutoff = now.checked_sub_signed(window).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    if let Err(err) = engine.store.trim_history(cutoff).await {
        tracing::error!(error = %err, "taskflow: could not trim the metrics history");
    }
}
