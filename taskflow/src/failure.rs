//! [`TaskFailure`]: why one attempt of a task failed, captured from a returned error or a panic.

use std::error::Error as StdError;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// What ended an attempt without success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The task returned `Err(..)`.
    Error,
    /// The task panicked; the panic was caught.
    Panic,
    /// The attempt ran past the task's `timeout`.
    Timeout,
    /// The stored arguments could not be decoded, or the task is not registered.
    InvalidTask,
    /// The task returned [`TaskError::fatal`](crate::TaskError::fatal): no retry follows.
    Fatal,
    /// The task returned [`TaskError::snooze`](crate::TaskError::snooze): it runs again later
    /// without using an attempt.
    Snoozed,
}

/// Why one attempt of a task failed.
///
/// `message` is the error's `Display` (for a panic, the panic message); `stacktrace` holds the
/// error's `source()` chain, one cause a line, or the panic message and where it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// What kind of failure this is.
    pub kind: FailureKind,
    /// The short message: the error's `Display`, or the panic message.
    pub message: String,
    /// The longer story: the error's chain of causes, or the panic's location.
    pub stacktrace: String,
    /// For a snooze, how long the task waits.
    #[serde(skip)]
    pub(crate) snooze: Option<std::time::Duration>,
}

impl TaskFailure {
    /// A failure of the given kind whose story is its message alone.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        let message = message.into();
        TaskFailure { kind, stacktrace: message.clone(), message, snooze: None }
    }

    /// A failure from an error: its `Display` and its chain of `source()` causes.
    /// A [`TaskError`](crate::TaskError) anywhere in the chain decides the kind: fatal or
    /// snoozed.
    pub fn from_error(error: &(dyn StdError + 'static)) -> Self {
        let (kind, snooze) = decided(error);
        let message = error.to_string();
        let mut stacktrace = message.clone();
        let mut source = error.source();
        while let Some(cause) = source {
            stacktrace.push_str("\ncaused by: ");
            stacktrace.push_str(&cause.to_string());
            source = cause.source();
        }
        TaskFailure { kind, message, stacktrace, snooze }
    }

    /// For a snooze, how long the task waits before it runs again.
    pub fn snoozed_for(&self) -> Option<std::time::Duration> {
        self.snooze
    }

    /// A failure from a value that is only `Display`.
    pub fn from_display(error: &dyn fmt::Display) -> Self {
        TaskFailure::new(FailureKind::Error, error.to_string())
    }
}

/// The kind of failure `error` is: what the first [`TaskError`](crate::TaskError) in its
/// chain decides, else a plain error.
fn decided(error: &(dyn StdError + 'static)) -> (FailureKind, Option<std::time::Duration>) {
    use crate::task_error::{Decision, TaskError};
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(decision) = current.downcast_ref::<TaskError>().map(TaskError::decision) {
            return match decision {
                Decision::Fatal => (FailureKind::Fatal, None),
                Decision::Snooze(wait) => (FailureKind::Snoozed, Some(wait)),
            };
        }
        next = current.source();
    }
    (FailureKind::Error, None)
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

// How generated code turns the `E` of a task's `Result<T, E>` into a `TaskFailure`, keeping the
// richest information the type offers. It picks, by autoref specialisation on the concrete `E`:
// `std::error::Error` (message and `source()` chain); types that deref to `dyn Error` such as
// `anyhow::Error` and `Box<dyn Error + Send + Sync>` (the same, through the deref); anything
// `Display`. Generated code calls `(&&&ErrorProbe(&e)).__taskflow_failure()`.

/// Wraps a task's error for the probe traits below. Not public API.
#[doc(hidden)]
pub struct ErrorProbe<'a, E: ?Sized>(pub &'a E);

#[doc(hidden)]
pub trait ProbeStdError {
    fn __taskflow_failure(self) -> TaskFailure;
}

impl<E: StdError + 'static> ProbeStdError for &&&ErrorProbe<'_, E> {
    fn __taskflow_failure(self) -> TaskFailure {
        TaskFailure::from_error(self.0)
    }
}

#[doc(hidden)]
pub trait ProbeDynSendSyncError {
    fn __taskflow_failure(self) -> TaskFailure;
}

impl<E> ProbeDynSendSyncError for &&ErrorProbe<'_, E>
where
    E: Deref<Target = dyn StdError + Send + Sync + 'static>,
{
    fn __taskflow_failure(self) -> TaskFailure {
        TaskFailure::from_error(&**self.0)
    }
}

#[doc(hidden)]
pub trait ProbeDynError {
    fn __taskflow_failure(self) -> TaskFailure;
}

impl<E> ProbeDynError for &&ErrorProbe<'_, E>
where
    E: Deref<Target = dyn StdError + 'static>,
{
    fn __taskflow_failure(self) -> TaskFailure {
        TaskFailure::from_error(&**self.0)
    }
}

#[doc(hidden)]
pub trait ProbeDisplay {
    fn __taskflow_failure(self) -> TaskFailure;
}

impl<E: fmt::Display> ProbeDisplay for &ErrorProbe<'_, E> {
    fn __taskflow_failure(self) -> TaskFailure {
        TaskFailure::from_display(self.0)
    }
}

#[cfg(test)]
#[allow(clippy::needless_borrow)] // the probe needs exactly the three borrows generated code writes
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use super::{
        ErrorProbe, ProbeDisplay as _, ProbeDynError as _, ProbeDynSendSyncError as _,
        ProbeStdError as _,
    };

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("could not send")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn io() -> std::io::Error {
        std::io::Error::other("connection reset")
    }

    #[test]
    fn std_errors_keep_their_chain() {
        let e = Outer(io());
        let f = (&&&ErrorProbe(&e)).__taskflow_failure();
        assert_eq!(f.message, "could not send");
        assert_eq!(f.stacktrace, "could not send\ncaused by: connection reset");
    }

    #[test]
    fn anyhow_and_boxed_errors_keep_their_chain() {
        let e = anyhow::Error::new(io()).context("could not send");
        let f = (&&&ErrorProbe(&e)).__taskflow_failure();
        assert_eq!(f.message, "could not send");
        assert_eq!(f.stacktrace, "could not send\ncaused by: connection reset");

        let e: Box<dyn StdError + Send + Sync> = Box::new(Outer(io()));
        let f = (&&&ErrorProbe(&e)).__taskflow_failure();
        assert_eq!(f.stacktrace, "could not send\ncaused by: connection reset");

        let e: Box<dyn StdError> = Box::new(Outer(io()));
        let f = (&&&ErrorProbe(&e)).__taskflow_failure();
        assert_eq!(f.stacktrace, "could not send\ncaused by: connection reset");
    }

    #[test]
    fn display_only_errors_give_their_message() {
        let e = String::from("quota exceeded");
        let f = (&&&ErrorProbe(&e)).__taskflow_failure();
        assert_eq!(f.kind, FailureKind::Error);
        assert_eq!(f.message, "quota exceeded");
        assert_eq!(f.stacktrace, "quota exceeded");
    }
}
