//! [`ScheduleSpec`]: a schedule as `#[task(cron = ..., every = ...)]` declares it, built at
//! compile time (the macro has checked every value) and turned into a [`Schedule`] at start.

use std::time::Duration;

use super::{Overlap, Schedule, ScheduleError};

/// A schedule declared on a task (`#[task(cron = "0 2 * * *", timezone = "Europe/Paris")]`,
/// `#[task(every = "5m")]`), as a `const` value of its [`TaskOptions`](crate::TaskOptions).
///
/// ```
/// use std::time::Duration;
/// use taskflow::{Overlap, ScheduleSpec};
///
/// const NIGHTLY: ScheduleSpec = ScheduleSpec::cron("0 2 * * *")
///     .timezone("Europe/Paris")
///     .catch_up(Duration::from_secs(3600))
///     .overlap(Overlap::Skip);
/// let schedule = NIGHTLY.build()?;
/// assert_eq!(schedule.to_string(), "cron `0 2 * * *` in Europe/Paris");
/// assert_eq!(schedule.overlap_policy(), Overlap::Skip);
/// # Ok::<(), taskflow::ScheduleError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleSpec {
    grid: Grid,
    timezone: Option<&'static str>,
    catch_up: Option<Duration>,
    overlap: Overlap,
    run_on_startup: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grid {
    Cron(&'static str),
    Every(Duration),
}

impl ScheduleSpec {
    /// At the times the cron expression matches ([`Schedule::cron`]).
    pub const fn cron(expr: &'static str) -> ScheduleSpec {
        ScheduleSpec::on(Grid::Cron(expr))
    }

    /// Every `interval` ([`Schedule::every`]).
    pub const fn every(interval: Duration) -> ScheduleSpec {
        ScheduleSpec::on(Grid::Every(interval))
    }

    const fn on(grid: Grid) -> ScheduleSpec {
        ScheduleSpec {
            grid,
            timezone: None,
            catch_up: None,
            overlap: Overlap::Allow,
            run_on_startup: false,
        }
    }

    /// The IANA zone the cron expression is read in ([`Schedule::timezone`]).
    pub const fn timezone(mut self, name: &'static str) -> ScheduleSpec {
        self.timezone = Some(name);
        self
    }

    /// The missed-slot window ([`Schedule::catch_up`]).
    pub const fn catch_up(mut self, window: Duration) -> ScheduleSpec {
        self.catch_up = Some(window);
        self
    }

    /// The overlap policy ([`Schedule::overlap`]).
    pub const fn overlap(mut self, overlap: Overlap) -> ScheduleSpec {
        self.overlap = overlap;
        self
    }

    /// Fires once when first defined ([`Schedule::run_on_startup`]).
    pub const fn run_on_startup(mut self, run: bool) -> ScheduleSpec {
        self.run_on_startup = run;
        self
    }

    /// The schedule. The macro has checked the values, so this fails only for a spec
    /// written by hand.
    pub fn build(&self) -> Result<Schedule, ScheduleError> {
        let mut schedule = match self.grid {
            Grid::Cron(expr) => Schedule::cron(expr)?,
            Grid::Every(interval) => Schedule::every(interval)?,
        };
        if let Some(zone) = self.timezone {
            schedule = schedule.timezone(zone)?;
        }
        if let Some(window) = self.catch_up {
            schedule = schedule.catch_up(window);
        }
        Ok(schedule.overlap(self.overlap).run_on_startup(self.run_on_startup))
    }
}
