#![deny(warnings)]

use taskflow::{EnqueueOptions, Tasks, task};

#[derive(Debug, thiserror::Error)]
#[error("nope")]
pub struct MyError;

/// Documented task.
#[task]
fn sync_unit(a: u8) {
    let _ = a;
}

#[task(retries = 1, delay = 0.5, backoff = 1, max_delay = "1h", timeout = "90s")]
async fn async_result(a: String, b: Vec<u32>) -> Result<u64, MyError> {
    Ok(a.len() as u64 + b.len() as u64)
}

#[task(name = "plain", priority = 10, queue = "emails.v2", concurrency = 2, eager = false, requeue_on_interrupt = true, blocking = false)]
fn plain_value() -> (String, u8) {
    ("x".to_owned(), 1)
}

#[task]
pub async fn anyhow_result(mut counter: u32) -> anyhow::Result<()> {
    counter += 1;
    let _ = counter;
    Ok(())
}

#[task]
fn boxed(r#type: String) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _ = r#type;
    Ok(())
}

#[task]
fn explicit_unit() -> () {}

fn main() {
    let tasks = Tasks::recording();
    tasks.add_task(sync_unit, 1);
    sync_unit::enqueue(&tasks, 2);
    tasks.add_task(async_result, ("a".to_owned(), vec![1]));
    async_result::enqueue_with(&tasks, EnqueueOptions::new(), "b".to_owned(), vec![]);
    tasks.add_task(plain_value, ());
    plain_value::enqueue(&tasks);
    tasks.add_task(anyhow_result, anyhow_result::Args { counter: 1 });
    boxed::enqueue(&tasks, "t".to_owned());
    explicit_unit::enqueue(&tasks);
    let _ = plain_value::call();
    assert_eq!(tasks.recorded().len(), 9);
}
