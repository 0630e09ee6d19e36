//! [`TaskManagerBuilder`]: the settings of an engine, and starting it with its maintenance.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::{DEFAULT_CONCURRENCY, Engine, Settings};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::manager::TaskManager;
use crate::observer::{Observers, TaskObserver};
use crate::registry::registry;
use crate::store::{Deadline, MemoryStore, Retention, Store, StoreTimeouts};

impl TaskManager {
    /// A builder: the in-memory store, [`DEFAULT_CONCURRENCY`], no observers.
    pub fn builder() -> TaskManagerBuilder {
        TaskManagerBuilder::default()
    }

    /// A manager on a fresh in-memory store, for tests. Must be called inside a tokio runtime.
    ///
    /// # Panics
    ///
    /// When two tasks in the binary share a name (use the builder to get that as an error).
    pub fn in_memory() -> TaskManager {
        match TaskManagerBuilder::default().start_now() {
            Ok(manager) => manager,
            Err(err) => panic!("taskflow: {err}"),
        }
    }
}

/// Builds a [`TaskManager`].
pub struct TaskManagerBuilder {
    store: Option<Arc<dyn Store>>,
    concurrency: usize,
    observers: Vec<Arc<dyn TaskObserver>>,
    lease: Duration,
    retention: Retention,
    prune_every: Duration,
    recover: bool,
    poll_every: Duration,
    store_timeouts: StoreTimeouts,
    limits: Limits,
    #[cfg(feature = "sqlite")]
    sqlite: Option<std::path::PathBuf>,
}

impl Default for TaskManagerBuilder {
    /// The in-memory store, [`DEFAULT_CONCURRENCY`], no observers.
    fn default() -> Self {
        TaskManagerBuilder {
            store: None,
            concurrency: DEFAULT_CONCURRENCY,
            observers: Vec::new(),
            lease: Duration::from_secs(60),
            retention: Retention::default(),
            prune_every: Duration::from_secs(60),
            recover: true,
            poll_every: Duration::from_secs(1),
            store_timeouts: StoreTimeouts::default(),
            limits: Limits::default(),
            #[cfg(feature = "sqlite")]
            sqlite: None,
        }
    }
}

impl TaskManagerBuilder {
    /// Uses `store` instead of the in-memory default.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Uses the SQLite database at `path` (created if missing) as the store, opened by
    /// `build` with the default [`SqliteOptions`](crate::SqliteOptions).
    #[cfg(feature = "sqlite")]
    pub fn sqlite(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.sqlite = Some(path.as_ref().to_path_buf());
        self
    }

    /// Uses a store shared with other code.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// How many attempts may run at once (at least 1). Tasks beyond it wait in the store and
    /// start by priority as slots free up.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Adds an observer of lifecycle events.
    pub fn observer(mut self, observer: impl TaskObserver) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// How long a runner's hold on a running task lasts beyond the task's timeout.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long finished tasks are kept (default: [`Retention::default`]).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How often retention is applied (default: every minute).
    pub fn prune_every(mut self, every: Duration) -> Self {
        self.prune_every = every.max(Duration::from_millis(10));
        self
    }

    /// How often the producer asks the store for available tasks when nothing woke it
    /// (default: every second). Local enqueues, retries and delayed tasks enqueued here, and a
    /// shared store's notifications wake it at once; polling finds tasks enqueued by other
    /// instances of a store without notifications, and bounds how late a delayed task
    /// enqueued elsewhere starts.
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every.max(Duration::from_millis(10));
        self
    }

    /// With a store shared by several instances (PostgreSQL, MySQL, Redis): how long each of
    /// its operations may take before it is an error ([`StoreTimeouts::default`]: 5 s for
    /// one task's operations and durable enqueues, 60 s for statistics and maintenance). A
    /// database that hangs then answers enqueues with `503` within the bound, and the app
    /// keeps serving. An embedded store (SQLite, memory) has no such bound.
    pub fn store_timeouts(mut self, timeouts: StoreTimeouts) -> Self {
        self.store_timeouts = timeouts;
        self
    }

    /// The most a task may carry (arguments, tags, idempotency key) and produce (error text,
    /// log lines); default [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether `build` first rescues the tasks whose runner died (default: yes); later ones
    /// are rescued by the maintenance loop either way.
    pub fn recover(mut self, recover: bool) -> Self {
        self.recover = recover;
        self
    }

    /// Starts the manager: checks the registry (two tasks sharing a name is an error),
    /// rescues tasks left `running` by a dead process (requeued, failed as a poison pill, or
    /// `interrupted`), and starts the producer, which fetches every available task, and the
    /// maintenance services (lease renewal, rescue, retention).
    pub async fn build(#[allow(unused_mut)] mut self) -> Result<TaskManager> {
        #[cfg(feature = "sqlite")]
        if let Some(path) = self.sqlite.take() {
            self.store = Some(Arc::new(crate::store::SqliteStore::open(path)?));
        }
        let recover = self.recover;
        let engine = self.engine()?;
        crate::maintenance::campaign(&engine).await;
        if recover && engine.is_leading() {
            crate::maintenance::rescue(&engine).await?;
        }
        Ok(start(engine))
    }

    /// Starts the manager without waiting for anything (for [`TaskManager::in_memory`]).
    pub(crate) fn start_now(self) -> Result<TaskManager> {
        let engine = self.engine()?;
        // The in-memory store answers at once and has no other instance: this one leads.
        engine.lead_until(Some(chrono::DateTime::<chrono::Utc>::MAX_UTC));
        Ok(start(engine))
    }

    fn engine(self) -> Result<Arc<Engine>> {
        registry().check()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let mut store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let remote = store.enqueued_elsewhere();
        if remote.is_some() {
            store = Arc::new(Deadline::new(store, self.store_timeouts));
        }
        Ok(Engine::new(Settings {
            store,
            remote,
            observers: Observers::new(self.observers),
            runtime,
            concurrency: self.concurrency,
            lease: self.lease,
            retention: self.retention,
            prune_every: self.prune_every,
            poll_every: self.poll_every,
            limits: self.limits,
        }))
    }
}

/// Starts the producer and the maintenance services of `engine`.
fn start(engine: Arc<Engine>) -> TaskManager {
    engine.start_producer();
    crate::maintenance::start(&engine);
    TaskManager::from_engine(engine)
}
