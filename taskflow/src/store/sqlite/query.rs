//! Building the SQL of [`Store::list`](crate::Store::list) from a [`TaskQuery`].

use rusqlite::types::Value as Sql;

use super::row::{columns, micros};
use crate::store::{StoreError, TaskQuery};

/// A `WHERE` clause and its values, numbered as they are added.
#[derive(Default)]
struct Filters {
    clauses: Vec<String>,
    values: Vec<Sql>,
}

impl Filters {
    /// Adds `clause`, whose `?`s take `values` in order.
    fn add(&mut self, clause: &str, values: impl IntoIterator<Item = Sql>) {
        let mut numbered = String::new();
        let mut values = values.into_iter();
        for part in clause.split_inclusive('?') {
            match part.strip_suffix('?') {
                Some(before) => {
                    self.values.push(values.next().unwrap_or(Sql::Null));
                    numbered.push_str(before);
                    numbered.push_str(&format!("?{}", self.values.len()));
                }
                None => numbered.push_str(part),
            }
        }
        self.clauses.push(numbered);
    }
}

/// The SQL and values that select one page of `query` (one row more than `limit`, to learn
/// whether another page follows), as [`columns!`] then `seq`.
pub(super) fn page(query: &TaskQuery, limit: usize) -> Result<(String, Vec<Sql>), StoreError> {
    let mut filters = Filters::default();
    if let Some(status) = query.status {
        filters.add("status = ?", [Sql::Text(status.as_str().to_owned())]);
    }
    if let Some(func_name) = &query.func_name {
        filters.add("func_name = ?", [Sql::Text(func_name.clone())]);
    }
    if let Some(queue) = &query.queue {
        filters.add("queue = ?", [Sql::Text(queue.clone())]);
    }
    if let Some((key, value)) = &query.tag {
        let path = crate::store::tag_path(key);
        filters.add("json_extract(tags, ?) = ?", [Sql::Text(path), Sql::Text(value.clone())]);
    }
    if let Some(search) = &query.search {
        let escaped = crate::store::like_escape(search);
        filters.add(
            "(id LIKE ? ESCAPE '\\' OR id LIKE ? ESCAPE '\\' OR func_name LIKE ? ESCAPE '\\')",
            [
                Sql::Text(format!("{escaped}%")),
                Sql::Text(format!("%{escaped}")),
                Sql::Text(format!("%{escaped}%")),
            ],
        );
    }
    if let Some(since) = query.since {
        filters.add("created_at >= ?", [Sql::Integer(micros(since))]);
    }
    if let Some(until) = query.until {
        filters.add("created_at < ?", [Sql::Integer(micros(until))]);
    }
    if let Some(after) = &query.after {
        let seq: i64 = after.parse().map_err(|_| StoreError::InvalidCursor(after.clone()))?;
        let clause = if query.oldest_first { "seq > ?" } else { "seq < ?" };
        filters.add(clause, [Sql::Integer(seq)]);
    }
    let mut sql = concat!("SELECT ", columns!(), ", seq FROM tasks").to_owned();
    if !filters.clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&filters.clauses.join(" AND "));
    }
    let order = if query.oldest_first { "ASC" } else { "DESC" };
    filters.add(
        &format!(" ORDER BY seq {order} LIMIT ?"),
        [Sql::Integer(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX))],
    );
    let limit_clause = filters.clauses.pop().unwrap_or_default();
    sql.push_str(&limit_clause);
    Ok((sql, filters.values))
}
