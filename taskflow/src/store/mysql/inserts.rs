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
        let mut start = 0;
        while start < batch.len() {
            let rows = chunk(batch.len() - start);
            let values = batch[start..start + rows].iter().flat_map(|insert| insert.values.clone());
            tx.exec_drop(insert_many_sql(rows), values.collect::<Vec<_>>())
                .await
                .map_err(super::unavailable)?; // dropping `tx` rolls back
            start += rows;
        }
        // A task whose key an active task (or an earlier one of the batch) holds was not
        // inserted: the keyed ones are looked up.
        let keyed: Vec<String> =
            batch.iter().filter(|i| i.key.is_some()).map(|i| i.id.to_string()).collect();
        let mut stored = std::collections::HashSet::new();
        if !keyed.is_empty() {
            let sql = format!(
                "SELECT id FROM taskflow_tasks WHERE id IN ({})",
                vec!["?"; keyed.len()].join(", ")
            );
            let found: Vec<String> = tx.exec(sql, keyed).await.map_err(super::unavailable)?;
            stored.extend(found);
        }
        let (mut moves, now) = (Moves::default(), chrono::Utc::now());
        let mut held = Vec::new();
        for (index, insert) in batch.iter().enumerate() {
            if insert.key.is_some() && !stored.contains(&insert.id.to_string()) {
                held.push(index);
            } else {
                deltas::inserted(&mut moves, &insert.values, now);
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

/// The most rows one insert statement takes.
const MAX_ROWS: usize = 256;

/// How many of `left` rows the next statement takes: a power of two, so that batches of any
/// size share a few prepared statements (at most nine).
fn chunk(left: usize) -> usize {
    let most = left.min(MAX_ROWS);
    1 << most.ilog2()
}

/// The insert of `rows` tasks in one statement; a task whose idempotency key an active task
/// holds is left out (`ON DUPLICATE KEY UPDATE` that changes nothing), not an error.
fn insert_many_sql(rows: usize) -> &'static str {
    static SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let (head, row) = super::INSERT.split_once(" VALUES ").unwrap_or((super::INSERT, ""));
        (0..=MAX_ROWS.ilog2())
            .map(|power| {
                let rows = vec![row; 1 << power].join(", ");
                format!("{head} VALUES {rows} ON DUPLICATE KEY UPDATE id = id")
            })
            .collect()
    });
    &SQL[rows.ilog2() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_that_add_up() {
        for total in [1, 2, 3, 255, 256, 257, 488, 512, 1000] {
            let (mut left, mut sizes) = (total, Vec::new());
            while left > 0 {
                let rows = chunk(left);
                assert!(rows.is_power_of_two() && rows <= MAX_ROWS && rows <= left);
                sizes.push(rows);
                left -= rows;
            }
            assert!(sizes.len() <= 9 + total / MAX_ROWS, "{total}: {sizes:?}");
        }
        assert_eq!(insert_many_sql(4).matches("(?,").count(), 4);
        assert!(insert_many_sql(1).ends_with("ON DUPLICATE KEY UPDATE id = id"));
    }
}
