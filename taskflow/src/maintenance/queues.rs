//! The queue watcher, on every instance: reads the queues' shared state (paused, limits set
//! at run time) every poll interval and applies it, and, for queues with a bound on pending
//! tasks, the store's pending counts that the bound is checked against.

use std::sync::Arc;

use crate::engine::Engine;
use crate::engine::queues::{QueueRunner, count};

/// Reads and applies the shared state, and the counts where a bound needs them.
pub(crate) async fn watch(engine: &Engine) {
    match engine.store.queue_states().await {
        Ok(states) => engine.queues.apply(&states),
        Err(err) => tracing::debug!(error = %err, "taskflow: could not read the queues' state"),
    }
    let bounded: Vec<Arc<QueueRunner>> =
        engine.queues.iter().filter(|runner| runner.max_pending().is_some()).cloned().collect();
    count(engine, &bounded).await;
}
