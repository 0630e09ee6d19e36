#[taskflow::task(retry = 3)]
fn cleanup() {}

fn main() {}
