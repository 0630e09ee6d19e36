//! The grid of a schedule's slots, and which slots are due after a gap.

use chrono::{DateTime, Utc};

use super::{Grid, Schedule};

/// At most this many slots fire in one [`Schedule::due`]; the next call goes on from the
/// last one, so a long catch-up window fills over several ticks instead of at once.
const MAX_FIRE: usize = 1000;

/// Counting skipped cron slots stops here ([`DueSlots::skipped`] is then "at least").
const MAX_COUNT: u64 = 100_000;

/// What a scheduler does for one schedule at a tick: see [`Schedule::due`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DueSlots {
    /// The slots to fire now, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// How many missed slots are skipped (older than the catch-up window, or all but the most
    /// recent one without a window); at most 100,000 are counted for a cron expression.
    pub skipped: u64,
    /// The first and the last skipped slot, when some are.
    pub skipped_range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The next slot to wait for: the first after the last slot handled (fired or skipped);
    /// `None` when the expression never matches again.
    pub next: Option<DateTime<Utc>>,
}

pub(super) fn next_after(grid: &Grid, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match grid {
        Grid::Cron { cron, zone, .. } => cron
            .find_next_occurrence(&after.with_timezone(zone), false)
            .ok()
            .map(|at| at.with_timezone(&Utc)),
        Grid::Every(interval) => {
            let step = interval.as_micros() as i64;
            let at = after.timestamp_micros();
            let next = at.div_euclid(step).checked_add(1)?.checked_mul(step)?;
            DateTime::from_timestamp_micros(next)
        }
    }
}

pub(super) fn last_at_or_before(grid: &Grid, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match grid {
        Grid::Cron { cron, zone, .. } => cron
            .find_previous_occurrence(&at.with_timezone(zone), true)
            .ok()
            .map(|at| at.with_timezone(&Utc)),
        Grid::Every(interval) => {
            let step = interval.as_micros() as i64;
            let last = at.timestamp_micros().div_euclid(step).checked_mul(step)?;
            DateTime::from_timestamp_micros(last)
        }
    }
}

impl Schedule {
    /// The slots due at `now` for a schedule waiting for slot `next` (the first slot it has
    /// not handled): nothing while `next` is after `now` (so a clock that jumps back fires no
    /// slot twice). Otherwise, every slot from `next` to `now` is missed but for the most
    /// recent one, which fires; with a [catch-up window](Schedule::catch_up), every slot
    /// within it fires, oldest first (at most 1,000 at once: the next call goes on), and only
    /// older ones are skipped (when no slot is within the window, the most recent fires).
    pub fn due(&self, next: DateTime<Utc>, now: DateTime<Utc>) -> DueSlots {
        if next > now {
            return DueSlots { next: Some(next), ..DueSlots::default() };
        }
        let Some(latest) = self.last_at_or_before(now).filter(|latest| *latest >= next) else {
            // `next` was not a slot (a changed definition): wait for the first real one.
            return DueSlots { next: self.next_after(now), ..DueSlots::default() };
        };
        // The first slot that fires: `next` itself when nothing was missed or the window
        // reaches back to it, the first within the window, else the most recent.
        let first = match self.catch_up {
            Some(window) => {
                let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
                let start = now.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC);
                if start <= next {
                    next
                } else {
                    self.next_after(start - chrono::Duration::microseconds(1))
                        .filter(|first| *first <= latest)
                        .unwrap_or(latest)
                }
            }
            None => latest,
        };
        let mut due = DueSlots::default();
        if first > next {
            let last_skipped = self.last_before(first).unwrap_or(next).max(next);
            due.skipped = self.count(next, last_skipped);
            due.skipped_range = Some((next, last_skipped));
        }
        let mut slot = Some(first);
        while let Some(at) = slot.filter(|at| *at <= latest) {
            if due.fire.len() == MAX_FIRE {
                due.next = Some(at);
                return due;
            }
            due.fire.push(at);
            slot = self.next_after(at);
        }
        due.next = self.next_after(latest);
        due
    }

    /// The last slot strictly before `at`.
    fn last_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.last_at_or_before(at - chrono::Duration::microseconds(1))
    }

    /// How many slots lie in `[first, last]`, both slots.
    fn count(&self, first: DateTime<Utc>, last: DateTime<Utc>) -> u64 {
        match &self.grid {
            Grid::Every(interval) => {
                let span = (last - first).num_microseconds().unwrap_or(i64::MAX);
                (span / interval.as_micros() as i64) as u64 + 1
            }
            Grid::Cron { .. } => {
                let mut count = 0;
                let mut slot = Some(first);
                while let Some(at) = slot.filter(|at| *at <= last) {
                    count += 1;
                    if count == MAX_COUNT {
                        break;
                    }
                    slot = self.next_after(at);
                }
                count
            }
        }
    }
}
