//! How the MySQL store inserts new tasks for its [`InsertQueue`](crate::store::inserts::InsertQueue):
//! a batch in one transaction.

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts, Value};

use super::deltas;
use crate::id::TaskId;
use crate::store::StoreError;
use crate::store::counters::moves::Moves;
use crate::store::inserts::{Insert, Inserter};

impl Inserter for Pool {
    type Values = Vec<Value>;
    type Id = TaskId;

    async fn together(&self, batch: &[Insert<Self>]) -> Result<Vec<usize>, StoreError> {
        let mut conn = self.get_conn().await.map_err(super::unavailable)?;
        let mut tx = conn.start_transaction(TxOpts::default()).await.map_err(super::unavailable)?;
        let mut held = Vec::new();
        let (mut moves, now) = (Moves::default(), chrono::Utc::now());
        for (index, insert) in batch.iter().enumerate() {
            match tx.exec_drop(super::INSERT, insert.values.clone()).await {
                Ok(()) => deltas::inserted(&mut moves, &insert.values, now),
                // A duplicate key ends only its own statement in MySQL, not the transaction.
                Err(err) if super::is_duplicate(&err) && insert.key.is_some() => held.push(index),
                Err(err) => return Err(super::unavailable(err)), // dropping `tx` rolls back
            }
        }
        deltas::append(&mut tx, &mut moves).await.map_err(super::unavailable)?;
        tx.commit().await.map_err(super::unavailable)?;
        Ok(held)
    }

    async fn alone(
        &self,
        values: Vec<Value>,
        id: TaskId,
        key: Option<String>,
        run_key: Option<String>,
    ) -> Result<(), StoreError> {
        match run_key {
            None => super::insert(self.clone(), values, id, key).await,
            Some(run_key) => super::run_key::insert(self, values, id, key, &run_key).await,
        }
    }
}
