#[taskflow::task(timeout = "0s")]
fn cleanup() {}

fn main() {}
