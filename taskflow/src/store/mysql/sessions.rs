//! Revoked admin sessions (`taskflow_revoked_sessions`), shared by every instance.

use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;

use super::row::micros;
use super::{MysqlStore, unavailable};
use crate::store::StoreError;

impl MysqlStore {
    pub(super) async fn revoke(&self, id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "DELETE FROM taskflow_revoked_sessions WHERE until_us <= ?",
            (micros(Utc::now()),),
        )
        .await
        .map_err(unavailable)?;
        conn.exec_drop(
            "INSERT INTO taskflow_revoked_sessions (id, until_us) VALUES (?, ?)
             ON DUPLICATE KEY UPDATE until_us = GREATEST(until_us, VALUES(until_us))",
            (id, micros(until)),
        )
        .await
        .map_err(unavailable)
    }

    pub(super) async fn revoked(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let found: Option<i64> = conn
            .exec_first(
                "SELECT 1 FROM taskflow_revoked_sessions WHERE id = ? AND until_us > ?",
                (id, micros(now)),
            )
            .await
            .map_err(unavailable)?;
        Ok(found.is_some())
    }
}
