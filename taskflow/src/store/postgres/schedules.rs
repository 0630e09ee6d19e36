//! The schedules (`taskflow_schedules`, one JSON text per schedule), each change in a
//! transaction that locks the schedule's row, so changes on every instance apply one at a time.

use chrono::{DateTime, Utc};

use super::{PostgresStore, unavailable};
use crate::store::schedules;
use crate::store::{ScheduleChange, StoreError, StoredSchedule};

impl PostgresStore {
    pub(super) async fn read_schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        let rows = self
            .query("SELECT name, body FROM taskflow_schedules WHERE body IS NOT NULL", &[])
            .await?;
        Ok(schedules::decode_all(rows.iter().map(|row| (row.get(0), row.get(1))).collect()))
    }

    pub(super) async fn apply_schedule(
        &self,
        name: &str,
        change: ScheduleChange,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSchedule>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        // The row is created first (empty), so that the read below locks it.
        tx.execute(
            "INSERT INTO taskflow_schedules (name, updated_at) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &now],
        )
        .await
        .map_err(unavailable)?;
        let body: Option<String> = tx
            .query_one("SELECT body FROM taskflow_schedules WHERE name = $1 FOR UPDATE", &[&name])
            .await
            .map_err(unavailable)?
            .get(0);
        let applied = change.apply(schedules::found(name, body.as_deref()), now);
        if let Some(body) = applied.body() {
            tx.execute(
                "UPDATE taskflow_schedules SET body = $2, updated_at = $3 WHERE name = $1",
                &[&name, &body, &now],
            )
            .await
            .map_err(unavailable)?;
        }
        // The slots' tasks in the same transaction: stored only if the advance commits (a
        // task whose slot key an active task holds is that task; nothing is stored twice).
        for task in applied.tasks() {
            super::insert_in(&*tx, task).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(applied.result())
    }
}
