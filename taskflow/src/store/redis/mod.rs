//! [`RedisStore`]: tasks in Redis, shared by every instance of an app.

mod fetch;
mod scripts;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::reclaim::reclaim;
use super::{
    Change, DEFAULT_PAGE, Enqueued, FunctionStats, Lease, P95_WINDOW, Reclaimed, Retention, Store,
    StoreError, TaskPage, TaskQuery, TaskStats, Transition, WriteTicket, p95,
};
use crate::id::TaskId;
use crate::record::{LogEntry, TaskRecord, TaskStatus};

/// Tasks in Redis, shared by several instances.
///
/// Every change to a task is one Lua script, so it is atomic: enqueue with its idempotency
/// key, claim, fenced transitions, cancel, reclaim of expired leases (once, whichever instance
/// gets there first), deletion. Indexes are sorted sets by enqueue order. It needs a single
/// Redis node or a primary with replicas, not Redis Cluster (scripts reach keys they derive).
///
/// **Persistence.** Redis keeps data in memory; the guarantees hold across a Redis restart
/// only as far as its persistence does. Run it with the append-only file on
/// (`appendonly yes`): with `appendfsync everysec` (the default) a Redis crash or power loss
/// can lose the last second of enqueues and state changes, with `appendfsync always` nothing
/// acknowledged is lost. RDB snapshots alone lose everything since the last snapshot. Tasks
/// in flight when Redis restarts without them are gone from the history, not run twice.
///
/// ```rust,no_run
/// # async fn run() -> taskflow::Result<()> {
/// use taskflow::{RedisStore, TaskManager};
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let manager = TaskManager::builder().store(store).build().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    runtime: tokio::runtime::Handle,
    writes: tokio_util::task::TaskTracker,
    wake: Arc<tokio::sync::Notify>,
    scripts: Arc<Scripts>,
    fetch: Arc<fetch::FetchScripts>,
}

struct Scripts {
    enqueue: Script,
    transition: Script,
    cancel: Script,
    cancel_scheduled: Script,
    reclaim: Script,
    renew: Script,
    delete: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn unavailable(err: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {err}"))
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn rfc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The arguments of the `transition` script for `change` to task `id` under `lease`.
fn transition_args(prefix: &str, id: &TaskId, lease: &Lease, change: Transition) -> Vec<String> {
    let mut args = vec![prefix.to_owned(), id.to_string(), lease.owner.to_string()];
    match change {
        Transition::Finished { status, end_time, retries_used, result, error, stacktrace } => {
            args.extend([
                "finish".to_owned(),
                status.as_str().to_owned(),
                rfc(end_time),
                micros(end_time).to_string(),
                retries_used.to_string(),
                result.map(|r| r.to_string()).unwrap_or_default(),
                u8::from(error.is_some()).to_string(),
                error.unwrap_or_default(),
                stacktrace.unwrap_or_default(),
            ]);
        }
        Transition::Reschedule { due, retries_used, error, stacktrace } => {
            args.extend([
                "reschedule".to_owned(),
                rfc(due),
                micros(due).to_string(),
                retries_used.to_string(),
                u8::from(error.is_some()).to_string(),
                error.unwrap_or_default(),
                stacktrace.unwrap_or_default(),
            ]);
        }
        Transition::Requeue => args.push("requeue".to_owned()),
    }
    args
}

/// A task's hash, as returned by `HGETALL`, back to a record (without its logs).
fn decode(id: &str, fields: &HashMap<String, String>) -> Result<TaskRecord, StoreError> {
    let corrupt = |column: &str, reason: String| StoreError::Corrupt {
        id: id.to_owned(),
        reason: format!("field `{column}`: {reason}"),
    };
    let base = fields.get("base").ok_or_else(|| corrupt("base", "missing".to_owned()))?;
    let mut record: TaskRecord =
        serde_json::from_str(base).map_err(|e| corrupt("base", e.to_string()))?;
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        fields
            .get(name)
            .filter(|v| !v.is_empty())
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|at| at.with_timezone(&Utc))
                    .map_err(|e| corrupt(name, e.to_string()))
            })
            .transpose()
    };
    let number = |name: &str| -> Result<Option<f64>, StoreError> {
        fields.get(name).map(|v| v.parse().map_err(|_| corrupt(name, v.clone()))).transpose()
    };
    let status = fields.get("status").ok_or_else(|| corrupt("status", "missing".to_owned()))?;
    record.status = status.parse().map_err(|e: String| corrupt("status", e))?;
    record.start_time = time("start")?;
    record.end_time = time("end")?.or(record.end_time);
    record.duration = number("duration")?;
    record.retries_used = number("retries")?.unwrap_or(0.0) as u32;
    record.recoveries = number("recoveries")?.unwrap_or(0.0) as u32;
    if let Some(error) = fields.get("error") {
        record.error = Some(error.clone());
        record.stacktrace = fields.get("stack").cloned();
    }
    record.result = fields
        .get("result")
        .map(|v| serde_json::from_str(v).map_err(|e| corrupt("result", e.to_string())))
        .transpose()?;
    // A retry or a snooze moved it (the base keeps the time it was enqueued with).
    if let Some(due) = time("sched")? {
        record.scheduled_at = Some(due);
    }
    record.lease_owner = fields.get("owner").cloned();
    record.lease_expires_at = time("expires")?;
    Ok(record)
}

/// `HGETALL`'s flat answer as a map.
fn pairs(id: &str, flat: Vec<Vec<u8>>) -> Result<HashMap<String, String>, StoreError> {
    let mut map = HashMap::new();
    let mut items = flat.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        let key = String::from_utf8(key).map_err(|_| StoreError::Corrupt {
            id: id.to_owned(),
            reason: "a field name is not UTF-8".to_owned(),
        })?;
        let value = String::from_utf8(value).map_err(|_| StoreError::Corrupt {
            id: id.to_owned(),
            reason: format!("field `{key}`: not UTF-8"),
        })?;
        map.insert(key, value);
    }
    Ok(map)
}

impl RedisStore {
    /// Connects to `url` (`redis://host:6379/0`), keeping tasks under the prefix `taskflow`.
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        Self::connect_with_prefix(url, "taskflow").await
    }

    /// Like [`RedisStore::connect`], with keys under `prefix` (several apps, or tests, can
    /// share one Redis).
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let open = |reason: String| StoreError::Open { path: super::redact_url(url), reason };
        let client = redis::Client::open(url).map_err(|e| open(e.to_string()))?;
        // Generous timeouts: a big page or a busy server is slow, not gone. Reconnects are
        // retried by the manager; what fails still reaches the caller as an error.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(30)))
            .set_connection_timeout(Some(std::time::Duration::from_secs(10)));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| open(e.to_string()))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| open("must be called inside a tokio runtime".to_owned()))?;
        let scripts = Scripts {
            enqueue: Script::new(&scripts::enqueue()),
            transition: Script::new(&scripts::transition()),
            cancel: Script::new(&scripts::cancel()),
            cancel_scheduled: Script::new(&scripts::cancel_scheduled()),
            reclaim: Script::new(&scripts::reclaim()),
            renew: Script::new(scripts::RENEW),
            delete: Script::new(scripts::DELETE),
        };
        let store = RedisStore {
            conn,
            prefix: prefix.into(),
            runtime,
            writes: tokio_util::task::TaskTracker::new(),
            wake: Arc::new(tokio::sync::Notify::new()),
            scripts: Arc::new(scripts),
            fetch: fetch::FetchScripts::new(),
        };
        store.adopt_pending().await.map_err(|e| open(e.to_string()))?;
        Ok(store)
    }

    fn key(&self, parts: &str) -> String {
        format!("{}:{parts}", self.prefix)
    }

    /// Writes `record` in the background, held back from fetching until `hold`, if given.
    fn stage(
        &self,
        record: TaskRecord,
        hold: Option<DateTime<Utc>>,
    ) -> Result<Enqueued, StoreError> {
        let id = record.task_id;
        // A record is enqueued before it runs, so it has no logs: they go to their own list.
        debug_assert!(record.logs.is_empty());
        let base = serde_json::to_string(&record)
            .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))?;
        let end = record.end_time.map(|at| (rfc(at), micros(at).to_string())).unwrap_or_default();
        let due = micros(crate::store::due_at(&record)).to_string();
        let args = vec![
            self.prefix.to_string(),
            id.to_string(),
            base,
            record.func_name.clone(),
            record.status.as_str().to_owned(),
            micros(record.created_at).to_string(),
            record.idempotency_key.clone().unwrap_or_default(),
            u8::from(record.requeue_on_interrupt).to_string(),
            end.0,
            end.1,
            record.error.unwrap_or_default(),
            record.priority.to_string(),
            due,
            hold.map(|at| micros(at).to_string()).unwrap_or_default(),
            record.run_key.clone().unwrap_or_default(),
            crate::store::replaced(&id),
            rfc(record.created_at),
            micros(record.created_at).to_string(),
        ];
        let (done, ticket) = WriteTicket::new();
        let (scripts, mut conn) = (Arc::clone(&self.scripts), self.conn.clone());
        let write = async move {
            if !done.start() {
                return; // its caller gave up waiting and was told it is not stored
            }
            let mut invocation = scripts.enqueue.prepare_invoke();
            for arg in &args {
                invocation.arg(arg);
            }
            let stored: Result<String, _> = invocation.invoke_async(&mut conn).await;
            done.settle(stored.map(|_| ()).map_err(unavailable));
        };
        self.writes.spawn_on(write, &self.runtime);
        Ok(Enqueued { id, created: true, write: Some(ticket) })
    }

    async fn fields(&self, id: &str) -> Result<HashMap<String, String>, StoreError> {
        let mut conn = self.conn.clone();
        let flat: Vec<Vec<u8>> =
            conn.hgetall(self.key(&format!("t:{id}"))).await.map_err(unavailable)?;
        pairs(id, flat)
    }

    /// The records of `ids`, in order, skipping any that vanished.
    async fn records(&self, ids: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        let mut records = Vec::new();
        let mut conn = self.conn.clone();
        for chunk in ids.chunks(500) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hgetall(self.key(&format!("t:{id}")));
            }
            let all: Vec<Vec<Vec<u8>>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
            let present = chunk.iter().zip(all).filter(|(_, flat)| !flat.is_empty());
            records.extend(super::readable(present, |(id, flat)| decode(id, &pairs(id, flat)?))?);
        }
        Ok(records)
    }
}

#[async_trait]
impl Store for RedisStore {
    fn enqueue(&self, record: TaskRecord) -> Result<Enqueued, StoreError> {
        self.stage(record, None)
    }

    fn enqueue_held(
        &self,
        record: TaskRecord,
        until: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        self.stage(record, Some(until))
    }

    async fn release_held(&self, ids: &[TaskId]) -> Result<(), StoreError> {
        self.release_held_tasks(ids).await
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let mut key = id.to_string();
        let mut fields = self.fields(&key).await?;
        if fields.is_empty() {
            let mut conn = self.conn.clone();
            let holder: Option<String> =
                conn.get(self.key(&format!("a:{key}"))).await.map_err(unavailable)?;
            let Some(holder) = holder else { return Ok(None) };
            fields = self.fields(&holder).await?;
            if fields.is_empty() {
                return Ok(None);
            }
            key = holder;
        }
        let mut record = decode(&key, &fields)?;
        let mut conn = self.conn.clone();
        let logs: Vec<String> =
            conn.lrange(self.key(&format!("l:{key}")), 0, -1).await.map_err(unavailable)?;
        for line in logs {
            let entry: LogEntry = serde_json::from_str(&line).map_err(|e| StoreError::Corrupt {
                id: key.clone(),
                reason: format!("log line: {e}"),
            })?;
            record.logs.push(entry);
        }
        Ok(Some(record))
    }

    async fn resolve(&self, id: &TaskId) -> Result<Option<TaskId>, StoreError> {
        let mut conn = self.conn.clone();
        let key = id.to_string();
        let exists: bool = conn.exists(self.key(&format!("t:{key}"))).await.map_err(unavailable)?;
        if exists {
            return Ok(Some(*id));
        }
        let holder: Option<String> =
            conn.get(self.key(&format!("a:{key}"))).await.map_err(unavailable)?;
        let Some(holder) = holder else { return Ok(None) };
        let exists: bool =
            conn.exists(self.key(&format!("t:{holder}"))).await.map_err(unavailable)?;
        let parsed = holder.parse().map_err(|_| StoreError::Corrupt {
            id: key,
            reason: format!("alias points at `{holder}`, not a task id"),
        })?;
        Ok(exists.then_some(parsed))
    }

    async fn transition(
        &self,
        id: &TaskId,
        lease: &Lease,
        change: Transition,
    ) -> Result<bool, StoreError> {
        let args = transition_args(&self.prefix, id, lease, change);
        let mut invocation = self.scripts.transition.prepare_invoke();
        for arg in &args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        let applied: i64 = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(applied == 1)
    }

    async fn transition_many(&self, changes: Vec<Change>) -> Vec<Result<bool, StoreError>> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let hash = self.scripts.transition.get_hash();
        for change in &changes {
            let args =
                transition_args(&self.prefix, &change.id, &change.lease, change.transition.clone());
            pipe.cmd("EVALSHA").arg(hash).arg(0).arg(args);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<redis::RedisResult<i64>> = match pipe.query_async(&mut conn).await {
            Ok(replies) => replies,
            Err(err) => return vec![Err(unavailable(err)); changes.len()],
        };
        let mut results = Vec::with_capacity(changes.len());
        for (change, reply) in changes.into_iter().zip(replies) {
            results.push(match reply {
                Ok(applied) => Ok(applied == 1),
                // The server lost its scripts (a restart, SCRIPT FLUSH): that change did not
                // run; alone, the script is loaded again.
                Err(err)
                    if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    self.transition(&change.id, &change.lease, change.transition).await
                }
                Err(err) => Err(unavailable(err)),
            });
        }
        results
    }

    async fn append_logs(&self, id: &TaskId, logs: Vec<LogEntry>) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let exists: bool = conn.exists(self.key(&format!("t:{id}"))).await.map_err(unavailable)?;
        if !exists || logs.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> =
            logs.iter().map(|entry| serde_json::to_string(entry).unwrap_or_default()).collect();
        let _: () = conn.rpush(self.key(&format!("l:{id}")), lines).await.map_err(unavailable)?;
        Ok(())
    }

    async fn cancel_pending(&self, id: &TaskId) -> Result<Option<TaskStatus>, StoreError> {
        let now = Utc::now();
        let mut conn = self.conn.clone();
        let before: Option<String> = self
            .scripts
            .cancel
            .arg(&*self.prefix)
            .arg(id.to_string())
            .arg(rfc(now))
            .arg(micros(now))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        before
            .map(|s| s.parse().map_err(|reason| StoreError::Corrupt { id: id.to_string(), reason }))
            .transpose()
    }

    async fn cancel_scheduled(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskId>, StoreError> {
        let mut conn = self.conn.clone();
        let cancelled: Option<String> = self
            .scripts
            .cancel_scheduled
            .arg(&*self.prefix)
            .arg(key)
            .arg(rfc(now))
            .arg(micros(now))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        cancelled
            .map(|id| {
                id.parse().map_err(|err| StoreError::Corrupt {
                    id: id.clone(),
                    reason: format!("run key `{key}`: {err}"),
                })
            })
            .transpose()
    }

    async fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        let index = match (&query.status, &query.func_name) {
            (Some(status), _) => self.key(&format!("s:{}", status.as_str())),
            (None, Some(func)) => self.key(&format!("f:{func}")),
            (None, None) => self.key("all"),
        };
        let mut bound: Option<i64> = query
            .after
            .as_ref()
            .map(|a| a.parse().map_err(|_| StoreError::InvalidCursor(a.clone())))
            .transpose()?;
        let mut found: Vec<(TaskRecord, i64)> = Vec::new();
        // One page and the row that tells whether another follows, when nothing is filtered
        // out; more per round trip, up to 500, when filters may drop some.
        let batch = (limit + 1).clamp(50, 500) as isize;
        let mut conn = self.conn.clone();
        loop {
            // The next batch of the index beyond the bound, in the query's order.
            let batch: Vec<(String, f64)> = if query.oldest_first {
                let min = bound.map_or("-inf".to_owned(), |b| format!("({b}"));
                conn.zrangebyscore_limit_withscores(&index, min, "+inf", 0, batch).await
            } else {
                let max = bound.map_or("+inf".to_owned(), |b| format!("({b}"));
                conn.zrevrangebyscore_limit_withscores(&index, max, "-inf", 0, batch).await
            }
            .map_err(unavailable)?;
            let Some(last) = batch.last() else { break };
            bound = Some(last.1 as i64);
            let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
            let seqs: HashMap<String, i64> =
                batch.iter().map(|(id, s)| (id.clone(), *s as i64)).collect();
            for record in self.records(&ids).await? {
                if query.matches(&record) {
                    let seq = seqs[&record.task_id.to_string()];
                    found.push((record, seq));
                }
            }
            if found.len() > limit {
                break;
            }
        }
        let more = found.len() > limit;
        found.truncate(limit);
        let next = if more { found.last().map(|(_, seq)| seq.to_string()) } else { None };
        Ok(TaskPage { tasks: found.into_iter().map(|(r, _)| r).collect(), next })
    }

    async fn stats(&self, since: Option<DateTime<Utc>>) -> Result<TaskStats, StoreError> {
        let mut stats = TaskStats::zero();
        let mut conn = self.conn.clone();
        let mut functions: Vec<String> =
            conn.smembers(self.key("funcs")).await.map_err(unavailable)?;
        functions.sort();
        for func in functions {
            let ids: Vec<String> =
                conn.zrevrange(self.key(&format!("f:{func}")), 0, -1).await.map_err(unavailable)?;
            let mut function = FunctionStats { func_name: func.clone(), ..Default::default() };
            let mut durations = Vec::new();
            for chunk in ids.chunks(500) {
                for record in self.records(chunk).await? {
                    if since.is_some_and(|at| record.created_at < at) {
                        continue;
                    }
                    *stats.by_status.entry(record.status.as_str().to_owned()).or_default() += 1;
                    if !matches!(
                        record.status,
                        TaskStatus::Success | TaskStatus::Failed | TaskStatus::Interrupted
                    ) {
                        continue;
                    }
                    function.runs += 1;
                    function.successes += u64::from(record.status == TaskStatus::Success);
                    function.failures += u64::from(record.status == TaskStatus::Failed);
                    if let Some(duration) = record.duration {
                        durations.push(duration);
                    }
                }
            }
            if function.runs == 0 {
                continue;
            }
            function.success_rate = function.successes as f64 / function.runs as f64;
            if !durations.is_empty() {
                function.avg_duration =
                    Some(durations.iter().sum::<f64>() / durations.len() as f64);
                function.min_duration = durations.iter().copied().reduce(f64::min);
                function.max_duration = durations.iter().copied().reduce(f64::max);
                let mut latest: Vec<f64> = durations.iter().take(P95_WINDOW).copied().collect();
                function.p95_duration = p95(&mut latest);
            }
            stats.functions.push(function);
        }
        Ok(stats)
    }

    async fn fetch(
        &self,
        limit: usize,
        now: DateTime<Utc>,
        lease: &Lease,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.fetch_available(limit, now, lease).await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.next_waiting().await
    }

    async fn release(&self, lease: &Lease) -> Result<usize, StoreError> {
        self.release_lease(lease).await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut invocation = self.scripts.renew.prepare_invoke();
        invocation.arg(&*self.prefix).arg(owner).arg(rfc(expires_at)).arg(micros(expires_at));
        for id in ids {
            invocation.arg(id.to_string());
        }
        let mut conn = self.conn.clone();
        let _: i64 = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn reclaim_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn
            .zrangebyscore(self.key("running"), "-inf", format!("({}", micros(now)))
            .await
            .map_err(unavailable)?;
        let mut reclaimed = Reclaimed::default();
        for mut record in self.records(&ids).await? {
            if record.status != TaskStatus::Running {
                continue;
            }
            let outcome = reclaim(&mut record, now, max_recoveries);
            let applied: i64 = self
                .scripts
                .reclaim
                .arg(&*self.prefix)
                .arg(record.task_id.to_string())
                .arg(micros(now))
                .arg(record.status.as_str())
                .arg(record.end_time.map(rfc).unwrap_or_default())
                .arg(record.error.clone().unwrap_or_default())
                .arg(record.recoveries)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if applied == 0 {
                continue; // another instance got there first, or the lease was renewed
            }
            reclaimed.add(outcome, record);
        }
        Ok(reclaimed)
    }

    async fn elect(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.elect_leader(name, owner, now, until).await
    }

    async fn resign(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.resign_leader(name, owner).await
    }

    async fn prune(&self, retention: &Retention, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        let finished = self.key("finished");
        let mut doomed: Vec<String> = Vec::new();
        if let Some(cutoff) = retention.age_cutoff(now) {
            let cutoff = format!("({}", micros(cutoff));
            doomed.extend(
                conn.zrangebyscore::<_, _, _, Vec<String>>(&finished, "-inf", cutoff)
                    .await
                    .map_err(unavailable)?,
            );
        }
        if let Some(max) = retention.max_finished {
            let count: isize = conn.zcard(&finished).await.map_err(unavailable)?;
            let extra = count - max.min(isize::MAX as usize) as isize;
            if extra > 0 {
                doomed.extend(
                    conn.zrange::<_, Vec<String>>(&finished, 0, extra - 1)
                        .await
                        .map_err(unavailable)?,
                );
            }
        }
        doomed.sort();
        doomed.dedup();
        let mut removed = 0;
        for chunk in doomed.chunks(500) {
            let mut invocation = self.scripts.delete.prepare_invoke();
            invocation.arg(&*self.prefix);
            for id in chunk {
                invocation.arg(id);
            }
            let count: i64 = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
            removed += count as usize;
        }
        Ok(removed)
    }

    fn enqueued_elsewhere(&self) -> Option<Arc<tokio::sync::Notify>> {
        // Polled: a signal that never fires turns polling on.
        Some(Arc::clone(&self.wake))
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.writes.close();
        self.writes.wait().await;
        Ok(())
    }
}

/// Decodes `flat` (field, value, field, value, ...) as a stored task hash; for the fuzz
/// targets.
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_fields(flat: Vec<Vec<u8>>) {
    if let Ok(fields) = pairs("fuzzed", flat) {
        let _ = decode("fuzzed", &fields);
    }
}
