//! Lease renewal: every instance extends the leases of the tasks it is running, so that they
//! are not rescued while they run. Batched: one store call for all of them.

use crate::engine::Engine;

pub(super) async fn renew(engine: &Engine) {
    let ids = engine.running.ids();
    if ids.is_empty() {
        return;
    }
    let until = engine.renewed_expiry();
    if let Err(err) = engine.store.renew_leases(&engine.runner, &ids, until).await {
        tracing::error!(error = %err, "taskflow: could not renew task leases");
    }
}
