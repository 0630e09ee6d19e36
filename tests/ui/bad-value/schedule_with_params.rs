#[taskflow::task(every = "5m")]
fn cleanup(user_id: u64) {}

fn main() {}
