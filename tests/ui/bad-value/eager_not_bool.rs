#[taskflow::task(eager = 1)]
fn cleanup() {}

fn main() {}
