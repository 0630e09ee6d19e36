//! The counters on Redis ([`crate::store::counters`]), kept by the scripts that change tasks:
//! each takes the task's [`COUNT`] facts before its change and counts the difference after.
//! - `cn`, `ct`, `cs`: hashes of tasks, timed tasks and their seconds, by
//!   `<func>\n<queue>\n<status>`;
//! - `m:<minute>`: a hash per unix minute of `<func>\n<queue>\n<what>` (enqueued, succeeded,
//!   failed, interrupted, cancelled, retried, timed, seconds, min, max, and `h0`.. the
//!   histogram), and `minutes`, a sorted set of the minutes there are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::{RedisStore, StoreError, unavailable};
use crate::store::counters::{
    FINE_MINUTES, MinuteCounts, ROLLUP, StatusCount, minute_of, minute_start,
};

/// The Lua prelude of counting, after [`PENDING`](super::scripts::PENDING): `facts(t)` before
/// a change, `counted(p, t, before)` after it, and `flush()` at the end of the script (which
/// [`counting`] wraps every script's body with). Its bounds are
/// [`DURATION_BOUNDS`](crate::store::counters::DURATION_BOUNDS) (a test checks).
pub(super) const COUNT: &str = r#"
local BOUNDS = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800}
local ENDS = {success = 'succeeded', failed = 'failed', interrupted = 'interrupted', cancelled = 'cancelled'}
local function facts(t)
  return redis.call('HMGET', t, 'status', 'duration', 'retries', 'func', 'queue', 'end_us', 'created_us')
end
-- A stored number, or nil when the field holds something else (a damaged task counts as
-- one without it rather than failing the script that changes it).
local function number(v)
  local n = tonumber(v)
  if n and n == n and n > -1e300 and n < 1e300 then return n end
end
-- The script's counter changes, added up and written once at its end by `flush` (a fetch of
-- fifty tasks writes two count fields, not a hundred).
local ADD, ADDF, LOW, HIGH, SEEN = {}, {}, {}, {}, {}
local function bump(into, key, field, n)
  local h = into[key]
  if not h then h = {}; into[key] = h end
  h[field] = (h[field] or 0) + n
end
local function keep(into, key, field, d, better)
  local h = into[key]
  if not h then h = {}; into[key] = h end
  if not h[field] or better(d, h[field]) then h[field] = d end
end
local function flush()
  for key, h in pairs(ADD) do
    for field, n in pairs(h) do
      if n ~= 0 then redis.call('HINCRBY', key, field, n) end
    end
  end
  for key, h in pairs(ADDF) do
    for field, x in pairs(h) do
      if x ~= 0 then redis.call('HINCRBYFLOAT', key, field, string.format('%.17g', x)) end
    end
  end
  for key, h in pairs(LOW) do
    for field, d in pairs(h) do
      local stored = tonumber(redis.call('HGET', key, field))
      if not stored or d < stored then redis.call('HSET', key, field, string.format('%.17g', d)) end
    end
  end
  for key, h in pairs(HIGH) do
    for field, d in pairs(h) do
      local stored = tonumber(redis.call('HGET', key, field))
      if not stored or d > stored then redis.call('HSET', key, field, string.format('%.17g', d)) end
    end
  end
  for key, minutes in pairs(SEEN) do
    for minute in pairs(minutes) do redis.call('ZADD', key, minute, minute) end
  end
  ADD, ADDF, LOW, HIGH, SEEN = {}, {}, {}, {}, {}
end
local function tally(p, k, status, d, sign)
  local field = k..'\n'..status
  bump(ADD, p..':cn', field, sign)
  local seconds = number(d)
  if seconds then
    bump(ADD, p..':ct', field, sign)
    bump(ADDF, p..':cs', field, sign * seconds)
  end
end
local function minute_key(p, minute)
  local h = SEEN[p..':minutes']
  if not h then h = {}; SEEN[p..':minutes'] = h end
  h[minute] = true
  return p..':m:'..minute
end
local function now_minute()
  return math.floor(tonumber(redis.call('TIME')[1]) / 60)
end
local function counted(p, t, before)
  local after = facts(t)
  local old, new = before[1], after[1]
  local k = (after[4] or before[4] or '')..'\n'..(after[5] or before[5] or 'default')
  if old ~= new or before[2] ~= after[2] then
    if old then tally(p, k, old, before[2], -1) end
    if new then tally(p, k, new, after[2], 1) end
  end
  if new and not old then
    local m = minute_key(p, math.floor((number(after[7]) or 0) / 60000000))
    bump(ADD, m, k..'\nenqueued', 1)
  end
  if ENDS[new] and (not old or old == 'pending' or old == 'running') then
    local at = number(after[6])
    local m = minute_key(p, at and math.floor(at / 60000000) or now_minute())
    bump(ADD, m, k..'\n'..ENDS[new], 1)
    local d = number(after[2])
    if d and new ~= 'cancelled' then
      bump(ADD, m, k..'\ntimed', 1)
      bump(ADDF, m, k..'\nseconds', d)
      keep(LOW, m, k..'\nmin', d, function(a, b) return a < b end)
      keep(HIGH, m, k..'\nmax', d, function(a, b) return a > b end)
      local bucket = #BOUNDS
      for i, bound in ipairs(BOUNDS) do
        if d <= bound then bucket = i - 1; break end
      end
      bump(ADD, m, k..'\nh'..bucket, 1)
    end
  end
  local tries = math.floor((number(after[3]) or 0) - (number(before[3]) or 0))
  if old and new and tries > 0 then
    bump(ADD, minute_key(p, now_minute()), k..'\nretried', tries)
  end
end
"#;

/// Merges the history's minutes before `ARGV[2]` into one hash per `ARGV[3]` minutes (at the
/// span's first minute); returns how many minutes went. ARGV: prefix, coarse minute, span.
const ROLL_UP: &str = r#"
local p, coarse, span = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local moved = 0
for _, minute in ipairs(redis.call('ZRANGEBYSCORE', p..':minutes', '-inf', '('..coarse)) do
  local m = tonumber(minute)
  if m and m % span ~= 0 then
    local first = m - m % span
    local from, into = p..':m:'..minute, p..':m:'..first
    local fields = redis.call('HGETALL', from)
    for i = 1, #fields, 2 do
      local field, value = fields[i], fields[i + 1]
      local what, n = string.match(field, '[^\n]*$'), tonumber(value)
      if not n then
        -- a damaged figure is left out
      elseif what == 'seconds' then
        redis.call('HINCRBYFLOAT', into, field, value)
      elseif what == 'min' or what == 'max' then
        local stored = tonumber(redis.call('HGET', into, field))
        if not stored or (what == 'min' and n < stored) or (what == 'max' and n > stored) then
          redis.call('HSET', into, field, value)
        end
      elseif n == math.floor(n) then
        redis.call('HINCRBY', into, field, value)
      end
    end
    redis.call('DEL', from)
    redis.call('ZREM', p..':minutes', minute)
    redis.call('ZADD', p..':minutes', first, first)
    moved = moved + 1
  end
end
return moved
"#;

/// A script's `body` (after its preludes) run so that its counter changes are written once,
/// whatever it returns.
pub(super) fn counting(body: &str) -> String {
    format!("local function main()\n{body}\nend\nlocal out = main()\nflush()\nreturn out\n")
}

impl RedisStore {
    /// [`Store::counts`](crate::store::Store::counts) on this store.
    pub(super) async fn read_counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let mut conn = self.conn.clone();
        let (tasks, timed, seconds): (
            BTreeMap<String, i64>,
            BTreeMap<String, i64>,
            BTreeMap<String, f64>,
        ) = redis::pipe()
            .hgetall(self.key("cn"))
            .hgetall(self.key("ct"))
            .hgetall(self.key("cs"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let counts = tasks.into_iter().filter_map(|(field, n)| {
            let mut parts = field.splitn(3, '\n');
            let (func_name, queue, status) = (parts.next()?, parts.next()?, parts.next()?);
            Some(StatusCount {
                func_name: func_name.to_owned(),
                queue: queue.to_owned(),
                status: status.to_owned(),
                tasks: n,
                timed: timed.get(&field).copied().unwrap_or_default(),
                seconds: seconds.get(&field).copied().unwrap_or_default(),
            })
        });
        Ok(crate::store::counters::merge_counts(counts))
    }

    /// [`Store::history`](crate::store::Store::history) on this store.
    pub(super) async fn read_history(
        &self,
        since: DateTime<Utc>,
        step: u32,
    ) -> Result<Vec<MinuteCounts>, StoreError> {
        let mut conn = self.conn.clone();
        let minutes: Vec<i64> = conn
            .zrangebyscore(self.key("minutes"), minute_of(since), "+inf")
            .await
            .map_err(unavailable)?;
        let mut pipe = redis::pipe();
        for minute in &minutes {
            pipe.hgetall(self.key(&format!("m:{minute}")));
        }
        let hashes: Vec<BTreeMap<String, String>> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut found = Vec::new();
        for (minute, fields) in minutes.into_iter().zip(hashes) {
            let mut by_key: BTreeMap<(String, String), MinuteCounts> = BTreeMap::new();
            for (field, value) in fields {
                let mut parts = field.splitn(3, '\n');
                let (Some(func), Some(queue), Some(what)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let entry = by_key
                    .entry((func.to_owned(), queue.to_owned()))
                    .or_insert_with(|| MinuteCounts::empty(minute_start(minute), func, queue));
                set(entry, what, &value);
            }
            found.extend(by_key.into_values());
        }
        Ok(crate::store::counters::regroup(found, since, step))
    }

    /// [`Store::compact_counters`](crate::store::Store::compact_counters) on this store: the
    /// history older than [`FINE_MINUTES`] is merged into hashes of [`ROLLUP`] minutes.
    pub(super) async fn roll_up(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(ROLL_UP));
        let mut conn = self.conn.clone();
        let coarse = minute_of(now) - FINE_MINUTES;
        let _: i64 = SCRIPT
            .prepare_invoke()
            .arg(&*self.prefix)
            .arg(coarse)
            .arg(ROLLUP)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// [`Store::trim_history`](crate::store::Store::trim_history) on this store.
    pub(super) async fn drop_history(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        let first = minute_of(before);
        let minutes: Vec<i64> = conn
            .zrangebyscore(self.key("minutes"), "-inf", format!("({first}"))
            .await
            .map_err(unavailable)?;
        let mut gone = 0;
        for minute in minutes {
            let key = self.key(&format!("m:{minute}"));
            let fields: Vec<String> = conn.hkeys(&key).await.map_err(unavailable)?;
            let mut keys: Vec<&str> =
                fields.iter().filter_map(|f| f.rsplit_once('\n').map(|(key, _)| key)).collect();
            keys.sort_unstable();
            keys.dedup();
            gone += keys.len();
            let _: () = redis::pipe()
                .del(&key)
                .zrem(self.key("minutes"), minute)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(gone)
    }
}

/// Sets the figure `what` of `minute` from its stored `value`.
fn set(minute: &mut MinuteCounts, what: &str, value: &str) {
    let int = || value.parse::<i64>().unwrap_or_default();
    let real = || value.parse::<f64>().ok();
    match what {
        "enqueued" => minute.enqueued = int(),
        "succeeded" => minute.succeeded = int(),
        "failed" => minute.failed = int(),
        "interrupted" => minute.interrupted = int(),
        "cancelled" => minute.cancelled = int(),
        "retried" => minute.retried = int(),
        "timed" => minute.timed = int(),
        "seconds" => minute.seconds = real().unwrap_or_default(),
        "min" => minute.min_duration = real(),
        "max" => minute.max_duration = real(),
        other => {
            let bucket = other.strip_prefix('h').and_then(|b| b.parse::<usize>().ok());
            if let Some(slot) = bucket.and_then(|b| minute.histogram.get_mut(b)) {
                *slot = int();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::counters::DURATION_BOUNDS;

    #[test]
    fn the_scripts_bounds_are_the_histograms() {
        let line = super::COUNT.lines().find(|l| l.starts_with("local BOUNDS")).unwrap();
        let inner = line.split_once('{').unwrap().1.trim_end_matches('}');
        let bounds: Vec<f64> = inner.split(", ").map(|b| b.parse().unwrap()).collect();
        assert_eq!(bounds, DURATION_BOUNDS);
    }
}
