//! [`Clock`]: the engine's time. Wall time, plus however far tokio's clock has been moved
//! beyond real time: in production the two advance together and this is `Utc::now()`; in a
//! test that pauses tokio's clock (`start_paused`, `tokio::time::advance`), due times, retries
//! and leases follow the test's clock, so nothing waits real seconds. Readings are whole
//! microseconds (what every store keeps) and never go back.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

#[derive(Debug)]
pub(crate) struct Clock {
    real: std::time::Instant,
    tokio: tokio::time::Instant,
    /// The last reading, in microseconds since the epoch.
    last: AtomicI64,
}

impl Clock {
    /// A clock that starts now.
    pub(crate) fn new() -> Clock {
        Clock {
            real: std::time::Instant::now(),
            tokio: tokio::time::Instant::now(),
            last: AtomicI64::new(i64::MIN),
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        let moved =
            self.tokio.elapsed().as_micros() as i64 - self.real.elapsed().as_micros() as i64;
        // Real clocks drift apart by microseconds: only a test's deliberate move counts.
        let moved = if moved.abs() < 1_000 { 0 } else { moved };
        let reading = Utc::now().timestamp_micros().saturating_add(moved);
        let previous = self.last.fetch_max(reading, Ordering::AcqRel);
        DateTime::from_timestamp_micros(reading.max(previous)).unwrap_or_else(Utc::now)
    }
}
