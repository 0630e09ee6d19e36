//! The idempotency keys of active tasks, held in memory so that an enqueue finds its key's
//! holder without a read: loaded at open, kept in step by every write that ends a task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;
use rusqlite::types::Value as Sql;

use crate::id::TaskId;

pub(super) type Keys = Arc<Mutex<HashMap<String, TaskId>>>;

pub(super) fn lock(keys: &Keys) -> MutexGuard<'_, HashMap<String, TaskId>> {
    keys.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Forgets `key` if `id` still holds it.
pub(super) fn release(keys: &Keys, key: &str, id: &TaskId) {
    let mut keys = lock(keys);
    if keys.get(key) == Some(id) {
        keys.remove(key);
    }
}

/// The keys of the stored active tasks, with their holders.
pub(super) fn load_keys(conn: &Connection) -> rusqlite::Result<HashMap<String, TaskId>> {
    let mut statement = conn.prepare(
        "SELECT idempotency_key, id FROM tasks
         WHERE idempotency_key IS NOT NULL AND status NOT IN ('failed', 'cancelled')",
    )?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, Sql>(0)?, row.get::<_, Sql>(1)?)))?;
    let mut keys = HashMap::new();
    for row in rows {
        let (key, id) = row?;
        let parsed = match &id {
            Sql::Text(text) => text.parse::<TaskId>().ok(),
            _ => None,
        };
        match (key, parsed) {
            (Sql::Text(key), Some(id)) => {
                keys.insert(key, id);
            }
            (key, _) => tracing::error!(
                task_id = ?id, key = ?key,
                "taskflow: a stored idempotency key or id is not text; the key is not held"
            ),
        }
    }
    Ok(keys)
}
