//! Opening the database file: connection settings, schema creation and migrations, versioned
//! by SQLite's `user_version`.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};

use super::{Durability, SqliteOptions};
use crate::store::StoreError;

/// The schema version this binary writes. Migrations take older files up to it.
pub(super) const SCHEMA_VERSION: i64 = 10;

/// How long opening waits for another connection to let go of the file.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Each migration takes the schema from version `index` to `index + 1`.
///
/// Rows live in `seq` order (insertion order), so the writes of tasks enqueued together touch
/// the same few pages; the UUIDs (time-ordered, version 7) only go to the small `id` index. Indexes on `status`
/// and `func_name` are ordered by `seq` within each value, which is what listing needs.
/// Version 2 adds `wait_until`, set while a pending task is not yet due (a delay, a retry's
/// backoff) and cleared by the fetch that finds it due, with two indexes: `tasks_waiting` by
/// due time, and `tasks_available` (pending, not waiting) in fetch order (then highest
/// priority, earliest due, `seq`; by rank since version 6), so a fetch reads only the rows it
/// takes however many tasks wait.
/// Version 3 adds `run_key`, unique among the tasks that wait for their first start.
/// Version 4 adds `queue` (existing tasks are in the default queue), puts it first in the
/// fetch's indexes so that each queue's fetch reads only its own rows, counts each queue's
/// active tasks through `tasks_queue_active`, and keeps the queues' shared state in `queues`.
/// Version 5 keeps each rate-limited queue's token bucket in `queues`, and the instances'
/// heartbeats in `instances`. Version 6 orders `tasks_available` by rank (the due time less
/// `priority` × [`PRIORITY_STEP`](crate::store::PRIORITY_STEP), 60 s in microseconds), then
/// `seq`: priority with aging; `func_name` comes last, so that a fetch passing over capped
/// functions (`func_name NOT IN (...)`) filters them in the index without reading their rows.
/// Version 7 keeps the schedules in `schedules`, each as JSON text. Version 8 keeps revoked
/// admin sessions. Version 9 adds `progress`, what a task's code last reported of how far it
/// got (JSON). Version 10 adds the counters ([`super::counters::migration`]), which the
/// writes that change tasks keep ([`super::counters::fold`]).
const MIGRATIONS: [&str; 9] = [
    "
    CREATE TABLE tasks (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        func_name TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        start_time INTEGER,
        end_time INTEGER,
        duration REAL,
        retries_used INTEGER NOT NULL,
        max_retries INTEGER NOT NULL,
        error TEXT,
        stacktrace TEXT,
        tags TEXT NOT NULL,
        source TEXT NOT NULL,
        priority INTEGER NOT NULL,
        args TEXT NOT NULL,
        result TEXT,
        idempotency_key TEXT,
        scheduled_at INTEGER,
        retry_of TEXT,
        requeue_on_interrupt INTEGER NOT NULL,
        recoveries INTEGER NOT NULL,
        lease_owner TEXT,
        lease_expires_at INTEGER
    );
    CREATE INDEX tasks_by_status ON tasks (status);
    CREATE INDEX tasks_by_func ON tasks (func_name);
    CREATE INDEX tasks_finished ON tasks (end_time) WHERE end_time IS NOT NULL;
    CREATE UNIQUE INDEX tasks_active_key ON tasks (idempotency_key)
        WHERE idempotency_key IS NOT NULL AND status NOT IN ('failed', 'cancelled');
    CREATE TABLE task_logs (
        seq INTEGER PRIMARY KEY,
        task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        fields TEXT NOT NULL
    );
    CREATE INDEX task_logs_by_task ON task_logs (task_id, seq);
",
    "
    ALTER TABLE tasks ADD COLUMN wait_until INTEGER;
    UPDATE tasks SET wait_until = scheduled_at WHERE status = 'pending'
        AND scheduled_at > CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER);
    CREATE INDEX tasks_waiting ON tasks (wait_until) WHERE wait_until IS NOT NULL;
    CREATE INDEX tasks_available ON tasks (priority DESC, COALESCE(scheduled_at, created_at))
        WHERE status = 'pending' AND wait_until IS NULL;
    CREATE TABLE leaders (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until INTEGER NOT NULL);
",
    "
    ALTER TABLE tasks ADD COLUMN run_key TEXT;
    CREATE UNIQUE INDEX tasks_waiting_key ON tasks (run_key)
        WHERE run_key IS NOT NULL AND status = 'pending' AND start_time IS NULL;
",
    "
    ALTER TABLE tasks ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
    DROP INDEX tasks_available;
    CREATE INDEX tasks_available
        ON tasks (queue, priority DESC, COALESCE(scheduled_at, created_at))
        WHERE status = 'pending' AND wait_until IS NULL;
    DROP INDEX tasks_waiting;
    CREATE INDEX tasks_waiting ON tasks (queue, wait_until) WHERE wait_until IS NOT NULL;
    CREATE INDEX tasks_queue_active ON tasks (queue, status)
        WHERE status IN ('pending', 'running');
    CREATE TABLE queues (
        name TEXT PRIMARY KEY,
        paused INTEGER NOT NULL DEFAULT 0,
        concurrency INTEGER,
        max_pending INTEGER,
        updated_at INTEGER NOT NULL
    );
",
    "
    ALTER TABLE queues ADD COLUMN rate_tokens REAL;
    ALTER TABLE queues ADD COLUMN rate_at INTEGER;
    CREATE TABLE instances (id TEXT PRIMARY KEY, info TEXT NOT NULL, expires_at INTEGER NOT NULL);
",
    "
    DROP INDEX tasks_available;
    CREATE INDEX tasks_available
        ON tasks (queue, COALESCE(scheduled_at, created_at) - priority * 60000000, seq, func_name)
        WHERE status = 'pending' AND wait_until IS NULL;
",
    "
    CREATE TABLE schedules (name TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at INTEGER NOT NULL);
",
    "
    CREATE TABLE revoked_sessions (id TEXT PRIMARY KEY, until INTEGER NOT NULL);
",
    "
    ALTER TABLE tasks ADD COLUMN progress TEXT;
",
];

/// Takes the database at `path` for this process alone, through an advisory lock on a file
/// beside it (`<path>.lock`), held until the returned file is dropped.
pub(super) fn lock(path: &Path) -> Result<File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let fail = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|err| fail(format!("cannot create its lock file: {err}")))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(fail(
                    "another process (or another store in this one) has the database open; \
                     one process owns an SQLite task store at a time"
                        .to_owned(),
                ));
            }
            Err(TryLockError::Error(err)) => return Err(fail(format!("cannot lock it: {err}"))),
        }
    }
}

/// Opens the connection that checkpoints the log beside the writer (see
/// [`Checkpointer`](super::checkpoint::Checkpointer)), syncing as the writer does.
pub(super) fn open_checkpointer(
    path: &Path,
    options: &SqliteOptions,
) -> Result<Connection, StoreError> {
    let settings = format!("PRAGMA synchronous = {};", synchronous(options));
    open_helper(path, OpenFlags::SQLITE_OPEN_READ_WRITE, &settings)
}

/// Opens a second, read-only connection for queries that must not hold up writes.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let settings = "PRAGMA query_only = 1; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16000;";
    open_helper(path, OpenFlags::SQLITE_OPEN_READ_ONLY, settings)
}

/// Opens one of the connections beside the writer's, on a file the writer has set up.
fn open_helper(path: &Path, mode: OpenFlags, settings: &str) -> Result<Connection, StoreError> {
    let fail = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
    let flags = mode | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|err| fail(err.to_string()))?;
    conn.busy_timeout(LOCK_WAIT).map_err(|err| fail(err.to_string()))?;
    conn.execute_batch(settings).map_err(|err| fail(describe(&err)))?;
    Ok(conn)
}

fn synchronous(options: &SqliteOptions) -> &'static str {
    match options.durability {
        Durability::Fsync => "FULL",
        Durability::Committed | Durability::Async => "NORMAL",
    }
}

/// Opens (creating if needed) and migrates the database at `path`. Call [`lock`] first.
pub(super) fn open(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    let fail = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|err| fail(err.to_string()))?;
    // Long enough for a previous owner that is just closing the file; short enough that a
    // second owner learns at once that it cannot have it.
    conn.busy_timeout(LOCK_WAIT).map_err(|err| fail(err.to_string()))?;
    // Checkpoints run on a thread of their own (see `Checkpointer`), not inside commits.
    let settings = format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA synchronous = {};
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;",
        synchronous(options)
    );
    conn.execute_batch(&settings).map_err(|err| fail(describe(&err)))?;
    if let Some(bytes) = options.max_size {
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(|err| fail(describe(&err)))?;
        let pages = i64::try_from(bytes / page_size.max(1) as u64).unwrap_or(i64::MAX).max(1);
        conn.pragma_update(None, "max_page_count", pages).map_err(|err| fail(describe(&err)))?;
    }
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|err| fail(describe(&err)))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::IncompatibleSchema {
            path: path.display().to_string(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let migrations = MIGRATIONS.iter().map(|m| (*m).to_owned());
    let migrations = migrations.chain(std::iter::once(super::counters::migration()));
    for (from, migration) in migrations.enumerate().skip(found as usize) {
        let to = from as i64 + 1;
        let script = format!("BEGIN; {migration}; PRAGMA user_version = {to}; COMMIT;");
        if let Err(err) = conn.execute_batch(&script) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(fail(format!(
                "migration to schema version {to} failed: {}",
                describe(&err)
            )));
        }
    }
    Ok(conn)
}

/// An open error, with a hint for the common causes.
fn describe(err: &rusqlite::Error) -> String {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => format!(
            "{err}: another process (or another store in this one) has the database open; one \
             process owns an SQLite task store at a time"
        ),
        Some(rusqlite::ErrorCode::NotADatabase) => {
            format!("{err}: the file is not an SQLite database, or it is corrupt")
        }
        _ => err.to_string(),
    }
}
