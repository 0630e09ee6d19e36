//! [`Wake`]: what gets the producer to fetch: a local enqueue or release, a retry or delayed
//! task coming due that this instance knows of, a shared store's notification (passed on by
//! the engine), or, failing
//! all of those, the poll interval.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// At most this many due times are remembered, the earliest; a task due later than all of
/// them is found by polling (so memory does not grow with the tasks waiting).
const KEPT_DUE_TIMES: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct Wake {
    notify: Notify,
    /// The earliest due times of waiting tasks this instance knows of.
    due: Mutex<BTreeSet<DateTime<Utc>>>,
}

impl Wake {
    /// Tasks may be available now.
    pub(crate) fn now(&self) {
        self.notify.notify_one();
    }

    /// A task comes due at `due` (`now` by the engine's clock).
    pub(crate) fn at(&self, due: DateTime<Utc>, now: DateTime<Utc>) {
        if due <= now {
            return self.now();
        }
        let mut times = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        let earliest = times.first().is_none_or(|first| due < *first);
        times.insert(due);
        if times.len() > KEPT_DUE_TIMES {
            times.pop_last();
        }
        drop(times);
        if earliest {
            self.now(); // the producer sleeps until the new, earlier time
        }
    }

    /// Waits until woken, until the earliest known due time, or for `poll` at most.
    pub(crate) async fn wait(&self, poll: Duration, now: DateTime<Utc>) {
        let until_due = {
            let mut times = self.due.lock().unwrap_or_else(PoisonError::into_inner);
            let mut came_due = false;
            while times.first().is_some_and(|first| *first <= now) {
                times.pop_first();
                came_due = true;
            }
            if came_due {
                return;
            }
            times.first().map_or(poll, |first| (*first - now).to_std().unwrap_or_default())
        };
        tokio::select! {
            () = self.notify.notified() => {}
            () = tokio::time::sleep(until_due.min(poll)) => {}
        }
    }
}
