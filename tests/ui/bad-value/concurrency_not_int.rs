#[taskflow::task(concurrency = "2")]
fn cleanup() {}

fn main() {}
