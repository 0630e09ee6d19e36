//! The counters' folder: on the leader, every second, the counter changes that a store keeps
//! apart from its counters (deltas, shards) are folded into them, and history older than two
//! hours is rolled up ([`Store::compact_counters`](crate::store::Store::compact_counters)).
//! Readers add what is not folded yet, so the less of it there is, the cheaper a read.

use crate::engine::Engine;

/// Folds on the leader only.
pub(super) async fn fold(engine: &Engine) {
    if !engine.is_leading() {
        return;
    }
    if let Err(err) = engine.store.compact_counters(engine.clock.now()).await {
        tracing::warn!(error = %err, "taskflow: could not fold the counters");
    }
}
