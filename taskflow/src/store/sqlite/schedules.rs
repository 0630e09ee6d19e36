//! The schedules (`schedules`, one JSON text per schedule), changed on the writer, so each
//! change reads and writes its row with no other write between.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::active::ActiveRows;
use super::keys::{Keys, lock, release};
use super::row::{self, micros};
use super::writer::{self, Tx, unavailable};
use crate::id::TaskId;
use crate::store::schedules;
use crate::store::{ScheduleChange, StoreError, StoredSchedule};

impl SqliteStore {
    pub(super) async fn read_schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        let rows = self
            .reader
            .call(|conn| {
                let mut statement =
                    conn.prepare_cached("SELECT name, body FROM schedules").map_err(unavailable)?;
                let rows = statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .map_err(unavailable)?;
                rows.collect::<Result<Vec<(String, String)>, _>>().map_err(unavailable)
            })
            .await?;
        Ok(schedules::decode_all(rows))
    }

    pub(super) async fn apply_schedule(
        &self,
        name: &str,
        change: ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSchedule>, StoreError> {
        let name = name.to_owned();
        let (keys, active) = (Arc::clone(&self.keys), Arc::clone(&self.active));
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer.submit(Box::new(move |conn| {
            let out = write(conn, &name, change, now, &keys, &active);
            let failed = out.as_ref().err().cloned();
            let done: writer::Done = Box::new(move |commit| {
                let result = match (out, commit) {
                    (Err(err), _) => Err(err),
                    (Ok((_, stored)), Some(err)) => {
                        // Rolled back: the slots' tasks were not stored after all.
                        forget(stored, &keys, &active);
                        Err(err.clone())
                    }
                    (Ok((schedule, _)), None) => Ok(schedule),
                };
                let _ = reply.send(result);
            });
            (done, failed)
        }))?;
        answer.await.unwrap_or(Err(StoreError::Closed))
    }
}

/// The tasks a schedule change stored: each id, and the key it took.
type Stored = Vec<(TaskId, Option<String>)>;

/// Applies `change` to the row `name` on the writer, and stores the slots' tasks in the same
/// transaction (a slot key an active task holds is that task: not stored twice).
fn write(
    conn: &Tx<'_>,
    name: &str,
    change: ScheduleChange,
    now: DateTime<Utc>,
    keys: &Keys,
    active: &ActiveRows,
) -> Result<(Option<StoredSchedule>, Stored), StoreError> {
    // A savepoint of its own: the writer commits other jobs' writes with this one's, so a
    // failure half-way must take back the schedule's row and the tasks written before it.
    conn.execute_batch("SAVEPOINT schedule_change").map_err(unavailable)?;
    let counted = conn.moves().clone();
    match apply(conn, name, change, now, keys, active) {
        Ok((schedule, stored)) => match conn.execute_batch("RELEASE schedule_change") {
            Ok(()) => Ok((schedule, stored)),
            Err(err) => {
                forget(stored, keys, active);
                *conn.moves() = counted;
                Err(unavailable(err))
            }
        },
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK TO schedule_change; RELEASE schedule_change");
            *conn.moves() = counted;
            Err(err)
        }
    }
}

fn apply(
    conn: &Tx<'_>,
    name: &str,
    change: ScheduleChange,
    now: DateTime<Utc>,
    keys: &Keys,
    active: &ActiveRows,
) -> Result<(Option<StoredSchedule>, Stored), StoreError> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM schedules WHERE name = ?1")
        .map_err(unavailable)?
        .query_row([name], |row| row.get(0))
        .optional()
        .map_err(unavailable)?;
    let applied = change.apply(schedules::found(name, body.as_deref()), now);
    match applied.body() {
        Some(Some(body)) => {
            conn.prepare_cached(
                "INSERT INTO schedules (name, body, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET body = excluded.body,
                    updated_at = excluded.updated_at",
            )
            .map_err(unavailable)?
            .execute(params![name, body, micros(now)])
            .map_err(unavailable)?;
        }
        Some(None) => {
            conn.prepare_cached("DELETE FROM schedules WHERE name = ?1")
                .map_err(unavailable)?
                .execute([name])
                .map_err(unavailable)?;
        }
        None => {}
    }
    let mut stored = Stored::new();
    for task in applied.tasks() {
        let key = task.idempotency_key.clone();
        if let Some(key) = &key {
            let mut held = lock(keys);
            if held.contains_key(key) {
                continue;
            }
            held.insert(key.clone(), task.task_id);
        }
        let seq = active.insert(task.clone());
        stored.push((task.task_id, key));
        let counted = super::counters::NewTask::of(task);
        if let Err(err) = super::stage::insert(conn, seq, &row::encode(task), None, &counted) {
            forget(stored, keys, active);
            return Err(err);
        }
    }
    Ok((applied.result(), stored))
}

/// Forgets the tasks of a change that was not stored after all (their rows and keys).
fn forget(stored: Stored, keys: &Keys, active: &ActiveRows) {
    for (id, key) in stored {
        active.forget(&id);
        if let Some(key) = key {
            release(keys, &key, &id);
        }
    }
}
