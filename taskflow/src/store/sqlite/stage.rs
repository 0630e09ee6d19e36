//! Enqueueing: a record staged for the writer's next commit, its idempotency key taken at
//! once, and barriers that resolve once everything staged so far is committed.

use super::counters::NewTask;
use super::writer::Tx;
use super::*;

impl SqliteStore {
    /// Stages `record` for the next commit, held back from fetching until `hold` (micros), if
    /// given.
    pub(super) fn stage(
        &self,
        record: TaskRecord,
        hold: Option<i64>,
    ) -> Result<Enqueued, StoreError> {
        let id = record.task_id;
        let key = record
            .idempotency_key
            .clone()
            .filter(|_| !matches!(record.status, TaskStatus::Failed | TaskStatus::Cancelled));
        if let Some(key) = &key {
            let mut keys = lock(&self.keys);
            if let Some(existing) = keys.get(key) {
                let existing = *existing;
                drop(keys);
                // The holder may still be on its way to disk: answer once it is there.
                return Ok(Enqueued { id: existing, created: false, write: self.barrier()? });
            }
            keys.insert(key.clone(), id);
        }
        let values = row::encode(&record);
        let counted = NewTask::of(&record);
        let run_key = record.run_key.clone().filter(|_| record.status == TaskStatus::Pending);
        let now = micros(record.created_at);
        let seq = self.active.insert(record);
        let (reply, ticket) = match self.durability {
            Durability::Async => (None, None),
            Durability::Committed | Durability::Fsync => {
                let (tx, ticket) = WriteTicket::new();
                (Some(tx), Some(ticket))
            }
        };
        let keys = Arc::clone(&self.keys);
        let active = Arc::clone(&self.active);
        let job_key = key.clone();
        let submitted = self.writer.submit(Box::new(move |conn| {
            let inserted = match &run_key {
                None => insert(conn, seq, &values, hold, &counted).map(|()| None),
                Some(run_key) => run_key::replace(conn, run_key, &id, now, || {
                    insert(conn, seq, &values, hold, &counted)
                }),
            };
            let failed = inserted.as_ref().err().cloned();
            let done: writer::Done = Box::new(move |commit| {
                let result = match (inserted, commit) {
                    (Err(err), _) => Err(err),
                    (Ok(_), Some(err)) => Err(err.clone()),
                    (Ok(replaced), None) => {
                        if let Some((old, old_key)) = replaced {
                            active.forget(&old);
                            if let Some(old_key) = old_key {
                                release(&keys, &old_key, &old);
                            }
                        }
                        Ok(())
                    }
                };
                if let Err(err) = &result {
                    active.forget(&id);
                    if let Some(key) = &job_key {
                        release(&keys, key, &id);
                    }
                    if reply.is_none() {
                        tracing::error!(task_id = %id, error = %err, "taskflow: a task enqueued with Durability::Async was not stored");
                    }
                }
                if let Some(reply) = reply {
                    reply.settle(result);
                }
            });
            (done, failed)
        }));
        if let Err(err) = submitted {
            self.active.forget(&id);
            if let Some(key) = &key {
                release(&self.keys, key, &id);
            }
            return Err(err);
        }
        Ok(Enqueued { id, created: true, write: ticket })
    }

    /// A ticket that resolves once everything queued so far is committed.
    pub(super) fn barrier(&self) -> Result<Option<WriteTicket>, StoreError> {
        if self.durability == Durability::Async {
            return Ok(None);
        }
        let (tx, ticket) = WriteTicket::new();
        self.writer.submit(Box::new(move |_| {
            let done: writer::Done = Box::new(move |commit| {
                tx.settle(commit.map_or(Ok(()), |err| Err(err.clone())));
            });
            (done, None)
        }))?;
        Ok(Some(ticket))
    }
}

/// Inserts the row of `values` (the task `counted`) as `seq`, held back until `hold` if given,
/// and counts it.
pub(super) fn insert(
    conn: &Tx<'_>,
    seq: i64,
    values: &[Sql; COLUMN_COUNT],
    hold: Option<i64>,
    counted: &NewTask,
) -> Result<(), StoreError> {
    const SQL: &str = concat!(
        "INSERT INTO tasks (",
        columns!(),
        ", seq, wait_until) VALUES (",
        placeholders!(),
        ", ?27, COALESCE(?28, CASE WHEN ?18 > ?4 THEN ?18 END))"
    );
    let extra = [Sql::Integer(seq), hold.map_or(Sql::Null, Sql::Integer)];
    let mut statement = conn.prepare_cached(SQL).map_err(unavailable)?;
    statement.execute(params_from_iter(values.iter().chain(&extra))).map_err(unavailable)?;
    counted.count(&mut conn.moves());
    Ok(())
}
