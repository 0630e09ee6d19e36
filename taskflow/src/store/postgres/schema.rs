//! The PostgreSQL schema, created and migrated at connect under an advisory lock, so that
//! instances starting together migrate once.

use deadpool_postgres::Pool;

use super::unavailable;
use crate::store::StoreError;

/// The schema version this binary writes.
pub(super) const SCHEMA_VERSION: i64 = 11;

/// Each migration takes the schema from version `index` to `index + 1`. Version 2 adds
/// `wait_until`, set while a pending task is not yet due (a delay, a retry's backoff) and
/// cleared by the fetch that finds it due, and two indexes: the waiting tasks by due time, and
/// the available ones (pending, not waiting) in fetch order, so that a fetch reads only the
/// rows it takes however many tasks wait for later. Version 3 adds `run_key`, unique among the
/// tasks that wait for their first start. Version 4 adds `queue` (existing tasks are in the
/// default queue) first in the fetch's indexes, so each queue's fetch reads only its rows; an
/// index counting each queue's active tasks; and `taskflow_queues`, the queues' shared state.
/// Version 5 keeps each rate-limited queue's token bucket in `taskflow_queues`, and the
/// instances' heartbeats in `taskflow_instances`. Version 6 orders the available tasks by
/// rank, `taskflow_rank(due, priority)`: the due time less `priority` ×
/// [`PRIORITY_STEP`](crate::store::PRIORITY_STEP) (60 s), then `seq` (priority with aging).
/// The function is declared `IMMUTABLE` so that it can be indexed: an interval of seconds
/// alone does not depend on the session's time zone. Version 7 keeps the schedules in
/// `taskflow_schedules`, each as JSON text (`NULL` while a change creates the row). Version
/// 8 keeps revoked admin sessions. Version 9 adds `cancel_requested`, set on a running task
/// that its runner (on any instance) is to stop, cleared by the fetch that starts an attempt,
/// `progress`, what the task's code last reported of how far it got (JSON), and
/// `taskflow_events`, the cluster's log of lifecycle events for the live feeds. Version 10
/// adds the counters and their triggers ([`super::counters::migration`]); version 11 replaces
/// the triggers with delta tables that the statements append to ([`super::deltas`]).
const MIGRATIONS: [&str; 9] = ["
    CREATE TABLE taskflow_tasks (
        seq BIGSERIAL UNIQUE,
        id UUID PRIMARY KEY,
        func_name TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        start_time TIMESTAMPTZ,
        end_time TIMESTAMPTZ,
        duration DOUBLE PRECISION,
        retries_used INTEGER NOT NULL,
        max_retries INTEGER NOT NULL,
        error TEXT,
        stacktrace TEXT,
        tags JSONB NOT NULL,
        source TEXT NOT NULL,
        priority INTEGER NOT NULL,
        args JSONB NOT NULL,
        result JSONB,
        idempotency_key TEXT,
        scheduled_at TIMESTAMPTZ,
        retry_of UUID,
        requeue_on_interrupt BOOLEAN NOT NULL,
        recoveries INTEGER NOT NULL,
        lease_owner TEXT,
        lease_expires_at TIMESTAMPTZ
    );
    CREATE INDEX taskflow_tasks_by_status ON taskflow_tasks (status, seq);
    CREATE INDEX taskflow_tasks_by_func ON taskflow_tasks (func_name, seq);
    CREATE INDEX taskflow_tasks_finished ON taskflow_tasks (end_time) WHERE end_time IS NOT NULL;
    CREATE INDEX taskflow_tasks_leases ON taskflow_tasks (lease_expires_at) WHERE status = 'running';
    CREATE UNIQUE INDEX taskflow_tasks_active_key ON taskflow_tasks (idempotency_key)
        WHERE idempotency_key IS NOT NULL AND status NOT IN ('failed', 'cancelled');
    CREATE TABLE taskflow_logs (
        seq BIGSERIAL PRIMARY KEY,
        task_id UUID NOT NULL REFERENCES taskflow_tasks (id) ON DELETE CASCADE,
        at TIMESTAMPTZ NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        fields JSONB NOT NULL
    );
    CREATE INDEX taskflow_logs_by_task ON taskflow_logs (task_id, seq);
    CREATE TABLE taskflow_aliases (
        alias UUID PRIMARY KEY,
        task_id UUID NOT NULL REFERENCES taskflow_tasks (id) ON DELETE CASCADE
    );
", "
    ALTER TABLE taskflow_tasks ADD COLUMN wait_until TIMESTAMPTZ;
    UPDATE taskflow_tasks SET wait_until = scheduled_at
        WHERE status = 'pending' AND scheduled_at > now();
    CREATE INDEX taskflow_tasks_waiting ON taskflow_tasks (wait_until)
        WHERE wait_until IS NOT NULL;
    CREATE INDEX taskflow_tasks_available
        ON taskflow_tasks (priority DESC, (COALESCE(scheduled_at, created_at)), seq)
        WHERE status = 'pending' AND wait_until IS NULL;
    CREATE TABLE taskflow_leaders (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until TIMESTAMPTZ NOT NULL
    );
", "
    ALTER TABLE taskflow_tasks ADD COLUMN run_key TEXT;
    CREATE UNIQUE INDEX taskflow_tasks_waiting_key ON taskflow_tasks (run_key)
        WHERE run_key IS NOT NULL AND status = 'pending' AND start_time IS NULL;
", "
    ALTER TABLE taskflow_tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
    DROP INDEX taskflow_tasks_available;
    CREATE INDEX taskflow_tasks_available
        ON taskflow_tasks (queue, priority DESC, (COALESCE(scheduled_at, created_at)), seq)
        WHERE status = 'pending' AND wait_until IS NULL;
    DROP INDEX taskflow_tasks_waiting;
    CREATE INDEX taskflow_tasks_waiting ON taskflow_tasks (queue, wait_until)
        WHERE wait_until IS NOT NULL;
    CREATE INDEX taskflow_tasks_queue_active ON taskflow_tasks (queue, status)
        WHERE status IN ('pending', 'running');
    CREATE TABLE taskflow_queues (
        name TEXT PRIMARY KEY,
        paused BOOLEAN NOT NULL DEFAULT FALSE,
        concurrency INTEGER,
        max_pending BIGINT,
        updated_at TIMESTAMPTZ NOT NULL
    );
", "
    ALTER TABLE taskflow_queues ADD COLUMN rate_tokens DOUBLE PRECISION,
        ADD COLUMN rate_at BIGINT;
    CREATE TABLE taskflow_instances (
        id TEXT PRIMARY KEY,
        info TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
", "
    CREATE OR REPLACE FUNCTION taskflow_rank(due TIMESTAMPTZ, priority INTEGER)
        RETURNS TIMESTAMPTZ LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT due - priority * INTERVAL '60 seconds' $$;
    DROP INDEX taskflow_tasks_available;
    CREATE INDEX taskflow_tasks_available
        ON taskflow_tasks (queue, taskflow_rank(COALESCE(scheduled_at, created_at), priority), seq)
        WHERE status = 'pending' AND wait_until IS NULL;
", "
    CREATE TABLE taskflow_schedules (
        name TEXT PRIMARY KEY,
        body TEXT,
        updated_at TIMESTAMPTZ NOT NULL
    );
", "
    CREATE TABLE taskflow_revoked_sessions (id TEXT PRIMARY KEY, until TIMESTAMPTZ NOT NULL);
", "
    ALTER TABLE taskflow_tasks ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;
    ALTER TABLE taskflow_tasks ADD COLUMN progress JSONB;
    CREATE TABLE taskflow_events (seq BIGSERIAL PRIMARY KEY, body TEXT NOT NULL);
"];

/// Any number: the advisory lock key under which instances migrate one at a time.
const MIGRATION_LOCK: i64 = 0x7461_736b_666c_6f77; // "taskflow"

/// Creates or migrates the schema; refuses a schema newer than this binary's.
pub(super) async fn migrate(pool: &Pool, url: &str) -> Result<(), StoreError> {
    let fail = |err: tokio_postgres::Error| StoreError::Open {
        path: crate::store::redact_url(url),
        reason: err.to_string(),
    };
    let mut client = pool.get().await.map_err(|err| StoreError::Open {
        path: crate::store::redact_url(url),
        reason: err.to_string(),
    })?;
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(fail)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS taskflow_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    )
    .await
    .map_err(fail)?;
    let found: i64 = tx
        .query_opt("SELECT value FROM taskflow_meta WHERE key = 'schema_version'", &[])
        .await
        .map_err(fail)?
        .map_or(0, |row| row.get(0));
    if found > SCHEMA_VERSION {
        return Err(StoreError::IncompatibleSchema {
            path: crate::store::redact_url(url),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let migrations = MIGRATIONS.iter().map(|m| (*m).to_owned());
    let migrations = migrations.chain([super::counters::migration(), super::deltas::migration()]);
    for (from, migration) in migrations.enumerate().skip(found as usize) {
        tx.batch_execute(&migration).await.map_err(fail)?;
        let to = from as i64 + 1;
        tx.execute(
            "INSERT INTO taskflow_meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&to],
        )
        .await
        .map_err(fail)?;
    }
    tx.commit().await.map_err(unavailable)
}
