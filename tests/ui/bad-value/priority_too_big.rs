#[taskflow::task(priority = 3_000_000_000)]
fn cleanup() {}

fn main() {}
