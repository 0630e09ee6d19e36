use taskflow::{Tasks, task};

#[task]
async fn send_email(address: String) {
    let _ = address;
}

fn main() {
    let tasks = Tasks::recording();
    send_email::enqueue(&tasks, 42);
}
