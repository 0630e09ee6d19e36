#[taskflow::task(cron = 5)]
fn cleanup() {}

fn main() {}
