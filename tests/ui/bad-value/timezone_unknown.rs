#[taskflow::task(cron = "0 2 * * *", timezone = "Europe/Pariss")]
fn cleanup() {}

fn main() {}
