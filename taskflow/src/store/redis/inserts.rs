//! How the Redis store writes new tasks for its [`InsertQueue`]: the enqueue scripts of a
//! batch in one pipeline (one round trip), each still atomic on its own. The script is
//! idempotent (a task already stored is left as it is), so a batch whose reply was lost can be
//! written again safely.

use std::sync::Arc;

use redis::aio::ConnectionManager;

use super::{Scripts, unavailable};
use crate::id::TaskId;
use crate::store::StoreError;
use crate::store::inserts::{Insert, Inserter};

/// What the insert queue writes through.
#[derive(Clone)]
pub(super) struct Enqueues {
    pub(super) conn: ConnectionManager,
    pub(super) scripts: Arc<Scripts>,
}

impl Inserter for Enqueues {
    /// The enqueue script's arguments.
    type Values = Vec<String>;
    type Id = TaskId;

    async fn together(&self, batch: &[Insert<Self>]) -> Result<Vec<usize>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let hash = self.scripts.enqueue.get_hash();
        for insert in batch {
            pipe.cmd("EVALSHA").arg(hash).arg(0).arg(&insert.values);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<redis::RedisResult<String>> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        // A script that failed (the server lost its scripts, say) goes again alone, which
        // loads it; the others are stored (an idempotency key's duplicate is an alias).
        Ok(replies.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect())
    }

    async fn alone(
        &self,
        values: Vec<String>,
        _: TaskId,
        _: Option<String>,
        _: Option<String>,
    ) -> Result<(), StoreError> {
        let mut invocation = self.scripts.enqueue.prepare_invoke();
        for arg in &values {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        let stored: String = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        drop(stored);
        Ok(())
    }
}
