#[taskflow::task(delay = -1)]
fn cleanup() {}

fn main() {}
