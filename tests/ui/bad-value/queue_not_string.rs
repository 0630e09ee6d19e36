#[taskflow::task(queue = 5)]
fn cleanup() {}

fn main() {}
