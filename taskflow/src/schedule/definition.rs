//! A [`Schedule`] as text, the definition the stores keep: JSON that every instance reads
//! back to the same schedule, and that differs whenever the schedules differ.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Grid, Overlap, Schedule, ScheduleError};

/// The stored form. Durations in whole microseconds, as the stores keep time.
#[derive(Serialize, Deserialize)]
struct Definition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    every_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    catch_up_us: Option<u64>,
    #[serde(default)]
    overlap: Overlap,
    #[serde(default)]
    run_on_startup: bool,
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros().min(u64::MAX as u128) as u64
}

impl Schedule {
    /// The schedule as text (JSON), as the stores keep it: [`Schedule::from_definition`]
    /// reads it back.
    ///
    /// ```
    /// use taskflow::Schedule;
    ///
    /// let nightly = Schedule::cron("0 2 * * *")?.timezone("Europe/Paris")?;
    /// let text = nightly.definition();
    /// assert_eq!(Schedule::from_definition(&text)?, nightly);
    /// # Ok::<(), taskflow::ScheduleError>(())
    /// ```
    pub fn definition(&self) -> String {
        let (cron, timezone, every_us) = match &self.grid {
            Grid::Cron { expr, zone, .. } => {
                (Some(expr.clone()), Some(zone.name().to_owned()), None)
            }
            Grid::Every(interval) => (None, None, Some(micros(*interval))),
        };
        let definition = Definition {
            cron,
            timezone,
            every_us,
            catch_up_us: self.catch_up.map(micros),
            overlap: self.overlap,
            run_on_startup: self.run_on_startup,
        };
        serde_json::to_string(&definition).unwrap_or_default()
    }

    /// Reads a [definition](Schedule::definition) back; one that is damaged, or that another
    /// version wrote in a form this one does not know, is an error that says so.
    pub fn from_definition(text: &str) -> Result<Schedule, ScheduleError> {
        let definition: Definition = serde_json::from_str(text)
            .map_err(|err| ScheduleError::Definition(format!("{err} in `{text}`")))?;
        let schedule = match (definition.cron, definition.every_us) {
            (Some(expr), None) => {
                let schedule = Schedule::cron(&expr)?;
                match definition.timezone {
                    Some(zone) => schedule.timezone(&zone)?,
                    None => schedule,
                }
            }
            (None, Some(every)) => Schedule::every(Duration::from_micros(every))?,
            _ => {
                return Err(ScheduleError::Definition(format!(
                    "`{text}` has neither or both of `cron` and `every_us`"
                )));
            }
        };
        let schedule = match definition.catch_up_us {
            Some(window) => schedule.catch_up(Duration::from_micros(window)),
            None => schedule,
        };
        Ok(schedule.overlap(definition.overlap).run_on_startup(definition.run_on_startup))
    }
}
