#[taskflow::task(concurrency = 0)]
fn cleanup() {}

fn main() {}
