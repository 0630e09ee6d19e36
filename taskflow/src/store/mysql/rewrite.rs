//! Rewriting a task's stored arguments and result (re-sealing), only from what was read.

use mysql_async::Value;
use mysql_async::prelude::Queryable;

use super::{MysqlStore, unavailable};
use crate::store::{Rewrite, StoreError};

impl MysqlStore {
    pub(super) async fn rewrite(&self, rewrite: &Rewrite) -> Result<bool, StoreError> {
        if rewrite.is_empty() {
            return Ok(false);
        }
        let mut sets = Vec::new();
        let mut set_values = Vec::new();
        let mut checks = vec!["id = ?".to_owned()];
        let mut check_values = vec![Value::from(rewrite.id.to_string())];
        for (column, change) in [("args", &rewrite.args), ("result", &rewrite.result)] {
            if let Some((from, to)) = change {
                sets.push(format!("{column} = ?"));
                set_values.push(Value::from(to.to_string()));
                checks.push(format!("{column} = ?"));
                check_values.push(Value::from(from.to_string()));
            }
        }
        let sql =
            format!("UPDATE taskflow_tasks SET {} WHERE {}", sets.join(", "), checks.join(" AND "));
        set_values.extend(check_values);
        let mut conn = self.conn().await?;
        conn.exec_drop(sql, set_values).await.map_err(unavailable)?;
        Ok(conn.affected_rows() == 1)
    }
}
