//! The queues' shared state (a hash `queue:<name>` per queue, named in the set `queues`) and
//! their counts (the per-queue indexes `q:<name>:pending` and `q:<name>:running`, for every
//! queue named in `qnames`).

use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::{RedisStore, micros, unavailable};
use crate::instance::Instance;
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
        if names.is_empty() {
            return Ok(Vec::new()); // an empty pipeline is an error to Redis
        }
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

    pub(super) async fn count_queue(&self, queue: &str, cap: u64) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let pending: u64 =
            conn.zcard(self.key(&format!("q:{queue}:pending"))).await.map_err(unavailable)?;
        Ok(pending.min(cap))
    }

    pub(super) async fn count_queues(&self) -> Result<Vec<QueueCounts>, StoreError> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = conn.smembers(self.key("qnames")).await.map_err(unavailable)?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
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

/// The instances' heartbeats: `instances` (id -> JSON) and `instances:exp` (id by expiry).
impl RedisStore {
    pub(super) async fn beat(&self, instance: &Instance) -> Result<(), StoreError> {
        let info = serde_json::to_string(instance)
            .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))?;
        let (hash, expiry) = (self.key("instances"), self.key("instances:exp"));
        let mut conn = self.conn.clone();
        let expired: Vec<String> = conn
            .zrangebyscore(&expiry, "-inf", micros(instance.seen_at))
            .await
            .map_err(unavailable)?;
        let mut pipe = redis::pipe();
        if !expired.is_empty() {
            pipe.hdel(&hash, &expired).ignore().zrem(&expiry, &expired).ignore();
        }
        pipe.hset(&hash, &instance.id, info)
            .ignore()
            .zadd(&expiry, &instance.id, micros(instance.expires_at))
            .ignore();
        let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn live_instances(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Instance>, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn
            .zrangebyscore(self.key("instances:exp"), format!("({}", micros(now)), "+inf")
            .await
            .map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let infos: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.key("instances"))
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut instances = crate::store::decode_instances(infos.into_iter().flatten().collect());
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(instances)
    }

    pub(super) async fn forget(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.hdel(self.key("instances"), id).ignore().zrem(self.key("instances:exp"), id).ignore();
        let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }
}
