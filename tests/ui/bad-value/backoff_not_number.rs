#[taskflow::task(backoff = "fast")]
fn cleanup() {}

fn main() {}
