//! How the PostgreSQL store inserts new tasks for its [`InsertQueue`](crate::store::inserts::InsertQueue):
//! a batch in one transaction, its statements pipelined.

use deadpool_postgres::Pool;

use super::row::Params;
use crate::store::StoreError;
use crate::store::inserts::{Insert, Inserter};

impl Inserter for Pool {
    type Values = Params;
    type Id = uuid::Uuid;

    async fn together(&self, batch: &[Insert<Self>]) -> Result<Vec<usize>, StoreError> {
        let mut client = self.get().await.map_err(super::pool_error)?;
        let statement =
            client.prepare_cached(&super::insert_sql()).await.map_err(super::unavailable)?;
        let tx = client.transaction().await.map_err(super::unavailable)?;
        let values: Vec<_> = batch.iter().map(|insert| insert.values.refs()).collect();
        let inserted = futures_util::future::join_all(
            values.iter().map(|refs| tx.query_opt(&statement, refs)),
        )
        .await;
        let mut held = Vec::new();
        for (index, row) in inserted.into_iter().enumerate() {
            match row.map_err(super::unavailable)? {
                Some(_) => {}
                None if batch[index].key.is_some() => held.push(index),
                None => {
                    return Err(StoreError::Unavailable(format!(
                        "postgres: task {} was not inserted",
                        batch[index].id
                    )));
                }
            }
        }
        tx.commit().await.map_err(super::unavailable)?;
        Ok(held)
    }

    async fn alone(
        &self,
        values: Params,
        id: uuid::Uuid,
        key: Option<String>,
        run_key: Option<String>,
    ) -> Result<(), StoreError> {
        match run_key {
            None => super::insert(self.clone(), values, id, key).await,
            Some(run_key) => super::run_key::insert(self, &values, id, key, &run_key).await,
        }
    }
}
