//! The engine that runs tasks, built around fetching: a [producer](producer) asks the store for
//! as many *available* tasks as there are free slots, an [executor](executor) runs one attempt
//! of each, and a [completer](completer) writes each outcome: a final status, or back to the
//! store to wait for a retry or a snooze. Nothing waits in memory: a task that is not due
//! holds no slot, no timer and no future. [`TaskManager`](crate::TaskManager) is the facade.

mod clock;
mod completer;
mod completions;
mod executor;
mod intake;
mod producer;
pub(crate) mod queues;
mod records;
mod running;
mod wake;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use self::executor::write_progress;
use self::queues::Queues;
pub(crate) use self::records::{new_record, retry_record};
pub(crate) use self::running::{Running, StopReason};
use crate::context::TaskContext;
use crate::enqueue::Enqueuer;
use crate::error::Result;
use crate::id::TaskId;
use crate::limits::Limits;
use crate::observer::Observers;
use crate::record::TaskRecord;
use crate::store::{Lease, Retention, Store};

/// The default number of attempts that may run at once.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// How long a request's tasks are held back at most when its response never comes out (the
/// process died): then any instance may run them.
const REQUEST_HOLD: Duration = Duration::from_secs(10);

/// The state every part of the engine shares.
pub(crate) struct Engine {
    pub(crate) store: Arc<dyn Store>,
    /// This process incarnation's runner id: the owner of its leases.
    pub(crate) runner: Arc<str>,
    pub(crate) observers: Observers,
    pub(crate) runtime: tokio::runtime::Handle,
    /// The executors, which shutdown waits for.
    pub(crate) tracker: TaskTracker,
    /// Cancelled when shutdown starts: the producer stops fetching.
    pub(crate) stopping: CancellationToken,
    pub(crate) running: Running,
    /// The queues, each with its slots and its producer's wake.
    pub(crate) queues: Queues,
    /// A shared store's signal that another instance enqueued (`None`: not shared).
    pub(crate) remote: Option<Arc<Notify>>,
    pub(crate) lease: Duration,
    /// The expiry of the last fetch's lease, in microseconds: each fetch gets a later one, so
    /// that a fetch whose answer was lost can be released by its lease alone.
    last_expiry: AtomicI64,
    pub(crate) retention: Retention,
    /// How long the per-minute history is kept.
    pub(crate) history: Duration,
    pub(crate) prune_every: Duration,
    pub(crate) poll_every: Duration,
    /// The most a task may carry.
    pub(crate) limits: Limits,
    pub(crate) clock: clock::Clock,
    /// Until when (microseconds on the engine's clock) this instance's term as leader of the
    /// cluster-wide maintenance runs; 0 when it does not lead. The term lapses here when it
    /// lapses in the store, even if no campaign answers meanwhile (a hung store), so two
    /// instances never both act as leader.
    leading_until: AtomicI64,
    /// The completer's writes, in batches.
    pub(crate) completions: completions::Completions,
    /// When this engine was made: the instance's start, in its heartbeats.
    pub(crate) started_at: chrono::DateTime<chrono::Utc>,
    /// What seals records written around the store (in a caller's transaction).
    pub(crate) sealing: Sealing,
    /// How attempts' spans join the trace of their enqueue.
    pub(crate) trace_link: crate::trace::TraceLink,
}

/// The keyring that seals tasks, when encryption is on (see the store's `Sealed`).
#[derive(Clone, Default)]
pub(crate) struct Sealing {
    #[cfg(feature = "encryption")]
    pub(crate) keyring: Option<Arc<crate::seal::Keyring>>,
    /// The store under the sealing wrapper, which holds the sealed values as they are.
    #[cfg(feature = "encryption")]
    pub(crate) raw: Option<Arc<dyn Store>>,
}

impl Sealing {
    /// Whether arguments and results are sealed at rest.
    pub(crate) fn enabled(&self) -> bool {
        #[cfg(feature = "encryption")]
        return self.keyring.is_some();
        #[cfg(not(feature = "encryption"))]
        false
    }

    /// Warns, in the background, of the pending tasks sealed with keys the keyring lacks:
    /// how many wait for each key (they stay pending until it is given back).
    pub(crate) fn check_keys(&self, runtime: &tokio::runtime::Handle) {
        #[cfg(feature = "encryption")]
        if let (Some(keyring), Some(raw)) = (self.keyring.clone(), self.raw.clone()) {
            runtime.spawn(async move {
                match crate::store::reseal::waiting_for_keys(&keyring, &*raw).await {
                    Ok(waiting) => {
                        for (key, tasks) in waiting {
                            tracing::warn!(key = %key, tasks, "taskflow: {tasks} stored tasks are sealed with key `{key}`, which the keyring lacks; they stay pending until it is given back");
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "taskflow: could not look for tasks sealed with missing keys");
                    }
                }
            });
        }
        #[cfg(not(feature = "encryption"))]
        let _ = runtime;
    }

    /// `record` sealed, as the store's wrapper would before writing it.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn seal(&self, record: TaskRecord) -> Result<TaskRecord, crate::store::StoreError> {
        #[cfg(feature = "encryption")]
        if let Some(keyring) = &self.keyring {
            return crate::store::sealed::seal_record(keyring, record);
        }
        Ok(record)
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("runner", &self.runner).finish_non_exhaustive()
    }
}

/// What an engine is made of, from the builder.
pub(crate) struct Settings {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) remote: Option<Arc<Notify>>,
    pub(crate) observers: Observers,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) queues: Queues,
    pub(crate) lease: Duration,
    pub(crate) retention: Retention,
    pub(crate) history: Duration,
    pub(crate) prune_every: Duration,
    pub(crate) poll_every: Duration,
    pub(crate) limits: Limits,
    pub(crate) sealing: Sealing,
    pub(crate) trace_link: crate::trace::TraceLink,
}

impl Engine {
    /// An engine, not started yet: a fresh runner id, every slot free, not leading.
    pub(crate) fn new(settings: Settings) -> Arc<Engine> {
        let completions =
            completions::Completions::spawn(Arc::clone(&settings.store), &settings.runtime);
        Arc::new(Engine {
            completions,
            started_at: chrono::Utc::now(),
            store: settings.store,
            runner: format!("{}-{}", std::process::id(), TaskId::new()).into(),
            observers: settings.observers,
            runtime: settings.runtime,
            tracker: TaskTracker::new(),
            stopping: CancellationToken::new(),
            running: Running::default(),
            queues: settings.queues,
            remote: settings.remote,
            lease: settings.lease,
            last_expiry: AtomicI64::new(0),
            retention: settings.retention,
            history: settings.history,
            prune_every: settings.prune_every,
            poll_every: settings.poll_every,
            limits: settings.limits,
            clock: clock::Clock::new(),
            leading_until: AtomicI64::new(0),
            sealing: settings.sealing,
            trace_link: settings.trace_link,
        })
    }

    /// Whether this instance leads now: its last won term has not lapsed.
    pub(crate) fn is_leading(&self) -> bool {
        self.clock.now().timestamp_micros() < self.leading_until.load(Ordering::Acquire)
    }

    /// Records a won term ending at `until`, or (`None`) that this instance does not lead;
    /// returns whether it led before.
    pub(crate) fn lead_until(&self, until: Option<DateTime<Utc>>) -> bool {
        let was = self.is_leading();
        let until = until.map_or(0, |at| at.timestamp_micros());
        self.leading_until.store(until, Ordering::Release);
        was
    }

    /// Starts a producer for each queue this instance runs, which fetches until shutdown,
    /// and passes a shared store's notifications on to them.
    pub(crate) fn start_producers(self: &Arc<Self>) {
        for runner in self.queues.iter().filter(|runner| runner.runs) {
            producer::spawn(self, runner);
        }
        if let Some(remote) = self.remote.clone() {
            let (weak, stopping) = (Arc::downgrade(self), self.stopping.clone());
            self.runtime.spawn(async move {
                loop {
                    tokio::select! {
                        () = remote.notified() => {}
                        () = stopping.cancelled() => return,
                    }
                    let Some(engine) = weak.upgrade() else { return };
                    engine.queues.wake_all();
                }
            });
        }
    }

    /// A lease for a fetch starting now, expiring strictly after every earlier fetch's.
    pub(crate) fn fetch_lease(&self) -> Lease {
        let span = chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
        let wanted = (self.clock.now() + span).timestamp_micros();
        let previous = self
            .last_expiry
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| Some(wanted.max(last + 1)))
            .unwrap_or(wanted);
        let micros = wanted.max(previous + 1);
        Lease {
            owner: Arc::clone(&self.runner),
            expires_at: DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// When leases renewed now expire.
    pub(crate) fn renewed_expiry(&self) -> DateTime<Utc> {
        self.clock.now() + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX)
    }

    /// The context a task of `record` runs in and reports through.
    pub(crate) fn context_for(self: &Arc<Self>, record: &TaskRecord) -> TaskContext {
        let enqueuer: Arc<dyn Enqueuer> = Arc::clone(self) as Arc<dyn Enqueuer>;
        TaskContext::new(
            record.task_id,
            (record.func_name.as_str().into(), record.queue.as_str().into()),
            Arc::new(record.tags.clone()),
            self.observers.clone(),
            Some(enqueuer),
            self.limits,
        )
    }
}
