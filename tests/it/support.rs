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

/// Instantiates each check (an `async fn(Arc<dyn Store>)` of the invoking module) once per
/// backend, in modules named after them; a backend that is not configured here is skipped
/// with a line saying why.
macro_rules! on_every_store {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                super::$check(std::sync::Arc::new(taskflow::MemoryStore::new())).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let dir = tempfile::tempdir().unwrap();
                let store = taskflow::SqliteStore::open(dir.path().join("tasks.db")).unwrap();
                super::$check(std::sync::Arc::new(store)).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = crate::conformance::postgres_store().await {
                    super::$check(std::sync::Arc::new(store)).await;
                }
            })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = crate::conformance::mysql_store().await {
                    super::$check(std::sync::Arc::new(store)).await;
                }
            })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = crate::conformance::redis_store().await {
                    super::$check(std::sync::Arc::new(store)).await;
                }
            })*
        }
    };
}
pub(crate) use on_every_store;
