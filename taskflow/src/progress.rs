//! [`ProgressSlot`]: an attempt's latest progress report, held until the engine writes it to
//! the store (each poll interval, and once more as the attempt ends), so that reporting in a
//! tight loop costs a few atomic stores and never a store write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::limits::cut;
use crate::record::Progress;

/// The most of a progress message that is kept.
pub(crate) const MESSAGE_BYTES: usize = 256;

/// The latest report of one attempt.
#[derive(Debug, Default)]
pub(crate) struct ProgressSlot {
    done: AtomicU64,
    total: AtomicU64,
    message: Mutex<Option<String>>,
    /// A report came since the last [`ProgressSlot::take`].
    unwritten: AtomicBool,
}

impl ProgressSlot {
    /// Replaces the report; a `message` of `None` keeps the last one.
    pub(crate) fn report(&self, done: u64, total: u64, message: Option<String>) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        if let Some(message) = message {
            let message = cut(message, MESSAGE_BYTES);
            *self.message.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
        }
        self.unwritten.store(true, Ordering::Release);
    }

    /// The report not yet written, as of `now`, if one came since the last call.
    pub(crate) fn take(&self, now: DateTime<Utc>) -> Option<Progress> {
        if !self.unwritten.swap(false, Ordering::Acquire) {
            return None;
        }
        Some(Progress {
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            message: self.message.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            updated_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_taken_once_and_the_last_one_wins() {
        let slot = ProgressSlot::default();
        let now = Utc::now();
        assert_eq!(slot.take(now), None);
        for done in 0..=1_000 {
            slot.report(done, 1_000, None);
        }
        slot.report(1_000, 1_000, Some("x".repeat(1_000)));
        let taken = slot.take(now).expect("a report");
        assert_eq!((taken.done, taken.total), (1_000, 1_000));
        assert!(taken.message.is_some_and(|m| m.len() < 1_000 && m.contains("cut")));
        assert_eq!(slot.take(now), None, "taken once");
        slot.report(5, 10, None);
        assert_eq!(
            slot.take(now).and_then(|p| p.message).map(|m| m.starts_with('x')),
            Some(true),
            "kept"
        );
    }
}
