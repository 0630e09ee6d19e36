//! The maintenance services, each a loop of its own so that a slow one (a prune of a million
//! rows, a store that hangs until its bound) never delays another: [lease renewal](renewal)
//! of this instance's running tasks (every instance), and, on the [leader](leader) only, the
//! [rescuer](rescuer) of tasks whose runner died and the [pruner](pruner) of finished tasks
//! past retention, and the [scheduler] of periodic tasks; and on every instance the
//! [watcher](queues) of the queues' shared state, the [heartbeat](instances), and the
//! [attempts'](attempts) progress writer and cancel-request watcher; and, on a store with an
//! event log, the [relay](relay) of the cluster's live feed.

mod attempts;
mod counters;
mod instances;
mod leader;
mod pruner;
mod queues;
mod relay;
mod renewal;
mod rescuer;
mod scheduler;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;

pub(crate) use self::instances::{
    describe as describe_instance, forget as forget_instance, heartbeat,
};
pub(crate) use self::leader::{campaign, resign};
pub(crate) use self::queues::watch;
pub(crate) use self::rescuer::rescue;
pub(crate) use self::scheduler::declare as declare_schedules;
pub use self::scheduler::{ScheduleProblem, Scheduler, Tick};
pub(crate) use self::scheduler::{define as define_schedule, readable, slot_task};

/// Starts every maintenance service: renewal and the rescuer every third of a lease, the
/// pruner every `prune_every`, the queue and attempt watchers every poll interval, the
/// scheduler and the counters' folder every second (or poll interval, if shorter).
pub(crate) fn start(engine: &Arc<Engine>) {
    let tick = (engine.lease / 3).max(Duration::from_millis(10));
    periodic(engine, tick, |engine| Box::pin(renewal::renew(engine)));
    periodic(engine, tick, |engine| Box::pin(instances::heartbeat(engine)));
    periodic(engine, tick, |engine| Box::pin(leader::campaign(engine)));
    periodic(engine, tick, |engine| Box::pin(rescuer::rescue_quietly(engine)));
    periodic(engine, engine.prune_every, |engine| Box::pin(pruner::prune(engine)));
    periodic(engine, engine.poll_every, |engine| Box::pin(queues::watch(engine)));
    periodic(engine, engine.poll_every, |engine| Box::pin(attempts::watch(engine)));
    let every_second = engine.poll_every.min(Duration::from_secs(1));
    periodic(engine, every_second, |engine| Box::pin(scheduler::fire(engine)));
    periodic(engine, every_second, |engine| Box::pin(counters::fold(engine)));
    if engine.store.event_log().is_some() {
        engine.observers.feed().join_cluster();
        engine.runtime.spawn(relay::relay(Arc::downgrade(engine)));
    }
}

/// Spawns a loop that calls `work` every `every` until shutdown (or until the engine is
/// dropped).
fn periodic<F>(engine: &Arc<Engine>, every: Duration, work: F)
where
    F: for<'a> Fn(&'a Engine) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> + Send + 'static,
{
    let weak = Arc::downgrade(engine);
    let stopping = engine.stopping.clone();
    engine.runtime.spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stopping.cancelled() => return,
            }
            let Some(engine) = weak.upgrade() else { return };
            work(&engine).await;
        }
    });
}
