#[taskflow::task(name = send)]
fn cleanup() {}

fn main() {}
