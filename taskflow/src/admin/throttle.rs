//! Failed sign-ins, counted per client address and per user name: after
//! [`MAX_FAILURES`] within [`WINDOW`], that address or user gets `429` until the window ends,
//! even with the right password, so a password cannot be guessed at request speed.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failed sign-ins a key may make within [`WINDOW`].
pub(crate) const MAX_FAILURES: u32 = 10;

/// How long failures are remembered, counted from the first of a run.
pub(crate) const WINDOW: Duration = Duration::from_secs(300);

/// The most keys remembered; beyond it, expired ones are dropped, then the oldest.
const MAX_KEYS: usize = 10_000;

/// The failure counts.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<String, Failures>>,
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    since: Instant,
}

impl Throttle {
    /// `Err(wait)` when one of `keys` has failed too often: retry after `wait`.
    pub(crate) fn check(&self, keys: &[String]) -> Result<(), Duration> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let wait = keys
            .iter()
            .filter_map(|key| failures.get(key))
            .filter(|f| f.count >= MAX_FAILURES)
            .filter_map(|f| (f.since + WINDOW).checked_duration_since(now))
            .max();
        match wait {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in against each of `keys`.
    pub(crate) fn failed(&self, keys: &[String]) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, f| now.duration_since(f.since) < WINDOW);
            if failures.len() >= MAX_KEYS
                && let Some(oldest) =
                    failures.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| k.clone())
            {
                failures.remove(&oldest);
            }
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert(Failures { count: 0, since: now });
            if now.duration_since(entry.since) >= WINDOW {
                *entry = Failures { count: 0, since: now };
            }
            entry.count = entry.count.saturating_add(1);
        }
    }

    /// Forgets the failures of `keys` after a successful sign-in.
    pub(crate) fn succeeded(&self, keys: &[String]) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_a_key_after_too_many_failures_and_not_others() {
        let throttle = Throttle::default();
        let alice = ["user:alice".to_owned()];
        for _ in 0..MAX_FAILURES - 1 {
            throttle.failed(&alice);
        }
        assert!(throttle.check(&alice).is_ok());
        throttle.failed(&alice);
        let wait = throttle.check(&alice).unwrap_err();
        assert!(wait > WINDOW - Duration::from_secs(60) && wait <= WINDOW);
        assert!(throttle.check(&["user:bob".to_owned()]).is_ok());
        throttle.succeeded(&alice);
        assert!(throttle.check(&alice).is_ok());
    }

    #[test]
    fn the_map_stays_bounded() {
        let throttle = Throttle::default();
        for i in 0..MAX_KEYS + 50 {
            throttle.failed(&[format!("ip:{i}")]);
        }
        assert!(throttle.failures.lock().unwrap().len() <= MAX_KEYS);
    }
}
