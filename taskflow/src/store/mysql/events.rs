//! The event log on MySQL/MariaDB: `taskflow_events`, numbered by its `AUTO_INCREMENT`; an
//! append is one multi-row `INSERT`, and every hundredth drops what is beyond
//! [`KEEP_EVENTS`]. There are no notifications: feeds poll.

use std::sync::Arc;

use async_trait::async_trait;
use mysql_async::Value;
use mysql_async::prelude::Queryable;

use super::{MysqlStore, unavailable};
use crate::event::TaskEvent;
use crate::store::StoreError;
use crate::store::events::{EventLog, KEEP_EVENTS, trim_due};

#[async_trait]
impl EventLog for MysqlStore {
    async fn append(&self, events: &[TaskEvent]) -> Result<(), StoreError> {
        let bodies: Vec<Value> = events
            .iter()
            .filter_map(|event| serde_json::to_string(event).ok())
            .map(Value::from)
            .collect();
        if bodies.is_empty() {
            return Ok(());
        }
        let count = bodies.len() as u64;
        let rows = vec!["(?)"; bodies.len()].join(", ");
        let mut conn = self.conn().await?;
        conn.exec_drop(format!("INSERT INTO taskflow_events (body) VALUES {rows}"), bodies)
            .await
            .map_err(unavailable)?;
        if trim_due() {
            // The batch's first number; the newest is that plus its length less one.
            let newest = conn.last_insert_id().unwrap_or(0) + count - 1;
            let oldest_kept = newest.saturating_sub(KEEP_EVENTS);
            conn.exec_drop("DELETE FROM taskflow_events WHERE seq <= ?", (oldest_kept,))
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn after(&self, seq: u64, limit: usize) -> Result<Vec<(u64, TaskEvent)>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(u64, String)> = conn
            .exec(
                "SELECT seq, body FROM taskflow_events WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit as u64),
            )
            .await
            .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .filter_map(|(seq, body)| Some((seq, serde_json::from_str(&body).ok()?)))
            .collect())
    }

    fn appended(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}
