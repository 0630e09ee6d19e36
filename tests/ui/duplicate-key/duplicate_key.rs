#[taskflow::task(retries = 1, delay = "1s", retries = 2)]
fn cleanup() {}

fn main() {}
