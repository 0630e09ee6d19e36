#[taskflow::task(retries = "3")]
fn cleanup() {}

fn main() {}
