//! [`TaskManagerBuilder`]: the settings of an engine, and starting it with its maintenance.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::queues::Queues;
use crate::engine::{DEFAULT_CONCURRENCY, Engine, Settings};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::manager::TaskManager;
use crate::observer::{Observers, TaskObserver};
use crate::queue::Queue;
use crate::registry::registry;
use crate::store::{Deadline, MemoryStore, Retention, Store, StoreTimeouts};

/// How long the per-minute history is kept by default: a day.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(24 * 3600);

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
    history: Duration,
    prune_every: Duration,
    recover: bool,
    poll_every: Duration,
    store_timeouts: StoreTimeouts,
    limits: Limits,
    queues: Vec<(String, Queue)>,
    run_queues: Option<Vec<String>>,
    declare_schedules: bool,
    trace_link: crate::trace::TraceLink,
    #[cfg(feature = "encryption")]
    keyring: Option<crate::seal::Keyring>,
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
            history: DEFAULT_HISTORY,
            prune_every: Duration::from_secs(60),
            recover: true,
            poll_every: Duration::from_secs(1),
            store_timeouts: StoreTimeouts::default(),
            limits: Limits::default(),
            queues: Vec::new(),
            run_queues: None,
            declare_schedules: true,
            trace_link: crate::trace::TraceLink::default(),
            #[cfg(feature = "encryption")]
            keyring: None,
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

    /// How many attempts of the [default queue](crate::DEFAULT_QUEUE), and of every queue
    /// that sets no concurrency of its own, may run at once on this instance (at least 1).
    /// Tasks beyond it wait in the store and start by priority as slots free up.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Declares the queue `name` with its settings (declaring [`DEFAULT_QUEUE`](crate::DEFAULT_QUEUE)
    /// replaces the default one's; declaring a name twice keeps the last). Every queue that a
    /// registered `#[task(queue = "...")]` names must be declared, or `build()` fails naming
    /// the task; an enqueue into an undeclared queue fails with
    /// [`Error::UnknownQueue`]. A zero concurrency, global concurrency or `max_pending` fails
    /// `build()` with [`Error::InvalidQueue`].
    ///
    /// Each queue has its own producer and slots: a flood of one kind of task does not hold
    /// up another. `max_pending` is checked at enqueue against the store's count of the
    /// queue's pending tasks plus this instance's enqueues since that count was read. The
    /// count is read every poll interval and, while enqueues flow into the queue or it
    /// refuses, again in the background whenever it is 50 ms old (counting no further than
    /// the bound, so the read stays cheap). One instance never holds more; several instances
    /// on a shared store can overshoot the bound by what the others enqueue within about
    /// 50 ms and one write batch (two over a bound of 100 in the three-instance test).
    ///
    /// ```rust,standalone_crate
    /// use taskflow::{Queue, TaskManager};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> taskflow::Result<()> {
    /// let manager = TaskManager::builder()
    ///     .concurrency(16) // the default queue
    ///     .queue("emails", Queue::new().concurrency(4).max_pending(10_000))
    ///     .queue("reports", Queue::new().concurrency(1).global_concurrency(2))
    ///     .build()
    ///     .await?;
    /// let queues = manager.queues().await?;
    /// assert_eq!(queues.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(), ["default", "emails", "reports"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn queue(mut self, name: impl Into<String>, queue: Queue) -> Self {
        let name = name.into();
        self.queues.retain(|(declared, _)| *declared != name);
        self.queues.push((name, queue));
        self
    }

    /// The queues this instance runs (fetches from), by name; all declared queues when not
    /// called, none for `run_queues([] as [&str; 0])` (a process that only enqueues). An
    /// instance may enqueue into every declared queue, run here or not, so web and worker
    /// processes can be split. A name not declared fails `build()`.
    pub fn run_queues<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.run_queues = Some(names.into_iter().map(Into::into).collect());
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

    /// How long the per-minute history of what happened to tasks is kept (default: 24
    /// hours): the throughput chart, `GET {p}/metrics/history`, and the min, max and p95
    /// durations of `GET {p}/metrics` come from it. Trimmed with retention.
    pub fn history(mut self, window: Duration) -> Self {
        self.history = window.max(Duration::from_secs(60));
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

    /// With feature `opentelemetry`: how each attempt's span relates to the span that
    /// enqueued the task, whose context is stored with the task (its `traceparent` and
    /// `tracestate` tags): its child ([`TraceLink::Parent`](crate::TraceLink::Parent), the
    /// default) or a new trace linked to it ([`TraceLink::Link`](crate::TraceLink::Link)).
    /// Without the feature, spans are never connected and this does nothing.
    ///
    /// ```rust
    /// # async fn run() -> taskflow::Result<()> {
    /// use taskflow::{TaskManager, TraceLink};
    ///
    /// let manager = TaskManager::builder()
    ///     // The default; `TraceLink::Link` starts a trace per attempt that links to the
    ///     // request, for tasks that run hours after it.
    ///     .trace_attempts(TraceLink::Parent)
    ///     .build()
    ///     .await?;
    /// # manager.shutdown(std::time::Duration::from_secs(1)).await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn trace_attempts(mut self, how: crate::trace::TraceLink) -> Self {
        self.trace_link = how;
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

    /// Seals every task's arguments and result, and every schedule's arguments, before they
    /// reach the store, with the keyring's primary key (XChaCha20-Poly1305, bound to the task),
    /// and opens them with whichever key of the ring sealed them (feature `encryption`).
    /// A keyring with no primary key fails `build()`.
    ///
    /// ```rust,standalone_crate
    /// use taskflow::{Key, Keyring, TaskManager, task};
    ///
    /// #[task]
    /// async fn charge(card: String, cents: u64) {
    ///     let _ = (card, cents);
    /// }
    ///
    /// async fn start() -> Result<TaskManager, Box<dyn std::error::Error>> {
    ///     // 32 random bytes in base64 each (`openssl rand -base64 32`); the newest seals.
    ///     let keyring = Keyring::new()
    ///         .primary("2026-12", Key::from_env("TASKFLOW_KEY_2026_12")?)?
    ///         .old("2026-06", Key::from_env("TASKFLOW_KEY_2026_06")?)?;
    ///     let manager = TaskManager::builder().encryption(keyring).build().await?;
    ///     manager.add_task(charge, ("4111 1111 1111 1111".to_owned(), 1999));
    ///     Ok(manager)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # unsafe { std::env::set_var("TASKFLOW_KEY_2026_12", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=") };
    /// # unsafe { std::env::set_var("TASKFLOW_KEY_2026_06", "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=") };
    /// let manager = start().await?;
    /// assert!(manager.encrypts());
    /// # manager.shutdown(std::time::Duration::from_secs(5)).await;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "encryption")]
    pub fn encryption(mut self, keyring: crate::seal::Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Whether `build()` stores the schedules the registered tasks declare
    /// (`#[task(every = "5m")]`, each named after its task); on by default. Turn it off in a
    /// process that must not (re)define them, such as an older binary during a rolling
    /// deploy: the last definition stored wins. Firing is the leader's whatever this says.
    pub fn declared_schedules(mut self, declare: bool) -> Self {
        self.declare_schedules = declare;
        self
    }

    /// Starts the manager: checks the registry (two tasks sharing a name is an error, and so
    /// is a task whose queue is not declared) and the queues' settings, reads the queues'
    /// shared state,
    /// rescues tasks left `running` by a dead process (requeued, failed as a poison pill, or
    /// `interrupted`), and starts the producer, which fetches every available task, and the
    /// maintenance services (lease renewal, rescue, retention, schedules). Stores the
    /// schedules the tasks declare (see [`TaskManagerBuilder::declared_schedules`]).
    pub async fn build(#[allow(unused_mut)] mut self) -> Result<TaskManager> {
        #[cfg(feature = "sqlite")]
        if let Some(path) = self.sqlite.take() {
            self.store = Some(Arc::new(crate::store::SqliteStore::open(path)?));
        }
        let (recover, declare) = (self.recover, self.declare_schedules);
        let engine = self.engine()?;
        if declare {
            crate::maintenance::declare_schedules(&engine).await?;
        }
        crate::maintenance::watch(&engine).await;
        crate::maintenance::heartbeat(&engine).await;
        crate::maintenance::campaign(&engine).await;
        if recover && engine.is_leading() {
            crate::maintenance::rescue(&engine).await?;
        }
        Ok(start(engine))
    }

    /// Starts the manager without waiting for anything (for [`TaskManager::in_memory`]).
    pub(crate) fn start_now(self) -> Result<TaskManager> {
        let declare = self.declare_schedules;
        let engine = self.engine()?;
        if declare {
            let defining = Arc::clone(&engine);
            engine.runtime.spawn(async move {
                if let Err(err) = crate::maintenance::declare_schedules(&defining).await {
                    tracing::error!(error = %err, "taskflow: could not define the declared schedules");
                }
            });
        }
        // The in-memory store answers at once and has no other instance: this one leads.
        engine.lead_until(Some(chrono::DateTime::<chrono::Utc>::MAX_UTC));
        Ok(start(engine))
    }

    fn engine(self) -> Result<Arc<Engine>> {
        registry().check()?;
        let caps: Vec<(&'static str, &'static str, u32)> = registry()
            .iter()
            .filter_map(|task| {
                let options = task.options();
                Some((options.default_queue(), task.name(), options.concurrency_limit()?))
            })
            .collect();
        let queues = Queues::new(
            self.queues,
            self.run_queues.as_deref(),
            self.concurrency,
            self.poll_every,
            &caps,
        )?;
        for task in registry().iter() {
            let queue = task.options().default_queue();
            if queues.get(queue).is_none() {
                return Err(Error::UndeclaredQueue {
                    task: task.name().to_owned(),
                    queue: queue.to_owned(),
                    location: task.location(),
                });
            }
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let mut store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let remote = store.enqueued_elsewhere();
        if remote.is_some() {
            store = Arc::new(Deadline::new(store, self.store_timeouts));
        }
        #[allow(unused_mut)]
        let mut sealing = crate::engine::Sealing::default();
        #[cfg(feature = "encryption")]
        if let Some(keyring) = self.keyring {
            let keyring =
                Arc::new(keyring.checked().map_err(|e| Error::Encryption(e.to_string()))?);
            sealing.raw = Some(Arc::clone(&store));
            store = Arc::new(crate::store::sealed::Sealed::new(store, Arc::clone(&keyring)));
            sealing.keyring = Some(keyring);
        }
        Ok(Engine::new(Settings {
            store,
            remote,
            observers: Observers::new(self.observers),
            runtime,
            queues,
            lease: self.lease,
            retention: self.retention,
            history: self.history,
            prune_every: self.prune_every,
            poll_every: self.poll_every,
            limits: self.limits,
            sealing,
            trace_link: self.trace_link,
        }))
    }
}

/// Starts the producer and the maintenance services of `engine`.
fn start(engine: Arc<Engine>) -> TaskManager {
    engine.sealing.check_keys(&engine.runtime);
    engine.start_producers();
    crate::maintenance::start(&engine);
    TaskManager::from_engine(engine)
}
