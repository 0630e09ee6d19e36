#[taskflow::task(every = "5 minutes please")]
fn cleanup() {}

fn main() {}
