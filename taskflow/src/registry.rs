//! The link-time registry of every `#[task]` in the binary, which finds a stored task's fn from
//! its name and runs it from JSON arguments.
//!
//! Each `#[task]` submits a [`RegisteredTask`] through `inventory`; [`registry()`] gathers them
//! once, on first use.
//!
//! # Tasks defined in another crate
//!
//! Registration happens at link time. A library crate that the binary depends on but never
//! names in its code is not linked at all, so its tasks are missing from the registry and
//! stored tasks of theirs fail with [`Error::UnknownTask`]. Name the crate once in the binary,
//! for example next to `main`:
//!
//! ```ignore
//! use my_tasks_crate as _; // links the crate so its #[task] fns register
//! ```
//!
//! Calling or enqueuing any of its tasks works as well. `tests/it/external.rs` checks that
//! tasks of a separate crate register this way.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::invocation::Invocation;
use crate::options::TaskOptions;

/// One `#[task]` fn as the registry knows it: its options, where it is defined, and how to
/// run it from JSON arguments.
pub struct RegisteredTask {
    options: &'static TaskOptions,
    invoke: fn(&Value) -> Result<Invocation>,
    module_path: &'static str,
    file: &'static str,
    line: u32,
}

impl RegisteredTask {
    /// Used by `#[task]`; not public API.
    #[doc(hidden)]
    pub const fn new(
        options: &'static TaskOptions,
        invoke: fn(&Value) -> Result<Invocation>,
        module_path: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        RegisteredTask { options, invoke, module_path, file, line }
    }

    /// The task's name.
    pub fn name(&self) -> &'static str {
        self.options.name()
    }

    /// The options declared by its `#[task(...)]`.
    pub fn options(&self) -> &'static TaskOptions {
        self.options
    }

    /// The fn's path, such as `my_app::emails::send_email` (its `#[task(name)]` may differ).
    pub fn path(&self) -> &'static str {
        self.module_path
    }

    /// Where the fn is defined, as `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{} ({})", self.file, self.line, self.module_path)
    }

    /// Decodes JSON arguments (an object keyed by parameter name) and binds them for one run.
    ///
    /// Arguments that do not fit the parameters are an [`Error::InvalidArgs`] that names the
    /// field, never a panic.
    pub fn invoke(&self, args: Value) -> Result<Invocation> {
        (self.invoke)(&args)
    }

    /// As [`RegisteredTask::invoke`], reading the arguments where they are.
    pub(crate) fn invoke_stored(&self, args: &Value) -> Result<Invocation> {
        (self.invoke)(args)
    }
}

impl fmt::Debug for RegisteredTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredTask")
            .field("name", &self.name())
            .field("options", self.options)
            .field("location", &self.location())
            .finish()
    }
}

inventory::collect!(RegisteredTask);

/// Every task in the binary, by name.
#[derive(Debug)]
pub struct Registry {
    by_name: HashMap<&'static str, &'static RegisteredTask>,
    sorted: Vec<&'static RegisteredTask>,
    duplicates: Vec<(&'static RegisteredTask, &'static RegisteredTask)>,
}

/// The registry of every `#[task]` linked into this binary, built on first call.
///
/// ```
/// #[taskflow::task(retries = 2)]
/// fn cleanup(days: u32) {
///     let _ = days;
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = taskflow::registry();
/// let task = registry.get("cleanup").unwrap();
/// assert_eq!(task.options().max_retries(), 2);
///
/// // Run a stored task from its name and JSON arguments.
/// let outcome = registry.invoke("cleanup", serde_json::json!({"days": 30})).unwrap().run().await;
/// assert_eq!(outcome, Ok(None));
///
/// // Arguments that no longer fit are an error naming the field.
/// let err = registry.invoke("cleanup", serde_json::json!({"days": "thirty"})).unwrap_err();
/// assert!(err.to_string().contains("`days`"), "{err}");
/// # }
/// ```
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry::build(inventory::iter::<RegisteredTask>.into_iter()))
}

impl Registry {
    fn build(tasks: impl Iterator<Item = &'static RegisteredTask>) -> Registry {
        let mut sorted: Vec<&'static RegisteredTask> = tasks.collect();
        sorted.sort_by(|a, b| (a.name(), a.file, a.line).cmp(&(b.name(), b.file, b.line)));
        let mut by_name = HashMap::with_capacity(sorted.len());
        let mut duplicates = Vec::new();
        for task in &sorted {
            if let Some(first) = by_name.insert(task.name(), *task) {
                by_name.insert(task.name(), first);
                duplicates.push((first, *task));
            }
        }
        Registry { by_name, sorted, duplicates }
    }

    /// The task registered under `name`.
    pub fn get(&self, name: &str) -> Option<&'static RegisteredTask> {
        self.by_name.get(name).copied()
    }

    /// Every registered task, sorted by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'static RegisteredTask> + '_ {
        self.sorted.iter().copied()
    }

    /// How many tasks are registered (duplicates included).
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether no task is registered.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Every pair of tasks that share a name, as errors that name both definitions.
    pub fn duplicates(&self) -> Vec<Error> {
        self.duplicates
            .iter()
            .map(|(first, second)| Error::DuplicateTaskName {
                name: first.name().to_owned(),
                first: first.location(),
                second: second.location(),
            })
            .collect()
    }

    /// `Ok` when every task name is unique; otherwise the first clash. `TaskManager` runs this
    /// at start, so a clash never silently runs the wrong fn.
    pub fn check(&self) -> Result<()> {
        match self.duplicates().into_iter().next() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Finds the task named `name` and binds its JSON arguments for one run.
    pub fn invoke(&self, name: &str, args: Value) -> Result<Invocation> {
        match self.get(name) {
            Some(task) => task.invoke(args),
            None => Err(Error::UnknownTask { name: name.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(_: &Value) -> Result<Invocation> {
        Ok(Invocation::inline(|| Ok(None)))
    }

    static A: TaskOptions = TaskOptions::new("same");
    static B: TaskOptions = TaskOptions::new("same");
    static C: TaskOptions = TaskOptions::new("other");
    static TA: RegisteredTask = RegisteredTask::new(&A, noop, "m::a", "a.rs", 1);
    static TB: RegisteredTask = RegisteredTask::new(&B, noop, "m::b", "b.rs", 2);
    static TC: RegisteredTask = RegisteredTask::new(&C, noop, "m::c", "c.rs", 3);

    #[test]
    fn duplicate_names_are_reported_with_both_locations() {
        let registry = Registry::build([&TB, &TC, &TA].into_iter());
        assert_eq!(registry.len(), 3);
        assert_eq!(registry.get("same").unwrap().path(), "m::a");
        let err = registry.check().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("a.rs:1 (m::a)") && text.contains("b.rs:2 (m::b)"), "{text}");
        let names: Vec<_> = registry.iter().map(RegisteredTask::name).collect();
        assert_eq!(names, ["other", "same", "same"]);
    }

    #[test]
    fn unknown_names_are_errors() {
        let registry = Registry::build([&TC].into_iter());
        let err = registry.invoke("gone", Value::Null).unwrap_err();
        assert!(err.to_string().starts_with("task `gone` is not registered in this binary"));
    }
}
