#[taskflow::task(every = "500ms")]
fn cleanup() {}

fn main() {}
