#[taskflow::task(eager)]
fn cleanup() {}

fn main() {}
