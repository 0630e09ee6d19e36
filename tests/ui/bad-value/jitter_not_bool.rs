#[taskflow::task(retries = 3, jitter = "yes")]
fn flaky_call() {}

fn main() {}
