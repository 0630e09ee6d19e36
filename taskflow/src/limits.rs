//! [`Limits`]: the most a task may carry, checked at enqueue (an oversized task is refused
//! with [`Error::TooLarge`] and nothing is stored), and the cut applied to what a task
//! produces while it runs (error text, stack traces, log lines), so one task cannot fill the
//! store or the memory of every process that reads it.

use crate::error::Error;
use crate::record::TaskRecord;

/// The maxima; [`Limits::default`] gives the documented defaults.
///
/// ```rust,standalone_crate
/// use taskflow::{Limits, TaskManager};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> taskflow::Result<()> {
/// let limits = Limits { max_args_bytes: 64 * 1024, ..Limits::default() };
/// let manager = TaskManager::builder().limits(limits).build().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Encoded JSON arguments, in bytes (default 1 MiB).
    pub max_args_bytes: usize,
    /// Tags per task (default 32).
    pub max_tags: usize,
    /// A tag's key, in bytes (default 64).
    pub max_tag_key_bytes: usize,
    /// A tag's value, in bytes (default 256).
    pub max_tag_value_bytes: usize,
    /// An idempotency key or a run key, in bytes (default 256).
    pub max_idempotency_key_bytes: usize,
    /// An error message or stack trace, in bytes; longer ones are cut with a marker
    /// (default 16 KiB).
    pub max_error_bytes: usize,
    /// Log lines kept per attempt; beyond it the oldest are dropped and a marker line says
    /// how many (default 1,000).
    pub max_log_entries: usize,
    /// A log line's message, in bytes; longer ones are cut with a marker (default 8 KiB).
    pub max_log_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_args_bytes: 1024 * 1024,
            max_tags: 32,
            max_tag_key_bytes: 64,
            max_tag_value_bytes: 256,
            max_idempotency_key_bytes: 256,
            max_error_bytes: 16 * 1024,
            max_log_entries: 1000,
            max_log_message_bytes: 8 * 1024,
        }
    }
}

/// Counts the bytes written to it, stopping (with an error) once past `limit`.
struct Counter {
    written: usize,
    limit: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.written += bytes.len();
        if self.written > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn too_large(what: &'static str, size: usize, limit: usize) -> Result<(), Error> {
    if size > limit { Err(Error::TooLarge { what, size, limit }) } else { Ok(()) }
}

impl Limits {
    /// Whether `record` fits: its arguments, tags and idempotency key.
    pub(crate) fn check(&self, record: &TaskRecord) -> Result<(), Error> {
        let mut counter = Counter { written: 0, limit: self.max_args_bytes };
        if serde_json::to_writer(&mut counter, &record.args).is_err() {
            // Stopped early: the size is at least what was counted.
            return too_large("arguments", counter.written, self.max_args_bytes);
        }
        too_large("tags", record.tags.len(), self.max_tags)?;
        for (key, value) in &record.tags {
            too_large("tag key", key.len(), self.max_tag_key_bytes)?;
            too_large("tag value", value.len(), self.max_tag_value_bytes)?;
        }
        if let Some(key) = &record.idempotency_key {
            too_large("idempotency key", key.len(), self.max_idempotency_key_bytes)?;
        }
        if let Some(key) = &record.run_key {
            too_large("run key", key.len(), self.max_idempotency_key_bytes)?;
        }
        Ok(())
    }
}

/// `text` cut to at most `limit` bytes (on a character boundary) with a marker saying how
/// much was dropped.
pub(crate) fn cut(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let dropped = text.len();
    let end = text.floor_char_boundary(limit);
    text.truncate(end);
    text.push_str(&format!(" [... cut: {} of {dropped} bytes dropped]", dropped - end));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_text_and_marks_long_text_on_a_char_boundary() {
        assert_eq!(cut("short".to_owned(), 10), "short");
        let long = "é".repeat(10); // 20 bytes
        let cut = cut(long, 5);
        assert!(cut.starts_with("éé"), "{cut}");
        assert!(cut.contains("[... cut: 16 of 20 bytes dropped]"), "{cut}");
    }
}
