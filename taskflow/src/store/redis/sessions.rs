//! Revoked admin sessions: one key `revoked:<id>` each, expiring when the session would.

use chrono::{DateTime, Utc};

use super::{RedisStore, unavailable};
use crate::store::StoreError;

impl RedisStore {
    pub(super) async fn revoke(&self, id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        // `GT` keeps the later expiry of two revocations; one already past is not written.
        let at = until.timestamp_millis();
        if at <= Utc::now().timestamp_millis() {
            return Ok(());
        }
        let key = self.key(&format!("revoked:{id}"));
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(at)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&key)
            .arg(at)
            .arg("GT")
            .ignore();
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    pub(super) async fn revoked(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("revoked:{id}"));
        let lapses: i64 = redis::cmd("PEXPIRETIME")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        // -2: no such key; -1: no expiry (never written so).
        Ok(lapses == -1 || lapses > now.timestamp_millis())
    }
}
