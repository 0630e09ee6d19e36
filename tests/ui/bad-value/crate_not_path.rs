#[taskflow::task(crate = "not a path")]
fn cleanup() {}

fn main() {}
