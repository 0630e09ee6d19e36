#[taskflow::task(catch_up = "1h")]
fn cleanup() {}

fn main() {}
