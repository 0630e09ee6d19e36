//! The schedules: one JSON string `sched:<name>` per schedule, named in the set `schedules`.
//! A change reads the schedule, applies itself, and writes only if the stored text is still
//! what it read (a compare-and-set script); on a race it reads again.

use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::{RedisStore, unavailable};
use crate::store::schedules;
use crate::store::{ScheduleChange, StoreError, StoredSchedule};

/// How often a change reads again after losing a race, before giving up.
const ATTEMPTS: usize = 20;

impl RedisStore {
    pub(super) async fn read_schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = conn.smembers(self.key("schedules")).await.map_err(unavailable)?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.get(self.key(&format!("sched:{name}")));
        }
        let bodies: Vec<Option<String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let rows = names.into_iter().zip(bodies).filter_map(|(name, body)| Some((name, body?)));
        Ok(schedules::decode_all(rows.collect()))
    }

    pub(super) async fn apply_schedule(
        &self,
        name: &str,
        change: ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSchedule>, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("sched:{name}"));
        let swap = redis::Script::new(&super::scripts::swap_schedule());
        for _ in 0..ATTEMPTS {
            let read: Option<String> = conn.get(&key).await.map_err(unavailable)?;
            let read = read.unwrap_or_default();
            let applied = change.clone().apply(schedules::found(name, Some(&read)), now);
            // The empty text deletes.
            let Some(new) = applied.body() else { return Ok(applied.result()) };
            let new = new.unwrap_or_default();
            let mut invocation = swap.prepare_invoke();
            invocation.arg(&*self.prefix).arg(name).arg(&read).arg(&new);
            for task in applied.tasks() {
                invocation.arg(self.enqueue_args(task.clone(), None)?);
            }
            let written: i64 = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
            if written == 1 {
                return Ok(applied.result());
            }
        }
        Err(StoreError::Unavailable(format!(
            "schedule {name}: {ATTEMPTS} concurrent changes in a row won the race; try again"
        )))
    }
}
