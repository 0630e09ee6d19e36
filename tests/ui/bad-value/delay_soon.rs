#[taskflow::task(delay = "soon")]
fn cleanup() {}

fn main() {}
