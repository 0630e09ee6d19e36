#[taskflow::task(blocking = true)]
async fn cleanup() {}

fn main() {}
