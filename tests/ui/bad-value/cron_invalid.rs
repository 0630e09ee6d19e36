#[taskflow::task(cron = "61 * * * *")]
fn cleanup() {}

fn main() {}
