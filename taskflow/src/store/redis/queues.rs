//! The queues' shared state (a hash `queue:<name>` per queue, named in the set `queues`) and
//! their counts (the per-queue indexes `q:<name>:pending` and `q:<name>:running`, for every
//! queue named in `qnames`).

use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::{RedisStore, micros, unavailable};
use crate::queue::{QueueChange, QueueCounts, QueueState};
use crate::store::StoreError;

/// Applies one change to a queue's hash, atomically. ARGV: prefix, name, field, value (''
/// clears it), updated_us. Returns the hash's fields.
const CHANGE: &str = r#"
local p, name = ARGV[1], ARGV[2]
local h = p..':queue:'..name
if ARGV[4] == '' then redis.call('HDEL', h, ARGV[3]) else redis.call('HSET', h, ARGV[3], ARGV[4]) end
redis.call('HSET', h, 'updated_us', ARGV[5])
redis.call('SADD', p..':queues', name)
return redis.call('HGETALL', h)
"#;

impl RedisStore {
    pub(super) async fn read_queue_states(&self) -> Result<Vec<QueueState>, StoreError> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = conn.smembers(self.key("queues")).await.map_err(unavailable)?;
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.hgetall(self.key(&format!("queue:{name}")));
        }
        let hashes: Vec<Vec<(String, String)>> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(names.into_iter().zip(hashes).map(|(name, fields)| state(name, &fields)).collect())
    }

    pub(super) async fn change_queue(
        &self,
        queue: &str,
        change: QueueChange,
        now: DateTime<Utc>,
    ) -> Result<QueueState, StoreError> {
        let (field, value) = match change {
            QueueChange::Paused(paused) => ("paused", if paused { "1" } else { "0" }.to_owned()),
            QueueChange::Concurrency(n) => {
                ("concurrency", n.map(|n| n.to_string()).unwrap_or_default())
            }
            QueueChange::MaxPending(n) => {
                ("max_pending", n.map(|n| n.to_string()).unwrap_or_default())
            }
        };
        let mut conn = self.conn.clone();
        let fields: Vec<(String, String)> = redis::Script::new(CHANGE)
            .arg(&*self.prefix)
            .arg(queue)
            .arg(field)
            .arg(value)
            .arg(micros(now))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(state(queue.to_owned(), &fields))
    }

    pub(super) async fn count_queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = conn.smembers(self.key("qnames")).await.map_err(unavailable)?;
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.zcard(self.key(&format!("q:{name}:pending")))
                .zcard(self.key(&format!("q:{name}:running")))
                .zcard(self.key(&format!("q:{name}:ready")));
        }
        let cards: Vec<u64> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(names
            .into_iter()
            .zip(cards.chunks(3))
            .map(|(queue, cards)| QueueCounts {
                queue,
                pending: cards[0],
                running: cards[1],
                due: cards[2],
            })
            .filter(|counts| counts.pending + counts.running > 0)
            .collect())
    }
}

/// A queue's hash fields as its state.
fn state(name: String, fields: &[(String, String)]) -> QueueState {
    let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    QueueState {
        name,
        paused: get("paused") == Some("1"),
        concurrency: get("concurrency").and_then(|v| v.parse().ok()),
        max_pending: get("max_pending").and_then(|v| v.parse().ok()),
        updated_at: get("updated_us")
            .and_then(|v| v.parse().ok())
            .and_then(DateTime::from_timestamp_micros)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
    }
}
