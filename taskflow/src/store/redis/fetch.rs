//! Fetching available tasks and releasing a lost fetch, each one Lua script: due tasks move
//! from `later` to `ready` (see [`PENDING`]), then the first of `ready` are leased.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::counters::{COUNT, counting};
use super::scripts::PENDING;
use super::{RedisStore, decode, micros, pairs, rfc, unavailable};
use crate::record::TaskRecord;
use crate::store::{Fetch, Lease, StoreError};

/// How many newly due tasks one fetch moves to `ready` at most, so that one script never
/// runs long after an outage left a million due; the next fetch moves the next ones.
const PROMOTE_BATCH: usize = 1000;

/// How many ready tasks one fetch with capped functions reads at most.
const CAPPED_SCAN: usize = 10_000;

/// Leases up to `limit` available tasks of a queue (none while it is paused; within its
/// global limit, if any); returns, per task, its id then its hash's fields. Promotion moves
/// due tasks of every queue to their queue's `ready`.
/// With capped functions, their running tasks are counted from the queue's running index
/// and the ready tasks read in order, passing over a capped function's beyond its room (up to
/// [`CAPPED_SCAN`] of them per fetch: the next fetch goes on).
/// A rate-limited queue takes no more than its token bucket (fields `tokens`, `tokens_us` of
/// its state hash) holds, and a token per task.
/// ARGV: prefix, now_us, now, owner, expires, expires_us, limit, promote batch, queue,
/// global limit (or ''), tokens per second (or ''), burst, scan bound, then pairs of a capped
/// function and its cap.
fn fetch_script() -> String {
    format!(
        "{PENDING}{COUNT}{}",
        &counting(
            r#"
local p, now_us, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[7])
local due = redis.call('ZRANGEBYSCORE', p..':later', '-inf', now_us, 'LIMIT', 0, tonumber(ARGV[8]))
for _, id in ipairs(due) do
  local t = p..':t:'..id
  redis.call('ZREM', p..':later', id)
  if redis.call('HGET', t, 'status') == 'pending' then
    ready(p, id, t)
  end
end
local out = {}
local q = p..':q:'..ARGV[9]
if redis.call('HGET', p..':queue:'..ARGV[9], 'paused') == '1' then return out end
if ARGV[10] ~= '' then
  limit = math.min(limit, tonumber(ARGV[10]) - redis.call('ZCARD', q..':running'))
end
local bucket, tokens = p..':queue:'..ARGV[9], nil
if ARGV[11] ~= '' then
  local b = redis.call('HMGET', bucket, 'tokens', 'tokens_us')
  local burst = tonumber(ARGV[12])
  tokens = burst
  if b[1] and b[2] then
    local elapsed = math.max(0, now_us - tonumber(b[2])) / 1e6
    tokens = math.min(burst, tonumber(b[1]) + elapsed * tonumber(ARGV[11]))
  end
  limit = math.min(limit, math.floor(tokens))
end
if limit <= 0 then return out end
local picked
if #ARGV > 13 then
  local room = {}
  for i = 14, #ARGV, 2 do room[ARGV[i]] = tonumber(ARGV[i + 1]) end
  for _, id in ipairs(redis.call('ZRANGE', q..':running', 0, -1)) do
    local f = redis.call('HGET', p..':t:'..id, 'func')
    if f and room[f] then room[f] = room[f] - 1 end
  end
  picked = {}
  local scanned, bound = 0, tonumber(ARGV[13])
  while #picked < limit and scanned < bound do
    local chunk = redis.call('ZRANGE', q..':ready', scanned, scanned + 99)
    if #chunk == 0 then break end
    for _, rk in ipairs(chunk) do
      scanned = scanned + 1
      local f = redis.call('HGET', p..':t:'..string.match(rk, ':(.*)$'), 'func')
      local left = f and room[f]
      if left == nil or left > 0 then
        if left then room[f] = left - 1 end
        table.insert(picked, rk)
        if #picked == limit then break end
      end
    end
  end
else
  picked = redis.call('ZRANGE', q..':ready', 0, limit - 1)
end
for _, rk in ipairs(picked) do
  local id = string.match(rk, ':(.*)$')
  local t = p..':t:'..id
  local f = redis.call('HMGET', t, 'status', 'due_us')
  -- Promoted by a fetch whose clock read later than this one's: not yet due here.
  local early = f[1] == 'pending' and (tonumber(f[2]) or 0) > now_us
  if not early then redis.call('ZREM', q..':ready', rk) end
  if f[1] == 'pending' and not early then
    local before = facts(t)
    redis.call('HDEL', t, 'rk', 'cancel')
    local seq = tonumber(redis.call('HGET', t, 'seq')) or 0
    redis.call('HSETNX', t, 'start', ARGV[3])
    redis.call('HSETNX', t, 'start_us', ARGV[2])
    redis.call('HSET', t, 'status', 'running', 'owner', ARGV[4], 'expires', ARGV[5], 'expires_us', ARGV[6])
    redis.call('ZREM', p..':s:pending', id)
    redis.call('ZADD', p..':s:running', seq, id)
    queue_status(p, id, t, 'pending', 'running', seq)
    counted(p, t, before)
    redis.call('ZADD', p..':running', ARGV[6], id)
    table.insert(out, id)
    table.insert(out, redis.call('HGETALL', t))
  end
end
if tokens and #out > 0 then
  redis.call('HSET', bucket, 'tokens', string.format('%.6f', tokens - #out / 2), 'tokens_us', ARGV[2])
end
return out
"#
        )
    )
}

/// Puts the tasks running under exactly this lease back to pending; returns how many.
/// ARGV: prefix, owner, expires_us.
fn release_script() -> String {
    format!(
        "{PENDING}{COUNT}{}",
        &counting(
            r#"
local p, owner, expires = ARGV[1], ARGV[2], ARGV[3]
local released = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p..':running', expires, expires)) do
  local t = p..':t:'..id
  local f = redis.call('HMGET', t, 'status', 'owner', 'expires_us')
  if f[1] == 'running' and f[2] == owner and f[3] == expires then
    local before = facts(t)
    local seq = tonumber(redis.call('HGET', t, 'seq')) or 0
    redis.call('HSET', t, 'status', 'pending')
    redis.call('HDEL', t, 'owner', 'expires', 'expires_us')
    redis.call('ZREM', p..':s:running', id)
    redis.call('ZADD', p..':s:pending', seq, id)
    queue_status(p, id, t, 'running', 'pending', seq)
    redis.call('ZREM', p..':running', id)
    to_pending(p, id, t)
    counted(p, t, before)
    released = released + 1
  end
end
return released
"#
        )
    )
}

/// Lets held tasks be fetched at their due time: back in `later` under it, if still pending
/// and waiting there. ARGV: prefix, ids...
const RELEASE_HELD: &str = r#"
local p = ARGV[1]
for i = 2, #ARGV do
  local id = ARGV[i]
  local t = p..':t:'..id
  if redis.call('HGET', t, 'status') == 'pending' and redis.call('ZSCORE', p..':later', id) then
    redis.call('ZADD', p..':later', redis.call('HGET', t, 'due_us') or 0, id)
  end
end
redis.call('PUBLISH', p..':enqueued', '')
return 1
"#;

/// Takes or keeps a leadership. KEYS: the leader key; ARGV: owner, ttl (ms).
const ELECT: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// Gives up a leadership held by the owner. KEYS: the leader key; ARGV: owner.
const RESIGN: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;

/// The fetch and leadership scripts, loaded once per store.
pub(super) struct FetchScripts {
    fetch: redis::Script,
    release: redis::Script,
    release_held: redis::Script,
    elect: redis::Script,
    resign: redis::Script,
}

impl FetchScripts {
    pub(super) fn new() -> Arc<FetchScripts> {
        Arc::new(FetchScripts {
            fetch: redis::Script::new(&fetch_script()),
            release: redis::Script::new(&release_script()),
            release_held: redis::Script::new(RELEASE_HELD),
            elect: redis::Script::new(ELECT),
            resign: redis::Script::new(RESIGN),
        })
    }
}

/// The layout of the keys this binary writes: 2 added the index of pending tasks, 3 the
/// queues (existing tasks are in the default queue), 4 ranks the ready tasks (see
/// [`PENDING`]).
const LAYOUT: i64 = 4;

/// Takes keys of layout 2 to layout 3: the one `ready` becomes the default queue's, and the
/// default queue's indexes of pending and running tasks are the status indexes' copies.
/// ARGV: prefix.
const ADOPT_QUEUES: &str = r#"
local p = ARGV[1]
if tonumber(redis.call('GET', p..':layout') or '0') >= 3 then return 0 end
if redis.call('EXISTS', p..':ready') == 1 then
  redis.call('RENAME', p..':ready', p..':q:default:ready')
end
redis.call('ZUNIONSTORE', p..':q:default:pending', 2, p..':q:default:pending', p..':s:pending')
redis.call('ZUNIONSTORE', p..':q:default:running', 2, p..':q:default:running', p..':s:running')
redis.call('SADD', p..':qnames', 'default')
redis.call('SET', p..':layout', 3)
return 1
"#;

/// Takes keys of layout 3 to layout 4: every queue's ready tasks are scored by rank and
/// named by `seq` (see [`PENDING`]). ARGV: prefix.
fn rank_script() -> String {
    format!(
        "{PENDING}{}",
        r#"
local p = ARGV[1]
if tonumber(redis.call('GET', p..':layout') or '0') >= 4 then return 0 end
for _, q in ipairs(redis.call('SMEMBERS', p..':qnames')) do
  local key = p..':q:'..q..':ready'
  for _, rk in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local id = string.match(rk, ':(.*)$')
    redis.call('ZREM', key, rk)
    local t = p..':t:'..id
    redis.call('HDEL', t, 'rk')
    if redis.call('HGET', t, 'status') == 'pending' then ready(p, id, t) end
  end
end
redis.call('SET', p..':layout', 4)
return 1
"#
    )
}

impl RedisStore {
    /// Takes keys written by an older taskflow to [`LAYOUT`]: pending tasks enqueued before
    /// the index of pending tasks existed are put in it. Idempotent, so instances starting
    /// together may both do it.
    pub(super) async fn adopt_pending(&self) -> Result<(), StoreError> {
        use redis::AsyncCommands;
        let mut conn = self.conn.clone();
        let layout: Option<i64> = conn.get(self.key("layout")).await.map_err(unavailable)?;
        if layout.is_some_and(|found| found >= LAYOUT) {
            return Ok(());
        }
        if layout.is_some_and(|found| found >= 2) {
            return self.adopt_queues().await;
        }
        let ids: Vec<String> =
            conn.zrange(self.key("s:pending"), 0, -1).await.map_err(unavailable)?;
        for record in self.records(&ids).await? {
            let id = record.task_id.to_string();
            let due = micros(crate::store::due_at(&record));
            let mut pipe = redis::pipe();
            pipe.hset(self.key(&format!("t:{id}")), "prio", record.priority)
                .hset(self.key(&format!("t:{id}")), "due_us", due)
                .zadd(self.key("later"), &id, due);
            let _: () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        }
        self.adopt_queues().await
    }

    /// Takes keys of layout 2 or 3 to [`LAYOUT`] (see [`ADOPT_QUEUES`], [`rank_script`]);
    /// each step checks the layout itself, so instances starting together may both run it.
    async fn adopt_queues(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        for script in [ADOPT_QUEUES.to_owned(), rank_script()] {
            let _: i64 = redis::Script::new(&script)
                .arg(&*self.prefix)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    pub(super) async fn fetch_available(
        &self,
        fetch: &Fetch<'_>,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let (limit, now, lease) = (fetch.limit, fetch.now, fetch.lease);
        let global = fetch.global_limit.map(|n| n.to_string()).unwrap_or_default();
        let mut conn = self.conn.clone();
        let mut invocation = self.fetch.fetch.prepare_invoke();
        invocation
            .arg(&*self.prefix)
            .arg(micros(now))
            .arg(rfc(now))
            .arg(&*lease.owner)
            .arg(rfc(lease.expires_at))
            .arg(micros(lease.expires_at))
            .arg(limit.min(i64::MAX as usize))
            .arg(PROMOTE_BATCH)
            .arg(fetch.queue)
            .arg(global);
        match fetch.rate {
            Some(rate) => invocation.arg(rate.per_second()).arg(rate.burst),
            None => invocation.arg("").arg(""),
        };
        invocation.arg(CAPPED_SCAN);
        for (func, cap) in fetch.task_limits {
            invocation.arg(*func).arg(*cap);
        }
        let flat: Vec<redis::Value> =
            invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        let mut fetched = Vec::new();
        let mut items = flat.into_iter();
        while let (Some(id), Some(fields)) = (items.next(), items.next()) {
            let malformed = |e| StoreError::Unavailable(format!("redis: fetch answered {e}"));
            let id: String = redis::from_redis_value(id).map_err(malformed)?;
            let fields: Vec<Vec<u8>> = redis::from_redis_value(fields).map_err(malformed)?;
            match pairs(&id, fields).and_then(|fields| decode(&id, &fields)) {
                Ok(record) => fetched.push(record),
                Err(err) => self.fail_unreadable(&id, lease, &err).await?,
            }
        }
        Ok(fetched)
    }

    /// Fails a leased task whose hash cannot be read: it cannot run, and dropping it would
    /// lose it; its stored fields stay for a look.
    async fn fail_unreadable(
        &self,
        id: &str,
        lease: &Lease,
        err: &StoreError,
    ) -> Result<(), StoreError> {
        tracing::error!(error = %err, "taskflow: stored task is unreadable; marking it failed");
        let now = Utc::now();
        let message = format!("the stored task cannot be read: {err}");
        let mut conn = self.conn.clone();
        let _: i64 = self
            .scripts
            .transition
            .arg(&*self.prefix)
            .arg(id)
            .arg(&*lease.owner)
            .arg("finish")
            .arg("failed")
            .arg(rfc(now))
            .arg(micros(now))
            .arg(0)
            .arg("")
            .arg(1)
            .arg(&message)
            .arg(&message)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn release_held_tasks(
        &self,
        ids: &[crate::id::TaskId],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        for chunk in ids.chunks(500) {
            let mut invocation = self.fetch.release_held.prepare_invoke();
            invocation.arg(&*self.prefix);
            for id in chunk {
                invocation.arg(id.to_string());
            }
            let _: i64 = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        }
        Ok(())
    }

    pub(super) async fn elect_leader(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // Redis keeps the time: the key lapses `until - now` from now, by its clock.
        let ttl = (until - now).num_milliseconds().max(1);
        let mut conn = self.conn.clone();
        let elected: i64 = self
            .fetch
            .elect
            .key(self.key(&format!("leader:{name}")))
            .arg(owner)
            .arg(ttl)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(elected == 1)
    }

    pub(super) async fn resign_leader(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .fetch
            .resign
            .key(self.key(&format!("leader:{name}")))
            .arg(owner)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The earliest due time of a waiting task of any queue (one `later` serves them all):
    /// a producer may wake for another queue's task, and then sleeps again.
    pub(super) async fn next_waiting(
        &self,
        _queue: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        use redis::AsyncCommands;
        let mut conn = self.conn.clone();
        // Tasks due by now sit in `later` only until the next fetch makes them available.
        let now = format!("({}", micros(Utc::now()));
        let first: Vec<(String, f64)> = conn
            .zrangebyscore_limit_withscores(self.key("later"), now, "+inf", 0, 1)
            .await
            .map_err(unavailable)?;
        Ok(first.first().and_then(|(_, score)| DateTime::from_timestamp_micros(*score as i64)))
    }

    pub(super) async fn release_lease(&self, lease: &Lease) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        let released: i64 = self
            .fetch
            .release
            .arg(&*self.prefix)
            .arg(&*lease.owner)
            .arg(micros(lease.expires_at))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(released as usize)
    }
}
