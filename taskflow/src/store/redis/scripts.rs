//! The Lua scripts that make each change to a task atomic in Redis. Keys are derived from the
//! prefix in `ARGV[1]`, so the store needs a single Redis node (not Cluster).

use redis::Script;

use super::counters::{COUNT, counting};

/// Stores a task (once: a task already stored is left alone) unless an active task holds its
/// idempotency key; then records the id as an
/// alias of the holder and returns the holder's id. Returns the stored id otherwise. A task
/// with a run key cancels the task waiting under it (pending, never started): `r:<run key>`
/// names the last task stored under the key.
/// ARGV: prefix, id, base, func, status, created_us, key, requeue, end, end_us, error,
/// priority, due_us, held_until_us (or '': not held), run key (or ''), the error of a replaced
/// task and the time it ends (its end_us is created_us), queue.
pub(super) fn enqueue() -> String {
    format!("{PENDING}{COUNT}{SETTLE}{STORE_TASK}{}", counting("return store_task(ARGV)"))
}

/// How many arguments [`STORE_TASK`] takes for one task.
pub(super) const TASK_ARGS: usize = 18;

/// The body of [`enqueue`] as the function `store_task(A)`, `A` its arguments, so that a
/// schedule's change stores its slots' tasks in the same script.
pub(super) const STORE_TASK: &str = r#"
local function store_task(A)
local p, id, key, status = A[1], A[2], A[7], A[5]
-- Written already (a batch written again after its reply was lost): leave it as it is.
if redis.call('EXISTS', p..':t:'..id) == 1 then return id end
if key ~= '' then
  local holder = redis.call('GET', p..':k:'..key)
  if holder then
    local held = redis.call('HGET', p..':t:'..holder, 'status')
    if held and held ~= 'failed' and held ~= 'cancelled' then
      redis.call('SET', p..':a:'..id, holder)
      return holder
    end
  end
end
local seq = redis.call('INCR', p..':seq')
local t = p..':t:'..id
redis.call('HSET', t, 'base', A[3], 'seq', seq, 'status', status, 'func', A[4],
  'created_us', A[6], 'key', key, 'requeue', A[8], 'retries', 0, 'recoveries', 0,
  'prio', A[12], 'due_us', A[13], 'queue', A[18])
redis.call('ZADD', p..':all', seq, id)
redis.call('SADD', p..':qnames', A[18])
queue_status(p, id, t, '', status, seq)
redis.call('ZADD', p..':s:'..status, seq, id)
redis.call('ZADD', p..':f:'..A[4], seq, id)
redis.call('SADD', p..':funcs', A[4])
if status == 'pending' then
  if key ~= '' then redis.call('SET', p..':k:'..key, id) end
  local rk = A[15]
  if rk ~= '' then
    local waiting = waiting_under(p, rk)
    if waiting then
      local wt = p..':t:'..waiting
      local wb = facts(wt)
      redis.call('HSET', wt, 'error', A[16])
      settle(p, waiting, wt, 'pending', 'cancelled', A[17], A[6])
      counted(p, wt, wb)
    end
    redis.call('HSET', t, 'runkey', rk)
    redis.call('SET', p..':r:'..rk, id)
  end
  to_pending(p, id, t)
  if A[14] ~= '' then
    redis.call('ZADD', p..':later', A[14], id)
  elseif tonumber(A[13]) <= tonumber(A[6]) then
    redis.call('PUBLISH', p..':enqueued', '')
  end
else
  -- Stored finished: its start and duration come from the record.
  local b = cjson.decode(A[3])
  if type(b.start_time) == 'string' then redis.call('HSET', t, 'start', b.start_time) end
  if type(b.duration) == 'number' then
    redis.call('HSET', t, 'duration', string.format('%.17g', b.duration))
  end
  redis.call('HSET', t, 'end', A[9], 'end_us', A[10], 'error', A[11], 'stack', A[11])
  redis.call('ZADD', p..':finished', A[10], id)
end
counted(p, t, {})
return id
end
"#;

/// Writes (or, with an empty new text, deletes) a schedule if its stored text is still the
/// one read, and stores the slots' tasks with it (see [`STORE_TASK`]). ARGV: prefix, name,
/// the text read ('' for none), the new text, then [`TASK_ARGS`] arguments per task.
/// 1 if written.
pub(super) fn swap_schedule() -> String {
    format!(
        "{PENDING}{COUNT}{SETTLE}{STORE_TASK}{}",
        &counting(
            r#"
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
for i = 5, #ARGV, 18 do
  store_task({unpack(ARGV, i, i + 17)})
end
return 1
"#
        )
    )
}

/// The index of pending tasks, shared by the scripts as a prelude. A pending task waits in
/// `later` (scored by its due time) until a fetch finds it due and moves it to `ready` (the
/// function `ready`), where every member has its rank as the score (the due time less
/// `priority` × [`PRIORITY_STEP`](crate::store::PRIORITY_STEP), in microseconds: exact as a
/// double for any date and any priority below a million) and the name `<seq>:<id>` (`seq` in
/// zero-padded hex), so that `ZRANGE ready 0 n` lists the available tasks in fetch order:
/// lowest rank, then enqueue order. The task's hash keeps its `ready` name in `rk`.
/// Each queue has its own `ready`, and its own indexes of `pending` and `running` tasks
/// (`q:<queue>:<what>`), kept beside the status indexes by `queue_status`.
pub(super) const PENDING: &str = r#"
local function qk(p, t, what)
  return p..':q:'..(redis.call('HGET', t, 'queue') or 'default')..':'..what
end
local function queue_status(p, id, t, from, to, seq)
  if from == 'pending' or from == 'running' then redis.call('ZREM', qk(p, t, from), id) end
  if to == 'pending' or to == 'running' then redis.call('ZADD', qk(p, t, to), seq, id) end
end
local function ready(p, id, t)
  local f = redis.call('HMGET', t, 'prio', 'due_us', 'seq')
  local rk = string.format('%016x:%s', tonumber(f[3]) or 0, id)
  local rank = (tonumber(f[2]) or 0) - (tonumber(f[1]) or 0) * 60000000
  redis.call('ZADD', qk(p, t, 'ready'), string.format('%.0f', rank), rk)
  redis.call('HSET', t, 'rk', rk)
end
local function to_pending(p, id, t)
  redis.call('ZADD', p..':later', redis.call('HGET', t, 'due_us') or 0, id)
end
local function out_of_pending(p, id, t)
  redis.call('ZREM', p..':later', id)
  local rk = redis.call('HGET', t, 'rk')
  if rk then
    redis.call('ZREM', qk(p, t, 'ready'), rk)
    redis.call('HDEL', t, 'rk')
  end
end
"#;

/// Ends a task's run: moves it between the status and lease indexes, and frees its key when
/// it failed or was cancelled. Shared by the scripts below as a prelude, after [`PENDING`].
const SETTLE: &str = r#"
local function settle(p, id, t, from, to, end_rfc, end_us)
  local seq = tonumber(redis.call('HGET', t, 'seq')) or 0
  if from == 'pending' then out_of_pending(p, id, t) end
  if to == 'pending' then to_pending(p, id, t) end
  redis.call('HSET', t, 'status', to)
  redis.call('HDEL', t, 'owner', 'expires', 'expires_us')
  redis.call('ZREM', p..':s:'..from, id)
  redis.call('ZADD', p..':s:'..to, seq, id)
  queue_status(p, id, t, from, to, seq)
  redis.call('ZREM', p..':running', id)
  if to ~= 'pending' and to ~= 'running' then
    redis.call('HSET', t, 'end', end_rfc, 'end_us', end_us)
    redis.call('ZADD', p..':finished', end_us, id)
  end
  if to ~= 'pending' and to ~= 'running' then
    local rk = redis.call('HGET', t, 'runkey')
    if rk and redis.call('GET', p..':r:'..rk) == id then redis.call('DEL', p..':r:'..rk) end
  end
  if to == 'failed' or to == 'cancelled' then
    local key = redis.call('HGET', t, 'key')
    if key and key ~= '' and redis.call('GET', p..':k:'..key) == id then
      redis.call('DEL', p..':k:'..key)
    end
  end
end
local function waiting_under(p, rk)
  local id = redis.call('GET', p..':r:'..rk)
  if not id then return nil end
  local t = p..':t:'..id
  if redis.call('HGET', t, 'status') ~= 'pending' or redis.call('HEXISTS', t, 'start') == 1 then
    return nil
  end
  return id
end
"#;

/// A fenced change to a running task, as a function shared by [`transition`] and
/// [`transition_many`]: 1 if applied, 0 when the lease no longer holds it. `a` holds the
/// kind's arguments: finish: status, end, end_us, retries, result or '', has_error, error,
/// stack; reschedule: due, due_us, retries, has_error, error, stack; requeue: none.
const APPLY: &str = r#"
local function apply(p, id, owner, kind, a)
  local t = p..':t:'..id
  if redis.call('HGET', t, 'status') ~= 'running' or redis.call('HGET', t, 'owner') ~= owner then
    return 0
  end
  local before = facts(t)
  if kind == 'finish' then
    local start_us = tonumber(redis.call('HGET', t, 'start_us') or a[3])
    redis.call('HSET', t, 'retries', a[4], 'duration', (tonumber(a[3]) - start_us) / 1000000)
    if a[5] ~= '' then redis.call('HSET', t, 'result', a[5]) end
    if a[6] == '1' then redis.call('HSET', t, 'error', a[7], 'stack', a[8]) end
    settle(p, id, t, 'running', a[1], a[2], a[3])
  elseif kind == 'reschedule' then
    redis.call('HSET', t, 'sched', a[1], 'due_us', a[2], 'retries', a[3])
    if a[4] == '1' then redis.call('HSET', t, 'error', a[5], 'stack', a[6]) end
    settle(p, id, t, 'running', 'pending', '', '')
  else
    settle(p, id, t, 'running', 'pending', '', '')
  end
  counted(p, t, before)
  return 1
end
"#;

/// One fenced change. ARGV: prefix, id, owner, kind, then the kind's arguments (see [`APPLY`]).
pub(super) fn transition() -> String {
    format!(
        "{PENDING}{COUNT}{SETTLE}{APPLY}{}",
        &counting(
            r#"
return apply(ARGV[1], ARGV[2], ARGV[3], ARGV[4], {unpack(ARGV, 5)})
"#
        )
    )
}

/// Several fenced changes in one call; returns 1 or 0 per change, in order. ARGV: prefix, then
/// per change: how many arguments its kind has, id, owner, kind, the kind's arguments.
pub(super) fn transition_many() -> String {
    format!(
        "{PENDING}{COUNT}{SETTLE}{APPLY}{}",
        &counting(
            r#"
local p, out, i = ARGV[1], {}, 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local a = {}
  for k = 1, n do a[k] = ARGV[i + 3 + k] end
  table.insert(out, apply(p, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], a))
  i = i + 4 + n
end
return out
"#
        )
    )
}

/// Cancels a pending task (`ARGV[5]` is `pending`), or flags a running one for its runner
/// (`running`); `ARGV[2]` may be an alias. Returns its status before the call, or nil.
/// ARGV: prefix, id, now, now_us, which.
pub(super) fn cancel() -> String {
    format!(
        "{PENDING}{COUNT}{SETTLE}{}",
        &counting(
            r#"
local p, id = ARGV[1], ARGV[2]
if redis.call('EXISTS', p..':t:'..id) == 0 then
  id = redis.call('GET', p..':a:'..id) or id
end
local t = p..':t:'..id
local status = redis.call('HGET', t, 'status')
if not status then return false end
if status == ARGV[5] and status == 'pending' then
  local before = facts(t)
  settle(p, id, t, 'pending', 'cancelled', ARGV[3], ARGV[4])
  counted(p, t, before)
elseif status == ARGV[5] and status == 'running' then
  redis.call('HSET', t, 'cancel', '1')
end
return status
"#
        )
    )
}

/// Cancels the task waiting under a run key (pending, never started); returns its id, or nil.
/// ARGV: prefix, run key, now, now_us.
pub(super) fn cancel_scheduled() -> String {
    format!(
        "{PENDING}{COUNT}{SETTLE}{}",
        &counting(
            r#"
local p = ARGV[1]
local waiting = waiting_under(p, ARGV[2])
if not waiting then return false end
local t = p..':t:'..waiting
local before = facts(t)
settle(p, waiting, t, 'pending', 'cancelled', ARGV[3], ARGV[4])
counted(p, t, before)
return waiting
"#
        )
    )
}

/// Settles a task whose runner died, if it is still running under an expired lease; 1 if
/// this call did. ARGV: prefix, id, now_us, to, end, error, recoveries.
pub(super) fn reclaim() -> String {
    format!(
        "{PENDING}{COUNT}{SETTLE}{}",
        &counting(
            r#"
local p, id = ARGV[1], ARGV[2]
local t = p..':t:'..id
if redis.call('HGET', t, 'status') ~= 'running' then return 0 end
if tonumber(redis.call('HGET', t, 'expires_us') or '0') >= tonumber(ARGV[3]) then return 0 end
local before = facts(t)
redis.call('HSET', t, 'recoveries', ARGV[7])
if ARGV[4] ~= 'pending' then redis.call('HSET', t, 'error', ARGV[6], 'stack', ARGV[6]) end
settle(p, id, t, 'running', ARGV[4], ARGV[5], ARGV[3])
counted(p, t, before)
return 1
"#
        )
    )
}

/// Extends the leases `owner` holds. ARGV: prefix, owner, expires, expires_us, ids...
pub(super) const RENEW: &str = r#"
local p, owner = ARGV[1], ARGV[2]
for i = 5, #ARGV do
  local t = p..':t:'..ARGV[i]
  if redis.call('HGET', t, 'status') == 'running' and redis.call('HGET', t, 'owner') == owner then
    redis.call('HSET', t, 'expires', ARGV[3], 'expires_us', ARGV[4])
    redis.call('ZADD', p..':running', ARGV[4], ARGV[i])
  end
end
return 1
"#;

/// Deletes finished tasks; returns how many. ARGV: prefix, ids...
const DELETE: &str = r#"
local p, removed = ARGV[1], 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local t = p..':t:'..id
  local status = redis.call('HGET', t, 'status')
  if status and status ~= 'pending' and status ~= 'running' then
    local before = facts(t)
    local func, key = redis.call('HGET', t, 'func'), redis.call('HGET', t, 'key')
    redis.call('ZREM', p..':all', id)
    redis.call('ZREM', p..':s:'..status, id)
    redis.call('ZREM', p..':f:'..func, id)
    redis.call('ZREM', p..':finished', id)
    if key and key ~= '' and redis.call('GET', p..':k:'..key) == id then
      redis.call('DEL', p..':k:'..key)
    end
    redis.call('DEL', t, p..':l:'..id)
    counted(p, t, before)
    removed = removed + 1
  elseif not status then
    redis.call('ZREM', p..':finished', id)
  end
end
return removed
"#;

/// The scripts the store calls, loaded once.
pub(super) struct Scripts {
    pub(super) enqueue: Script,
    pub(super) transition: Script,
    pub(super) transition_many: Script,
    pub(super) cancel: Script,
    pub(super) cancel_scheduled: Script,
    pub(super) reclaim: Script,
    pub(super) renew: Script,
    pub(super) delete: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            enqueue: Script::new(&enqueue()),
            transition: Script::new(&transition()),
            transition_many: Script::new(&transition_many()),
            cancel: Script::new(&cancel()),
            cancel_scheduled: Script::new(&cancel_scheduled()),
            reclaim: Script::new(&reclaim()),
            renew: Script::new(RENEW),
            delete: Script::new(&format!("{COUNT}{}", counting(DELETE))),
        }
    }
}
