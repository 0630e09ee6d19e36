//! Leadership: the cluster-wide services (the rescuer, the pruner, and later the periodic
//! scheduler) run on one instance per store. Each instance campaigns every third of a lease;
//! the leader's term is one lease, extended at each campaign, so when it dies another takes
//! over within one lease (at once when it shuts down cleanly: it resigns).

use crate::engine::Engine;

/// The name of the maintenance leadership in the store.
pub(crate) const MAINTENANCE: &str = "maintenance";

/// Takes or keeps the leadership; records whether this instance leads.
pub(crate) async fn campaign(engine: &Engine) {
    let now = engine.clock.now();
    let term = chrono::Duration::from_std(engine.lease).unwrap_or(chrono::Duration::MAX);
    let until = now + term;
    let leading = match engine.store.elect(MAINTENANCE, &engine.runner, now, until).await {
        Ok(leading) => leading,
        Err(err) => {
            tracing::warn!(error = %err, "taskflow: could not campaign for leadership; not leading until the store answers");
            false
        }
    };
    let was = engine.lead_until(leading.then_some(until));
    if leading != was {
        tracing::info!(runner = %engine.runner, leading, "taskflow: maintenance leadership changed");
    }
}

/// Gives the leadership up, at shutdown.
pub(crate) async fn resign(engine: &Engine) {
    if engine.lead_until(None)
        && let Err(err) = engine.store.resign(MAINTENANCE, &engine.runner).await
    {
        tracing::warn!(error = %err, "taskflow: could not resign leadership; another instance takes over when it lapses");
    }
}
