#[taskflow::task(cron = "@hourly", every = "1h")]
fn cleanup() {}

fn main() {}
