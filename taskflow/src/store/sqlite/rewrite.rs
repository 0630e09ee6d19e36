//! Rewriting a task's stored arguments and result (re-sealing), only from what was read.

use rusqlite::types::Value as Sql;

use super::SqliteStore;
use super::writer::unavailable;
use crate::store::{Rewrite, StoreError};

impl SqliteStore {
    pub(super) async fn rewrite(&self, rewrite: &Rewrite) -> Result<bool, StoreError> {
        if rewrite.is_empty() {
            return Ok(false);
        }
        let mut sets = Vec::new();
        let mut checks = vec!["id = ?1".to_owned()];
        let mut values = vec![Sql::Text(rewrite.id.to_string())];
        for (column, change) in [("args", &rewrite.args), ("result", &rewrite.result)] {
            if let Some((from, to)) = change {
                values.push(super::row::stored_value(from));
                checks.push(format!("{column} = ?{}", values.len()));
                values.push(super::row::stored_value(to));
                sets.push(format!("{column} = ?{}", values.len()));
            }
        }
        let sql = format!("UPDATE tasks SET {} WHERE {}", sets.join(", "), checks.join(" AND "));
        self.writer
            .call(move |conn| {
                let changed =
                    conn.execute(&sql, rusqlite::params_from_iter(values)).map_err(unavailable)?;
                Ok(changed == 1)
            })
            .await
    }
}
