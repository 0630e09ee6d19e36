#[taskflow::task(cron = "@daily", overlap = "queue")]
fn cleanup() {}

fn main() {}
