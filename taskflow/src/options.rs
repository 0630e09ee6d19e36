//! Options of a task: the defaults that `#[task(...)]` declares ([`TaskOptions`]) and the
//! per-call overrides of one enqueue ([`EnqueueOptions`]).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

/// The options a `#[task(...)]` attribute declares, fixed at compile time.
///
/// Generated code builds them with the `const` builder below; the values were validated by the
/// macro. Read them back through [`Task::options`](crate::Task::options) or the
/// [registry](crate::registry).
///
/// ```
/// use std::time::Duration;
/// use taskflow::TaskOptions;
///
/// const OPTS: TaskOptions = TaskOptions::new("resize")
///     .retries(3)
///     .delay(Duration::from_secs(1))
///     .backoff(2.0);
/// assert_eq!(OPTS.retry_delay(1), Duration::from_secs(1));
/// assert_eq!(OPTS.retry_delay(3), Duration::from_secs(4));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TaskOptions {
    name: &'static str,
    retries: u32,
    delay: Duration,
    backoff: f64,
    max_delay: Option<Duration>,
    timeout: Option<Duration>,
    priority: i32,
    eager: bool,
    requeue_on_interrupt: bool,
    blocking: bool,
    jitter: bool,
    queue: &'static str,
    concurrency: u32,
    schedule: Option<crate::ScheduleSpec>,
}

impl TaskOptions {
    /// The defaults for a task named `name`: no retries, no delay, backoff 1.0, no timeout,
    /// priority 0, not eager, not requeued on interrupt, not blocking.
    pub const fn new(name: &'static str) -> Self {
        TaskOptions {
            name,
            retries: 0,
            delay: Duration::ZERO,
            backoff: 1.0,
            max_delay: None,
            timeout: None,
            priority: 0,
            eager: false,
            requeue_on_interrupt: false,
            blocking: false,
            jitter: false,
            queue: crate::queue::DEFAULT_QUEUE,
            concurrency: 0,
            schedule: None,
        }
    }

    /// Caps how many of its tasks run at once (`#[task(concurrency = 2)]`, at least 1; the
    /// macro refuses 0): counted in the store at each fetch of a queue, so the cap holds for
    /// every instance sharing the store, and for one instance alone.
    pub const fn concurrency(mut self, concurrency: u32) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Fires the task on a schedule (`#[task(cron = "0 2 * * *")]`, `#[task(every = "5m")]`;
    /// only tasks without parameters).
    pub const fn schedule(mut self, schedule: crate::ScheduleSpec) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// The schedule it declares, if any.
    pub const fn declared_schedule(&self) -> Option<&crate::ScheduleSpec> {
        self.schedule.as_ref()
    }

    /// Its own cap on tasks running at once, if it has one.
    pub const fn concurrency_limit(&self) -> Option<u32> {
        if self.concurrency == 0 { None } else { Some(self.concurrency) }
    }

    /// Sets the queue its tasks go to (`#[task(queue = "emails")]`); the macro checks the
    /// name ([`is_valid_queue_name`](crate::is_valid_queue_name)).
    pub const fn queue(mut self, queue: &'static str) -> Self {
        self.queue = queue;
        self
    }

    /// The queue its tasks go to unless an enqueue names another.
    pub const fn default_queue(&self) -> &'static str {
        self.queue
    }

    /// Sets whether each retry's wait is drawn at random between zero and the backoff's
    /// wait ("full jitter", `#[task(jitter = true)]`), so that tasks failing together (an
    /// outage) do not all come back at the same moment.
    pub const fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Whether retry waits are jittered.
    pub const fn has_jitter(&self) -> bool {
        self.jitter
    }

    /// Sets how many times a failed task is retried (`#[task(retries = 3)]`).
    pub const fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the wait before the first retry (`#[task(delay = "1s")]`).
    pub const fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the factor applied to the wait before each further retry (`#[task(backoff = 2.0)]`).
    /// The macro checks it is finite and at least 1.0.
    pub const fn backoff(mut self, backoff: f64) -> Self {
        self.backoff = backoff;
        self
    }

    /// Caps the wait between retries (`#[task(max_delay = "1m")]`).
    pub const fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = Some(max_delay);
        self
    }

    /// Sets how long one attempt may run before it counts as failed (`#[task(timeout = "30s")]`).
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the priority: higher runs first when tasks queue (`#[task(priority = 10)]`), a
    /// level being worth a minute of waiting ([`PRIORITY_STEP`](crate::PRIORITY_STEP)).
    pub const fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets whether the task starts as soon as it is enqueued instead of after the response
    /// (`#[task(eager = true)]`).
    pub const fn eager(mut self, eager: bool) -> Self {
        self.eager = eager;
        self
    }

    /// Sets whether a task interrupted by a shutdown or crash is run again instead of being
    /// marked `interrupted` (`#[task(requeue_on_interrupt = true)]`).
    pub const fn requeue_on_interrupt(mut self, requeue: bool) -> Self {
        self.requeue_on_interrupt = requeue;
        self
    }

    /// Sets whether the task runs on the blocking thread pool (`#[task(blocking = false)]`
    /// turns it off for a sync fn; async fns never block).
    pub const fn blocking(mut self, blocking: bool) -> Self {
        self.blocking = blocking;
        self
    }

    /// The task's name: the fn name, or `#[task(name = "...")]`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// How many times a failed task is retried: it runs at most `1 + max_retries()` times.
    pub const fn max_retries(&self) -> u32 {
        self.retries
    }

    /// The wait before the first retry.
    pub const fn initial_delay(&self) -> Duration {
        self.delay
    }

    /// The factor applied to the wait before each further retry.
    pub const fn backoff_factor(&self) -> f64 {
        self.backoff
    }

    /// The cap on the wait between retries.
    pub const fn max_retry_delay(&self) -> Option<Duration> {
        self.max_delay
    }

    /// How long one attempt may run.
    pub const fn attempt_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The default priority.
    pub const fn default_priority(&self) -> i32 {
        self.priority
    }

    /// Whether the task starts at enqueue rather than after the response.
    pub const fn is_eager(&self) -> bool {
        self.eager
    }

    /// Whether an interrupted run is requeued.
    pub const fn requeues_on_interrupt(&self) -> bool {
        self.requeue_on_interrupt
    }

    /// Whether the task runs on the blocking thread pool.
    pub const fn is_blocking(&self) -> bool {
        self.blocking
    }

    /// The wait before retry `n` (1-based) as it happens: [`TaskOptions::retry_delay`], or
    /// with jitter a uniformly random part of it.
    pub fn retry_wait(&self, n: u32) -> Duration {
        let wait = self.retry_delay(n);
        if self.jitter { wait.mul_f64(fastrand::f64()) } else { wait }
    }

    /// The wait before retry `n` (1-based): `delay * backoff^(n-1)`, capped by `max_delay`.
    pub fn retry_delay(&self, n: u32) -> Duration {
        let exponent = n.saturating_sub(1).min(i32::MAX as u32) as i32;
        let secs = self.delay.as_secs_f64() * self.backoff.powi(exponent);
        let wait = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
        match self.max_delay {
            Some(cap) => wait.min(cap),
            None => wait,
        }
    }
}

/// Per-call options of one enqueue; each value set here overrides the `#[task]` default.
///
/// ```
/// use std::time::Duration;
/// use taskflow::EnqueueOptions;
///
/// let options = EnqueueOptions::new()
///     .idempotency_key("invoice-42-send")
///     .tag("user_id", 7)
///     .tags([("plan", "pro")])
///     .priority(5)
///     .delay(Duration::from_secs(10));
/// assert_eq!(options.tags_map()["user_id"], "7");
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnqueueOptions {
    idempotency_key: Option<String>,
    run_key: Option<String>,
    tags: BTreeMap<String, String>,
    priority: Option<i32>,
    delay: Option<Duration>,
    run_at: Option<chrono::DateTime<chrono::Utc>>,
    eager: Option<bool>,
    retries: Option<u32>,
    queue: Option<String>,
}

impl EnqueueOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// While a task with this key exists and has not failed nor been cancelled, enqueuing
    /// again returns that task's id and enqueues nothing.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Names the task with a run key, for a one-off schedule that can move: while a task
    /// with this key waits for its first start (pending, not yet started), enqueueing another
    /// one with the same key replaces it in one atomic step on every store, across instances:
    /// the waiting task is cancelled (its error says which task replaced it) and the new one
    /// waits in its place. Once the keyed task has started, a new one with the key is simply
    /// stored. [`TaskManager::cancel_scheduled`](crate::TaskManager::cancel_scheduled)
    /// cancels the waiting task by its key. An idempotency key, when both are given, is
    /// checked first: a duplicate stores nothing and replaces nothing.
    ///
    /// ```
    /// use taskflow::EnqueueOptions;
    ///
    /// let at = chrono::Utc::now() + chrono::Duration::hours(1);
    /// // A reminder for user 42: enqueueing it again moves it.
    /// let options = EnqueueOptions::new().run_key("remind-user-42").run_at(at);
    /// assert_eq!(options.run_key_str(), Some("remind-user-42"));
    /// ```
    pub fn run_key(mut self, key: impl Into<String>) -> Self {
        self.run_key = Some(key.into());
        self
    }

    /// Adds a tag, stored on the task and attached to its logs and events.
    pub fn tag(mut self, key: impl Into<String>, value: impl Display) -> Self {
        self.tags.insert(key.into(), value.to_string());
        self
    }

    /// Adds several tags.
    pub fn tags<K, V>(mut self, tags: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Display,
    {
        for (key, value) in tags {
            self.tags.insert(key.into(), value.to_string());
        }
        self
    }

    /// Overrides the priority: higher runs first when tasks queue, a level being worth a
    /// minute of waiting ([`PRIORITY_STEP`](crate::PRIORITY_STEP)).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Starts the task no earlier than `delay` from now. Until then it waits in the store,
    /// holding no slot and no timer.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Starts the task at `at` (within about a second; a time in the past is now). Until
    /// then it waits in the store, holding no slot and no timer, and survives restarts.
    /// Overrides [`EnqueueOptions::delay`].
    ///
    /// ```
    /// use taskflow::EnqueueOptions;
    ///
    /// let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    /// let options = EnqueueOptions::new().run_at(tomorrow);
    /// assert_eq!(options.start_at(), Some(tomorrow));
    /// ```
    pub fn run_at(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Overrides whether the task starts at enqueue rather than after the response.
    pub fn eager(mut self, eager: bool) -> Self {
        self.eager = Some(eager);
        self
    }

    /// Overrides the number of retries.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Puts the task in `queue` instead of its `#[task]` queue. The queue must be one the
    /// manager declares ([`TaskManagerBuilder::queue`](crate::TaskManagerBuilder::queue));
    /// another name fails the enqueue with [`Error::UnknownQueue`](crate::Error::UnknownQueue).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// The queue override, if set.
    pub fn queue_override(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    /// The run key, if set.
    pub fn run_key_str(&self) -> Option<&str> {
        self.run_key.as_deref()
    }

    /// The idempotency key, if set.
    pub fn idempotency_key_str(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// The tags.
    pub fn tags_map(&self) -> &BTreeMap<String, String> {
        &self.tags
    }

    /// The priority override, if set.
    pub fn priority_override(&self) -> Option<i32> {
        self.priority
    }

    /// The start delay, if set.
    pub fn start_delay(&self) -> Option<Duration> {
        self.delay
    }

    /// The start time set with [`EnqueueOptions::run_at`], if any.
    pub fn start_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.run_at
    }

    /// The eager override, if set.
    pub fn eager_override(&self) -> Option<bool> {
        self.eager
    }

    /// The retries override, if set.
    pub fn retries_override(&self) -> Option<u32> {
        self.retries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let o = TaskOptions::new("t")
            .delay(Duration::from_millis(100))
            .backoff(3.0)
            .max_delay(Duration::from_secs(1));
        assert_eq!(o.retry_delay(1), Duration::from_millis(100));
        assert_eq!(o.retry_delay(2), Duration::from_millis(300));
        assert_eq!(o.retry_delay(3), Duration::from_millis(900));
        assert_eq!(o.retry_delay(4), Duration::from_secs(1));
        assert_eq!(o.retry_delay(u32::MAX), Duration::from_secs(1));
        let flat = TaskOptions::new("t").delay(Duration::from_secs(2));
        assert_eq!(flat.retry_delay(5), Duration::from_secs(2));
        assert_eq!(flat.retry_wait(5), Duration::from_secs(2), "no jitter: the delay itself");
    }

    #[test]
    fn jittered_waits_spread_below_the_delay() {
        let o = TaskOptions::new("t").delay(Duration::from_secs(1)).backoff(2.0).jitter(true);
        let waits: Vec<Duration> = (0..200).map(|_| o.retry_wait(3)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(4)), "never above the delay");
        let low = waits.iter().filter(|w| **w < Duration::from_secs(2)).count();
        assert!((40..=160).contains(&low), "about half in the lower half: {low} of 200");
    }
}
