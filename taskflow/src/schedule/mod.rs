//! [`Schedule`]: when a periodic task fires. A cron expression read in an IANA time zone, or a
//! fixed interval, plus what happens to slots missed while no instance ran
//! ([`Schedule::catch_up`]) and to a slot whose previous run has not finished
//! ([`Schedule::overlap`]).
//!
//! Slots are on a grid: a cron expression's matching times, or the multiples of the interval
//! since the Unix epoch. A slot's time never depends on when the previous one ran, so
//! schedules do not drift, and every instance computes the same slots.

mod definition;
mod slots;
mod spec;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use self::slots::DueSlots;
pub use self::spec::ScheduleSpec;

/// A time zone of the IANA database, such as `Europe/Paris` (re-exported from `chrono-tz`).
pub use chrono_tz::Tz;

/// The shortest interval of [`Schedule::every`].
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// When a periodic task fires: a cron expression read in an IANA time zone
/// ([`Schedule::cron`], [`Schedule::timezone`]), or a fixed interval ([`Schedule::every`]),
/// plus what happens to slots missed while no instance ran ([`Schedule::catch_up`]) and to a
/// slot whose previous run has not finished ([`Schedule::overlap`]).
///
/// Slots are on a grid: the expression's matching times, or the multiples of the interval
/// since the Unix epoch. A slot's time never depends on when the previous one ran, so a
/// schedule does not drift, and every instance computes the same slots.
///
/// ```
/// use std::time::Duration;
/// use taskflow::{Overlap, Schedule};
///
/// let nightly = Schedule::cron("0 2 * * *")?.timezone("Europe/Paris")?;
/// let often = Schedule::every(Duration::from_secs(300))?
///     .catch_up(Duration::from_secs(3600))
///     .overlap(Overlap::Skip);
/// assert_eq!(nightly.to_string(), "cron `0 2 * * *` in Europe/Paris");
/// assert_eq!(often.to_string(), "every 5m");
/// # Ok::<(), taskflow::ScheduleError>(())
/// ```
#[derive(Clone)]
pub struct Schedule {
    grid: Grid,
    catch_up: Option<Duration>,
    overlap: Overlap,
    run_on_startup: bool,
}

/// The slots of a schedule.
#[derive(Clone)]
enum Grid {
    Cron { expr: String, cron: Box<croner::Cron>, zone: Tz },
    Every(Duration),
}

/// What a slot does while the previous run of its schedule is still pending or running.
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Fire anyway: runs of one schedule may overlap (the default).
    #[default]
    Allow,
    /// Do not fire; the skipped slot is recorded in the schedule's history.
    Skip,
}

/// A schedule that cannot be built: the message names what is wrong and the accepted form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error(
        "invalid cron expression `{expr}`: {reason}; write five fields (minute hour day-of-month month day-of-week) such as `0 2 * * *`, optionally a leading seconds field, or `@daily`/`@hourly`"
    )]
    Cron {
        /// The expression.
        expr: String,
        /// What the parser found wrong.
        reason: String,
    },
    /// The time zone is not in the IANA database.
    #[error("unknown time zone `{0}`: write an IANA name such as `Europe/Paris` or `UTC`")]
    Zone(String),
    /// The interval is shorter than [`MIN_INTERVAL`].
    #[error("the interval {0:?} is too short: a schedule fires at most once a second")]
    TooOften(Duration),
    /// A stored definition that cannot be read back.
    #[error("the stored schedule definition cannot be read: {0}")]
    Definition(String),
}

impl Schedule {
    /// Fires at the times `expr` matches, read in UTC (see [`Schedule::timezone`]). Five
    /// fields (minute, hour, day of month, month, day of week), or six with seconds first;
    /// `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`; names such as `MON` and `JAN`.
    pub fn cron(expr: &str) -> Result<Schedule, ScheduleError> {
        let cron = croner::Cron::from_str(expr.trim()).map_err(|err| ScheduleError::Cron {
            expr: expr.to_owned(),
            reason: err.to_string(),
        })?;
        Ok(Schedule::on(Grid::Cron {
            expr: expr.trim().to_owned(),
            cron: Box::new(cron),
            zone: Tz::UTC,
        }))
    }

    /// Fires every `interval`, at its multiples since the Unix epoch (so `every(1 h)` fires on
    /// the hour, whenever the schedule was created). At least [`MIN_INTERVAL`].
    pub fn every(interval: Duration) -> Result<Schedule, ScheduleError> {
        if interval < MIN_INTERVAL {
            return Err(ScheduleError::TooOften(interval));
        }
        // Whole microseconds, what the stores keep.
        let micros = Duration::from_micros(interval.as_micros().min(u64::MAX as u128) as u64);
        Ok(Schedule::on(Grid::Every(micros)))
    }

    fn on(grid: Grid) -> Schedule {
        Schedule { grid, catch_up: None, overlap: Overlap::Allow, run_on_startup: false }
    }

    /// Reads the cron expression in the IANA zone `name` (`Europe/Paris`): a daily `0 2 * * *`
    /// fires at 02:00 local time all year. A local time that a daylight-saving change skips
    /// fires at the first valid time after the gap (02:30 on a spring-forward night from 02:00
    /// to 03:00 fires at 03:00); a local time that occurs twice fires once, at its first
    /// occurrence. No effect on [`Schedule::every`], which is in absolute time.
    pub fn timezone(self, name: &str) -> Result<Schedule, ScheduleError> {
        let zone = name.trim().parse::<Tz>().map_err(|_| ScheduleError::Zone(name.to_owned()))?;
        Ok(self.in_zone(zone))
    }

    /// [`Schedule::timezone`] with a zone value.
    pub fn in_zone(mut self, zone: Tz) -> Schedule {
        if let Grid::Cron { zone: current, .. } = &mut self.grid {
            *current = zone;
        }
        self
    }

    /// After downtime, fires every missed slot of the last `window`, oldest first (older ones
    /// are recorded as skipped). Without it, only the most recent missed slot fires.
    pub fn catch_up(mut self, window: Duration) -> Schedule {
        self.catch_up = Some(window);
        self
    }

    /// What a slot does while the previous run is still pending or running.
    pub fn overlap(mut self, overlap: Overlap) -> Schedule {
        self.overlap = overlap;
        self
    }

    /// Fires once when the schedule is first defined, besides its slots.
    pub fn run_on_startup(mut self, run: bool) -> Schedule {
        self.run_on_startup = run;
        self
    }

    /// The missed-slot window, if set.
    pub fn catch_up_window(&self) -> Option<Duration> {
        self.catch_up
    }

    /// The overlap policy.
    pub fn overlap_policy(&self) -> Overlap {
        self.overlap
    }

    /// Whether it fires once at definition.
    pub fn runs_on_startup(&self) -> bool {
        self.run_on_startup
    }

    /// The zone a cron expression is read in; `None` for an interval.
    pub fn zone(&self) -> Option<Tz> {
        match &self.grid {
            Grid::Cron { zone, .. } => Some(*zone),
            Grid::Every(_) => None,
        }
    }

    /// The first slot strictly after `after`; `None` when there is none (an expression
    /// such as `0 0 30 2 *`, the 30th of February, never matches).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        slots::next_after(&self.grid, after)
    }

    /// The last slot at or before `at`, if any.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        slots::last_at_or_before(&self.grid, at)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.grid {
            Grid::Cron { expr, zone, .. } => write!(f, "cron `{expr}` in {}", zone.name()),
            Grid::Every(interval) => {
                write!(f, "every {}", humantime::format_duration(*interval))
            }
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("grid", &format_args!("{self}"))
            .field("catch_up", &self.catch_up)
            .field("overlap", &self.overlap)
            .field("run_on_startup", &self.run_on_startup)
            .finish()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        let grid = match (&self.grid, &other.grid) {
            (Grid::Cron { expr: a, zone: za, .. }, Grid::Cron { expr: b, zone: zb, .. }) => {
                a == b && za == zb
            }
            (Grid::Every(a), Grid::Every(b)) => a == b,
            _ => false,
        };
        grid && self.catch_up == other.catch_up
            && self.overlap == other.overlap
            && self.run_on_startup == other.run_on_startup
    }
}

impl From<ScheduleError> for crate::error::Error {
    /// A schedule that cannot be built: [`Error::Schedule`](crate::Error::Schedule) with its
    /// message.
    fn from(err: ScheduleError) -> Self {
        crate::error::Error::Schedule(err.to_string())
    }
}
