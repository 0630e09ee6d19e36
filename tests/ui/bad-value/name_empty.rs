#[taskflow::task(name = "")]
fn cleanup() {}

fn main() {}
