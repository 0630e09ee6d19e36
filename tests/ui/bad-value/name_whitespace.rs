#[taskflow::task(name = " padded ")]
fn cleanup() {}

fn main() {}
