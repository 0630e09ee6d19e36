#[taskflow::task(serde::rename = "x")]
fn cleanup() {}

fn main() {}
