use taskflow::{Tasks, task};

#[task]
async fn send_email(address: String) {
    let _ = address;
}

fn main() {
    let tasks = Tasks::recording();
    tasks.add_task(send_email, 42);
}
