//! Revoked admin sessions (`taskflow_revoked_sessions`), shared by every instance.

use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::StoreError;

impl PostgresStore {
    pub(super) async fn revoke(&self, id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.execute("DELETE FROM taskflow_revoked_sessions WHERE until <= now()", &[]).await?;
        self.execute(
            "INSERT INTO taskflow_revoked_sessions (id, until) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE
                SET until = GREATEST(taskflow_revoked_sessions.until, EXCLUDED.until)",
            &[&id, &until],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn revoked(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "SELECT 1 FROM taskflow_revoked_sessions WHERE id = $1 AND until > $2",
                &[&id, &now],
            )
            .await?;
        Ok(!rows.is_empty())
    }
}
