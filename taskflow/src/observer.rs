//! Lifecycle events and the observers that receive them: [`TaskObserver`], with a stdout
//! observer and an in-memory one for tests.

use std::sync::{Arc, Mutex, PoisonError};

pub use crate::event::{EventKind, TaskEvent};
use crate::feed::Feed;
use crate::id::TaskId;

/// Receives every lifecycle event of the manager it is registered with.
///
/// Called inline on the runtime thread that makes the change: keep it fast and send slow work
/// elsewhere (a channel, a spawned task).
pub trait TaskObserver: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &TaskEvent);
}

/// Prints every event to stdout, one line each.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdoutObserver;

impl TaskObserver for StdoutObserver {
    fn on_event(&self, e: &TaskEvent) {
        let message = e.message.as_deref().map(|m| format!(" {m}")).unwrap_or_default();
        let tags = if e.tags.is_empty() { String::new() } else { format!(" {:?}", e.tags) };
        println!(
            "[taskflow] {} {:?} {} attempt={}{}{}",
            e.at.to_rfc3339(),
            e.kind,
            e.func_name,
            e.attempt,
            tags,
            message
        );
    }
}

/// Keeps every event in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryObserver {
    events: Mutex<Vec<TaskEvent>>,
}

impl MemoryObserver {
    /// An empty observer; register it with `TaskManager::builder().observer(...)`.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<TaskEvent> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The kinds of the events of one task, in order.
    pub fn kinds_of(&self, id: TaskId) -> Vec<EventKind> {
        self.events().into_iter().filter(|e| e.task_id == id).map(|e| e.kind).collect()
    }
}

impl TaskObserver for MemoryObserver {
    fn on_event(&self, event: &TaskEvent) {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).push(event.clone());
    }
}

impl<T: TaskObserver + ?Sized> TaskObserver for Arc<T> {
    fn on_event(&self, event: &TaskEvent) {
        (**self).on_event(event);
    }
}

/// The observers of one manager, and its live feed.
#[derive(Clone, Default)]
pub(crate) struct Observers {
    list: Arc<[Arc<dyn TaskObserver>]>,
    feed: Arc<Feed>,
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Observers({})", self.list.len())
    }
}

impl Observers {
    pub(crate) fn new(list: Vec<Arc<dyn TaskObserver>>) -> Self {
        Observers { list: list.into(), feed: Arc::default() }
    }

    /// Whether nobody listens: events need not even be built.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty() && !self.feed.records()
    }

    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    pub(crate) fn send(&self, event: &TaskEvent) {
        for observer in self.list.iter() {
            observer.on_event(event);
        }
        self.feed.publish(event);
    }
}
