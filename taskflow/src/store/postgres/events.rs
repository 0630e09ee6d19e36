//! The event log on PostgreSQL: `taskflow_events`, numbered by its `BIGSERIAL`; an append is
//! one statement that inserts the batch and `NOTIFY`s the newest number, and every hundredth
//! append drops what is beyond [`KEEP_EVENTS`].

use std::sync::Arc;

use async_trait::async_trait;

use super::notify::EVENTS_CHANNEL;
use super::{PostgresStore, unavailable};
use crate::event::TaskEvent;
use crate::store::StoreError;
use crate::store::events::{EventLog, KEEP_EVENTS, trim_due};

#[async_trait]
impl EventLog for PostgresStore {
    async fn append(&self, events: &[TaskEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let bodies: Vec<String> =
            events.iter().filter_map(|event| serde_json::to_string(event).ok()).collect();
        let client = self.client().await?;
        let sql = format!(
            "WITH appended AS (
                INSERT INTO taskflow_events (body)
                SELECT body FROM unnest($1::text[]) WITH ORDINALITY AS t(body, n) ORDER BY n
                RETURNING seq)
             SELECT pg_notify('{EVENTS_CHANNEL}', max(seq)::text), max(seq) FROM appended"
        );
        let statement = client.prepare_cached(&sql).await.map_err(unavailable)?;
        let row = client.query_one(&statement, &[&bodies]).await.map_err(unavailable)?;
        let newest: Option<i64> = row.get(1);
        if trim_due()
            && let Some(newest) = newest
        {
            let oldest_kept = newest - KEEP_EVENTS as i64;
            client
                .execute("DELETE FROM taskflow_events WHERE seq <= $1", &[&oldest_kept])
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn after(&self, seq: u64, limit: usize) -> Result<Vec<(u64, TaskEvent)>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT seq, body FROM taskflow_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .await
            .map_err(unavailable)?;
        let (after, limit) = (i64::try_from(seq).unwrap_or(i64::MAX), limit as i64);
        let rows = client.query(&statement, &[&after, &limit]).await.map_err(unavailable)?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let body: String = row.get(1);
                Some((row.get::<_, i64>(0) as u64, serde_json::from_str(&body).ok()?))
            })
            .collect())
    }

    fn appended(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(Arc::clone(&self.events))
    }
}
