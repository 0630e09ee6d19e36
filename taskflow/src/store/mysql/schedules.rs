//! The schedules (`taskflow_schedules`, one JSON text per schedule), each change in a
//! transaction that locks the schedule's row, so changes on every instance apply one at a time.

use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;

use super::row::{INSERT, encode};
use super::{MysqlStore, micros, unavailable};
use crate::store::counters::moves::Moves;
use crate::store::schedules;
use crate::store::{ScheduleChange, StoreError, StoredSchedule};

impl MysqlStore {
    pub(super) async fn read_schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, String)> = conn
            .query("SELECT name, body FROM taskflow_schedules WHERE body IS NOT NULL")
            .await
            .map_err(unavailable)?;
        Ok(schedules::decode_all(rows))
    }

    pub(super) async fn apply_schedule(
        &self,
        name: &str,
        change: ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSchedule>, StoreError> {
        let mut conn = self.conn().await?;
        // The row is created first (empty), so that the read below locks it.
        conn.exec_drop(
            "INSERT IGNORE INTO taskflow_schedules (name, updated_at) VALUES (?, ?)",
            (name, micros(now)),
        )
        .await
        .map_err(unavailable)?;
        let mut tx = conn.start_transaction(Default::default()).await.map_err(unavailable)?;
        let body: Option<Option<String>> = tx
            .exec_first("SELECT body FROM taskflow_schedules WHERE name = ? FOR UPDATE", (name,))
            .await
            .map_err(unavailable)?;
        let applied = change.apply(schedules::found(name, body.flatten().as_deref()), now);
        if let Some(body) = applied.body() {
            tx.exec_drop(
                "UPDATE taskflow_schedules SET body = ?, updated_at = ? WHERE name = ?",
                (body, micros(now), name),
            )
            .await
            .map_err(unavailable)?;
        }
        // The slots' tasks in the same transaction: stored only if the advance commits. A
        // duplicate slot key (an active task holds it) is that task: not stored twice.
        let mut moves = Moves::default();
        for task in applied.tasks() {
            let values = encode(task, None);
            match tx.exec_drop(INSERT, values.clone()).await {
                Err(err) if super::is_duplicate(&err) => {}
                inserted => {
                    inserted.map_err(unavailable)?;
                    super::deltas::inserted(&mut moves, &values, now);
                }
            }
        }
        super::deltas::append(&mut tx, &mut moves).await.map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(applied.result())
    }
}
