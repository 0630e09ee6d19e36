//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not an API). Each feeds
//! untrusted input to the code that decodes it in production (admin query strings, stored
//! rows of each database store) and must never panic, whatever the input.

/// One stored cell, whatever the database: what a damaged or hand-edited row may hold.
#[derive(Clone, Debug)]
pub enum Cell {
    /// SQL `NULL`.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes (a blob, or text that is not UTF-8).
    Bytes(Vec<u8>),
}

/// Parses `raw` as the query string of every admin route that takes one.
#[cfg(feature = "axum")]
pub fn admin_queries(raw: &str) {
    crate::admin::parse_queries(raw);
}

/// Decodes `cells` as a row of the SQLite store's task and log tables.
#[cfg(feature = "sqlite")]
pub fn sqlite_row(cells: Vec<Cell>) {
    use rusqlite::types::Value;
    let values = cells
        .into_iter()
        .map(|cell| match cell {
            Cell::Null => Value::Null,
            Cell::Int(n) => Value::Integer(n),
            Cell::Real(x) => Value::Real(x),
            Cell::Text(text) => Value::Text(text),
            Cell::Bytes(bytes) => Value::Blob(bytes),
        })
        .collect();
    crate::store::sqlite::decode_values(values);
}

/// Decodes `cells` as a row of the MySQL store's task table.
#[cfg(feature = "mysql")]
pub fn mysql_row(cells: Vec<Cell>) {
    use mysql_async::Value;
    let values = cells
        .into_iter()
        .map(|cell| match cell {
            Cell::Null => Value::NULL,
            Cell::Int(n) => Value::Int(n),
            Cell::Real(x) => Value::Double(x),
            Cell::Text(text) => Value::Bytes(text.into_bytes()),
            Cell::Bytes(bytes) => Value::Bytes(bytes),
        })
        .collect();
    crate::store::mysql::decode_values(values);
}

/// Decodes `flat` (field, value, field, value, ...) as a Redis task hash.
#[cfg(feature = "redis")]
pub fn redis_fields(flat: Vec<Vec<u8>>) {
    crate::store::redis::decode_fields(flat);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few hostile inputs through every entry point, so the suite runs them too.
    #[test]
    fn hostile_inputs_do_not_panic() {
        let texts = ["", "{", "null", "pending", "9223372036854775807", "\u{0}", "é", "%ff%fe"];
        #[cfg(feature = "axum")]
        for raw in ["since=100000000d", "limit=0&limit=1", "tag=:", "cursor=%ZZ", "=&&=", "q=%"] {
            admin_queries(raw);
        }
        let cells: Vec<Vec<Cell>> = vec![
            Vec::new(),
            vec![Cell::Null; 30],
            texts.iter().cycle().take(30).map(|t| Cell::Text((*t).to_owned())).collect(),
            (0..30)
                .map(|n| if n % 2 == 0 { Cell::Int(i64::MIN) } else { Cell::Real(f64::NAN) })
                .collect(),
            vec![Cell::Bytes(vec![0xff, 0xfe]); 30],
        ];
        for row in cells {
            #[cfg(feature = "sqlite")]
            sqlite_row(row.clone());
            #[cfg(feature = "mysql")]
            mysql_row(row.clone());
            let _ = row;
        }
        #[cfg(feature = "redis")]
        for text in texts {
            let fields = ["base", "status", "start", "end", "duration", "retries", "result"];
            redis_fields(
                fields.iter().flat_map(|f| [f.as_bytes().to_vec(), text.into()]).collect(),
            );
        }
    }
}
