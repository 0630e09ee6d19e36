//! The [`Task`] trait that `#[task]` implements, and [`IntoTaskArgs`], which makes
//! `add_task(f, args)` check `args` against `f`'s parameters at compile time.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::invocation::Invocation;
use crate::options::TaskOptions;

/// A background task: implemented by `#[task]` on the zero-sized handle it generates for each
/// fn, never by hand.
///
/// The handle is a value with the fn's own name, so the fn itself is what you pass to
/// [`Tasks::add_task`](crate::Tasks::add_task). Its arguments are a generated struct
/// (`f::Args`) with one field per parameter; [`invoke`](Task::invoke) binds them for one run.
///
/// ```
/// use taskflow::{Task, Tasks};
///
/// #[taskflow::task(retries = 2)]
/// async fn send_email(address: String) -> Result<(), std::io::Error> {
///     let _ = address;
///     Ok(())
/// }
///
/// #[taskflow::task(retries = 3, delay = "1s", backoff = 2.0, name = "resize")]
/// fn resize_image(image_id: u64, width: u32, height: u32) -> anyhow::Result<()> {
///     let _ = (image_id, width, height);
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let tasks = Tasks::recording();
/// let email = "a@b.c".to_string();
/// let image_id = 7;
/// tasks.add_task(send_email, email.clone()); // one argument: the value itself
/// tasks.add_task(resize_image, (image_id, 800, 600)); // several: a tuple, in order
/// tasks.add_task(send_email, send_email::Args { address: email.clone() }); // by field name
/// send_email::enqueue(&tasks, email); // the generated typed stub
/// resize_image::enqueue(&tasks, image_id, 800, 600);
/// send_email::call("a@b.c".to_string()).await.unwrap(); // run directly, untracked
///
/// assert_eq!(<resize_image::resize_image as Task>::name(), "resize");
/// assert_eq!(<resize_image::resize_image as Task>::options().max_retries(), 3);
/// assert_eq!(tasks.recorded().len(), 5);
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task",
    label = "expected a fn annotated with `#[task]`",
    note = "add `#[taskflow::task]` to the fn to make it a background task"
)]
pub trait Task: Copy + Send + Sync + 'static {
    /// The generated argument struct: one field per parameter, same names, same types.
    type Args: Serialize + DeserializeOwned + Clone + Debug + Send + 'static;

    /// The options the `#[task(...)]` attribute declared.
    fn options() -> &'static TaskOptions;

    /// The task's name: the fn name, or `#[task(name = "...")]`. Stored with every task and
    /// used to find the fn again after a restart.
    fn name() -> &'static str {
        Self::options().name()
    }

    /// Binds typed arguments for one run.
    fn invoke(args: Self::Args) -> Invocation;
}

/// Values accepted as the arguments of task `T`: the value itself when the fn has one
/// parameter, a tuple of the parameters in order when it has several (`()` for none), or the
/// generated `T::Args` struct. `#[task]` implements it; a value of any other type is a
/// compile error at the call.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid argument list for task `{T}`",
    label = "these arguments do not match the task's parameters",
    note = "pass the value itself for a task with one parameter, a tuple of every parameter in order for several, or the generated `Args` struct"
)]
pub trait IntoTaskArgs<T: Task> {
    /// Converts into the task's argument struct.
    fn into_args(self) -> T::Args;
}
