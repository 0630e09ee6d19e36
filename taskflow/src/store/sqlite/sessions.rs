//! Revoked admin sessions (`revoked_sessions`): written on the writer, read on the reader.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::SqliteStore;
use super::row::micros;
use super::writer::unavailable;
use crate::store::StoreError;

impl SqliteStore {
    pub(super) async fn revoke(&self, id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let (id, until, now) = (id.to_owned(), micros(until), micros(Utc::now()));
        self.writer
            .call(move |conn| {
                conn.prepare_cached("DELETE FROM revoked_sessions WHERE until <= ?1")
                    .and_then(|mut statement| statement.execute([now]))
                    .map_err(unavailable)?;
                conn.prepare_cached(
                    "INSERT INTO revoked_sessions (id, until) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET until = max(until, excluded.until)",
                )
                .and_then(|mut statement| statement.execute(params![id, until]))
                .map_err(unavailable)?;
                Ok(())
            })
            .await
    }

    pub(super) async fn revoked(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let (id, now) = (id.to_owned(), micros(now));
        self.reader
            .call(move |conn| {
                conn.prepare_cached("SELECT 1 FROM revoked_sessions WHERE id = ?1 AND until > ?2")
                    .and_then(|mut statement| statement.exists(params![id, now]))
                    .map_err(unavailable)
            })
            .await
    }
}
