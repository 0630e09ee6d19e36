#[taskflow::task(retries = 5_000_000_000)]
fn cleanup() {}

fn main() {}
