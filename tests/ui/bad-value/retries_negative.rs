#[taskflow::task(retries = -1)]
fn cleanup() {}

fn main() {}
