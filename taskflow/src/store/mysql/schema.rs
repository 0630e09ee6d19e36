//! The MySQL / MariaDB schema, created and migrated at connect under a named lock, so that
//! instances starting together migrate once. Timestamps are integer microseconds since the
//! Unix epoch (UTC); JSON is text.

use mysql_async::Pool;
use mysql_async::prelude::Queryable;

use super::unavailable;
use crate::store::StoreError;

/// The schema version this binary writes.
pub(super) const SCHEMA_VERSION: i64 = 11;

/// Each migration, a list of statements, takes the schema from version `index` to
/// `index + 1`. Neither server has partial indexes: the unique index over active
/// idempotency keys is on a generated column that is `NULL` for ended tasks. Version 2 adds
/// `wait_until`, set while a pending task is not yet due (a delay, a retry's backoff) and
/// cleared by the fetch that finds it due, the due time as a generated column, and two
/// indexes: the waiting tasks by due time, and the tasks in fetch order (by status and
/// waiting, then highest priority, earliest due, `seq`; by rank since version 6), so that a fetch reads only the rows
/// it takes however many tasks wait. Version 3 adds `run_key`, unique among the tasks that
/// wait for their first start through the generated column `waiting_key`. Version 4 adds
/// `queue` (existing tasks are in the default queue) to the fetch's indexes, so that each
/// queue's fetch reads only its rows, an index counting each queue's active tasks, and
/// `taskflow_queues`, the queues' shared state. Version 5 keeps each rate-limited queue's
/// token bucket in `taskflow_queues`, and the instances' heartbeats in `taskflow_instances`.
/// Version 6 orders the available tasks by rank, the generated `fetch_rank`: the due time
/// less `priority` × [`PRIORITY_STEP`](crate::store::PRIORITY_STEP) (60 s in microseconds),
/// then `seq` (priority with aging), with `func_name` last so that a fetch passing over capped
/// functions filters them in the index (index condition pushdown) without reading their rows.
/// Version 7 keeps the schedules in `taskflow_schedules`, each as JSON text (`NULL` while a
/// change creates the row). Version 8 keeps revoked admin sessions. Version 9 adds
/// `cancel_requested`, set on a running task that its runner (on any instance) is to stop,
/// cleared by the fetch that starts an attempt, `progress`, what the task's code last
/// reported of how far it got (JSON), and `taskflow_events`, the cluster's log of lifecycle
/// events for the live feeds. Version 10 adds the counters and their triggers
/// ([`super::counters::migration`]); version 11 replaces the triggers with delta tables that
/// the writes append to ([`super::deltas`]).
const MIGRATIONS: [&[&str]; 9] = [&[
    "CREATE TABLE taskflow_tasks (
        seq BIGINT AUTO_INCREMENT PRIMARY KEY,
        id CHAR(36) NOT NULL,
        func_name VARCHAR(255) NOT NULL,
        status VARCHAR(16) NOT NULL,
        created_at BIGINT NOT NULL,
        start_time BIGINT NULL,
        end_time BIGINT NULL,
        duration DOUBLE NULL,
        retries_used INT NOT NULL,
        max_retries INT NOT NULL,
        error LONGTEXT NULL,
        stacktrace LONGTEXT NULL,
        tags LONGTEXT NOT NULL,
        source VARCHAR(16) NOT NULL,
        priority INT NOT NULL,
        args LONGTEXT NOT NULL,
        result LONGTEXT NULL,
        idempotency_key VARCHAR(255) NULL,
        scheduled_at BIGINT NULL,
        retry_of CHAR(36) NULL,
        requeue_on_interrupt TINYINT NOT NULL,
        recoveries INT NOT NULL,
        lease_owner VARCHAR(128) NULL,
        lease_expires_at BIGINT NULL,
        active_key VARCHAR(255) AS (IF(status IN ('failed', 'cancelled'), NULL, idempotency_key)) STORED,
        UNIQUE KEY taskflow_tasks_id (id),
        UNIQUE KEY taskflow_tasks_active_key (active_key),
        KEY taskflow_tasks_by_status (status, seq),
        KEY taskflow_tasks_by_func (func_name, seq),
        KEY taskflow_tasks_finished (end_time)
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    "CREATE TABLE taskflow_logs (
        seq BIGINT AUTO_INCREMENT PRIMARY KEY,
        task_id CHAR(36) NOT NULL,
        at BIGINT NOT NULL,
        level VARCHAR(8) NOT NULL,
        message LONGTEXT NOT NULL,
        attempt INT NOT NULL,
        fields LONGTEXT NOT NULL,
        KEY taskflow_logs_by_task (task_id, seq),
        FOREIGN KEY (task_id) REFERENCES taskflow_tasks (id) ON DELETE CASCADE
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    "CREATE TABLE taskflow_aliases (
        alias CHAR(36) PRIMARY KEY,
        task_id CHAR(36) NOT NULL,
        FOREIGN KEY (task_id) REFERENCES taskflow_tasks (id) ON DELETE CASCADE
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
], &[
    "ALTER TABLE taskflow_tasks
        ADD COLUMN wait_until BIGINT NULL,
        ADD COLUMN due_at BIGINT AS (COALESCE(scheduled_at, created_at)) STORED,
        ADD KEY taskflow_tasks_waiting (wait_until),
        ADD KEY taskflow_tasks_available (status, wait_until, priority DESC, due_at, seq)",
    "UPDATE taskflow_tasks SET wait_until = scheduled_at
        WHERE status = 'pending' AND scheduled_at > UNIX_TIMESTAMP(NOW(6)) * 1000000",
    "CREATE TABLE taskflow_leaders (
        name VARCHAR(128) PRIMARY KEY,
        owner VARCHAR(128) NOT NULL,
        until BIGINT NOT NULL
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
], &[
    "ALTER TABLE taskflow_tasks
        ADD COLUMN run_key VARCHAR(255) NULL,
        ADD COLUMN waiting_key VARCHAR(255)
            AS (IF(status = 'pending' AND start_time IS NULL, run_key, NULL)) STORED,
        ADD UNIQUE KEY taskflow_tasks_waiting_key (waiting_key)",
], &[
    "ALTER TABLE taskflow_tasks
        ADD COLUMN queue VARCHAR(64) NOT NULL DEFAULT 'default',
        DROP KEY taskflow_tasks_available,
        ADD KEY taskflow_tasks_available (status, wait_until, queue, priority DESC, due_at, seq),
        DROP KEY taskflow_tasks_waiting,
        ADD KEY taskflow_tasks_waiting (queue, wait_until),
        ADD KEY taskflow_tasks_queue_active (queue, status)",
    "CREATE TABLE taskflow_queues (
        name VARCHAR(64) PRIMARY KEY,
        paused BOOLEAN NOT NULL DEFAULT FALSE,
        concurrency INT NULL,
        max_pending BIGINT NULL,
        updated_at BIGINT NOT NULL
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
], &[
    "ALTER TABLE taskflow_queues ADD COLUMN rate_tokens DOUBLE NULL, ADD COLUMN rate_at BIGINT NULL",
    "CREATE TABLE taskflow_instances (
        id VARCHAR(128) PRIMARY KEY,
        info TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
], &[
    "ALTER TABLE taskflow_tasks
        ADD COLUMN fetch_rank BIGINT
            AS (COALESCE(scheduled_at, created_at) - priority * 60000000) STORED,
        DROP KEY taskflow_tasks_available,
        ADD KEY taskflow_tasks_available (status, wait_until, queue, fetch_rank, seq, func_name)",
], &[
    "CREATE TABLE taskflow_schedules (
        name VARCHAR(255) PRIMARY KEY,
        body LONGTEXT NULL,
        updated_at BIGINT NOT NULL
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
], &[
    "CREATE TABLE taskflow_revoked_sessions (
        id VARCHAR(255) PRIMARY KEY,
        until_us BIGINT NOT NULL
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
], &[
    "ALTER TABLE taskflow_tasks ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE",
    "ALTER TABLE taskflow_tasks ADD COLUMN progress TEXT NULL",
    "CREATE TABLE taskflow_events (
        seq BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
        body LONGTEXT NOT NULL
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
]];

/// Creates or migrates the schema; refuses a schema newer than this binary's.
pub(super) async fn migrate(pool: &Pool, url: &str) -> Result<(), StoreError> {
    let open = |reason: String| StoreError::Open { path: crate::store::redact_url(url), reason };
    let mut conn = pool.get_conn().await.map_err(|e| open(e.to_string()))?;
    let locked: Option<i64> = conn
        .query_first("SELECT GET_LOCK('taskflow_migrate', 60)")
        .await
        .map_err(|e| open(e.to_string()))?;
    if locked != Some(1) {
        return Err(open("timed out waiting for another instance's migration".to_owned()));
    }
    let result = async {
        conn.query_drop(
            "CREATE TABLE IF NOT EXISTS taskflow_meta (
                k VARCHAR(64) PRIMARY KEY, v BIGINT NOT NULL) ENGINE = InnoDB",
        )
        .await
        .map_err(unavailable)?;
        let found: i64 = conn
            .query_first("SELECT v FROM taskflow_meta WHERE k = 'schema_version'")
            .await
            .map_err(unavailable)?
            .unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(StoreError::IncompatibleSchema {
                path: crate::store::redact_url(url),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let migrations = MIGRATIONS.iter().map(|m| m.iter().map(|s| (*s).to_owned()).collect());
        let migrations =
            migrations.chain([super::counters::migration(), super::deltas::migration()]);
        for (from, statements) in migrations.enumerate().skip(found as usize) {
            for statement in statements {
                conn.query_drop(statement).await.map_err(unavailable)?;
            }
            conn.exec_drop(
                "REPLACE INTO taskflow_meta (k, v) VALUES ('schema_version', ?)",
                (from as i64 + 1,),
            )
            .await
            .map_err(unavailable)?;
        }
        Ok(())
    }
    .await;
    let _ = conn.query_drop("DO RELEASE_LOCK('taskflow_migrate')").await;
    result
}
