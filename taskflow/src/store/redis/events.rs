//! The event log on Redis: a stream, `<prefix>:events`, whose entry ids are `<n>-0` for a
//! counter `n` that one script takes for the batch, so every event's number is a plain
//! integer, increasing in append order; the stream is trimmed to about [`KEEP_EVENTS`], and
//! each append `PUBLISH`es its newest number on `<prefix>:events`.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;

use super::{RedisStore, unavailable};
use crate::event::TaskEvent;
use crate::store::StoreError;
use crate::store::events::{EventLog, KEEP_EVENTS};

/// ARGV: prefix, keep, then the events' bodies. Returns the newest number.
static APPEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local p, keep = ARGV[1], ARGV[2]
local count = #ARGV - 2
local last = redis.call('INCRBY', p..':events:seq', count)
for i = 1, count do
  redis.call('XADD', p..':events', 'MAXLEN', '~', keep, (last - count + i)..'-0', 'e', ARGV[i + 2])
end
redis.call('PUBLISH', p..':events', last)
return last
"#,
    )
});

#[async_trait]
impl EventLog for RedisStore {
    async fn append(&self, events: &[TaskEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut invocation = APPEND.prepare_invoke();
        invocation.arg(&*self.prefix).arg(KEEP_EVENTS);
        for event in events {
            invocation.arg(serde_json::to_string(event).unwrap_or_default());
        }
        let mut conn = self.conn.clone();
        let _: u64 = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn after(&self, seq: u64, limit: usize) -> Result<Vec<(u64, TaskEvent)>, StoreError> {
        let mut conn = self.conn.clone();
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(self.key("events"))
            .arg(format!("({seq}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, fields)| {
                let seq = id.split_once('-')?.0.parse().ok()?;
                let body = fields.into_iter().find(|(name, _)| name == "e")?.1;
                Some((seq, serde_json::from_str(&body).ok()?))
            })
            .collect())
    }

    fn appended(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(Arc::clone(&self.events))
    }
}
