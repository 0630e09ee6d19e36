//! Rewriting a task's stored arguments (inside its `base` record) and result (re-sealing):
//! read, changed here, written by a script only if both fields still hold what was read.

use super::{RedisStore, unavailable};
use crate::store::{Rewrite, StoreError};

/// ARGV: the task's key, base as read, base to write, result as read ('' for none), result
/// to write ('' to leave it). 1 if written.
const SWAP: &str = r#"
local t = ARGV[1]
if redis.call('HGET', t, 'base') ~= ARGV[2] then return 0 end
if (redis.call('HGET', t, 'result') or '') ~= ARGV[4] then return 0 end
redis.call('HSET', t, 'base', ARGV[3])
if ARGV[5] ~= '' then redis.call('HSET', t, 'result', ARGV[5]) end
return 1
"#;

impl RedisStore {
    pub(super) async fn rewrite(&self, rewrite: &Rewrite) -> Result<bool, StoreError> {
        if rewrite.is_empty() {
            return Ok(false);
        }
        let key = self.key(&format!("t:{}", rewrite.id));
        let mut conn = self.conn.clone();
        let (base, result): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("base")
            .arg("result")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some(base) = base else { return Ok(false) };
        let mut record: serde_json::Value = serde_json::from_str(&base).map_err(|err| {
            StoreError::Corrupt { id: rewrite.id.to_string(), reason: format!("base: {err}") }
        })?;
        let stored_result = result.as_deref().map(serde_json::from_str::<serde_json::Value>);
        if let Some((from, to)) = &rewrite.args {
            if record.get("args") != Some(from) {
                return Ok(false);
            }
            record["args"] = to.clone();
        }
        let mut new_result = String::new();
        if let Some((from, to)) = &rewrite.result {
            if !matches!(&stored_result, Some(Ok(stored)) if stored == from) {
                return Ok(false);
            }
            new_result = to.to_string();
        }
        let written: i64 = redis::Script::new(SWAP)
            .arg(&key)
            .arg(&base)
            .arg(record.to_string())
            .arg(result.unwrap_or_default())
            .arg(new_result)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(written == 1)
    }
}
