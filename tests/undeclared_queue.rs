//! A `#[task(queue = "...")]` naming a queue the builder does not declare: `build()` fails
//! naming the task and the queue, rather than leaving its tasks in a queue nobody runs. A
//! binary of its own, so the other tests' managers need not declare the queue.

use taskflow::{Error, Queue, TaskManager};

#[taskflow::task(queue = "nightly")]
fn rebuild_index() {}

#[tokio::test]
async fn a_task_in_an_undeclared_queue_fails_the_build() {
    let err = TaskManager::builder().build().await.unwrap_err();
    assert!(matches!(err, Error::UndeclaredQueue { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("`rebuild_index`") && text.contains("`nightly`"), "{text}");
    let manager = TaskManager::builder().queue("nightly", Queue::new()).build().await.unwrap();
    let id = manager.tasks().add_task(rebuild_index, ());
    let record = manager.wait_for(id, std::time::Duration::from_secs(20)).await.unwrap();
    assert_eq!(record.queue, "nightly", "the task's own queue");
    assert_eq!(record.status, taskflow::TaskStatus::Success);
}
