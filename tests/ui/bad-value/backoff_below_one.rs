#[taskflow::task(backoff = 0.5)]
fn cleanup() {}

fn main() {}
