//! The queues an engine knows: each with its limits, its slots and, when this instance runs
//! it, the wake of its own producer. The shared state (paused, limits changed at run time)
//! comes from the store, read every poll interval (see `maintenance::queues`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Engine;
use super::wake::Wake;
use crate::error::{Error, Result};
use crate::queue::{Queue, QueueState};

/// How old a bounded queue's count may grow while enqueues flow (or after a refusal) before
/// it is read from the store again: with several instances on one store, the bound can be
/// overshot by what the others enqueue within about this long (and one write batch).
const RECOUNT_AFTER: Duration = Duration::from_millis(50);

/// One queue as this engine sees it.
#[derive(Debug)]
pub(crate) struct QueueRunner {
    pub(crate) name: Arc<str>,
    /// Whether this instance fetches from it.
    pub(crate) runs: bool,
    /// The builder's settings.
    pub(crate) config: Queue,
    /// The per-instance concurrency when the store sets none.
    base_concurrency: usize,
    /// The per-instance concurrency in force.
    limit: AtomicUsize,
    /// Slots taken: attempts running, and slots held by a fetch in flight.
    taken: AtomicUsize,
    /// Fires when a slot frees or the limit grows.
    freed: Notify,
    pub(crate) wake: Wake,
    /// The store's paused flag, as last read.
    paused: AtomicBool,
    /// The bound on pending tasks in force (0: none).
    max_pending: AtomicU64,
    /// This instance's estimate of the queue's pending tasks.
    pending: Mutex<PendingEstimate>,
    /// Enqueues into the queue by this instance, ever.
    enqueued: AtomicU64,
    /// Whether a recount is under way.
    pub(crate) recounting: AtomicBool,
    /// The caps of the tasks declared in this queue with `#[task(concurrency = N)]`.
    pub(crate) task_limits: Vec<(&'static str, u32)>,
    /// Fetches in a row that a rate limit left empty (see `producer`).
    pub(crate) rate_misses: AtomicUsize,
}

/// The pending count as last read from the store, and this instance's enqueues since.
#[derive(Debug)]
struct PendingEstimate {
    /// The store's count.
    counted: u64,
    /// `enqueued` when the count was taken (before the read: later ones are counted twice at
    /// worst, which errs toward refusing).
    enqueued_then: u64,
    /// When it was read.
    read_at: Option<Instant>,
}

impl QueueRunner {
    fn new(
        name: &str,
        config: Queue,
        runs: bool,
        default_concurrency: usize,
        task_limits: Vec<(&'static str, u32)>,
    ) -> QueueRunner {
        let base_concurrency = config.concurrency_limit().unwrap_or(default_concurrency);
        QueueRunner {
            name: name.into(),
            runs,
            base_concurrency,
            limit: AtomicUsize::new(base_concurrency),
            taken: AtomicUsize::new(0),
            freed: Notify::new(),
            wake: Wake::default(),
            paused: AtomicBool::new(false),
            max_pending: AtomicU64::new(config.max_pending_limit().unwrap_or(0)),
            pending: Mutex::new(PendingEstimate { counted: 0, enqueued_then: 0, read_at: None }),
            enqueued: AtomicU64::new(0),
            recounting: AtomicBool::new(false),
            task_limits,
            rate_misses: AtomicUsize::new(0),
            config,
        }
    }

    /// Whether its fetches count the tasks running everywhere (a global or a per-task
    /// limit): a task finished here may then let a fetch take more.
    pub(crate) fn counts_running(&self) -> bool {
        self.config.global_concurrency_limit().is_some() || !self.task_limits.is_empty()
    }

    /// The per-instance concurrency in force.
    pub(crate) fn concurrency(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    /// The bound on pending tasks in force.
    pub(crate) fn max_pending(&self) -> Option<u64> {
        Some(self.max_pending.load(Ordering::Acquire)).filter(|limit| *limit > 0)
    }

    /// How many slots are taken (running attempts and fetches in flight).
    pub(crate) fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }

    /// Takes up to `most` free slots, waiting until at least one is free.
    pub(crate) async fn take_slots(&self, most: usize) -> usize {
        loop {
            let limit = self.concurrency();
            let taken = self.taken.load(Ordering::Acquire);
            if taken < limit {
                let want = (limit - taken).min(most);
                if self
                    .taken
                    .compare_exchange(taken, taken + want, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return want;
                }
                continue;
            }
            // `notify_one` keeps a permit when nobody waits, so a slot freed between the
            // check and this wait is not missed.
            self.freed.notified().await;
        }
    }

    /// Gives back `n` slots.
    pub(crate) fn give_back(&self, n: usize) {
        if n > 0 {
            self.taken.fetch_sub(n, Ordering::AcqRel);
            self.freed.notify_one();
        }
    }

    /// The per-instance concurrency that `state` (or, without one, the builder) sets.
    pub(crate) fn concurrency_in(&self, state: Option<&QueueState>) -> usize {
        state
            .and_then(|s| s.concurrency)
            .map_or(self.base_concurrency, |n| usize::try_from(n).unwrap_or(usize::MAX))
            .max(1)
    }

    /// The bound on pending tasks that `state` (or, without one, the builder) sets.
    pub(crate) fn max_pending_in(&self, state: Option<&QueueState>) -> Option<u64> {
        state.and_then(|s| s.max_pending).or(self.config.max_pending_limit())
    }

    /// Applies the store's state (`None`: the queue has none, the builder's settings hold).
    pub(crate) fn apply(&self, state: Option<&QueueState>) {
        let concurrency = self.concurrency_in(state);
        let before = self.limit.swap(concurrency, Ordering::AcqRel);
        if concurrency > before {
            self.freed.notify_one();
        }
        self.max_pending.store(self.max_pending_in(state).unwrap_or(0), Ordering::Release);
        let paused = state.is_some_and(|s| s.paused);
        let was_paused = self.paused.swap(paused, Ordering::AcqRel);
        if was_paused && !paused {
            self.wake.now(); // resumed
        }
    }

    /// The enqueue count to pair with a pending count about to be read.
    pub(crate) fn enqueued_now(&self) -> u64 {
        self.enqueued.load(Ordering::Acquire)
    }

    /// Records the store's pending count, read after `enqueued_then` of this instance's
    /// enqueues.
    pub(crate) fn counted(&self, pending: u64, enqueued_then: u64) {
        let mut estimate = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        *estimate =
            PendingEstimate { counted: pending, enqueued_then, read_at: Some(Instant::now()) };
    }

    /// Admits one enqueue, or refuses it when the queue holds its bound by this instance's
    /// estimate. Either way, `true` asks for a recount: the queue has a bound and its last
    /// count is old enough (the other instances on the store may have enqueued since).
    pub(crate) fn admit(&self) -> (std::result::Result<(), u64>, bool) {
        let mut stale = false;
        if let Some(limit) = self.max_pending() {
            let estimate = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            stale = estimate.read_at.is_none_or(|at| at.elapsed() >= RECOUNT_AFTER);
            let since = self.enqueued_now().saturating_sub(estimate.enqueued_then);
            if estimate.counted.saturating_add(since) >= limit {
                return (Err(limit), stale);
            }
        }
        self.enqueued.fetch_add(1, Ordering::AcqRel);
        (Ok(()), stale)
    }

    /// Takes back an admitted enqueue that stored nothing (a duplicate, an error).
    pub(crate) fn unadmit(&self) {
        self.enqueued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A slot of a queue, held by a running attempt; freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<QueueRunner>);

impl Slot {
    /// One of the slots `runner` gave a fetch.
    pub(crate) fn of(runner: &Arc<QueueRunner>) -> Slot {
        Slot(Arc::clone(runner))
    }

    /// The queue it is a slot of.
    pub(crate) fn runner(&self) -> Arc<QueueRunner> {
        Arc::clone(&self.0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // A producer held back by a global or per-task limit is woken by the executor once
        // the outcome is written: before, the store still counts the task as running.
        self.0.give_back(1);
    }
}

/// Every queue the engine knows, by name.
#[derive(Debug)]
pub(crate) struct Queues {
    by_name: HashMap<Arc<str>, Arc<QueueRunner>>,
    /// How long a refused caller should wait, in seconds.
    pub(crate) retry_after: u64,
}

impl Queues {
    /// The queues of `declared` (the default queue always among them), running those that
    /// `runs` names (all of them when `None`). Checks the settings.
    pub(crate) fn new(
        declared: Vec<(String, Queue)>,
        runs: Option<&[String]>,
        default_concurrency: usize,
        poll: Duration,
        caps: &[(&'static str, &'static str, u32)],
    ) -> Result<Queues> {
        let mut by_name: HashMap<Arc<str>, Arc<QueueRunner>> = HashMap::new();
        let default = (crate::queue::DEFAULT_QUEUE.to_owned(), Queue::new());
        let has_default = declared.iter().any(|(name, _)| name == crate::queue::DEFAULT_QUEUE);
        let all = (!has_default).then_some(default).into_iter().chain(declared);
        for (name, config) in all {
            check(&name, &config)?;
            let runs = runs.is_none_or(|names| names.contains(&name));
            let limits = caps
                .iter()
                .filter(|(queue, _, _)| *queue == name)
                .map(|(_, func, cap)| (*func, *cap))
                .collect();
            let runner = QueueRunner::new(&name, config, runs, default_concurrency, limits);
            by_name.insert(Arc::clone(&runner.name), Arc::new(runner));
        }
        if let Some(names) = runs
            && let Some(unknown) = names.iter().find(|n| !by_name.contains_key(n.as_str()))
        {
            return Err(Error::UnknownQueue { queue: unknown.clone() });
        }
        Ok(Queues { by_name, retry_after: crate::queue::retry_after(poll) })
    }

    /// The queue `name`, if declared.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<QueueRunner>> {
        self.by_name.get(name)
    }

    /// Every queue, in no order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<QueueRunner>> {
        self.by_name.values()
    }

    /// Wakes the producer of `name`, if this instance runs it.
    pub(crate) fn wake(&self, name: &str) {
        if let Some(runner) = self.get(name) {
            runner.wake.now();
        }
    }

    /// Wakes every producer.
    pub(crate) fn wake_all(&self) {
        for runner in self.by_name.values() {
            runner.wake.now();
        }
    }

    /// Applies the store's states to every queue.
    pub(crate) fn apply(&self, states: &[QueueState]) {
        for runner in self.by_name.values() {
            runner.apply(states.iter().find(|s| *s.name == *runner.name));
        }
    }
}

/// The builder's settings of `name`, checked.
fn check(name: &str, config: &Queue) -> Result<()> {
    let invalid = |reason: &str| {
        Err(Error::InvalidQueue { queue: name.to_owned(), reason: reason.to_owned() })
    };
    if !crate::queue::is_valid_queue_name(name) {
        return invalid("a queue name is 1 to 64 ASCII letters, digits, `_`, `-` or `.`");
    }
    if config.concurrency_limit() == Some(0) {
        return invalid("`concurrency` must be at least 1");
    }
    if config.global_concurrency_limit() == Some(0) {
        return invalid("`global_concurrency` must be at least 1");
    }
    if config.max_pending_limit() == Some(0) {
        return invalid("`max_pending` must be at least 1");
    }
    if let Some(rate) = config.rate() {
        if rate.limit == 0 || rate.per.is_zero() {
            return invalid("a rate limit must let at least 1 task start per a non-zero span");
        }
        if rate.burst == 0 {
            return invalid("a rate limit's `burst` must be at least 1");
        }
    }
    Ok(())
}

/// Reads the pending counts of `runners` from the store, once their earlier enqueues are
/// durable.
pub(crate) async fn count(engine: &Engine, runners: &[Arc<QueueRunner>]) {
    if runners.is_empty() {
        return;
    }
    let enqueued: Vec<u64> = runners.iter().map(|runner| runner.enqueued_now()).collect();
    if let Err(err) = engine.store.flush().await {
        tracing::debug!(error = %err, "taskflow: could not flush before counting the queues");
        return;
    }
    for (runner, enqueued) in runners.iter().zip(enqueued) {
        // Counting stops at the bound: the read costs no more however long the queue grows.
        let bound = runner.max_pending().unwrap_or(u64::MAX);
        match engine.store.count_pending(&runner.name, bound).await {
            Ok(pending) => runner.counted(pending, enqueued),
            Err(err) => {
                tracing::debug!(error = %err, queue = %runner.name, "taskflow: could not count the queue's tasks");
            }
        }
    }
}

/// Counts `runner`'s queue again soon, in the background (one recount at a time): while
/// enqueues flow into it and its count is old, so that other instances' enqueues are seen
/// within [`RECOUNT_AFTER`], and after it refused one, so that it admits again as soon as
/// the queue has drained.
pub(crate) fn recount(engine: &Arc<Engine>, runner: &Arc<QueueRunner>) {
    if runner.recounting.swap(true, Ordering::AcqRel) {
        return;
    }
    let (engine, runner) = (Arc::clone(engine), Arc::clone(runner));
    engine.runtime.clone().spawn(async move {
        count(&engine, std::slice::from_ref(&runner)).await;
        runner.recounting.store(false, Ordering::Release);
    });
}
