//! [`TaskError`]: how a task's body decides what follows a failed attempt, beyond the default
//! (a retry while retries are left).

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// An error a task returns to decide what happens next: [`TaskError::fatal`] fails the task at
/// once, whatever retries are left; [`TaskError::snooze`] runs it again after a while without
/// using an attempt. Any other error is retried while retries are left.
///
/// It is an ordinary error type: return it as the task's error, or convert it into the task's
/// own error type through `?` (an `anyhow::Error` or a `Box<dyn Error>` that holds one still
/// decides).
///
/// ```
/// use taskflow::TaskError;
///
/// #[taskflow::task(retries = 5)]
/// async fn charge(card: String) -> Result<(), taskflow::TaskError> {
///     if card.is_empty() {
///         // Retrying cannot help: fail now.
///         return Err(taskflow::TaskError::fatal("no card on file"));
///     }
///     if card == "busy" {
///         // The provider asked us to come back later; that is not a failed attempt.
///         return Err(taskflow::TaskError::snooze(std::time::Duration::from_secs(30)));
///     }
///     Ok(())
/// }
///
/// let error = TaskError::snooze(std::time::Duration::from_secs(30));
/// assert_eq!(error.snoozed_for(), Some(std::time::Duration::from_secs(30)));
/// ```
#[derive(Debug)]
pub struct TaskError {
    decision: Decision,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Fatal,
    Snooze(Duration),
}

impl TaskError {
    /// Fails the task now: no retry follows, whatever retries are left. The task's error is
    /// `error`'s message and chain of causes.
    pub fn fatal(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        TaskError { decision: Decision::Fatal, source: Some(error.into()) }
    }

    /// Ends this attempt without using it up: the task waits in the store for `wait` and then
    /// runs again, with the same attempt number. The task's last error is kept.
    pub fn snooze(wait: Duration) -> Self {
        TaskError { decision: Decision::Snooze(wait), source: None }
    }

    /// For a snooze, how long the task waits.
    pub fn snoozed_for(&self) -> Option<Duration> {
        match self.decision {
            Decision::Snooze(wait) => Some(wait),
            Decision::Fatal => None,
        }
    }

    /// Whether this error fails the task at once.
    pub fn is_fatal(&self) -> bool {
        self.decision == Decision::Fatal
    }

    pub(crate) fn decision(&self) -> Decision {
        self.decision
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.decision, &self.source) {
            (_, Some(source)) => fmt::Display::fmt(source, f),
            (Decision::Snooze(wait), None) => write!(f, "snoozed for {wait:?}"),
            (Decision::Fatal, None) => f.write_str("failed"),
        }
    }
}

impl StdError for TaskError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().and_then(|source| source.source())
    }
}
