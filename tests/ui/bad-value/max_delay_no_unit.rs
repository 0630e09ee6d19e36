#[taskflow::task(max_delay = "1h 30")]
fn cleanup() {}

fn main() {}
