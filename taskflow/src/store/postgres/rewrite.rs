//! Rewriting a task's stored arguments and result (re-sealing), only from what was read.

use tokio_postgres::types::ToSql;

use super::PostgresStore;
use crate::store::{Rewrite, StoreError};

impl PostgresStore {
    pub(super) async fn rewrite(&self, rewrite: &Rewrite) -> Result<bool, StoreError> {
        if rewrite.is_empty() {
            return Ok(false);
        }
        let id = *rewrite.id.as_uuid();
        let mut sets = Vec::new();
        let mut checks = vec!["id = $1".to_owned()];
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&id];
        for (column, change) in [("args", &rewrite.args), ("result", &rewrite.result)] {
            if let Some((from, to)) = change {
                values.push(from);
                checks.push(format!("{column} = ${}", values.len()));
                values.push(to);
                sets.push(format!("{column} = ${}", values.len()));
            }
        }
        let sql =
            format!("UPDATE taskflow_tasks SET {} WHERE {}", sets.join(", "), checks.join(" AND "));
        Ok(self.execute(&sql, &values).await? == 1)
    }
}
