#[taskflow::task(every = "5m", timezone = "UTC")]
fn cleanup() {}

fn main() {}
