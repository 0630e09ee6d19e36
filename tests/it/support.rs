//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A process-wide map from a test's own key to what its tasks observed, so tests running in
/// parallel in this binary never see each other's data.
pub(crate) fn journal() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static JOURNAL: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    JOURNAL.get_or_init(Mutex::default)
}

pub(crate) fn note(key: &str, entry: impl Into<String>) {
    journal().lock().unwrap().entry(key.to_owned()).or_default().push(entry.into());
}

pub(crate) fn notes(key: &str) -> Vec<String> {
    journal().lock().unwrap().get(key).cloned().unwrap_or_default()
}

/// A key unique to one test run.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", taskflow::TaskId::new())
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub(crate) async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
