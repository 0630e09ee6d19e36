//! Run with `cargo run --example dsl`.
//!
//! The `#[task]` DSL on its own: declare tasks, enqueue them in every call shape, look them up
//! in the registry and run one from its stored name and JSON arguments.

use taskflow::{EnqueueOptions, Task, Tasks, task};

#[derive(Debug, thiserror::Error)]
#[error("mail server refused {0}")]
struct EmailError(String);

/// Sends a welcome email.
#[task(retries = 2)]
async fn send_email(address: String) -> Result<(), EmailError> {
    if address.ends_with("@blocked.example") {
        return Err(EmailError(address));
    }
    println!("  (send_email) sending to {address}");
    Ok(())
}

/// Resizes an image and returns its new size.
#[task(retries = 3, delay = "1s", backoff = 2.0, name = "resize")]
fn resize_image(image_id: u64, width: u32, height: u32) -> anyhow::Result<(u32, u32)> {
    println!("  (resize) image {image_id} to {width}x{height}");
    Ok((width, height))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tasks = Tasks::recording();
    let email = "ada@example.com".to_string();
    tasks.add_task(send_email, email.clone());
    tasks.add_task(resize_image, (7, 800, 600));
    tasks.add_task(send_email, send_email::Args { address: email.clone() });
    send_email::enqueue(&tasks, email);
    resize_image::enqueue_with(&tasks, EnqueueOptions::new().tag("user_id", 7), 7, 64, 64);

    println!("registered tasks:");
    for task in taskflow::registry().iter() {
        let o = task.options();
        println!("  {} (retries {}, defined at {})", task.name(), o.max_retries(), task.location());
    }

    println!("enqueued, then run from the stored name and JSON:");
    for new in tasks.recorded() {
        let args = new.args.clone().map_err(anyhow::Error::msg)?;
        println!("  {} {} {}", new.id, new.name(), args);
        let outcome = taskflow::registry().invoke(new.name(), args)?.run().await;
        println!("    -> {outcome:?}");
    }

    println!("direct call, untracked: {:?}", resize_image::call(1, 2, 3)?);
    println!("name of the handle: {}", <resize_image::resize_image as Task>::name());
    Ok(())
}
