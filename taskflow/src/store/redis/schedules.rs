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

/// Writes (or, with an empty new text, deletes) a schedule if its stored text is still the
/// one read. ARGV: prefix, name, the text read ('' for none), the new text. 1 if written.
const SWAP: &str = r#"
local p, name = ARGV[1], ARGV[2]
local key = p..':sched:'..name
if (redis.call('GET', key) or '') ~= ARGV[3] then return 0 end
if ARGV[4] == '' then
  redis.call('DEL', key)
  redis.call('SREM', p..':schedules', name)
else
  redis.call('SET', key, ARGV[4])
  redis.call('SADD', p..':schedules', name)
end
return 1
"#;

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
        let swap = redis::Script::new(SWAP);
        for _ in 0..ATTEMPTS {
            let read: Option<String> = conn.get(&key).await.map_err(unavailable)?;
            let read = read.unwrap_or_default();
            let applied = change.clone().apply(schedules::found(name, Some(&read)), now);
            // The empty text deletes.
            let Some(new) = applied.body() else { return Ok(applied.result()) };
            let new = new.unwrap_or_default();
            let written: i64 = swap
                .arg(&*self.prefix)
                .arg(name)
                .arg(&read)
                .arg(&new)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if written == 1 {
                return Ok(applied.result());
            }
        }
        Err(StoreError::Unavailable(format!(
            "schedule {name}: {ATTEMPTS} concurrent changes in a row won the race; try again"
        )))
    }
}
