//! [`StoreError`]: why a store operation failed.

/// Why a store operation failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or answered with an error.
    #[error("task store unavailable: {0}")]
    Unavailable(String),
    /// The store could not be opened.
    #[error("cannot open task store {path}: {reason}")]
    Open {
        /// The database path or URL.
        path: String,
        /// Why.
        reason: String,
    },
    /// The database was written by a newer taskflow, whose schema this binary does not know.
    #[error(
        "task store {path} has schema version {found}, newer than the {supported} this taskflow supports; upgrade taskflow or use another database"
    )]
    IncompatibleSchema {
        /// The database path or URL.
        path: String,
        /// The schema version found.
        found: i64,
        /// The newest version this binary supports.
        supported: i64,
    },
    /// The store was closed.
    #[error("task store closed")]
    Closed,
    /// The store did not answer in time (a database that hangs); the operation may or may
    /// not have taken effect, and an enqueue is read back before it is reported failed.
    #[error("task store did not answer within {after:?} ({what})")]
    TimedOut {
        /// The operation.
        what: &'static str,
        /// The bound it ran past.
        after: std::time::Duration,
    },
    /// A list cursor that this store did not give out.
    #[error("invalid cursor `{0}`")]
    InvalidCursor(String),
    /// A stored record could not be decoded.
    #[error("corrupt task record {id}: {reason}")]
    Corrupt {
        /// The record's id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
}
