//! The schedules (`schedules`, one JSON text per schedule), changed on the writer, so each
//! change reads and writes its row with no other write between.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::row::micros;
use super::writer::unavailable;
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
        self.writer
            .call(move |conn| {
                let body: Option<String> = conn
                    .prepare_cached("SELECT body FROM schedules WHERE name = ?1")
                    .map_err(unavailable)?
                    .query_row([&name], |row| row.get(0))
                    .optional()
                    .map_err(unavailable)?;
                let applied = change.apply(schedules::found(&name, body.as_deref()), now);
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
                            .execute([&name])
                            .map_err(unavailable)?;
                    }
                    None => {}
                }
                Ok(applied.result())
            })
            .await
    }
}
