//! [`Invocation`]: one prepared run of a task, with its arguments bound, and the panic capture
//! that turns a panicking task into a recorded failure.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

use serde_json::Value;

use crate::context::{TaskContext, enter_sync};
use crate::failure::{FailureKind, TaskFailure};

/// What one attempt of a task produced: its JSON result (`None` for `()`), or why it failed.
pub type TaskOutcome = Result<Option<Value>, TaskFailure>;

type BoxFuture = Pin<Box<dyn Future<Output = TaskOutcome> + Send>>;
type BoxFn = Box<dyn FnOnce() -> TaskOutcome + Send>;

/// A task with its arguments bound, ready to run once.
///
/// Made by [`Task::invoke`](crate::Task::invoke) from typed arguments, or by the
/// [registry](crate::registry) from a stored name and JSON arguments.
/// [`run`](Invocation::run) executes it: an `async fn` on the current runtime, a sync fn on
/// tokio's blocking pool (or inline with `#[task(blocking = false)]`). A panic is caught and
/// returned as a [`FailureKind::Panic`] failure.
pub struct Invocation {
    body: Body,
}

enum Body {
    Future(BoxFuture),
    Blocking(BoxFn),
    Inline(BoxFn),
}

impl Invocation {
    /// An invocation that polls `future` on the async runtime.
    #[doc(hidden)]
    pub fn future<F>(future: F) -> Self
    where
        F: Future<Output = TaskOutcome> + Send + 'static,
    {
        Invocation { body: Body::Future(Box::pin(future)) }
    }

    /// An invocation that calls `f` on tokio's blocking thread pool.
    #[doc(hidden)]
    pub fn blocking<F>(f: F) -> Self
    where
        F: FnOnce() -> TaskOutcome + Send + 'static,
    {
        Invocation { body: Body::Blocking(Box::new(f)) }
    }

    /// An invocation that calls `f` directly on the runtime thread that runs it.
    #[doc(hidden)]
    pub fn inline<F>(f: F) -> Self
    where
        F: FnOnce() -> TaskOutcome + Send + 'static,
    {
        Invocation { body: Body::Inline(Box::new(f)) }
    }

    /// Whether this runs on the blocking thread pool.
    pub fn is_blocking(&self) -> bool {
        matches!(self.body, Body::Blocking(_))
    }

    /// Runs the task once and returns its outcome. Panics in the task are caught.
    ///
    /// Must be awaited inside a tokio runtime when the task is a blocking sync fn. Run this
    /// way, the task has no [`task_context()`](crate::task_context); the manager provides one.
    pub async fn run(self) -> TaskOutcome {
        self.run_with(None).await
    }

    /// Runs with a task context and a tracing span, wherever the code runs.
    pub(crate) async fn run_in(self, context: TaskContext, span: tracing::Span) -> TaskOutcome {
        self.run_with(Some((context, span))).await
    }

    async fn run_with(self, scope: Option<(TaskContext, tracing::Span)>) -> TaskOutcome {
        install_panic_hook();
        let context = scope.as_ref().map(|(c, _)| c.clone());
        match self.body {
            Body::Future(future) => match context {
                Some(context) => crate::context::scope(context, CatchUnwind(future)).await,
                None => CatchUnwind(future).await,
            },
            Body::Inline(f) => enter_sync(context, || catch(f)),
            Body::Blocking(f) => match tokio::task::spawn_blocking(move || {
                let _span = scope.as_ref().map(|(_, span)| span.enter());
                enter_sync(context, || catch(f))
            })
            .await
            {
                Ok(outcome) => outcome,
                Err(join) if join.is_panic() => Err(panic_failure(join.into_panic())),
                Err(_) => Err(TaskFailure::new(
                    FailureKind::Error,
                    "the blocking task was cancelled because the runtime shut down",
                )),
            },
        }
    }
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.body {
            Body::Future(_) => "future",
            Body::Blocking(_) => "blocking",
            Body::Inline(_) => "inline",
        };
        f.debug_struct("Invocation").field("kind", &kind).finish()
    }
}

fn catch(f: BoxFn) -> TaskOutcome {
    let _capture = Capturing::enter();
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_failure(payload)))
}

/// Polls the inner future, turning a panic during any poll into a failed outcome.
struct CatchUnwind(BoxFuture);

impl Future for CatchUnwind {
    type Output = TaskOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TaskOutcome> {
        let _capture = Capturing::enter();
        match panic::catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => Poll::Ready(Err(panic_failure(payload))),
        }
    }
}

thread_local! {
    /// Set while a task's code runs on this thread, so the panic hook records the location.
    static CAPTURING: Cell<u32> = const { Cell::new(0) };
    /// Where the last task panic on this thread happened.
    static LAST_PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

struct Capturing;

impl Capturing {
    fn enter() -> Self {
        CAPTURING.with(|c| c.set(c.get() + 1));
        Capturing
    }
}

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURING.with(|c| c.set(c.get() - 1));
    }
}

/// Chains a hook before the existing one that remembers where a task panicked. The previous
/// hook still runs, so panics are reported as usual.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) > 0 {
                let location = info.location().map(|l| l.to_string());
                LAST_PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
            }
            previous(info);
        }));
    });
}

fn panic_failure(payload: Box<dyn Any + Send>) -> TaskFailure {
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    let location = LAST_PANIC_LOCATION.with(|slot| slot.borrow_mut().take());
    let stacktrace = match location {
        Some(at) => format!("panicked at {at}:\n{message}"),
        None => format!("panicked:\n{message}"),
    };
    TaskFailure { stacktrace, ..TaskFailure::new(FailureKind::Panic, format!("panic: {message}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panics_in_futures_become_failures() {
        let outcome = Invocation::future(async { panic!("boom {}", 7) }).run().await;
        let failure = outcome.unwrap_err();
        assert_eq!(failure.kind, FailureKind::Panic);
        assert_eq!(failure.message, "panic: boom 7");
        assert!(failure.stacktrace.contains("invocation.rs"), "{}", failure.stacktrace);
    }

    #[tokio::test]
    async fn panics_in_blocking_and_inline_fns_become_failures() {
        for invocation in [
            Invocation::blocking(|| panic!("blocking boom")),
            Invocation::inline(|| panic!("inline boom")),
        ] {
            let failure = invocation.run().await.unwrap_err();
            assert_eq!(failure.kind, FailureKind::Panic);
            assert!(failure.message.ends_with("boom"), "{}", failure.message);
            assert!(failure.stacktrace.starts_with("panicked at "), "{}", failure.stacktrace);
        }
    }

    #[tokio::test]
    async fn results_pass_through() {
        let ok = Invocation::blocking(|| Ok(Some(Value::from(3)))).run().await;
        assert_eq!(ok.unwrap(), Some(Value::from(3)));
    }
}
